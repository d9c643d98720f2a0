//! `emubuild`: an emulated build sandbox. Working containers are made from a base image for one
//! or more platforms (`from`), changed by commands run under emulation (`run`), listed (`ls`) and
//! removed (`rm`).

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result};
use clap::{Args, CommandFactory, Parser, Subcommand};
use serde::Serialize;

use super::output::{self, warn};
use super::{Exit, UsageError, report_error};
use crate::binfmt::fs::DEFAULT_ROOT;
use crate::container::{self, Context, ImageRef, RunOptions};
use crate::platform::{self, Platform};
use crate::sandbox::{Bind, Network};
use crate::store::Store;

const PROG: &str = "emubuild";

/// Exit status when emubuild itself could not run the command (as `docker run`).
pub const RUN_FAILED: u8 = 125;

/// Run commands for foreign CPU architectures in a namespaced chroot of a base image, and
/// write what they changed as multi-arch OCI images.
#[derive(Debug, Parser)]
#[command(name = "emubuild", version, about, long_about = None)]
pub struct Cli {
    /// Where images, layers and working containers are kept.
    #[arg(long, global = true, env = "EMUBUILD_STORE", value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// The binfmt_misc mount checked before running foreign programs.
    #[arg(long, global = true, env = "BINFMTCTL_ROOT", default_value = DEFAULT_ROOT, value_name = "DIR", hide = true)]
    pub binfmt_root: PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub command: Command_,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command_ {
    /// Make a working container from a base image, one per platform.
    From(FromArgs),
    /// Run a command in a working container, under emulation; its changes become a step.
    Run(RunArgs),
    /// List working containers.
    Ls(LsArgs),
    /// Remove working containers (layers shared with others stay).
    Rm(RmArgs),
    /// Copy files from the host into the working container (every platform), as a new step.
    Copy(CopyArgs),
    /// Write the working container as images, one per platform, joined by an OCI image index.
    Commit(CommitArgs),
    /// Show an image or index in an OCI layout or archive: platforms, layers, history.
    Inspect(InspectArgs),
    /// Print a shell completion script.
    Completions(CompletionsArgs),
    /// Print the manual page (roff).
    Man,
}

/// `completions` arguments.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// `copy` arguments.
#[derive(Debug, Args)]
pub struct CopyArgs {
    /// Working container.
    #[arg(long, default_value = "default")]
    pub name: String,
    /// Mode of the copied files and directories (octal, e.g. 0755).
    #[arg(long, value_name = "MODE")]
    pub chmod: Option<String>,
    /// Owner of the copied files, user[:group] (names from the image's /etc/passwd).
    #[arg(long, value_name = "USER[:GROUP]")]
    pub chown: Option<String>,
    /// Host files or directories, then the destination inside the container.
    #[arg(required = true, num_args = 2.., value_name = "SRC... DEST")]
    pub paths: Vec<String>,
}

/// `commit` arguments.
#[derive(Debug, Args)]
pub struct CommitArgs {
    /// Working container.
    #[arg(long, default_value = "default")]
    pub name: String,
    /// Layer compression: gzip[:LEVEL] (default), zstd[:LEVEL], none.
    #[arg(long, default_value = "gzip")]
    pub compression: String,
    /// Default command: a JSON array, or words split on spaces.
    #[arg(long, value_name = "CMD")]
    pub cmd: Option<String>,
    /// Entrypoint: a JSON array, or words split on spaces ('' clears it).
    #[arg(long, value_name = "ENTRYPOINT")]
    pub entrypoint: Option<String>,
    /// Set an environment variable in the image.
    #[arg(long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// Set a label.
    #[arg(long = "label", value_name = "K=V")]
    pub labels: Vec<String>,
    /// Working directory of the image.
    #[arg(long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// User of the image.
    #[arg(long, value_name = "USER[:GROUP]")]
    pub user: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// oci:DIR[:TAG] or oci-archive:FILE[:TAG] (TAG defaults to `latest`).
    #[arg(value_name = "DEST")]
    pub dest: String,
}

/// `inspect` arguments.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// oci:DIR[:TAG] or oci-archive:FILE[:TAG].
    #[arg(value_name = "IMAGE")]
    pub image: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `from` arguments.
#[derive(Debug, Args)]
pub struct FromArgs {
    /// Platforms, comma-separated (`linux/arm64,linux/arm/v7`); default: the image's own, or the host's.
    #[arg(long, value_name = "PLATFORM[,PLATFORM...]")]
    pub platform: Option<String>,
    /// Name of the working container.
    #[arg(long, default_value = "default")]
    pub name: String,
    /// Replace an existing working container of that name.
    #[arg(long)]
    pub replace: bool,
    /// oci:DIR[:TAG], oci-archive:FILE[:TAG], rootfs:FILE (tar, .gz, .xz, .zst) or scratch.
    #[arg(value_name = "IMAGE")]
    pub image: String,
}

/// `run` arguments.
#[derive(Debug, Args, Clone)]
pub struct RunArgs {
    /// Working container.
    #[arg(long, default_value = "default")]
    pub name: String,
    /// Platforms to run on (default: every platform of the working container).
    #[arg(long, value_name = "PLATFORM[,PLATFORM...]")]
    pub platform: Option<String>,
    /// Make the working container from this image first (reused if it exists with the same base).
    #[arg(long, value_name = "IMAGE")]
    pub from: Option<String>,
    /// Bind mount HOST:CONTAINER[:ro].
    #[arg(short = 'v', long = "volume", value_name = "HOST:CTR[:ro]")]
    pub volumes: Vec<String>,
    /// Set an environment variable.
    #[arg(short = 'e', long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// Working directory inside.
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    pub workdir: Option<String>,
    /// user[:group], names or numbers from the image.
    #[arg(long, short = 'u', value_name = "USER[:GROUP]")]
    pub user: Option<String>,
    /// Network: the host's, or none (only `lo`).
    #[arg(long, value_enum, default_value = "host")]
    pub network: Network,
    /// Keep stdin attached.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Allocate a terminal.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// `ls` arguments.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `rm` arguments.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// Working containers to remove.
    #[arg(value_name = "NAME")]
    pub names: Vec<String>,
    /// Remove every working container.
    #[arg(long, conflicts_with = "names")]
    pub all: bool,
}

/// Entry point of the `emubuild` binary.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run_cli(cli) {
        Ok(exit) => exit.into(),
        Err(e) => {
            let exit = report_error(PROG, &e);
            if exit == Exit::Usage {
                exit.into()
            } else {
                Exit::Child(RUN_FAILED).into()
            }
        }
    }
}

