//! Command-line front ends. Argument structs (clap derive) sit apart from the code that runs
//! them; every command returns an [`Exit`] so the binaries stay a line long.

pub mod binfmtctl;
pub mod common;
pub mod emubuild;
pub mod logging;
pub mod printer;

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

/// The error and its causes, `a: b: c`, as ripgrep prints them (`{:#}`). Error messages never
/// repeat their cause's text themselves, so every link is printed once.
fn chain_text(err: &anyhow::Error) -> String {
    format!("{err:#}")
}

/// Prints an error chain and maps it to an exit status: usage errors exit 2, failures 1.
pub(crate) fn report_error(printer: &printer::Printer, err: &anyhow::Error) -> Exit {
    printer.error(chain_text(err));
    if err.downcast_ref::<UsageError>().is_some() {
        Exit::Usage
    } else {
        Exit::Failure
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_are_printed_once_each() {
        let e =
            anyhow::Error::new(std::io::Error::other("disk on fire")).context("cannot write `x`");
        assert_eq!(chain_text(&e), "cannot write `x`: disk on fire");
    }
}
