//! Choosing each target's emulator according to `--source`: `system` (installed static
//! emulators only), `debian` (the verified cache, else a fetch from the Debian archive), or
//! `auto` (installed, else cache, else fetch). Fetches are batched: one download of the package
//! serves every target that needs it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::cache::Cache;
use super::debian::{self, FetchOptions};
use super::suites::Suite;
use super::{Emulator, locate, mirror};
use crate::arch::Target;
use crate::warning::Warning;

/// Where emulators may come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Source {
    /// Installed static emulator, else the cache, else the Debian archive.
    Auto,
    /// Installed static emulators only.
    System,
    /// The Debian archive (through the verified cache).
    Debian,
}

/// Everything resolution needs.
#[derive(Debug, Clone)]
pub struct Resolver<'a> {
    /// The source policy.
    pub source: Source,
    /// `--emulator-dir` directories (searched first for `auto` and `system`).
    pub dirs: Vec<PathBuf>,
    /// The suite to fetch from.
    pub suite: &'a Suite,
    /// `--mirror`, if given.
    pub mirror: Option<String>,
    /// Where apt sources live (for finding a mirror).
    pub apt_dir: PathBuf,
    /// The keyring.
    pub keyring: PathBuf,
    /// The cache.
    pub cache: Cache,
    /// Where download progress goes.
    pub progress: crate::progress::SharedReporter,
    /// Never fetch (`install --dry-run`): a target that would need a download resolves to the
    /// path the cache would give it, with a warning saying a real run fetches it.
    pub offline: bool,
}

/// Each target's emulator or why there is none, plus warnings.
pub type Resolved = (HashMap<String, Result<Emulator, String>>, Vec<Warning>);

impl Resolver<'_> {
    /// Resolves every target.
    pub fn resolve(&self, targets: &[&Target]) -> Resolved {
        let resolved = self.resolve_all(targets);
        for (name, r) in &resolved.0 {
            match r {
                Ok(e) => {
                    tracing::info!(target = %name, emulator = %e.path.display(), origin = ?e.origin, "emulator chosen")
                }
                Err(why) => tracing::info!(target = %name, %why, "no emulator"),
            }
        }
        resolved
    }

    fn resolve_all(&self, targets: &[&Target]) -> Resolved {
        let mut out: HashMap<String, Result<Emulator, String>> = HashMap::new();
        let mut warnings = Vec::new();
        let mut pending: Vec<&Target> = Vec::new();
        for &t in targets {
            match self.source {
                Source::System => {
                    out.insert(
                        t.name.clone(),
                        locate::locate(t, &self.dirs, true).map_err(|e| e.to_string()),
                    );
                }
                Source::Auto => match locate::locate(t, &self.dirs, true) {
                    Ok(e) => {
                        out.insert(t.name.clone(), Ok(e));
                    }
                    Err(e)
                        if !self.dirs.is_empty()
                            && !matches!(e, super::EmulatorError::NotFound { .. }) =>
                    {
                        out.insert(t.name.clone(), Err(e.to_string()));
                    }
                    Err(e) => {
                        tracing::debug!(target = %t.name, error = %e, "no installed emulator; trying the cache and the archive");
                        pending.push(t)
                    }
                },
                Source::Debian => pending.push(t),
            }
        }
        if pending.is_empty() {
            return (out, warnings);
        }
        // Cache hits need no mirror and no network.
        let mut misses = Vec::new();
        for (t, (name, hit)) in
            pending
                .iter()
                .zip(debian::cached(&pending, self.suite, &self.cache))
        {
            match hit {
                Ok(Some(f)) => {
                    out.insert(name, Ok(f.emulator));
                }
                Ok(None) => misses.push(*t),
                Err(why) => {
                    warnings.push(Warning::CacheDamaged { why });
                    misses.push(*t);
                }
            }
        }
        if misses.is_empty() {
            return (out, warnings);
        }
        if self.offline {
            for t in misses {
                warnings.push(Warning::WouldFetch {
                    target: t.name.clone(),
                    suite: self.suite.name.clone(),
                });
                out.insert(
                    t.name.clone(),
                    Ok(Emulator {
                        target: t.name.clone(),
                        path: self.cache.emulator_path(&self.suite.name, &t.name),
                        origin: super::Origin::Debian,
                    }),
                );
            }
            return (out, warnings);
        }
        let mirror = match mirror::resolve(self.mirror.as_deref(), &self.apt_dir) {
            Ok(m) => m,
            Err(e) => {
                for t in misses {
                    out.insert(t.name.clone(), Err(no_emulator(t, &e.to_string())));
                }
                return (out, warnings);
            }
        };
        let opts = FetchOptions {
            mirror,
            keyring: self.keyring.clone(),
            cache: self.cache.clone(),
            progress: self.progress.clone(),
        };
        match debian::fetch(&misses, self.suite, &opts) {
            Ok(report) => {
                for w in report.warnings {
                    if !warnings.contains(&w) {
                        warnings.push(w);
                    }
                }
                for (name, r) in report.results {
                    out.insert(name, r.map(|f| f.emulator));
                }
            }
            Err(e) => {
                let msg = format!("{e}");
                for t in misses {
                    out.insert(t.name.clone(), Err(no_emulator(t, &msg)));
                }
            }
        }
        (out, warnings)
    }
}

fn no_emulator(t: &Target, why: &str) -> String {
    format!(
        "no static emulator for {} is installed or cached, and fetching one failed: {why}",
        t.name
    )
}

/// Copies an emulator to `dir/qemu-<target>` atomically (for `fetch --dest`).
pub fn copy_to(emulator: &Emulator, dir: &Path) -> std::io::Result<PathBuf> {
    let dest = dir.join(format!("qemu-{}", emulator.target));
    let data = std::fs::read(&emulator.path)?;
    crate::util::write_atomic(&dest, &data, 0o755)?;
    Ok(dest)
}
