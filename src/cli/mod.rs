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
/// The error and its causes, `a: b: c`, leaving out a cause whose text the message before it
/// already holds (most of our errors say their cause themselves).
fn chain_text(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        let c = cause.to_string();
        if text.is_empty() {
            text = c;
        } else if !text.contains(&c) {
            text.push_str(": ");
            text.push_str(&c);
        }
    }
    text
}

pub(crate) fn report_error(prog: &str, err: &anyhow::Error) -> Exit {
    eprintln!("{prog}: error: {}", chain_text(err));
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
    fn causes_already_said_are_not_repeated() {
        let inner = std::io::Error::other("disk on fire");
        let e = anyhow::Error::new(inner).context("cannot write `x`: disk on fire");
        assert_eq!(chain_text(&e), "cannot write `x`: disk on fire");
        let e =
            anyhow::Error::new(std::io::Error::other("disk on fire")).context("cannot write `x`");
        assert_eq!(chain_text(&e), "cannot write `x`: disk on fire");
    }
}
