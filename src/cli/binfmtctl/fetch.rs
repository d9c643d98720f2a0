//! `binfmtctl fetch`: static emulators from the Debian archive, verified, into the cache.

use std::path::PathBuf;

use anyhow::Result;
use serde::Serialize;

use super::{FetchArgs, Settings, resolve_targets};
use crate::cli::Exit;
use crate::emulator::resolve::{Source, copy_to};
use crate::emulator::{Emulator, Origin};

#[derive(Serialize)]
struct FetchOut {
    target: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    emulator: Option<Emulator>,
    #[serde(skip_serializing_if = "Option::is_none")]
    record: Option<crate::emulator::cache::Record>,
    #[serde(skip_serializing_if = "Option::is_none")]
    copied_to: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Runs `fetch`.
pub fn run(s: &Settings, a: &FetchArgs) -> Result<Exit> {
    let p = &s.printer;
    let targets = resolve_targets(&s.kernel, &a.targets)?;
    let resolver = a.archive.resolver(Source::Debian, Vec::new(), p)?;
    let cache = resolver.cache.clone();
    let (mut emulators, warnings) = resolver.resolve(&targets);
    for w in warnings {
        p.warn(w);
    }
    let mut outs = Vec::new();
    for t in &targets {
        let r = emulators
            .remove(&t.name)
            .unwrap_or_else(|| Err(format!("{} was not resolved", t.name)));
        let mut out = FetchOut {
            target: t.name.clone(),
            emulator: None,
            record: None,
            copied_to: None,
            error: None,
        };
        match r {
            Ok(e) => {
                out.record = cache.record(&resolver.suite.name, &t.name);
                if let Some(dir) = &a.dest {
                    match copy_to(&e, dir) {
                        Ok(p) => out.copied_to = Some(p),
                        Err(err) => {
                            out.error = Some(format!("cannot copy to `{}`: {err}", dir.display()))
                        }
                    }
                }
                out.emulator = Some(e);
            }
            Err(e) => out.error = Some(e),
        }
        if let Some(e) = &out.error {
            p.error(format!("{}: {e}", t.name));
        }
        outs.push(out);
    }
    if a.json {
        p.json(&outs);
    } else {
        let rows: Vec<Vec<String>> = outs
            .iter()
            .map(|o| {
                let (version, sha) = o.record.as_ref().map_or(("-".into(), "-".into()), |r| {
                    (
                        format!("{} {} ({})", r.package, r.version, r.suite),
                        r.sha256[..16].to_string(),
                    )
                });
                let origin = o.emulator.as_ref().map_or("FAILED", |e| {
                    if e.origin == Origin::Cache {
                        "cached"
                    } else {
                        "fetched"
                    }
                });
                let path = o
                    .copied_to
                    .as_ref()
                    .or(o.emulator.as_ref().map(|e| &e.path))
                    .map_or("-".into(), |p| p.display().to_string());
                vec![o.target.clone(), origin.into(), version, sha, path]
            })
            .collect();
        p.table(&["TARGET", "RESULT", "PACKAGE", "SHA256", "PATH"], &rows);
    }
    let ok = outs.iter().all(|o| o.error.is_none());
    Ok(if ok { Exit::Success } else { Exit::Failure })
}