fn context(cli: &Cli) -> Result<Context> {
    let root = cli.store.clone().unwrap_or_else(Store::default_root);
    let store = Store::open(&root)
        .with_context(|| format!("cannot open the store `{}`", root.display()))?;
    Ok(Context {
        store,
        binfmt_root: cli.binfmt_root.clone(),
        rootless: !nix::unistd::geteuid().is_root()
            || !crate::binfmt::fs::in_initial_user_namespace(),
    })
}

/// Runs a parsed command line.
pub fn run_cli(cli: Cli) -> Result<Exit> {
    match &cli.command {
        Command_::Completions(a) => {
            clap_complete::generate(
                a.shell,
                &mut Cli::command(),
                "emubuild",
                &mut std::io::stdout(),
            );
            return Ok(Exit::Success);
        }
        Command_::Man => {
            clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())?;
            return Ok(Exit::Success);
        }
        _ => {}
    }
    // Not root: everything happens in a user namespace of our own (rootless mode).
    let is_root =
        nix::unistd::geteuid().is_root() && crate::binfmt::fs::in_initial_user_namespace();
    if !is_root && !crate::rootless::inside() {
        let warn_fn = |m: &str| warn(PROG, m);
        crate::rootless::enter(&warn_fn)?;
    }
    let ctx = context(&cli)?;
    match &cli.command {
        Command_::From(a) => from(&ctx, a),
        Command_::Run(a) => run(&ctx, &cli, a),
        Command_::Ls(a) => ls(&ctx, a),
        Command_::Rm(a) => rm(&ctx, a),
        Command_::Copy(a) => copy(&ctx, a),
        Command_::Commit(a) => commit(&ctx, a),
        Command_::Inspect(a) => inspect(&ctx, a),
        Command_::Completions(_) | Command_::Man => unreachable!("handled above"),
    }
}

