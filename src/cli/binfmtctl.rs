//! `binfmtctl`: manage QEMU user-mode emulation through the kernel's binfmt_misc.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use super::output::{self, warn};
use super::{Exit, UsageError, report_error};
use crate::arch::{Table, Target};
use crate::binfmt::manage::{self, Action, InstallOptions, Report, UninstallOptions};
use crate::binfmt::probe::{Outcome, ProbeResult};
use crate::binfmt::{BinfmtFs, Flags, fs::DEFAULT_ROOT, owner, persist};
use crate::emulator::Emulator;
use crate::emulator::cache::Cache;
use crate::emulator::release;
use crate::emulator::resolve::{Resolver, Source, copy_to};
use crate::emulator::suites::Suites;

const PROG: &str = "binfmtctl";

/// Manage QEMU user-mode emulation through binfmt_misc: register static emulators with the F
/// flag, prove they work by running a foreign program, and remove only what binfmtctl added.
#[derive(Debug, Parser)]
#[command(name = "binfmtctl", version, about, long_about = None)]
pub struct Cli {
    /// The binfmt_misc mount to work on.
    #[arg(long, global = true, env = "BINFMTCTL_ROOT", default_value = DEFAULT_ROOT, value_name = "DIR")]
    pub root: PathBuf,

    /// tonistiigi/binfmt compatibility: targets or platforms to install, comma-separated, or `all`.
    #[arg(long = "install", value_name = "LIST")]
    pub compat_install: Option<String>,
    /// tonistiigi/binfmt compatibility: entries to uninstall (`qemu-*`, `qemu-aarch64`, `arm64`...);
    /// only entries binfmtctl registered are removed.
    #[arg(long = "uninstall", value_name = "LIST")]
    pub compat_uninstall: Option<String>,

    /// What to do (without one: tonistiigi/binfmt's behaviour, the flags above then a JSON status).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Tell which architecture a program needs and which handler the kernel would run it with.
    Inspect(InspectArgs),
    /// Register QEMU handlers (F flag) for targets, then verify each by running a probe program.
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
    /// Look for emulators in this directory first.
    #[arg(
        long = "emulator-dir",
        value_name = "DIR",
        env = "BINFMTCTL_EMULATOR_DIR"
    )]
    pub emulator_dirs: Vec<PathBuf>,
    #[allow(missing_docs)]
    #[command(flatten)]
    pub archive: ArchiveArgs,
    /// The program and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// `restore` arguments.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Where `--persist` wrote.
    #[arg(long, value_name = "DIR", env = "BINFMTCTL_PERSIST_DIR", default_value = persist::DEFAULT_DIR, hide_short_help = true)]
    pub persist_dir: PathBuf,
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

/// Where emulators come from when they must be fetched (shared by `install` and `fetch`).
#[derive(Debug, Args)]
pub struct ArchiveArgs {
    /// Debian suite: trixie (default, QEMU 10), bookworm-backports, bookworm (QEMU 7.2).
    #[arg(long, env = "BINFMTCTL_SUITE", value_name = "SUITE")]
    pub suite: Option<String>,
    /// Debian mirror base URL, e.g. http://<debian-mirror>/debian (default: $BINFMTCTL_MIRROR,
    /// else the Debian mirror in the apt sources).
    #[arg(long, value_name = "URL")]
    pub mirror: Option<String>,
    /// Keyring that must have signed the archive's InRelease.
    #[arg(long, env = "BINFMTCTL_KEYRING", value_name = "FILE", default_value = release::DEFAULT_KEYRING)]
    pub keyring: PathBuf,
    /// Emulator cache (default: /var/cache/binfmtctl as root, else $XDG_CACHE_HOME/binfmtctl).
    #[arg(long, env = "BINFMTCTL_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Where apt's sources are read from when no mirror is given.
    #[arg(long, value_name = "DIR", default_value = "/etc/apt", hide = true)]
    pub apt_dir: PathBuf,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

impl ArchiveArgs {
    fn cache(&self) -> Cache {
        Cache::new(self.cache_dir.clone().unwrap_or_else(Cache::default_dir))
    }

