//! `binfmtctl status`: the emulator cache, then every entry of the mount.

use std::path::PathBuf;

use anyhow::Result;
use serde::Serialize;

use super::{Settings, StatusArgs};
use crate::binfmt::status::{self, Status};
use crate::cli::Exit;
use crate::emulator::cache::{Cache, Record};

#[derive(Serialize)]
struct StatusOut {
    #[serde(flatten)]
    status: Status,
    /// Emulators in the cache: suite, package version, SHA256.
    cache: Vec<Record>,
    cache_dir: PathBuf,
}

fn cache(dir: Option<PathBuf>) -> Cache {
    Cache::new(dir.unwrap_or_else(|| Cache::default_dir(&crate::cli::common::base_dirs())))
}

/// The whole status as JSON on stdout (after `install` in binfmtctl's container).
pub fn print_json(s: &Settings, cache_dir: Option<PathBuf>) -> Result<()> {
    let st = status::status(&s.kernel, &s.state_dir, &s.persist_dir)?;
    let cache = cache(cache_dir);
    s.printer.json(&StatusOut {
        status: st,
        cache: cache.records(),
        cache_dir: cache.dir().to_path_buf(),
    });
    Ok(())
}

/// Runs `status`.
pub fn run(s: &Settings, a: &StatusArgs) -> Result<Exit> {
    if a.json {
        print_json(s, a.cache_dir.clone())?;
        return Ok(Exit::Success);
    }
    let p = &s.printer;
    let st = status::status(&s.kernel, &s.state_dir, &s.persist_dir)?;
    let cache = cache(a.cache_dir.clone());
    let records = cache.records();
    if !records.is_empty() {
        p.data(format!("emulator cache: {}", cache.dir().display()));
        let rows: Vec<Vec<String>> = records
            .iter()
            .map(|r| {
                vec![
                    r.target.clone(),
                    r.suite.clone(),
                    format!("{} {}", r.package, r.version),
                    r.sha256.clone(),
                ]
            })
            .collect();
        p.table(&["TARGET", "SUITE", "PACKAGE", "SHA256"], &rows);
        p.data("");
    }
    if !st.mounted {
        p.data(format!("binfmt_misc: not mounted at {}", st.root.display()));
        p.data("  `binfmtctl install TARGET` mounts it and registers handlers");
        return Ok(Exit::Success);
    }
    p.data(format!(
        "binfmt_misc: mounted at {} ({}), {}",
        st.root.display(),
        st.instance.map_or("unknown instance", |i| i.describe()),
        if st.enabled == Some(true) {
            "enabled"
        } else {
            "DISABLED"
        }
    ));
    if let Some(h) = &st.host {
        p.data(format!("host: {h}"));
    }
    if st.entries.is_empty() {
        p.data("no entries");
        return Ok(Exit::Success);
    }
    p.data("");
    let rows: Vec<Vec<String>> = st
        .entries
        .iter()
        .map(|e| {
            vec![
                e.entry.name.clone(),
                if e.entry.enabled {
                    "enabled"
                } else {
                    "disabled"
                }
                .into(),
                e.target.clone().unwrap_or_else(|| "-".into()),
                e.entry.flags.to_string(),
                match (e.managed, e.persisted) {
                    (true, true) => "binfmtctl, persisted".into(),
                    (true, false) => "binfmtctl".into(),
                    (false, _) => "other".into(),
                },
                e.entry.interpreter.clone(),
            ]
        })
        .collect();
    p.table(
        &["NAME", "STATE", "TARGET", "FLAGS", "OWNER", "INTERPRETER"],
        &rows,
    );
    let from_cache: Vec<String> = st
        .entries
        .iter()
        .filter_map(|e| {
            records
                .iter()
                .find(|r| {
                    cache.emulator_path(&r.suite, &r.target).as_os_str()
                        == e.entry.interpreter.as_str()
                })
                .map(|r| {
                    format!(
                        "{} runs {} {} ({})",
                        e.entry.name, r.package, r.version, r.suite
                    )
                })
        })
        .collect();
    if !from_cache.is_empty() {
        p.data("");
        for l in from_cache {
            p.data(l);
        }
    }
    let notes: Vec<String> = st
        .entries
        .iter()
        .filter_map(|e| {
            e.shadowed_by.as_ref().map(|w| {
                format!(
                    "note: {} overlaps {w}; {w} was registered later and wins",
                    e.entry.name
                )
            })
        })
        .collect();
    if !notes.is_empty() {
        p.data("");
        for n in notes {
            p.data(n);
        }
    }
    Ok(Exit::Success)
}
