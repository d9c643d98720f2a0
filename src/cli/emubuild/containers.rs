//! `emubuild ls` and `emubuild rm`: the working containers of the store.

use anyhow::Result;
use serde::Serialize;

use super::{LsArgs, RmArgs, Settings};
use crate::cli::{Exit, UsageError};
use crate::container::{self, Context};

#[derive(Serialize)]
struct LsRow {
    name: String,
    base: String,
    platforms: Vec<String>,
    steps: usize,
}

/// Runs `ls`.
pub fn ls(s: &Settings, ctx: &Context, a: &LsArgs) -> Result<Exit> {
    let p = &s.printer;
    let mut rows = Vec::new();
    for name in ctx.store.containers() {
        let cdir = ctx.container(&name);
        let c = match cdir.read() {
            Ok(c) => c,
            Err(e) => {
                p.warn(e);
                continue;
            }
        };
        let steps = c
            .platforms
            .iter()
            .filter_map(|pl| cdir.read_platform(pl).ok())
            .map(|st| st.steps.len())
            .max()
            .unwrap_or(0);
        rows.push(LsRow {
            name: c.name,
            base: c.base,
            platforms: c.platforms.iter().map(ToString::to_string).collect(),
            steps,
        });
    }
    if a.json {
        p.json(&rows);
    } else {
        let table: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                vec![
                    r.name.clone(),
                    r.platforms.join(","),
                    r.base.clone(),
                    r.steps.to_string(),
                ]
            })
            .collect();
        p.table(&["NAME", "PLATFORMS", "BASE", "STEPS"], &table);
    }
    Ok(Exit::Success)
}

/// Runs `rm`.
pub fn rm(s: &Settings, ctx: &Context, a: &RmArgs) -> Result<Exit> {
    let p = &s.printer;
    let names = if a.all {
        ctx.store.containers()
    } else {
        a.names.clone()
    };
    if names.is_empty() && !a.all {
        return Err(
            UsageError("name the working containers to remove, or pass `--all`".into()).into(),
        );
    }
    let mut failed = false;
    for n in names {
        match container::remove(ctx, &n) {
            Ok(()) => p.data(&n),
            Err(e) => {
                p.error(&e);
                failed = true;
            }
        }
    }
    Ok(if failed { Exit::Failure } else { Exit::Success })
}
