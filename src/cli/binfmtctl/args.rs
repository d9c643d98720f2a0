//! `binfmtctl`'s command line (clap derive), apart from the code that runs it. Every
//! environment variable binfmtctl reads is declared here.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::binfmt::fs::DEFAULT_ROOT;
use crate::binfmt::persist;
use crate::cli::common::{ArchiveArgs, EmulatorArgs, GlobalArgs};

/// Manage QEMU user-mode emulation through binfmt_misc: register static emulators (P and F
/// flags where the emulator honours P), prove they work by running a foreign program, and
/// remove only what binfmtctl added.
#[derive(Debug, Parser)]
#[command(name = "binfmtctl", version)]
pub struct Cli {
    /// The binfmt_misc mount to work on.
    #[arg(long, global = true, env = "BINFMTCTL_ROOT", default_value = DEFAULT_ROOT, value_name = "DIR")]
    pub root: PathBuf,
    /// Where ownership records are kept (default: /run/binfmtctl as root).
    #[arg(
        long,
        global = true,
        env = "BINFMTCTL_STATE_DIR",
        value_name = "DIR",
        hide = true
    )]
    pub state_dir: Option<PathBuf>,
    /// Where `install --persist` writes (and `uninstall` removes) `binfmt.d` files.
    #[arg(long, global = true, value_name = "DIR", env = "BINFMTCTL_PERSIST_DIR", default_value = persist::DEFAULT_DIR, hide_short_help = true)]
    pub persist_dir: PathBuf,
    /// Register again entries binfmtctl owns even when their line is unchanged, so that a new
    /// emulator file at the same path takes over (the F flag keeps the old one open): for a
    /// newer image of binfmtctl's container. Implied by `install --keep`.
    #[arg(long, global = true, env = "BINFMTCTL_REFRESH", value_parser = clap::builder::BoolishValueParser::new(), default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", hide_short_help = true)]
    pub refresh: bool,
    /// After `install`, print the whole status as JSON on stdout (binfmtctl's container sets it).
    #[arg(long, global = true, env = "BINFMTCTL_STATUS_JSON", value_parser = clap::builder::BoolishValueParser::new(), default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", hide = true)]
    pub status_json: bool,
    #[allow(missing_docs)]
    #[command(flatten)]
    pub global: GlobalArgs,

    /// tonistiigi/binfmt compatibility: targets or platforms to install, comma-separated, or `all`.
    #[arg(long = "install", value_name = "LIST")]
    pub compat_install: Option<String>,
    /// tonistiigi/binfmt compatibility: entries to uninstall (`qemu-*`, `qemu-aarch64`, `arm64`...);
    /// only entries binfmtctl registered are removed.
    #[arg(long = "uninstall", value_name = "LIST")]
    pub compat_uninstall: Option<String>,
    /// tonistiigi/binfmt compatibility: any non-empty value registers with P untested.
    #[arg(long, env = "QEMU_PRESERVE_ARGV0", hide = true, value_name = "ANY")]
    pub compat_preserve_argv0: Option<String>,
    #[allow(missing_docs)]
    #[command(flatten)]
    pub compat_emulators: EmulatorArgs,

    /// What to do (without one: tonistiigi/binfmt's behaviour, the flags above then a JSON status).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Tell which architecture a program needs and which handler the kernel would run it with.
    Inspect(InspectArgs),
    /// Register QEMU handlers for targets, then verify each by running a probe program.
    Install(InstallArgs),
    /// Prove handlers work by executing a tiny program for each target through the kernel.
    Verify(VerifyArgs),
    /// Show every binfmt_misc entry, which ones binfmtctl manages, and overlaps.
    Status(StatusArgs),
    /// Remove handlers binfmtctl registered (never anyone else's).
    Uninstall(UninstallArgs),
    /// Download static emulators from the Debian archive, verified end to end, into the cache.
    Fetch(FetchArgs),
    /// Register again the handlers `install --persist` wrote (after systemd-binfmt flushed them).
    Restore(RestoreArgs),
    /// Run one foreign program (or a shell) under a private binfmt_misc in a user namespace:
    /// no root, and the host's handlers are not touched (Linux 6.7+).
    Run(RunArgs),
    /// Print a shell completion script.
    Completions(CompletionsArgs),
    /// Print the manual page (roff).
    Man,
}

/// `run` arguments.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The platform or target to emulate (`linux/arm64`, `arm`, `s390x`...).
    #[arg(long, value_name = "PLATFORM")]
    pub platform: String,
    #[allow(missing_docs)]
    #[command(flatten)]
    pub emulators: EmulatorArgs,
    /// The program and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// `restore` arguments.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `completions` arguments.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// `fetch` arguments.
#[derive(Debug, Args)]
pub struct FetchArgs {
    /// QEMU targets or aliases, or `all`.
    #[arg(required = true, value_name = "TARGET")]
    pub targets: Vec<String>,
    /// Also copy the emulators into this directory as `qemu-<target>`.
    #[arg(long, value_name = "DIR")]
    pub dest: Option<PathBuf>,
    #[allow(missing_docs)]
    #[command(flatten)]
    pub archive: ArchiveArgs,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `inspect` arguments.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Programs to inspect.
    #[arg(required = true, value_name = "FILE", value_hint = clap::ValueHint::FilePath)]
    pub files: Vec<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `install` arguments.
#[derive(Debug, Args)]
pub struct InstallArgs {
    /// QEMU targets, aliases (arm64, armhf, amd64...), platforms (linux/arm/v7), or `all`
    /// (every target this host does not run natively).
    #[arg(required = true, value_name = "TARGET")]
    pub targets: Vec<String>,
    #[allow(missing_docs)]
    #[command(flatten)]
    pub emulators: EmulatorArgs,
    /// Register with the P flag even when the emulator was not proved to honour it (by
    /// default P is set when running the emulator shows it preserves argv[0]).
    #[arg(long, conflicts_with = "no_preserve_argv0")]
    pub preserve_argv0: bool,
    /// Register without the P flag (F alone): programs then see their own path as argv[0],
    /// which breaks those that re-execute themselves by name (busybox applets).
    #[arg(long)]
    pub no_preserve_argv0: bool,
    /// Add the C flag: credentials from the program. Setuid programs then run the emulator as
    /// root; only for trusted images.
    #[arg(long)]
    pub credential: bool,
    /// Replace an existing entry of the same name that differs.
    #[arg(long)]
    pub replace: bool,
    /// Print the register lines; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Also write `/etc/binfmt.d/qemu-<target>.conf` so the handlers come back after a reboot.
    #[arg(long)]
    pub persist: bool,
    /// Stay in the foreground and register again any of these handlers that vanish (for a
    /// DaemonSet: systemd-binfmt flushes every entry when it restarts).
    #[arg(long)]
    pub keep: bool,
    /// With `--keep`: seconds between checks.
    #[arg(long, default_value_t = 30, value_name = "SECONDS", requires = "keep")]
    pub interval: u64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `verify` arguments.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Targets to verify (default: every registered `qemu-*` handler).
    #[arg(value_name = "TARGET")]
    pub targets: Vec<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `status` arguments.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Emulator cache whose records to show.
    #[arg(long, env = "BINFMTCTL_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
}

/// `uninstall` arguments.
#[derive(Debug, Args)]
pub struct UninstallArgs {
    /// Targets, or `all` (every `qemu-*` handler binfmtctl registered).
    #[arg(required = true, value_name = "TARGET")]
    pub targets: Vec<String>,
    /// Also remove `qemu-<target>` entries binfmtctl did not register.
    #[arg(long)]
    pub force: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}