    fn resolver(&self, source: Source, dirs: Vec<PathBuf>) -> Result<Resolver<'static>> {
        let suite = Suites::get()
            .resolve(self.suite.as_deref())
            .map_err(UsageError)?;
        Ok(Resolver {
            source,
            dirs,
            suite,
            mirror: self.mirror.clone(),
            apt_dir: self.apt_dir.clone(),
            keyring: self.keyring.clone(),
            cache: self.cache(),
            quiet: self.quiet,
            offline: false,
        })
    }
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
    /// QEMU targets, aliases (arm64, armhf, amd64...), platforms (linux/arm/v7), or `all`.
    #[arg(required = true, value_name = "TARGET")]
    pub targets: Vec<String>,
    /// Look for emulators in this directory first (`qemu-<target>-static` or `qemu-<target>`).
    #[arg(
        long = "emulator-dir",
        value_name = "DIR",
        env = "BINFMTCTL_EMULATOR_DIR"
    )]
    pub emulator_dirs: Vec<PathBuf>,
    /// Where emulators come from: installed ones, else the cache, else the Debian archive
    /// (auto); installed only (system); the Debian archive through the cache (debian).
    #[arg(long, value_enum, default_value = "auto", env = "BINFMTCTL_SOURCE")]
    pub source: Source,
    #[allow(missing_docs)]
    #[command(flatten)]
    pub archive: ArchiveArgs,
    /// Add the P flag: pass the program's own argv[0] to the emulator.
    #[arg(long)]
    pub preserve_argv0: bool,
    /// Add the C flag: credentials from the program. Setuid programs then run the emulator as
    /// root; only for trusted images.
    #[arg(long)]
    pub credential: bool,
    /// Replace an existing entry of the same name that differs.
    #[arg(long)]
    pub replace: bool,
    /// Register again entries binfmtctl owns even when their line is unchanged, so that a new
    /// emulator file at the same path takes over (the F flag keeps the old one open): for a
    /// newer image of binfmtctl's container. Implied by `--keep`.
    #[arg(long, env = "BINFMTCTL_REFRESH", value_parser = clap::builder::BoolishValueParser::new(), default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub refresh: bool,
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
    /// Where `--persist` writes.
    #[arg(long, value_name = "DIR", env = "BINFMTCTL_PERSIST_DIR", default_value = persist::DEFAULT_DIR, hide_short_help = true)]
    pub persist_dir: PathBuf,
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
    /// Where `install --persist` writes.
    #[arg(long, value_name = "DIR", env = "BINFMTCTL_PERSIST_DIR", default_value = persist::DEFAULT_DIR, hide_short_help = true)]
    pub persist_dir: PathBuf,
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
    /// Where `--persist` wrote.
    #[arg(long, value_name = "DIR", env = "BINFMTCTL_PERSIST_DIR", default_value = persist::DEFAULT_DIR, hide_short_help = true)]
    pub persist_dir: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Entry point of the `binfmtctl` binary.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(exit) => exit.into(),
        Err(e) => report_error(PROG, &e).into(),
    }
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<Exit> {
    let fs = BinfmtFs::new(&cli.root);
    // `--install`/`--uninstall` are tonistiigi/binfmt's whole command line; `--root` goes with
    // any subcommand.
    if cli.command.is_some() && (cli.compat_install.is_some() || cli.compat_uninstall.is_some()) {
        return Err(UsageError(
            "`--install`/`--uninstall` (tonistiigi/binfmt's flags) cannot be combined with a subcommand; use `binfmtctl install TARGET...` or `binfmtctl uninstall TARGET...`".into(),
        )
        .into());
    }
    let Some(command) = cli.command else {
        return super::binfmt_compat::run(
            &fs,
            cli.compat_install.as_deref(),
            cli.compat_uninstall.as_deref(),
        );
    };
    match command {
        Command::Inspect(a) => inspect(&fs, &a),
        Command::Install(a) => install(&fs, &a),
        Command::Verify(a) => verify(&fs, &a),
        Command::Status(a) => status(&fs, &a),
        Command::Uninstall(a) => uninstall(&fs, &a),
        Command::Fetch(a) => fetch(&a),
        Command::Restore(a) => restore(&fs, &a),
        Command::Run(a) => run_private(&fs, &a),
        Command::Completions(a) => {
            clap_complete::generate(
                a.shell,
                &mut <Cli as clap::CommandFactory>::command(),
                "binfmtctl",
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

/// Prints the full status as JSON on stdout (the container image sets `BINFMTCTL_STATUS_JSON`).
fn status_json_wanted() -> bool {
    std::env::var_os("BINFMTCTL_STATUS_JSON").is_some_and(|v| !v.is_empty() && v != "0")
}

fn print_status_json(fs: &BinfmtFs) -> Result<()> {
    let st = manage::status(fs, &owner::state_dir(), Path::new(persist::DEFAULT_DIR))?;
    let cache = Cache::new(Cache::default_dir());
    output::json(&StatusOut {
        status: st,
        cache: cache.records(),
        cache_dir: cache.dir().to_path_buf(),
    });
    Ok(())
}

/// `binfmtctl run`: a user namespace (always, even as root), a private binfmt_misc with the
/// target's handler, then exec.
fn run_private(fs: &BinfmtFs, a: &RunArgs) -> Result<Exit> {
    let target = Table::get()
        .resolve(&a.platform)
        .map_err(|e| UsageError(e.to_string()))?;
    if !crate::rootless::inside() {
        let warn_fn = |m: &str| warn(PROG, m);
        crate::rootless::enter(&warn_fn)?;
    }
    let private = crate::rootless::mount_private_binfmt(fs.root())?;
    let resolver = a.archive.resolver(Source::Auto, a.emulator_dirs.clone())?;
    let warn_fn = |m: &str| warn(PROG, m);
    crate::rootless::register_private(&private, &[target], &resolver, &warn_fn)?;
    let args: Vec<std::ffi::CString> = a
        .command
        .iter()
        .map(|s| {
            std::ffi::CString::new(s.as_str())
                .map_err(|_| UsageError(format!("`{s}` contains a NUL byte")))
        })
        .collect::<std::result::Result<_, _>>()?;
    // The program gets the environment without binfmtctl's own markers of the namespace.
    let env: Vec<std::ffi::CString> = std::env::vars_os()
        .filter(|(k, _)| k != crate::rootless::ENV && k != crate::rootless::HOST_DEV_ENV)
        .filter_map(|(k, v)| {
            let mut kv = k.into_encoded_bytes();
            kv.push(b'=');
            kv.extend(v.into_encoded_bytes());
            std::ffi::CString::new(kv).ok()
        })
        .collect();
    let err = nix::unistd::execvpe(&args[0], &args, &env).unwrap_err();
    Err(anyhow::anyhow!("cannot run `{}`: {err}", a.command[0]))
}

fn restore(fs: &BinfmtFs, a: &RestoreArgs) -> Result<Exit> {
    let report = manage::restore(fs, &a.persist_dir, &owner::state_dir())?;
    if report.targets.is_empty() {
        eprintln!(
            "{PROG}: no binfmtctl files in {}; nothing to restore",
            a.persist_dir.display()
        );
    }
    print_report(&report, a.json, false, "installed");
    Ok(if report.ok() {
        Exit::Success
    } else {
        Exit::Failure
    })
}

/// Resolves target words; `all` means every target outside the host's family.
pub fn resolve_targets(words: &[String]) -> Result<Vec<&'static Target>> {
    let table = Table::get();
    let mut out: Vec<&'static Target> = Vec::new();
    for w in words
        .iter()
        .flat_map(|w| w.split(','))
        .filter(|w| !w.is_empty())
    {
        let chosen = if w.eq_ignore_ascii_case("all") {
            table.foreign()
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

#[derive(Serialize)]
struct InspectOut {
    #[serde(flatten)]
    info: crate::elf::ElfInfo,
    /// The entry the kernel would use, "native", or "none".
    runs_with: String,
}

fn inspect(fs: &BinfmtFs, a: &InspectArgs) -> Result<Exit> {
    let mut outs = Vec::new();
    let mut failed = false;
    for f in &a.files {
        match crate::elf::inspect(f) {
            Ok(info) => {
                let name = f.file_name().and_then(|n| n.to_str());
                let runs_with = runs_with(fs, &info, name);
                outs.push(InspectOut { info, runs_with });
            }
            Err(e) => {
                output::error(PROG, &e.to_string());
                failed = true;
            }
        }
    }
    if a.json {
        output::json(&outs);
    } else {
        for (i, o) in outs.iter().enumerate() {
            if i > 0 {
                println!();
            }
            print_inspect(o);
        }
    }
    Ok(if failed { Exit::Failure } else { Exit::Success })
}

fn runs_with(fs: &BinfmtFs, info: &crate::elf::ElfInfo, name: Option<&str>) -> String {
    if let Some(e) = manage::handler_for(fs, &info.header, name) {
        return format!("{} ({})", e.name, e.interpreter);
    }
    let host = Table::get().host();
    match (info.target(), host) {
        (Some(t), Some(h)) if t.family == h.family && (t.elf.class <= h.elf.class) => {
            "native".into()
        }
        _ => "none: exec would fail with `exec format error`".into(),
    }
}

fn print_inspect(o: &InspectOut) {
    let i = &o.info;
    let linking = if i.is_static {
        if i.static_pie {
            "static (static-pie)".to_string()
        } else {
            "static".to_string()
        }
    } else {
        format!(
            "dynamic, interpreter {}",
            i.interpreter.as_deref().unwrap_or("?")
        )
    };
    println!("{}", i.path.display());
    println!(
        "  architecture: {} (e_machine {:#x})",
        i.machine_name, i.machine
    );
    println!("  class:        ELF{}", i.class);
    println!(
        "  endianness:   {}",
        if i.endian == crate::arch::Endian::Little {
            "little"
        } else {
            "big"
        }
    );
    println!("  type:         {}", i.kind);
    println!("  linking:      {linking}");
    if !i.needed.is_empty() {
        println!("  needs:        {}", i.needed.join(", "));
    }
    println!(
        "  qemu target:  {}",
        i.target.as_deref().unwrap_or("unknown")
    );
    println!(
        "  platform:     {}",
        i.platform
            .as_ref()
            .map_or("unknown".to_string(), |p| p.to_string())
    );
    println!("  runs with:    {}", o.runs_with);
}

fn install(fs: &BinfmtFs, a: &InstallArgs) -> Result<Exit> {
    let targets = resolve_targets(&a.targets)?;
    let flags = Flags {
        preserve_argv0: a.preserve_argv0,
        open_binary: a.credential,
        credentials: a.credential,
        fix_binary: true,
    };
    if a.credential {
        warn(
            PROG,
            "--credential sets the C flag: setuid programs in emulated images then run the emulator as root; use it only with images you trust",
        );
    }
    let opts = InstallOptions {
        flags,
        replace: a.replace,
        refresh: a.refresh || a.keep,
        dry_run: a.dry_run,
        persist_dir: a.persist.then(|| a.persist_dir.clone()),
        verify: true,
        state_dir: owner::state_dir(),
    };
    let mut resolver = a.archive.resolver(a.source, a.emulator_dirs.clone())?;
    // A dry run changes nothing: no download, no cache write.
    resolver.offline = a.dry_run;
    let (emulators, warnings) = resolver.resolve(&targets);
    for w in warnings {
        warn(PROG, &w);
    }
    let find = move |t: &Target| -> std::result::Result<Emulator, String> {
        emulators
            .get(&t.name)
            .cloned()
            .unwrap_or_else(|| Err(format!("no emulator was resolved for {}", t.name)))
    };
    let report = manage::install(fs, &targets, &opts, &find)?;
    if report.mounted_now {
        eprintln!("{PROG}: mounted binfmt_misc at {}", fs.root().display());
    }
    if a.persist && !a.dry_run {
        warn(
            PROG,
            "a restart of systemd-binfmt.service flushes every binfmt_misc entry and re-registers only its files; the binfmt.d files just written cover these handlers",
        );
    }
    if status_json_wanted() && !a.json && !a.dry_run {
        print_report_to(&report, &mut std::io::stderr(), "installed");
        print_status_json(fs)?;
    } else {
        print_report(&report, a.json, a.dry_run, "installed");
    }
    if a.keep && !a.dry_run {
        // A pod that cannot set up its node must say so (and be restarted), not sit there.
        if !report.ok() {
            output::error(
                PROG,
                "not every handler was registered and verified; not keeping a partial set (exit 1, so the pod restarts and shows why)",
            );
            return Ok(Exit::Failure);
        }
        let regs: Vec<crate::binfmt::Registration> = report
            .targets
            .iter()
            .filter(|t| t.error.is_none())
            .filter_map(|t| {
                t.line
                    .as_deref()
                    .and_then(|l| crate::binfmt::Registration::parse_line(l).ok())
            })
            .collect();
        if regs.is_empty() {
            output::error(PROG, "nothing was registered, so there is nothing to keep");
            return Ok(Exit::Failure);
        }
        return keep(
            fs,
            &regs,
            a.interval,
            &opts.state_dir,
            a.persist.then_some(a.persist_dir.as_path()),
        );
    }
    if !report.ok() && is_all(&a.targets) {
        eprintln!(
            "{PROG}: some targets failed; `binfmtctl install TARGET` retries one, `binfmtctl status` shows what is registered"
        );
    }
    Ok(if report.ok() {
        Exit::Success
    } else {
        Exit::Failure
    })
}

fn verify_cell(v: Option<&ProbeResult>) -> String {
    match v {
        None => "-".into(),
        Some(v) => match v.outcome {
            Outcome::Passed => "ok".into(),
            Outcome::Failed => "FAILED".into(),
            Outcome::NoProbe => "not run (no probe)".into(),
        },
    }
}

fn report_messages(report: &Report) {
    for t in &report.targets {
        for w in &t.warnings {
            warn(PROG, &format!("{}: {w}", t.target));
        }
        if let Some(e) = &t.error {
            output::error(PROG, &format!("{}: {e}", t.target));
        }
        if let Some(v) = &t.verify
            && !v.ok()
        {
            output::error(
                PROG,
                &format!("{}: verification failed: {}", t.target, v.detail),
            );
        }
    }
}

fn print_report(report: &Report, json: bool, dry_run: bool, verb: &str) {
    report_messages(report);
    if json {
        output::json(report);
        return;
    }
    if dry_run {
        for t in &report.targets {
            if let Some(l) = &t.line {
                println!("{l}");
            }
        }
        return;
    }
    report_table(report, &mut std::io::stdout().lock(), verb);
}

/// Messages and the table on `out` (stderr when stdout carries JSON).
fn print_report_to(report: &Report, out: &mut dyn std::io::Write, verb: &str) {
    report_messages(report);
    report_table(report, out, verb);
}

fn report_table(report: &Report, out: &mut dyn std::io::Write, verb: &str) {
    let rows: Vec<Vec<String>> = report
        .targets
        .iter()
        .map(|t| {
            let action = match (t.action, &t.error) {
                (_, Some(_)) => "FAILED".to_string(),
                (Some(Action::Registered), _) if verb == "removed" => "removed".into(),
                (Some(Action::Registered), _) => "registered".into(),
                (Some(Action::Unchanged), _) => "already installed".into(),
                (Some(Action::Enabled), _) => "enabled".into(),
                (Some(Action::Replaced), _) => "replaced".into(),
                (Some(Action::Refreshed), _) => "refreshed".into(),
                (Some(Action::DryRun), _) => "dry run".into(),
                (None, None) if !t.warnings.is_empty() => "left in place".into(),
                (None, None) => "not installed".into(),
            };
            let mut row = vec![t.target.clone(), t.handler.clone(), action];
            if verb == "installed" {
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
    if verb == "installed" {
        output::table_to(
            out,
            &["TARGET", "HANDLER", "RESULT", "EMULATOR", "VERIFY"],
            &rows,
        );
    } else {
        output::table_to(out, &["TARGET", "HANDLER", "RESULT"], &rows);
    }
}

fn verify(fs: &BinfmtFs, a: &VerifyArgs) -> Result<Exit> {
    let targets = if a.targets.is_empty() {
        Vec::new()
    } else {
        resolve_targets(&a.targets)?
    };
    let results = manage::verify(fs, &targets)?;
    if results.is_empty() {
        output::error(
            PROG,
            "nothing to verify: no qemu-* handlers are registered; `binfmtctl install TARGET` adds one",
        );
        return Ok(Exit::Failure);
    }
    if a.json {
        output::json(&results);
    } else {
        let rows: Vec<Vec<String>> = results
            .iter()
            .map(|r| vec![r.target.clone(), verify_cell(Some(r)), r.detail.clone()])
            .collect();
        output::table(&["TARGET", "RESULT", "DETAIL"], &rows);
    }
    let ok = results.iter().all(ProbeResult::ok);
    Ok(if ok { Exit::Success } else { Exit::Failure })
}

/// `install --keep`: re-register any of `regs` that vanish, every `interval` seconds, until
/// SIGTERM or SIGINT (then exit 0).
fn keep(
    fs: &BinfmtFs,
    regs: &[crate::binfmt::Registration],
    interval: u64,
    state_dir: &Path,
    persist_dir: Option<&Path>,
) -> Result<Exit> {
    use nix::sys::signal::{SigSet, Signal};
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGTERM);
    mask.add(Signal::SIGINT);
    mask.thread_block()?;
    let sfd = nix::sys::signalfd::SignalFd::new(&mask)?;
    let owners = owner::Owners::new(state_dir, fs.root());
    let mut warned: std::collections::HashSet<String> = std::collections::HashSet::new();
    eprintln!(
        "{PROG}: keeping {} handler(s), checking every {interval} s",
        regs.len()
    );
    loop {
        let mut fds = [nix::poll::PollFd::new(
            std::os::fd::AsFd::as_fd(&sfd),
            nix::poll::PollFlags::POLLIN,
        )];
        let timeout = nix::poll::PollTimeout::try_from(
            interval.saturating_mul(1000).min(i32::MAX as u64) as i32,
        )
        .unwrap_or(nix::poll::PollTimeout::MAX);
        match nix::poll::poll(&mut fds, timeout) {
            Ok(n) if n > 0 => {
                eprintln!("{PROG}: stopping; the handlers stay registered");
                return Ok(Exit::Success);
            }
            _ => {}
        }
        if let Err(e) = fs.ensure_mounted() {
            output::error(PROG, &e.to_string());
            continue;
        }
        for reg in regs {
            match fs.entry(&reg.name) {
                Ok(Some(e)) if reg.same_as(&e) => {}
                Ok(Some(e)) => {
                    if warned.insert(reg.name.clone()) {
                        warn(
                            PROG,
                            &format!(
                                "`{}` was replaced by another line (interpreter {}); leaving it",
                                e.name, e.interpreter
                            ),
                        );
                    }
                }
                Ok(None) => match fs.register(reg) {
                    Ok(()) => {
                        let _ = owners.record(reg);
                        if let Some(dir) = persist_dir {
                            let _ = persist::write(dir, reg);
                        }
                        eprintln!("{PROG}: `{}` had vanished; registered it again", reg.name);
                    }
                    Err(e) => output::error(PROG, &e.to_string()),
                },
                Err(e) => output::error(PROG, &e.to_string()),
            }
        }
    }
}

#[derive(Serialize)]
struct StatusOut {
    #[serde(flatten)]
    status: manage::Status,
    /// Emulators in the cache: suite, package version, SHA256.
    cache: Vec<crate::emulator::cache::Record>,
    cache_dir: PathBuf,
}

fn status(fs: &BinfmtFs, a: &StatusArgs) -> Result<Exit> {
    let st = manage::status(fs, &owner::state_dir(), &a.persist_dir)?;
    let cache = Cache::new(a.cache_dir.clone().unwrap_or_else(Cache::default_dir));
    let records = cache.records();
    let cached_version = |interp: &str| {
        records
            .iter()
            .find(|r| cache.emulator_path(&r.suite, &r.target).as_os_str() == interp)
            .map(|r| format!("{} {} ({})", r.package, r.version, r.suite))
    };
    if a.json {
        output::json(&StatusOut {
            status: st,
            cache: records.clone(),
            cache_dir: cache.dir().to_path_buf(),
        });
        return Ok(Exit::Success);
    }
    print_cache(&cache, &records);
    if !st.mounted {
        println!("binfmt_misc: not mounted at {}", st.root.display());
        println!("  `binfmtctl install TARGET` mounts it and registers handlers");
        return Ok(Exit::Success);
    }
    println!(
        "binfmt_misc: mounted at {} ({}), {}",
        st.root.display(),
        st.instance.map_or("unknown instance", |i| i.describe()),
        if st.enabled == Some(true) {
            "enabled"
        } else {
            "DISABLED"
        }
    );
    if let Some(h) = &st.host {
        println!("host: {h}");
    }
    if st.entries.is_empty() {
        println!("no entries");
        return Ok(Exit::Success);
    }
    println!();
    let rows: Vec<Vec<String>> = st
        .entries
        .iter()
        .map(|e| {
            vec![
                e.entry.name.clone(),
                if e.entry.enabled {
                    "enabled"
                } else {
                    "disabled"
                }
                .into(),
                e.target.clone().unwrap_or_else(|| "-".into()),
                e.entry.flags.to_string(),
                match (e.managed, e.persisted) {
                    (true, true) => "binfmtctl, persisted".into(),
                    (true, false) => "binfmtctl".into(),
                    (false, _) => "other".into(),
                },
                e.entry.interpreter.clone(),
            ]
        })
        .collect();
    output::table(
        &["NAME", "STATE", "TARGET", "FLAGS", "OWNER", "INTERPRETER"],
        &rows,
    );
    let from_cache: Vec<String> = st
        .entries
        .iter()
        .filter_map(|e| {
            cached_version(&e.entry.interpreter).map(|v| format!("{} runs {v}", e.entry.name))
        })
        .collect();
    if !from_cache.is_empty() {
        println!();
        for l in from_cache {
            println!("{l}");
        }
    }
    let mut notes = Vec::new();
    for e in &st.entries {
        if let Some(w) = &e.shadowed_by {
            notes.push(format!(
                "{} overlaps {}; {} was registered later and wins",
                e.entry.name, w, w
            ));
        }
    }
    if !notes.is_empty() {
        println!();
        for n in notes {
            println!("note: {n}");
        }
    }
    Ok(Exit::Success)
}

fn uninstall(fs: &BinfmtFs, a: &UninstallArgs) -> Result<Exit> {
    let targets = if is_all(&a.targets) {
        Table::get().targets().iter().collect()
    } else {
        resolve_targets(&a.targets)?
    };
    let opts = UninstallOptions {
        force: a.force,
        all: is_all(&a.targets),
        persist_dir: Some(a.persist_dir.clone()),
        state_dir: owner::state_dir(),
    };
    let mut report = manage::uninstall(fs, &targets, &opts)?;
    if opts.all {
        // For `all`, list only targets where something happened.
        report.targets.retain(|t| {
            t.action.is_some()
                || t.error.is_some()
                || !t.warnings.is_empty()
                || t.persisted.is_some()
        });
    }
    print_report(&report, a.json, false, "removed");
    Ok(if report.ok() {
        Exit::Success
    } else {
        Exit::Failure
    })
}

fn print_cache(cache: &Cache, records: &[crate::emulator::cache::Record]) {
    if records.is_empty() {
        return;
    }
    println!("emulator cache: {}", cache.dir().display());
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|r| {
            vec![
                r.target.clone(),
                r.suite.clone(),
                format!("{} {}", r.package, r.version),
                r.sha256.clone(),
            ]
        })
        .collect();
    output::table(&["TARGET", "SUITE", "PACKAGE", "SHA256"], &rows);
    println!();
}

#[derive(Serialize)]
struct FetchOut {
    target: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    emulator: Option<Emulator>,
    #[serde(skip_serializing_if = "Option::is_none")]
    record: Option<crate::emulator::cache::Record>,
    #[serde(skip_serializing_if = "Option::is_none")]
    copied_to: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

fn fetch(a: &FetchArgs) -> Result<Exit> {
    let targets = resolve_targets(&a.targets)?;
    let resolver = a.archive.resolver(Source::Debian, Vec::new())?;
    let cache = resolver.cache.clone();
    let (mut emulators, warnings) = resolver.resolve(&targets);
    for w in warnings {
        warn(PROG, &w);
    }
    let mut outs = Vec::new();
    for t in &targets {
        let r = emulators
            .remove(&t.name)
            .unwrap_or_else(|| Err(format!("{} was not resolved", t.name)));
        let mut out = FetchOut {
            target: t.name.clone(),
            emulator: None,
            record: None,
            copied_to: None,
            error: None,
        };
        match r {
            Ok(e) => {
                out.record = cache.record(&resolver.suite.name, &t.name);
                if let Some(dir) = &a.dest {
                    match copy_to(&e, dir) {
                        Ok(p) => out.copied_to = Some(p),
                        Err(err) => {
                            out.error = Some(format!("cannot copy to `{}`: {err}", dir.display()))
                        }
                    }
                }
                out.emulator = Some(e);
            }
            Err(e) => out.error = Some(e),
        }
        if let Some(e) = &out.error {
            output::error(PROG, &format!("{}: {e}", t.name));
        }
        outs.push(out);
    }
    if a.json {
        output::json(&outs);
    } else {
        let rows: Vec<Vec<String>> = outs
            .iter()
            .map(|o| {
                let (version, sha) = o.record.as_ref().map_or(("-".into(), "-".into()), |r| {
                    (
                        format!("{} {} ({})", r.package, r.version, r.suite),
                        r.sha256[..16].to_string(),
                    )
                });
                let origin = o.emulator.as_ref().map_or("FAILED".to_string(), |e| {
                    if e.origin == crate::emulator::Origin::Cache {
                        "cached"
                    } else {
                        "fetched"
                    }
                    .to_string()
                });
                let path = o
                    .copied_to
                    .as_ref()
                    .or(o.emulator.as_ref().map(|e| &e.path))
                    .map_or("-".into(), |p| p.display().to_string());
                vec![o.target.clone(), origin, version, sha, path]
            })
            .collect();
        output::table(&["TARGET", "RESULT", "PACKAGE", "SHA256", "PATH"], &rows);
    }
    let ok = outs.iter().all(|o| o.error.is_none());
    Ok(if ok { Exit::Success } else { Exit::Failure })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn all_skips_the_host_family() {
        let t = resolve_targets(&["all".into()]).unwrap();
        let host = Table::get().host().unwrap();
        assert!(t.iter().all(|x| x.family != host.family));
        assert!(
            t.iter()
                .any(|x| x.name == "aarch64" || host.name == "aarch64")
        );
    }

    #[test]
    fn target_lists_and_usage_errors() {
        let t = resolve_targets(&["arm64,armhf".into(), "aarch64".into()]).unwrap();
        assert_eq!(
            t.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
            ["aarch64", "arm"]
        );
        let e = resolve_targets(&["nope".into()]).unwrap_err();
        assert!(e.downcast_ref::<UsageError>().is_some());
    }
}
