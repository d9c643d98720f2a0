//! `binfmtctl install`: resolve emulators, register (P decided by running the emulator), verify;
//! with `--keep`, stay and register again what vanishes.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::Result;

use super::report::{self, Verb};
use super::{InstallArgs, Settings, is_all, resolve_targets};
use crate::arch::Target;
use crate::binfmt::Flags;
use crate::binfmt::manage::{self, Argv0, InstallOptions, Report};
use crate::cli::Exit;
use crate::emulator::Emulator;

/// Runs `install`.
pub fn run(s: &Settings, a: &InstallArgs) -> Result<Exit> {
    let p = &s.printer;
    let targets = resolve_targets(&s.kernel, &a.targets)?;
    if a.credential {
        p.warn(
            "--credential sets the C flag: setuid programs in emulated images then run the emulator as root; use it only with images you trust",
        );
    }
    let opts = InstallOptions {
        flags: Flags {
            open_binary: a.credential,
            credentials: a.credential,
            ..Flags::fix_binary()
        },
        argv0: if a.no_preserve_argv0 {
            Argv0::Never
        } else if a.preserve_argv0 {
            Argv0::Always
        } else {
            Argv0::Auto
        },
        replace: a.replace,
        refresh: s.refresh || a.keep,
        dry_run: a.dry_run,
        persist_dir: a.persist.then(|| s.persist_dir.clone()),
        verify: true,
        state_dir: s.state_dir.clone(),
    };
    let mut resolver = a.emulators.resolver(p)?;
    // A dry run changes nothing: no download, no cache write.
    resolver.offline = a.dry_run;
    let (emulators, warnings) = resolver.resolve(&targets);
    for w in warnings {
        p.warn(w);
    }
    let find = move |t: &Target| -> std::result::Result<Emulator, String> {
        emulators
            .get(&t.name)
            .cloned()
            .unwrap_or_else(|| Err(format!("no emulator was resolved for {}", t.name)))
    };
    let report = manage::install(&s.kernel, &targets, &opts, &find)?;
    if report.mounted_now {
        p.info(format!(
            "mounted binfmt_misc at {}",
            s.kernel.root().display()
        ));
    }
    if a.persist && !a.dry_run {
        p.warn(
            "a restart of systemd-binfmt.service flushes every binfmt_misc entry and re-registers only its files; the binfmt.d files just written cover these handlers",
        );
    }
    if s.status_json && !a.json && !a.dry_run {
        report::print_to_stderr(p, &report, Verb::Installed);
        super::status::print_json(s, a.emulators.archive.cache_dir.clone())?;
    } else {
        report::print(p, &report, a.json, a.dry_run, Verb::Installed);
    }
    if a.keep && !a.dry_run {
        // A pod that cannot set up its node must say so (and be restarted), not sit there.
        if !report.ok() {
            p.error(
                "not every handler was registered and verified; not keeping a partial set (exit 1, so the pod restarts and shows why)",
            );
            return Ok(Exit::Failure);
        }
        keep(s, &report, &opts, Duration::from_secs(a.interval))?;
        return Ok(Exit::Success);
    }
    if !report.ok() && is_all(&a.targets) {
        p.info(
            "some targets failed; `binfmtctl install TARGET` retries one, `binfmtctl status` shows what is registered",
        );
    }
    Ok(if report.ok() {
        Exit::Success
    } else {
        Exit::Failure
    })
}

/// `--keep`: rounds of `manage::keep` until SIGTERM or SIGINT (then exit 0), saying what was
/// registered again and each new problem once.
fn keep(s: &Settings, installed: &Report, opts: &InstallOptions, interval: Duration) -> Result<()> {
    use nix::sys::signal::{SigSet, Signal};
    let p = &s.printer;
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGTERM);
    mask.add(Signal::SIGINT);
    mask.thread_block()?;
    let sfd = nix::sys::signalfd::SignalFd::new(&mask)?;
    p.info(format!(
        "keeping {} handler(s), checking every {} s",
        installed.targets.len(),
        interval.as_secs()
    ));
    let mut wait = |interval: Duration| {
        let mut fds = [nix::poll::PollFd::new(
            std::os::fd::AsFd::as_fd(&sfd),
            nix::poll::PollFlags::POLLIN,
        )];
        let ms = interval.as_millis().min(i32::MAX as u128) as i32;
        let timeout = nix::poll::PollTimeout::try_from(ms).unwrap_or(nix::poll::PollTimeout::MAX);
        matches!(nix::poll::poll(&mut fds, timeout), Ok(n) if n > 0)
    };
    let mut said: HashSet<String> = HashSet::new();
    let mut on_round = |round: std::result::Result<Report, crate::binfmt::fs::FsError>| {
        let report = match round {
            Ok(r) => r,
            Err(e) => {
                if said.insert(e.to_string()) {
                    p.error(&e);
                }
                return;
            }
        };
        for t in &report.targets {
            if t.action == Some(manage::Action::Registered) {
                p.info(format!("`{}` had vanished; registered it again", t.handler));
                said.retain(|m| !m.starts_with(&t.target));
            }
            let problems = t
                .error
                .iter()
                .cloned()
                .chain(t.warnings.iter().map(ToString::to_string))
                .chain(
                    t.verify
                        .iter()
                        .filter(|v| !v.ok())
                        .map(|v| format!("verification failed: {}", v.detail)),
                );
            for m in problems {
                if said.insert(format!("{}: {m}", t.target)) {
                    p.warn(format!("{}: {m}", t.target));
                }
            }
        }
    };
    manage::keep(
        &s.kernel,
        installed,
        opts,
        interval,
        &mut wait,
        &mut on_round,
    );
    p.info("stopping; the handlers stay registered");
    Ok(())
}