fn parse_platforms(s: &Option<String>) -> Result<Vec<Platform>> {
    match s {
        None => Ok(Vec::new()),
        Some(s) => Ok(platform::parse_list(s).map_err(|e| UsageError(e.to_string()))?),
    }
}

fn parse_image(s: &str) -> Result<ImageRef> {
    Ok(s.parse::<ImageRef>().map_err(UsageError)?)
}

fn from(ctx: &Context, a: &FromArgs) -> Result<Exit> {
    let image = parse_image(&a.image)?;
    let platforms = parse_platforms(&a.platform)?;
    if a.replace && ctx.container(&a.name).read().is_ok() {
        container::remove(ctx, &a.name)?;
    }
    let created = container::create(ctx, &a.name, &image, &platforms, false)?;
    for w in &created.warnings {
        warn(PROG, w);
    }
    println!("{}", created.container.name);
    eprintln!(
        "{PROG}: working container `{}` from {} for {}",
        created.container.name,
        created.container.base,
        created.container.platforms.join(", ")
    );
    Ok(Exit::Success)
}

fn run(ctx: &Context, cli: &Cli, a: &RunArgs) -> Result<Exit> {
    let wanted = parse_platforms(&a.platform)?;
    let mut made_now = false;
    if let Some(image) = &a.from {
        let image = parse_image(image)?;
        let created = container::create(ctx, &a.name, &image, &wanted, true)?;
        made_now = true;
        for w in &created.warnings {
            warn(PROG, w);
        }
    }
    let c = match ctx.container(&a.name).read() {
        Ok(c) => c,
        Err(_) => {
            return Err(UsageError(format!(
                "no working container `{}`; choose a base image: `emubuild run --from oci:DIR[:TAG] [--platform P] -- CMD`, or `emubuild from IMAGE` first",
                a.name
            ))
            .into());
        }
    };
    let all: Vec<Platform> = c.platforms.iter().filter_map(|p| p.parse().ok()).collect();
    let platforms: Vec<Platform> = if wanted.is_empty() {
        all.clone()
    } else {
        let mut out = Vec::new();
        for w in &wanted {
            // The container may hold a fallback (arm/v6 for arm/v7): match as the index did.
            let found = all
                .iter()
                .find(|p| *p == w)
                .or_else(|| all.iter().find(|p| p.satisfies(w)));
            match found {
                Some(p) => out.push(p.clone()),
                None => {
                    return Err(UsageError(format!(
                        "working container `{}` has no {w}; it has {}",
                        a.name,
                        c.platforms.join(", ")
                    ))
                    .into());
                }
            }
        }
        out
    };
    let opts = run_options(a)?;
    if ctx.rootless
        && let Err(e) = prepare_private_emulation(ctx, &cli.binfmt_root, &platforms)
    {
        // Nothing is left behind: the working container this command made goes too.
        if made_now {
            let _ = container::remove(ctx, &a.name);
        }
        return Err(e);
    }
    if platforms.len() == 1 {
        return run_one(ctx, &a.name, &platforms[0], &opts);
    }
    if a.tty || a.interactive {
        return Err(UsageError(
            "-i and -t work with one platform at a time; pick one with `--platform`".into(),
        )
        .into());
    }
    run_many(cli, a, &platforms)
}

