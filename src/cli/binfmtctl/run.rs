//! `binfmtctl run`: a user namespace (always, even as root), a private binfmt_misc with the
//! target's handler, then exec of the program.

use std::ffi::CString;

use anyhow::Result;

use super::{RunArgs, Settings};
use crate::arch::Table;
use crate::cli::{Exit, UsageError};

/// Runs `run`.
pub fn run(s: &Settings, a: &RunArgs) -> Result<Exit> {
    let p = &s.printer;
    let target = Table::get()
        .resolve(&a.platform)
        .map_err(|e| UsageError(e.to_string()))?;
    if !crate::rootless::inside() {
        crate::rootless::enter(&|w: &crate::warning::Warning| p.warn(w))?;
    }
    let private = crate::rootless::mount_private_binfmt(s.kernel.root())?;
    let resolver = a.emulators.resolver(p)?;
    crate::rootless::register_private(
        &private,
        &[target],
        &resolver,
        &|w: &crate::warning::Warning| p.warn(w),
    )?;
    let args: Vec<CString> = a
        .command
        .iter()
        .map(|s| {
            CString::new(s.as_str()).map_err(|_| UsageError(format!("`{s}` contains a NUL byte")))
        })
        .collect::<std::result::Result<_, _>>()?;
    // The program gets the environment without binfmtctl's own markers of the namespace.
    let env = crate::rootless::environment(&[]);
    let err = nix::unistd::execvpe(&args[0], &args, &env).unwrap_err();
    Err(anyhow::anyhow!("cannot run `{}`: {err}", a.command[0]))
}
