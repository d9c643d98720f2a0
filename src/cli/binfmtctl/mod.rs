//! `binfmtctl`: manage QEMU user-mode emulation through the kernel's binfmt_misc. The argument
//! definitions are in `args`; each command is a file of its own and gets the [`Settings`]
//! resolved once from the command line and the environment.

mod args;
mod compat;
mod fetch;
mod inspect;
mod install;
mod report;
mod restore;
mod run;
mod status;
mod uninstall;
mod verify;

use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;

pub use args::*;

use super::printer::Printer;
use super::{Exit, UsageError, report_error};
use crate::arch::{Table, Target};
use crate::binfmt::{BinfmtFs, Kernel, owner};

const PROG: &str = "binfmtctl";

/// Everything a command needs from the command line and the environment, resolved once.
pub struct Settings {
    /// The kernel (binfmt_misc at `--root`).
    pub kernel: BinfmtFs,
    /// Ownership records.
    pub state_dir: PathBuf,
    /// `binfmt.d` files.
    pub persist_dir: PathBuf,
    /// `--refresh` / `BINFMTCTL_REFRESH`.
    pub refresh: bool,
    /// `BINFMTCTL_STATUS_JSON`.
    pub status_json: bool,
    /// Output.
    pub printer: Printer,
}

impl Settings {
    fn resolve(cli: &Cli) -> Settings {
        Settings {
            kernel: BinfmtFs::new(&cli.root),
            state_dir: cli
                .state_dir
                .clone()
                .unwrap_or_else(|| owner::state_dir(&super::common::base_dirs())),
            persist_dir: cli.persist_dir.clone(),
            refresh: cli.refresh,
            status_json: cli.status_json,
            printer: cli.global.start(PROG),
        }
    }
}

/// Entry point of the `binfmtctl` binary.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let settings = Settings::resolve(&cli);
    match run(cli, &settings) {
        Ok(exit) => exit.into(),
        Err(e) => report_error(&settings.printer, &e).into(),
    }
}

/// Runs a parsed command line.
pub fn run(cli: Cli, s: &Settings) -> Result<Exit> {
    // `--install`/`--uninstall` are tonistiigi/binfmt's whole command line; `--root` goes with
    // any subcommand.
    if cli.command.is_some() && (cli.compat_install.is_some() || cli.compat_uninstall.is_some()) {
        return Err(UsageError(
            "`--install`/`--uninstall` (tonistiigi/binfmt's flags) cannot be combined with a subcommand; use `binfmtctl install TARGET...` or `binfmtctl uninstall TARGET...`".into(),
        )
        .into());
    }
    let Some(command) = cli.command else {
        return compat::run(
            s,
            cli.compat_install.as_deref(),
            cli.compat_uninstall.as_deref(),
            cli.compat_preserve_argv0.is_some_and(|v| !v.is_empty()),
            &cli.compat_emulators,
        );
    };
    match command {
        Command::Inspect(a) => inspect::run(s, &a),
        Command::Install(a) => install::run(s, &a),
        Command::Verify(a) => verify::run(s, &a),
        Command::Status(a) => status::run(s, &a),
        Command::Uninstall(a) => uninstall::run(s, &a),
        Command::Fetch(a) => fetch::run(s, &a),
        Command::Restore(a) => restore::run(s, &a),
        Command::Run(a) => run::run(s, &a),
        Command::Completions(a) => {
            clap_complete::generate(
                a.shell,
                &mut <Cli as clap::CommandFactory>::command(),
                PROG,
                &mut std::io::stdout(),
            );
            Ok(Exit::Success)
        }
        Command::Man => {
            clap_mangen::Man::new(<Cli as clap::CommandFactory>::command())
                .render(&mut std::io::stdout())?;
            Ok(Exit::Success)
        }
    }
}

/// Resolves target words; `all` means every target this host does not run natively.
pub fn resolve_targets(kernel: &dyn Kernel, words: &[String]) -> Result<Vec<&'static Target>> {
    let table = Table::get();
    let mut out: Vec<&'static Target> = Vec::new();
    for w in words
        .iter()
        .flat_map(|w| w.split(','))
        .filter(|w| !w.is_empty())
    {
        let chosen = if w.eq_ignore_ascii_case("all") {
            kernel.host().foreign()
        } else {
            vec![table.resolve(w).map_err(|e| UsageError(e.to_string()))?]
        };
        for t in chosen {
            if !out.iter().any(|o| o.name == t.name) {
                out.push(t);
            }
        }
    }
    if out.is_empty() {
        return Err(UsageError("no targets given".into()).into());
    }
    Ok(out)
}

fn is_all(words: &[String]) -> bool {
    words.iter().any(|w| w.eq_ignore_ascii_case("all"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binfmt::fake::FakeKernel;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn all_is_what_the_host_does_not_run() {
        let k = FakeKernel::new("aarch64");
        let t = resolve_targets(&k, &["all".into()]).unwrap();
        assert!(!t.iter().any(|x| x.name == "aarch64" || x.name == "arm"));
        assert!(t.iter().any(|x| x.name == "x86_64"));
        let k = FakeKernel::new("aarch64").without_compat();
        let t = resolve_targets(&k, &["all".into()]).unwrap();
        assert!(t.iter().any(|x| x.name == "arm"));
    }

    #[test]
    fn target_lists_and_usage_errors() {
        let k = FakeKernel::new("x86_64");
        let t = resolve_targets(&k, &["arm64,armhf".into(), "aarch64".into()]).unwrap();
        assert_eq!(
            t.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
            ["aarch64", "arm"]
        );
        let e = resolve_targets(&k, &["nope".into()]).unwrap_err();
        assert!(e.downcast_ref::<UsageError>().is_some());
    }
}
