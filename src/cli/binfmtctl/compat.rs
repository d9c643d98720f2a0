//! tonistiigi/binfmt's command line, so existing scripts keep working:
//! `--install all`, `--install arm64,riscv64`, `--uninstall qemu-*`, and no arguments at all
//! (print the status). Output is tonistiigi's JSON (`supported`, `emulators`); unlike it, a
//! failure makes the exit status non-zero, and only entries binfmtctl registered are removed.

use anyhow::Result;
use serde::Serialize;

use super::Settings;
use crate::arch::Table;
use crate::binfmt::manage::{self, Argv0, InstallOptions, UninstallOptions};
use crate::binfmt::{Flags, Kernel};
use crate::cli::common::EmulatorArgs;
use crate::cli::{Exit, UsageError};

#[derive(Serialize)]
struct CompatStatus {
    supported: Vec<String>,
    emulators: Vec<String>,
}

/// Runs the compatibility mode.
pub fn run(
    s: &Settings,
    install: Option<&str>,
    uninstall: Option<&str>,
    preserve_argv0: bool,
    emulators: &EmulatorArgs,
) -> Result<Exit> {
    let mut ok = true;
    if let Some(list) = uninstall {
        ok &= uninstall_list(s, list)?;
    }
    if let Some(list) = install {
        ok &= install_list(s, list, preserve_argv0, emulators)?;
    }
    print_status(s)?;
    Ok(if ok { Exit::Success } else { Exit::Failure })
}

fn install_list(
    s: &Settings,
    list: &str,
    preserve_argv0: bool,
    emulators: &EmulatorArgs,
) -> Result<bool> {
    let p = &s.printer;
    let targets = super::resolve_targets(&s.kernel, &[list.to_string()])?;
    let resolver = emulators.resolver(p)?;
    let (found, warnings) = resolver.resolve(&targets);
    for w in warnings {
        p.warn(w);
    }
    let opts = InstallOptions {
        flags: Flags::fix_binary(),
        argv0: if preserve_argv0 {
            Argv0::Always
        } else {
            Argv0::Auto
        },
        replace: false,
        refresh: s.refresh,
        dry_run: false,
        persist_dir: None,
        verify: true,
        state_dir: s.state_dir.clone(),
    };
    let find = |t: &crate::arch::Target| {
        found
            .get(&t.name)
            .cloned()
            .unwrap_or_else(|| Err("no emulator".into()))
    };
    let report = manage::install(&s.kernel, &targets, &opts, &find)?;
    for t in &report.targets {
        match (&t.error, &t.verify) {
            (Some(e), _) => p.note(format!("installing: {} {e}", t.target)),
            (None, Some(v)) if !v.ok() => p.note(format!(
                "installing: {} verification failed: {}",
                t.target, v.detail
            )),
            _ => p.note(format!("installing: {} OK", t.target)),
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

fn uninstall_list(s: &Settings, list: &str) -> Result<bool> {
    let p = &s.printer;
    let table = Table::get();
    s.kernel.ensure_mounted()?;
    let names: Vec<String> = Kernel::entries(&s.kernel)?
        .into_iter()
        .map(|e| e.name)
        .collect();
    let mut targets = Vec::new();
    for item in list.split(',').filter(|s| !s.is_empty()) {
        if item.contains(['*', '?']) {
            for n in names.iter().filter(|n| glob(item, n)) {
                match table.resolve(n) {
                    Ok(t) if t.handler_name() == *n => targets.push(t),
                    _ => p.warn(format!(
                        "`{n}` is not a QEMU handler binfmtctl knows; left in place"
                    )),
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
        state_dir: s.state_dir.clone(),
    };
    let report = manage::uninstall(&s.kernel, &targets, &opts)?;
    for t in &report.targets {
        match (&t.error, t.action, t.warnings.first()) {
            (Some(e), _, _) => p.note(format!("uninstalling: {} {e}", t.handler)),
            (None, Some(_), _) => p.note(format!("uninstalling: {} OK", t.handler)),
            (None, None, Some(w)) => p.note(format!("uninstalling: {} skipped: {w}", t.handler)),
            _ => p.note(format!("uninstalling: {} not found", t.handler)),
        }
    }
    Ok(report.ok())
}

fn print_status(s: &Settings) -> Result<()> {
    // What runs natively (x86_64 also runs 386), then what the handlers add.
    let mut supported: Vec<String> = Table::get()
        .targets()
        .iter()
        .filter(|t| s.kernel.host().runs_natively(t))
        .flat_map(|t| t.platforms.iter().map(|p| p.to_string()))
        .collect();
    let mut emulators = Vec::new();
    if s.kernel.is_mounted() {
        let st = crate::binfmt::status::status(&s.kernel, &s.state_dir, &s.persist_dir)?;
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
    s.printer.json(&CompatStatus {
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