/// Rootless: a private binfmt_misc with handlers for these platforms (emulators installed,
/// cached, or fetched and verified from the Debian archive).
fn prepare_private_emulation(
    _ctx: &Context,
    root: &std::path::Path,
    platforms: &[Platform],
) -> Result<()> {
    // Native platforms need no emulation, so no private instance either (an older kernel
    // then still runs them).
    let targets: Vec<&crate::arch::Target> = platforms
        .iter()
        .filter_map(|p| crate::arch::Table::get().for_platform(p))
        .filter(|t| !crate::sandbox::preflight::is_native(t))
        .collect();
    if targets.is_empty() {
        return Ok(());
    }
    let fs = crate::rootless::mount_private_binfmt(root)?;
    let resolver =
        crate::emulator::resolve::Resolver::from_env(false).map_err(super::UsageError)?;
    let warn_fn = |m: &str| warn(PROG, m);
    crate::rootless::register_private(&fs, &targets, &resolver, &warn_fn)?;
    Ok(())
}

fn run_options(a: &RunArgs) -> Result<RunOptions> {
    let mut env = Vec::new();
    for e in &a.env {
        match e.split_once('=') {
            Some((k, v)) if !k.is_empty() => env.push((k.to_string(), v.to_string())),
            _ => match std::env::var(e) {
                // `-e NAME` passes the host's value, as docker does.
                Ok(v) => env.push((e.clone(), v)),
                Err(_) => return Err(UsageError(format!("`-e {e}`: expected K=V")).into()),
            },
        }
    }
    let mounts = a
        .volumes
        .iter()
        .map(|v| Bind::parse(v).map_err(|e| UsageError(format!("-v: {e}")).into()))
        .collect::<Result<Vec<_>>>()?;
    Ok(RunOptions {
        argv: a.command.clone(),
        env,
        workdir: a.workdir.clone(),
        user: a.user.clone(),
        mounts,
        network: a.network,
        tty: a.tty,
        stdin: a.interactive,
    })
}

fn run_one(ctx: &Context, name: &str, platform: &Platform, opts: &RunOptions) -> Result<Exit> {
    let r = container::run_step(ctx, name, platform, opts)?;
    for w in &r.warnings {
        warn(PROG, w);
    }
    Ok(if r.code == 0 {
        Exit::Success
    } else {
        Exit::Child(r.code.clamp(0, 255) as u8)
    })
}

