//! `emubuild run`: a command in a working container under emulation. Several platforms run at
//! once, each in its own `emubuild __run-platform` process (a process forks its sandbox only
//! while it has one thread), given its whole request as one serialised value on stdin, so no
//! option can be lost on the way; their output is prefixed and their status summed up.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};

use super::{PROG, RunArgs, Settings, parse_image, parse_platforms};
use crate::binfmt::Kernel;
use crate::cli::printer::Printer;
use crate::cli::{Exit, UsageError};
use crate::container::{self, Context, RunOptions};
use crate::platform::Platform;
use crate::sandbox::Bind;
use crate::snapshotter::Driver;

/// What one per-platform process is asked to do: everything it needs, settings included.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PlatformRun {
    store: PathBuf,
    binfmt_root: PathBuf,
    driver: Driver,
    epoch: Option<i64>,
    rootless: bool,
    quiet: bool,
    verbose: u8,
    log_level: Option<String>,
    name: String,
    platform: Platform,
    options: RunOptions,
}

/// Runs `run`.
pub fn run(s: &Settings, ctx: &Context, a: &RunArgs) -> Result<Exit> {
    let p = &s.printer;
    let wanted = parse_platforms(&a.platform)?;
    let mut made_now = false;
    let from = match &a.from {
        Some(f) => Some(f.clone()),
        None if !ctx.container(&a.name).exists() => {
            p.info(format!(
                "no working container `{}`; making one from {} (`--from IMAGE` or $EMUBUILD_BASE chooses another)",
                a.name, a.default_base
            ));
            Some(a.default_base.clone())
        }
        None => None,
    };
    if let Some(image) = &from {
        let image = parse_image(image)?;
        let created = container::create(ctx, &a.name, &image, &wanted, true)?;
        made_now = !created.reused;
        for w in &created.warnings {
            p.warn(w);
        }
    }
    let c = container::read(ctx, &a.name)?;
    let platforms: Vec<Platform> = if wanted.is_empty() {
        c.platforms.clone()
    } else {
        let mut out = Vec::new();
        for w in &wanted {
            // The container may hold a fallback (arm/v6 for arm/v7): match as the index did.
            let found = c
                .platforms
                .iter()
                .find(|p| *p == w)
                .or_else(|| c.platforms.iter().find(|p| p.satisfies(w)));
            match found {
                Some(p) => out.push(p.clone()),
                None => {
                    return Err(UsageError(format!(
                        "working container `{}` has no {w}; it has {}",
                        a.name,
                        c.platforms
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                    .into());
                }
            }
        }
        out
    };
    let opts = run_options(a)?;
    if ctx.rootless
        && let Err(e) = prepare_private_emulation(ctx, p, a, &platforms)
    {
        // Nothing is left behind: the working container this command made goes too.
        if made_now {
            let _ = container::remove(ctx, &a.name);
        }
        return Err(e);
    }
    if platforms.len() == 1 {
        return run_one(ctx, p, &a.name, &platforms[0], &opts);
    }
    if a.tty || a.interactive {
        return Err(UsageError(
            "-i and -t work with one platform at a time; pick one with `--platform`".into(),
        )
        .into());
    }
    let requests: Vec<PlatformRun> = platforms
        .iter()
        .map(|platform| PlatformRun {
            store: s.store.clone(),
            binfmt_root: s.binfmt_root.clone(),
            driver: s.driver,
            epoch: s.epoch,
            rootless: s.rootless,
            quiet: p.quiet(),
            verbose: s.verbose,
            log_level: s.log_level.clone(),
            name: a.name.clone(),
            platform: platform.clone(),
            options: opts.clone(),
        })
        .collect();
    run_many(p, &requests)
}

/// One platform of a multi-platform run: the request comes on stdin.
pub fn child() -> Result<Exit> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .context("cannot read the per-platform request")?;
    let r: PlatformRun =
        serde_json::from_str(&text).context("the per-platform request is not valid")?;
    crate::cli::logging::init(r.verbose, r.log_level.as_deref());
    let printer = Printer::new(PROG, r.quiet);
    let settings = Settings {
        store: r.store.clone(),
        binfmt_root: r.binfmt_root.clone(),
        driver: r.driver,
        epoch: r.epoch,
        rootless: r.rootless,
        verbose: r.verbose,
        log_level: r.log_level.clone(),
        // A per-platform run runs a step of a container that exists: no registry is read.
        registry: crate::registry::Options::default(),
        printer,
    };
    let ctx = settings.context()?;
    run_one(&ctx, &printer, &r.name, &r.platform, &r.options)
}

/// Rootless: a private binfmt_misc with handlers for these platforms (emulators installed,
/// cached, or fetched and verified from the Debian archive).
fn prepare_private_emulation(
    ctx: &Context,
    p: &Printer,
    a: &RunArgs,
    platforms: &[Platform],
) -> Result<()> {
    // Native platforms need no emulation, so no private instance either (an older kernel
    // then still runs them).
    let targets: Vec<&crate::arch::Target> = platforms
        .iter()
        .filter_map(|pl| crate::arch::Table::get().for_platform(pl))
        .filter(|t| !ctx.kernel.host().runs_natively(t))
        .collect();
    if targets.is_empty() {
        return Ok(());
    }
    let fs = crate::rootless::mount_private_binfmt(ctx.kernel.root())?;
    let resolver = a.emulators.resolver(p)?;
    crate::rootless::register_private(&fs, &targets, &resolver, &|w: &crate::warning::Warning| {
        p.warn(w)
    })?;
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
        platform_env: true,
    })
}

