//! `binfmtctl verify`: run each handler's probe through the kernel.

use anyhow::Result;

use super::report::verify_cell;
use super::{Settings, VerifyArgs, resolve_targets};
use crate::binfmt::manage;
use crate::binfmt::probe::ProbeResult;
use crate::cli::Exit;

/// Runs `verify`.
pub fn run(s: &Settings, a: &VerifyArgs) -> Result<Exit> {
    let p = &s.printer;
    let targets = if a.targets.is_empty() {
        Vec::new()
    } else {
        resolve_targets(&s.kernel, &a.targets)?
    };
    let results = manage::verify(&s.kernel, &targets)?;
    if results.is_empty() {
        p.error(
            "nothing to verify: no qemu-* handlers are registered; `binfmtctl install TARGET` adds one",
        );
        return Ok(Exit::Failure);
    }
    if a.json {
        p.json(&results);
    } else {
        let rows: Vec<Vec<String>> = results
            .iter()
            .map(|r| {
                let argv0 = match r.argv0_preserved {
                    Some(true) => "preserved",
                    Some(false) => "path",
                    None => "-",
                };
                vec![
                    r.target.clone(),
                    verify_cell(Some(r)),
                    argv0.into(),
                    r.detail.clone(),
                ]
            })
            .collect();
        p.table(&["TARGET", "RESULT", "ARGV0", "DETAIL"], &rows);
    }
    let ok = results.iter().all(ProbeResult::ok);
    Ok(if ok { Exit::Success } else { Exit::Failure })
}
