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
    /// No progress bars.
    pub quiet: bool,
    /// Never fetch (`install --dry-run`): a target that would need a download resolves to the
    /// path the cache would give it, with a warning saying a real run fetches it.
    pub offline: bool,
}

/// Each target's emulator or why there is none, plus warnings.
pub type Resolved = (HashMap<String, Result<Emulator, String>>, Vec<String>);

impl Resolver<'static> {
    /// A resolver configured from the environment alone, as the commands without archive
    /// options use it (the container entry, rootless emubuild): `$BINFMTCTL_SOURCE`,
    /// `$BINFMTCTL_EMULATOR_DIR`, `$BINFMTCTL_SUITE`, `$BINFMTCTL_KEYRING`,
    /// `$BINFMTCTL_CACHE_DIR` (and `$BINFMTCTL_MIRROR`, which mirror resolution reads itself).
    pub fn from_env(quiet: bool) -> Result<Resolver<'static>, String> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        // The same names as `--source` (clap's value names).
        let source = match var("BINFMTCTL_SOURCE") {
            None => Source::Auto,
            Some(v) => <Source as clap::ValueEnum>::from_str(&v, false)
                .map_err(|_| format!("BINFMTCTL_SOURCE is `{v}`; use auto, system or debian"))?,
        };
        Ok(Resolver {
            source,
            dirs: var("BINFMTCTL_EMULATOR_DIR")
                .map(|d| vec![d.into()])
                .unwrap_or_default(),
            suite: super::suites::Suites::get().resolve(var("BINFMTCTL_SUITE").as_deref())?,
            mirror: None,
            apt_dir: "/etc/apt".into(),
            keyring: var("BINFMTCTL_KEYRING")
                .unwrap_or_else(|| super::release::DEFAULT_KEYRING.into())
                .into(),
            cache: Cache::new(
                var("BINFMTCTL_CACHE_DIR")
                    .map(PathBuf::from)
                    .unwrap_or_else(Cache::default_dir),
            ),
            quiet,
            offline: false,
        })
    }
}

impl Resolver<'_> {
    /// Resolves every target.
    pub fn resolve(&self, targets: &[&Target]) -> Resolved {
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
                    Err(_) => pending.push(t),
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
                    warnings.push(format!("{why}; fetching it again"));
                    misses.push(*t);
                }
            }
        }
        if misses.is_empty() {
            return (out, warnings);
        }
        if self.offline {
            for t in misses {
                warnings.push(format!(
                    "no static emulator for {} is installed or cached; a real run fetches it from the Debian archive (suite {})",
                    t.name, self.suite.name
                ));
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
            quiet: self.quiet,
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
