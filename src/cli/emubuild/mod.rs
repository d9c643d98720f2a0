//! `emubuild`: an emulated build sandbox. Working containers are made from a base image for one
//! or more platforms (`from`), changed by commands run under emulation (`run`) or files copied
//! in (`copy`), listed (`ls`), removed (`rm`) and written as images (`commit`); `inspect` shows
//! an image, `push` sends a local one to a registry, `manifest` joins images into lists and
//! `tag` promotes by digest. The argument definitions are in `args`; each command is a file of its own and
//! gets the [`Settings`] resolved once from the command line and the environment.

mod args;
mod build;
mod commit;
mod containers;
mod copy;
mod from;
mod inspect;
mod login;
mod manifest;
mod push;
mod run;
mod tag;

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::{CommandFactory, Parser};

pub use args::*;

use super::printer::Printer;
use super::{Exit, UsageError, report_error};
use crate::binfmt::BinfmtFs;
use crate::container::Context;
use crate::oci::reference::Reference;
use crate::platform::{self, Platform};
use crate::snapshotter::Driver;
use crate::store::Store;

const PROG: &str = "emubuild";

/// Exit status when emubuild itself could not run the command (as `docker run`).
pub const RUN_FAILED: u8 = 125;

/// Everything a command needs from the command line and the environment, resolved once.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The store's root.
    pub store: PathBuf,
    /// The binfmt_misc mount the preflight reads.
    pub binfmt_root: PathBuf,
    /// The snapshotter.
    pub driver: Driver,
    /// `SOURCE_DATE_EPOCH`.
    pub epoch: Option<i64>,
    /// Not real root: everything runs in a user namespace of our own.
    pub rootless: bool,
    /// `-v` (per-platform runs log as their parent does).
    pub verbose: u8,
    /// `--log-level`.
    pub log_level: Option<String>,
    /// How registries are talked to.
    pub registry: crate::registry::Options,
    /// Output.
    pub printer: Printer,
}

impl Settings {
    fn resolve(cli: &Cli) -> Settings {
        let printer = cli.global.start(PROG);
        Settings {
            registry: cli.registry.options(&printer),
            store: cli
                .store
                .clone()
                .unwrap_or_else(|| Store::default_root(&super::common::base_dirs())),
            binfmt_root: cli.binfmt_root.clone(),
            driver: cli.driver,
            epoch: cli.source_date_epoch,
            rootless: !is_root(),
            verbose: cli.global.verbose,
            log_level: cli.global.log_level.clone(),
            printer,
        }
    }

    /// Opens the store and makes the context container operations take.
    pub fn context(&self) -> Result<Context> {
        let store = Store::open(&self.store)
            .with_context(|| format!("cannot open the store `{}`", self.store.display()))?;
        Ok(Context {
            store,
            kernel: BinfmtFs::new(&self.binfmt_root),
            rootless: self.rootless,
            driver: self.driver,
            epoch: self.epoch,
            registry: self.registry.clone(),
        })
    }
}

/// Real root in the initial user namespace.
fn is_root() -> bool {
    nix::unistd::geteuid().is_root() && crate::binfmt::fs::in_initial_user_namespace()
}

/// Entry point of the `emubuild` binary.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Command::RunPlatform) {
        // Its settings, logging included, come with its request.
        return match run::child() {
            Ok(exit) => exit.into(),
            Err(e) => {
                report_error(&Printer::new(PROG, false), &e);
                Exit::Child(RUN_FAILED).into()
            }
        };
    }
    let settings = Settings::resolve(&cli);
    let is_run = matches!(cli.command, Command::Run(_) | Command::RunPlatform);
    match run_cli(cli, &settings) {
        Ok(exit) => exit.into(),
        Err(e) => match report_error(&settings.printer, &e) {
            // `run` reserves 125 for "could not run", as `docker run` does.
            Exit::Failure if is_run => Exit::Child(RUN_FAILED).into(),
            exit => exit.into(),
        },
    }
}

/// Runs a parsed command line.
pub fn run_cli(cli: Cli, s: &Settings) -> Result<Exit> {
    match &cli.command {
        Command::Completions(a) => {
            clap_complete::generate(a.shell, &mut Cli::command(), PROG, &mut std::io::stdout());
            return Ok(Exit::Success);
        }
        Command::Man => {
            clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())?;
            return Ok(Exit::Success);
        }
        Command::RunPlatform => return run::child(),
        // Credentials are the user's own: no store, no user namespace.
        Command::Login(a) => return login::login(s, a),
        Command::Logout(a) => return login::logout(s, a),
        _ => {}
    }
    // Not root: everything happens in a user namespace of our own (rootless mode).
    if s.rootless && !crate::rootless::inside() {
        crate::rootless::enter(&|w: &crate::warning::Warning| s.printer.warn(w))?;
    }
    let ctx = s.context()?;
    match &cli.command {
        Command::From(a) => from::run(s, &ctx, a),
        Command::Run(a) => run::run(s, &ctx, a),
        Command::Ls(a) => containers::ls(s, &ctx, a),
        Command::Rm(a) => containers::rm(s, &ctx, a),
        Command::Copy(a) => copy::run(s, &ctx, a),
        Command::Commit(a) => commit::run(s, &ctx, a),
        Command::Build(a) => build::run(s, &ctx, a),
        Command::Inspect(a) => inspect::run(s, &ctx, a),
        Command::Push(a) => push::run(s, &ctx, a),
        Command::Manifest(c) => manifest::run(s, &ctx, c),
        Command::Tag(a) => tag::run(s, &ctx, a),
        Command::Completions(_)
        | Command::Man
        | Command::RunPlatform
        | Command::Login(_)
        | Command::Logout(_) => unreachable!("handled above"),
    }
}

fn parse_platforms(s: &Option<String>) -> Result<Vec<Platform>> {
    match s {
        None => Ok(Vec::new()),
        Some(s) => Ok(platform::parse_list(s).map_err(|e| UsageError(e.to_string()))?),
    }
}

fn parse_image(s: &str) -> Result<Reference> {
    Ok(s.parse::<Reference>()
        .map_err(|e| UsageError(e.to_string()))?)
}

/// Writes `digest` and a newline to `f` (for the job that joins the list).
fn write_digestfile(f: &std::path::Path, digest: &str) -> Result<()> {
    crate::util::write_atomic(f, format!("{digest}\n").as_bytes(), 0o644)
        .with_context(|| format!("cannot write `{}`", f.display()))
}

/// `K=V` pairs of a repeated flag.
fn pairs(list: &[String], what: &str) -> Result<Vec<(String, String)>> {
    list.iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(UsageError(format!("`{what} {kv}`: expected K=V")).into()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }
}
