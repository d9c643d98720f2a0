//! `binfmtctl uninstall`: remove the handlers binfmtctl registered, never anyone else's.

use anyhow::Result;

use super::report::{self, Verb};
use super::{Settings, UninstallArgs, is_all, resolve_targets};
use crate::arch::Table;
use crate::binfmt::manage::{self, UninstallOptions};
use crate::cli::Exit;

/// Runs `uninstall`.
pub fn run(s: &Settings, a: &UninstallArgs) -> Result<Exit> {
    let all = is_all(&a.targets);
    let targets = if all {
        Table::get().targets().iter().collect()
    } else {
        resolve_targets(&s.kernel, &a.targets)?
    };
    let opts = UninstallOptions {
        force: a.force,
        all,
        persist_dir: Some(s.persist_dir.clone()),
        state_dir: s.state_dir.clone(),
    };
    let mut report = manage::uninstall(&s.kernel, &targets, &opts)?;
    if all {
        // For `all`, list only targets where something happened.
        report.targets.retain(|t| {
            t.action.is_some()
                || t.error.is_some()
                || !t.warnings.is_empty()
                || t.persisted.is_some()
        });
    }
    report::print(&s.printer, &report, a.json, false, Verb::Removed);
    Ok(if report.ok() {
        Exit::Success
    } else {
        Exit::Failure
    })
}
