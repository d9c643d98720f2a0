//! `emubuild`: the emulated build sandbox (its commands arrive with the next issues).

use clap::{CommandFactory, Parser};

use super::Exit;

/// Run commands for foreign CPU architectures in a namespaced chroot of a base image, and
/// write what they changed as multi-arch OCI images.
#[derive(Debug, Parser)]
#[command(name = "emubuild", version, about)]
pub struct Cli {}

/// Entry point of the `emubuild` binary.
pub fn main() -> std::process::ExitCode {
    let _cli = Cli::parse();
    let _ = Cli::command().print_help();
    Exit::Success.into()
}
