//! `binfmtctl restore`: register again the handlers `install --persist` wrote.

use anyhow::Result;

use super::report::{self, Verb};
use super::{RestoreArgs, Settings};
use crate::binfmt::manage;
use crate::cli::Exit;

/// Runs `restore`.
pub fn run(s: &Settings, a: &RestoreArgs) -> Result<Exit> {
    let report = manage::restore(&s.kernel, &s.persist_dir, &s.state_dir)?;
    if report.targets.is_empty() {
        s.printer.info(format!(
            "no binfmtctl files in {}; nothing to restore",
            s.persist_dir.display()
        ));
    }
    report::print(&s.printer, &report, a.json, false, Verb::Installed);
    Ok(if report.ok() {
        Exit::Success
    } else {
        Exit::Failure
    })
}
