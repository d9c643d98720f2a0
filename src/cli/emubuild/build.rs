//! `emubuild build`: a Containerfile for several platforms (see [`crate::build`]).

use std::path::PathBuf;

use anyhow::Result;

use super::{BuildCmdArgs, Settings, pairs, parse_platforms};
use crate::cli::{Exit, UsageError};
use crate::container::Context;
use crate::containerfile::plan::BuildArgs;
use crate::oci::reference::Destination;
use crate::platform::Platform;

/// Runs `build`.
pub fn run(s: &Settings, ctx: &Context, a: &BuildCmdArgs) -> Result<Exit> {
    let p = &s.printer;
    let context = std::path::absolute(&a.context)?;
    if !context.is_dir() {
        return Err(UsageError(format!(
            "the context `{}` is not a directory",
            a.context.display()
        ))
        .into());
    }
    let mut file = None;
    let mut platform_files = Vec::new();
    for f in &a.files {
        match f.split_once('=') {
            Some((pl, path)) if pl.contains('/') => {
                let pl: Platform = pl
                    .parse()
                    .map_err(|e| UsageError(format!("`-f {f}`: {e}")))?;
                platform_files.push((pl, PathBuf::from(path)));
            }
            _ => file = Some(PathBuf::from(f)),
        }
    }
    let file = match file {
        Some(f) => f,
        None => ["Containerfile", "Dockerfile"]
            .iter()
            .map(|n| context.join(n))
            .find(|p| p.is_file())
            .ok_or_else(|| {
                UsageError(format!(
                    "no Containerfile or Dockerfile in `{}`; name one with -f FILE",
                    context.display()
                ))
            })?,
    };
    let mut platforms = parse_platforms(&a.platform)?;
    if platforms.is_empty() {
        platforms.push(Platform::host());
    }
    let mut args = BuildArgs::default();
    for b in &a.build_args {
        args.add(b).map_err(UsageError)?;
    }
    let dests = a
        .tags
        .iter()
        .map(|t| {
            t.parse::<Destination>()
                .map_err(|e| UsageError(format!("`-t {t}`: {e}")).into())
        })
        .collect::<Result<Vec<_>>>()?;
    let binds = a
        .volumes
        .iter()
        .map(|v| crate::sandbox::Bind::parse(v).map_err(|e| UsageError(format!("-v: {e}")).into()))
        .collect::<Result<Vec<_>>>()?;
    let opts = crate::build::BuildOptions {
        file,
        platform_files,
        context,
        platforms,
        args,
        target: a.target.clone(),
        dests,
        labels: pairs(&a.labels, "--label")?,
        binds,
        compression: a.compression.parse().map_err(UsageError)?,
        no_cache: a.no_cache,
        jobs: a.jobs,
        keep_going: a.keep_going,
        allow_partial: a.allow_partial,
    };
    let runner =
        |name: &str, platform: &Platform, o: &crate::container::RunOptions, prefix: &str| {
            super::run::step_in_child(s, name, platform, o, prefix).map_err(|e| format!("{e:#}"))
        };
    let built = crate::build::build(ctx, &opts, &|line| p.info(line), &runner)?;
    for w in &built.warnings {
        p.warn(w);
    }
    if a.json {
        p.json(&built);
        return Ok(Exit::Success);
    }
    let rows: Vec<Vec<String>> = built
        .timings
        .iter()
        .map(|(pl, step, t)| vec![pl.clone(), step.clone(), format!("{t:.2}s")])
        .collect();
    p.table_to_stderr(&["PLATFORM", "STEP", "TIME"], &rows);
    p.data(&built.digest);
    if a.tags.is_empty() {
        p.info(format!(
            "built {} into {} (working container {}); copy it with `emubuild tag {} DEST`",
            built.digest, built.dests[0], built.container, built.dests[0]
        ));
    } else {
        p.info(format!(
            "built {} -> {}",
            built.digest,
            built.dests.join(", ")
        ));
    }
    Ok(Exit::Success)
}
