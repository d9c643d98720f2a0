//! Command-line front ends. Argument structs (clap derive) sit apart from the code that runs
//! them; every command returns an [`Exit`] so the binaries stay a line long.

mod binfmt_compat;
pub mod binfmtctl;
pub mod emubuild;
mod output;

use std::process::ExitCode;

/// Exit statuses shared by both commands (like uv's `ExitStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Everything asked for was done.
    Success,
    /// The operation failed (a target did not register or verify, a command failed).
    Failure,
    /// Bad usage or an unexpected error.
    Usage,
    /// A child's own status, passed through (`emubuild run`).
    Child(u8),
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        match e {
            Exit::Success => ExitCode::SUCCESS,
            Exit::Failure => ExitCode::from(1),
            Exit::Usage => ExitCode::from(2),
            Exit::Child(c) => ExitCode::from(c),
        }
    }
}

/// An error that carries its exit status: usage errors exit 2, failures 1.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Prints an error chain the way ripgrep does (`{:#}`), and maps it to an exit status.
pub(crate) fn report_error(prog: &str, err: &anyhow::Error) -> Exit {
    eprintln!("{prog}: error: {err:#}");
    if err.downcast_ref::<UsageError>().is_some() {
        Exit::Usage
    } else {
        Exit::Failure
    }
}