/// Runs each platform in its own `emubuild run` process, all at once, prefixing their output.
fn run_many(cli: &Cli, a: &RunArgs, platforms: &[Platform]) -> Result<Exit> {
    let exe =
        std::env::current_exe().context("cannot find this program to start per-platform runs")?;
    let width = platforms
        .iter()
        .map(|p| p.to_string().len())
        .max()
        .unwrap_or(0);
    // SIGINT and SIGTERM (a Ctrl-C, `kill`, a CI runner's timeout) go to every per-platform
    // run; they are blocked here before any thread starts, and taken by one thread below.
    use nix::sys::signal::{SigSet, Signal};
    let mut forwarded = SigSet::empty();
    forwarded.add(Signal::SIGINT);
    forwarded.add(Signal::SIGTERM);
    forwarded.add(Signal::SIGHUP);
    forwarded.thread_block()?;
    let mut children = Vec::new();
    for p in platforms {
        let mut cmd = Command::new(&exe);
        crate::sys::tie_to_parent(&mut cmd);
        if let Some(s) = &cli.store {
            cmd.arg("--store").arg(s);
        }
        cmd.arg("--binfmt-root").arg(&cli.binfmt_root);
        cmd.args(["run", "--name", &a.name, "--platform", &p.to_string()]);
        for v in &a.volumes {
            cmd.args(["-v", v]);
        }
        for e in &a.env {
            cmd.args(["-e", e]);
        }
        if let Some(w) = &a.workdir {
            cmd.args(["-w", w]);
        }
        if let Some(u) = &a.user {
            cmd.args(["--user", u]);
        }
        if a.network == Network::None {
            cmd.args(["--network", "none"]);
        }
        cmd.arg("--").args(&a.command);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().context("cannot start a per-platform run")?;
        let prefix = format!("[{:<width$}] ", p.to_string());
        let out = child.stdout.take().expect("piped");
        let err = child.stderr.take().expect("piped");
        let t1 = relay_lines(out, prefix.clone(), false);
        let t2 = relay_lines(err, prefix, true);
        children.push((p.clone(), child, t1, t2));
    }
    let pids: Vec<nix::unistd::Pid> = children
        .iter()
        .map(|(_, c, _, _)| nix::unistd::Pid::from_raw(c.id() as i32))
        .collect();
    std::thread::spawn(move || {
        while let Ok(sig) = forwarded.wait() {
            for pid in &pids {
                let _ = nix::sys::signal::kill(*pid, sig);
            }
        }
    });
    let mut results = Vec::new();
    for (p, mut child, t1, t2) in children {
        let status = child.wait().context("waiting for a per-platform run")?;
        let _ = t1.join();
        let _ = t2.join();
        let code = status.code().unwrap_or_else(|| {
            128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0)
        });
        results.push((p, code));
    }
    eprintln!("{PROG}: summary:");
    for (p, code) in &results {
        let what = if *code == 0 {
            "ok".to_string()
        } else {
            format!("FAILED (exit {code})")
        };
        eprintln!("  {:<width$}  {what}", p.to_string());
    }
    match results.iter().find(|(_, c)| *c != 0) {
        None => Ok(Exit::Success),
        Some((_, c)) => Ok(Exit::Child((*c).clamp(1, 255) as u8)),
    }
}

fn relay_lines(
    r: impl std::io::Read + Send + 'static,
    prefix: String,
    to_stderr: bool,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(r);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if !line.ends_with(b"\n") {
                        line.push(b'\n');
                    }
                    let mut buf = prefix.as_bytes().to_vec();
                    buf.extend_from_slice(&line);
                    if to_stderr {
                        let _ = std::io::stderr().lock().write_all(&buf);
                    } else {
                        let _ = std::io::stdout().lock().write_all(&buf);
                    }
                }
            }
        }
    })
}

#[derive(Serialize)]
struct LsRow {
    name: String,
    base: String,
    platforms: Vec<String>,
    steps: usize,
}

fn ls(ctx: &Context, a: &LsArgs) -> Result<Exit> {
    let mut rows = Vec::new();
    for name in ctx.store.containers() {
        let cdir = ctx.container(&name);
        let Ok(c) = cdir.read() else { continue };
        let steps = c
            .platforms
            .iter()
            .filter_map(|p| p.parse::<Platform>().ok())
            .filter_map(|p| cdir.read_platform(&p).ok())
            .map(|s| s.steps.len())
            .max()
            .unwrap_or(0);
        rows.push(LsRow {
            name: c.name,
            base: c.base,
            platforms: c.platforms,
            steps,
        });
    }
    if a.json {
        output::json(&rows);
    } else {
        let table: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                vec![
                    r.name.clone(),
                    r.platforms.join(","),
                    r.base.clone(),
                    r.steps.to_string(),
                ]
            })
            .collect();
        output::table(&["NAME", "PLATFORMS", "BASE", "STEPS"], &table);
    }
    Ok(Exit::Success)
}