fn run_one(
    ctx: &Context,
    p: &Printer,
    name: &str,
    platform: &Platform,
    opts: &RunOptions,
) -> Result<Exit> {
    let r = container::run_step(ctx, name, platform, opts)?;
    for w in &r.warnings {
        p.warn(w);
    }
    Ok(if r.code == 0 {
        Exit::Success
    } else {
        Exit::Child(r.code.clamp(0, 255) as u8)
    })
}

/// One step of a working container's platform in a process of its own (the sandbox's
/// namespaces are made once per process), its output prefixed; its exit status.
pub fn step_in_child(
    s: &Settings,
    name: &str,
    platform: &Platform,
    options: &RunOptions,
    prefix: &str,
) -> Result<i32> {
    let exe =
        std::env::current_exe().context("cannot find this program to start per-platform runs")?;
    let r = PlatformRun {
        store: s.store.clone(),
        binfmt_root: s.binfmt_root.clone(),
        driver: s.driver,
        epoch: s.epoch,
        rootless: s.rootless,
        quiet: s.printer.quiet(),
        verbose: s.verbose,
        log_level: s.log_level.clone(),
        name: name.to_string(),
        platform: platform.clone(),
        options: options.clone(),
    };
    let mut cmd = Command::new(&exe);
    crate::sys::tie_to_parent(&mut cmd);
    cmd.arg("__run-platform")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().context("cannot start a per-platform run")?;
    let request = serde_json::to_vec(&r).expect("requests serialise");
    let mut stdin = child.stdin.take().expect("piped");
    stdin
        .write_all(&request)
        .context("cannot hand a per-platform run its request")?;
    drop(stdin);
    let t1 = relay_lines(
        child.stdout.take().expect("piped"),
        prefix.to_string(),
        false,
    );
    let t2 = relay_lines(
        child.stderr.take().expect("piped"),
        prefix.to_string(),
        true,
    );
    let status = child.wait().context("waiting for a per-platform run")?;
    let _ = t1.join();
    let _ = t2.join();
    Ok(status.code().unwrap_or_else(|| {
        128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0)
    }))
}

/// Runs each request in its own process, all at once, prefixing their output.
fn run_many(p: &Printer, requests: &[PlatformRun]) -> Result<Exit> {
    let exe =
        std::env::current_exe().context("cannot find this program to start per-platform runs")?;
    let width = requests
        .iter()
        .map(|r| r.platform.to_string().len())
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
    for r in requests {
        let mut cmd = Command::new(&exe);
        crate::sys::tie_to_parent(&mut cmd);
        cmd.arg("__run-platform")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().context("cannot start a per-platform run")?;
        let request = serde_json::to_vec(r).expect("requests serialise");
        let mut stdin = child.stdin.take().expect("piped");
        stdin
            .write_all(&request)
            .context("cannot hand a per-platform run its request")?;
        drop(stdin);
        let prefix = format!("[{:<width$}] ", r.platform.to_string());
        let out = child.stdout.take().expect("piped");
        let err = child.stderr.take().expect("piped");
        let t1 = relay_lines(out, prefix.clone(), false);
        let t2 = relay_lines(err, prefix, true);
        children.push((r.platform.clone(), child, t1, t2));
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
    for (platform, mut child, t1, t2) in children {
        let status = child.wait().context("waiting for a per-platform run")?;
        let _ = t1.join();
        let _ = t2.join();
        let code = status.code().unwrap_or_else(|| {
            128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0)
        });
        results.push((platform, code));
    }
    p.info("summary:");
    for (platform, code) in &results {
        let what = if *code == 0 {
            "ok".to_string()
        } else {
            format!("FAILED (exit {code})")
        };
        p.note(format!("  {:<width$}  {what}", platform.to_string()));
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
