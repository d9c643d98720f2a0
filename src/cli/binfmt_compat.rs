//! tonistiigi/binfmt's command line, so existing scripts keep working:
//! `--install all`, `--install arm64,riscv64`, `--uninstall qemu-*`, and no arguments at all
//! (print the status). Output is tonistiigi's JSON (`supported`, `emulators`); unlike it, a
//! failure makes the exit status non-zero, and only entries binfmtctl registered are removed.

use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use super::output::{self, warn};
use super::{Exit, UsageError};
use crate::arch::Table;
use crate::binfmt::manage::{self, InstallOptions, UninstallOptions};
use crate::binfmt::{BinfmtFs, Flags, owner};
use crate::emulator::resolve::Resolver;

const PROG: &str = "binfmtctl";

#[derive(Serialize)]
struct CompatStatus {
    supported: Vec<String>,
    emulators: Vec<String>,
}

/// Runs the compatibility mode.
pub fn run(fs: &BinfmtFs, install: Option<&str>, uninstall: Option<&str>) -> Result<Exit> {
    let mut ok = true;
    if let Some(list) = uninstall {
        ok &= uninstall_list(fs, list)?;
    }
    if let Some(list) = install {
        ok &= install_list(fs, list)?;
    }
    print_status(fs)?;
    Ok(if ok { Exit::Success } else { Exit::Failure })
}

fn install_list(fs: &BinfmtFs, list: &str) -> Result<bool> {
    let targets = super::binfmtctl::resolve_targets(&[list.to_string()])?;
    let resolver = Resolver::from_env(true).map_err(super::UsageError)?;
    let (emulators, warnings) = resolver.resolve(&targets);
    for w in warnings {
        warn(PROG, &w);
    }
    let opts = InstallOptions {
        flags: Flags {
            preserve_argv0: std::env::var_os("QEMU_PRESERVE_ARGV0").is_some(),
            ..Flags::fix_binary()
        },
        replace: false,
        refresh: std::env::var("BINFMTCTL_REFRESH").is_ok_and(|v| v == "1" || v == "true"),
        dry_run: false,
        persist_dir: None,
        verify: true,
        state_dir: owner::state_dir(),
    };
    let find = |t: &crate::arch::Target| {
        emulators
            .get(&t.name)
            .cloned()
            .unwrap_or_else(|| Err("no emulator".into()))
    };
    let report = manage::install(fs, &targets, &opts, &find)?;
    for t in &report.targets {
        match (&t.error, &t.verify) {
            (Some(e), _) => eprintln!("installing: {} {e}", t.target),
            (None, Some(v)) if !v.ok() => {
                eprintln!("installing: {} verification failed: {}", t.target, v.detail)
            }
            _ => eprintln!("installing: {} OK", t.target),
        }
    }
    Ok(report.ok())
}

/// `qemu-*`-style globs (only `*` and `?`).
fn glob(pattern: &str, name: &str) -> bool {
    fn m(p: &[u8], n: &[u8]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some(b'*'), _) => m(&p[1..], n) || (!n.is_empty() && m(p, &n[1..])),
            (Some(b'?'), Some(_)) => m(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => m(&p[1..], &n[1..]),
            _ => false,
        }
    }
    m(pattern.as_bytes(), name.as_bytes())
}

fn uninstall_list(fs: &BinfmtFs, list: &str) -> Result<bool> {
    let table = Table::get();
    fs.ensure_mounted()?;
    let names = fs.names()?;
    let mut targets = Vec::new();
    for item in list.split(',').filter(|s| !s.is_empty()) {
        if item.contains(['*', '?']) {
            for n in names.iter().filter(|n| glob(item, n)) {
                match table.resolve(n) {
                    Ok(t) if t.handler_name() == *n => targets.push(t),
                    _ => warn(
                        PROG,
                        &format!("`{n}` is not a QEMU handler binfmtctl knows; left in place"),
                    ),
                }
            }
        } else {
            targets.push(table.resolve(item).map_err(|e| UsageError(e.to_string()))?);
        }
    }
    targets.dedup_by(|a, b| a.name == b.name);
    let opts = UninstallOptions {
        force: false,
        all: true,
        persist_dir: None,
        state_dir: owner::state_dir(),
    };
    let report = manage::uninstall(fs, &targets, &opts)?;
    for t in &report.targets {
        match (&t.error, t.action, t.warnings.first()) {
            (Some(e), _, _) => eprintln!("uninstalling: {} {e}", t.handler),
            (None, Some(_), _) => eprintln!("uninstalling: {} OK", t.handler),
            (None, None, Some(w)) => eprintln!("uninstalling: {} skipped: {w}", t.handler),
            _ => eprintln!("uninstalling: {} not found", t.handler),
        }
    }
    Ok(report.ok())
}

fn print_status(fs: &BinfmtFs) -> Result<()> {
    // What runs natively (x86_64 also runs 386), then what the handlers add.
    let mut supported: Vec<String> = Table::get()
        .targets()
        .iter()
        .filter(|t| crate::sandbox::preflight::is_native(t))
        .flat_map(|t| t.platforms.iter().map(|p| p.to_string()))
        .collect();
    let mut emulators = Vec::new();
    if fs.is_mounted() {
        let st = manage::status(
            fs,
            &owner::state_dir(),
            Path::new(crate::binfmt::persist::DEFAULT_DIR),
        )?;
        for e in st.entries.iter().filter(|e| e.entry.enabled) {
            emulators.push(e.entry.name.clone());
            if let Some(t) = e.target.as_deref().and_then(|t| Table::get().by_name(t)) {
                for p in &t.platforms {
                    let s = p.to_string();
                    if !supported.contains(&s) {
                        supported.push(s);
                    }
                }
            }
        }
    }
    output::json(&CompatStatus {
        supported,
        emulators,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn globs() {
        assert!(glob("qemu-*", "qemu-aarch64"));
        assert!(!glob("qemu-*", "python3.11"));
        assert!(glob("qemu-?rm", "qemu-arm"));
        assert!(glob("*", "x"));
    }
}