fn rm(ctx: &Context, a: &RmArgs) -> Result<Exit> {
    let names = if a.all {
        ctx.store.containers()
    } else {
        a.names.clone()
    };
    if names.is_empty() && !a.all {
        return Err(
            UsageError("name the working containers to remove, or pass `--all`".into()).into(),
        );
    }
    let mut failed = false;
    for n in names {
        match container::remove(ctx, &n) {
            Ok(()) => println!("{n}"),
            Err(e) => {
                output::error(PROG, &e.to_string());
                failed = true;
            }
        }
    }
    Ok(if failed { Exit::Failure } else { Exit::Success })
}

fn words(s: &str) -> Result<Vec<String>> {
    if s.trim_start().starts_with('[') {
        serde_json::from_str(s)
            .map_err(|e| UsageError(format!("`{s}` is not a JSON array of strings: {e}")).into())
    } else {
        Ok(s.split_whitespace().map(str::to_string).collect())
    }
}

fn pairs(list: &[String], what: &str) -> Result<Vec<(String, String)>> {
    list.iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(UsageError(format!("`{what} {kv}`: expected K=V")).into()),
        })
        .collect()
}

fn copy(ctx: &Context, a: &CopyArgs) -> Result<Exit> {
    let (dest, sources) = a.paths.split_last().expect("clap requires two paths");
    let chmod = match &a.chmod {
        None => None,
        Some(m) => Some(
            u32::from_str_radix(m.trim_start_matches("0o"), 8).map_err(|_| {
                UsageError(format!(
                    "`--chmod {m}`: expected an octal mode such as 0755"
                ))
            })?,
        ),
    };
    let opts = container::CopyOptions {
        sources: sources.iter().map(PathBuf::from).collect(),
        dest: dest.clone(),
        chmod,
        chown: a.chown.clone(),
    };
    let steps = container::copy_step(ctx, &a.name, &opts)?;
    eprintln!(
        "{PROG}: copied into {} platform(s) of `{}`",
        steps.len(),
        a.name
    );
    Ok(Exit::Success)
}

fn commit(ctx: &Context, a: &CommitArgs) -> Result<Exit> {
    let dest: crate::commit::Dest = a.dest.parse().map_err(UsageError)?;
    let compression = a.compression.parse().map_err(UsageError)?;
    let edits = crate::commit::ConfigEdits {
        cmd: a.cmd.as_deref().map(words).transpose()?,
        entrypoint: a.entrypoint.as_deref().map(words).transpose()?,
        env: pairs(&a.env, "--env")?,
        labels: pairs(&a.labels, "--label")?,
        workdir: a.workdir.clone(),
        user: a.user.clone(),
    };
    let opts = crate::commit::CommitOptions { compression, edits };
    let done = crate::commit::commit(ctx, &a.name, &dest, &opts)?;
    for w in &done.warnings {
        warn(PROG, w);
    }
    if a.json {
        output::json(&done);
    } else {
        println!("{}", done.index);
        for i in &done.images {
            eprintln!(
                "{PROG}: {} {} ({} layers)",
                i.platform,
                i.manifest,
                i.layers.len()
            );
        }
        eprintln!("{PROG}: wrote {} (index {})", done.dest, done.index);
    }
    Ok(Exit::Success)
}

fn inspect(ctx: &Context, a: &InspectArgs) -> Result<Exit> {
    let image = parse_image(&a.image)?;
    let staging;
    let (layout, tag) = match &image {
        ImageRef::Oci { dir, tag } => (crate::oci::layout::Layout::open(dir)?, tag.clone()),
        ImageRef::OciArchive { file, tag } => {
            staging = ctx.store.staging()?;
            (
                crate::oci::layout::extract_archive(file, staging.path())?,
                tag.clone(),
            )
        }
        _ => {
            return Err(
                UsageError("inspect reads oci:DIR[:TAG] or oci-archive:FILE[:TAG]".into()).into(),
            );
        }
    };
    let report = crate::inspect::inspect(&layout, tag.as_deref())?;
    if a.json {
        output::json(&report);
    } else {
        crate::inspect::print(&report);
    }
    Ok(Exit::Success)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }
}
