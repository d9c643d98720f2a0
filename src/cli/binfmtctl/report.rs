//! How reports look: a table per operation (or JSON, or the bare register lines of a dry run),
//! warnings and per-target errors on stderr.

use crate::binfmt::manage::{Action, Report};
use crate::binfmt::probe::{Outcome, ProbeResult};
use crate::cli::printer::Printer;

/// Which operation a report is of (its table's columns and words).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// install, restore
    Installed,
    /// uninstall
    Removed,
}

/// The VERIFY cell.
pub fn verify_cell(v: Option<&ProbeResult>) -> String {
    match v {
        None => "-".into(),
        Some(v) => match v.outcome {
            Outcome::Passed => "ok".into(),
            Outcome::Failed => "FAILED".into(),
            Outcome::NoProbe => "not run (no probe)".into(),
        },
    }
}

/// Warnings and errors of every target, on stderr.
pub fn messages(p: &Printer, report: &Report) {
    for t in &report.targets {
        for w in &t.warnings {
            p.warn(format!("{}: {w}", t.target));
        }
        if let Some(e) = &t.error {
            p.error(format!("{}: {e}", t.target));
        }
        if let Some(v) = &t.verify
            && !v.ok()
        {
            p.error(format!("{}: verification failed: {}", t.target, v.detail));
        }
    }
}

/// The report as JSON, register lines (dry run) or a table on stdout.
pub fn print(p: &Printer, report: &Report, json: bool, dry_run: bool, verb: Verb) {
    messages(p, report);
    if json {
        p.json(report);
    } else if dry_run {
        for l in report.targets.iter().filter_map(|t| t.line.as_ref()) {
            p.data(l);
        }
    } else {
        let (headers, rows) = table(report, verb);
        p.table(&headers, &rows);
    }
}

/// Messages, and the table on stderr (stdout carries a JSON status).
pub fn print_to_stderr(p: &Printer, report: &Report, verb: Verb) {
    messages(p, report);
    let (headers, rows) = table(report, verb);
    p.table_to_stderr(&headers, &rows);
}

fn table(report: &Report, verb: Verb) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let rows = report
        .targets
        .iter()
        .map(|t| {
            let action = match (t.action, &t.error) {
                (_, Some(_)) => "FAILED",
                (Some(Action::Registered), _) => "registered",
                (Some(Action::Unchanged), _) => "already installed",
                (Some(Action::Enabled), _) => "enabled",
                (Some(Action::Replaced), _) => "replaced",
                (Some(Action::Refreshed), _) => "refreshed",
                (Some(Action::Removed), _) => "removed",
                (Some(Action::DryRun), _) => "dry run",
                (None, None) if !t.warnings.is_empty() => "left in place",
                (None, None) => "not installed",
            };
            let mut row = vec![t.target.clone(), t.handler.clone(), action.to_string()];
            if verb == Verb::Installed {
                let flags = t.registration().map_or("-".into(), |r| r.flags.to_string());
                row.push(flags);
                row.push(
                    t.emulator
                        .as_ref()
                        .map_or("-".into(), |e| e.path.display().to_string()),
                );
                row.push(verify_cell(t.verify.as_ref()));
            }
            row
        })
        .collect();
    let headers = match verb {
        Verb::Installed => vec!["TARGET", "HANDLER", "RESULT", "FLAGS", "EMULATOR", "VERIFY"],
        Verb::Removed => vec!["TARGET", "HANDLER", "RESULT"],
    };
    (headers, rows)
}
