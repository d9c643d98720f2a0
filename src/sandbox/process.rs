//! The sandbox's processes. The worker (this process) unshares PID, UTS, IPC (and, with
//! `--network none`, network) namespaces and forks the init, PID 1 of the new PID namespace. The
//! init takes a mount namespace of its own, builds the root (`mounts`), pivots into it and forks
//! the command; it forwards signals to the command, reaps orphans, and exits with the command's
//! status (128+N for signal N), which the worker passes on. Nothing is re-executed from
//! `/proc/self/exe`, and the init is not dumpable, so the command cannot reach the host's
//! binary through `/proc/1/exe`.
//!
//! Every process here is single-threaded when it forks (checked by `sys::fork_single_threaded`):
//! the worker relays a terminal (`-t`) in its own poll loop, beside the signals it forwards,
//! instead of in threads (a process cannot start threads once it has unshared its PID
//! namespace, and fork is only sound with one thread).
//!
//! The init reports to the worker over a pipe in typed messages (`report`): mount points it had
//! to create, warnings, and the setup error that stopped it.

use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid};

use super::report::{self, Message, SETUP_FAILED, SetupError};
use super::spec::{Network, RunSpec};
use crate::sys;

/// How a run ended.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The command's exit status (0-255; 128+N after signal N).
    pub code: i32,
    /// Mount points created in the root (relative paths), to leave out of the step.
    pub created: Vec<PathBuf>,
    /// Warnings from the init.
    pub warnings: Vec<crate::warning::Warning>,
    /// Why the command never ran, if it did not.
    pub error: Option<SetupError>,
}

/// Errors before the sandbox could start.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// A system call in the worker failed.
    #[error(
        "cannot start the sandbox: cannot {what}: {errno}; emubuild needs root (or, rootless, user namespaces)"
    )]
    Sys {
        /// What was being done.
        what: &'static str,
        /// What the kernel said.
        errno: nix::Error,
    },
    /// The worker could not fork.
    #[error("cannot start the sandbox")]
    Fork(#[from] sys::ForkError),
    /// An argument cannot be passed to exec (a NUL byte).
    #[error("argument or environment value contains a NUL byte: {0:?}")]
    Nul(String),
}

fn sys_err(what: &'static str) -> impl FnOnce(nix::Error) -> SandboxError {
    move |errno| SandboxError::Sys { what, errno }
}

/// The signals the worker and init forward.
fn forwarded() -> SigSet {
    let mut s = SigSet::empty();
    for sig in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGWINCH,
        Signal::SIGCHLD,
    ] {
        s.add(sig);
    }
    s
}

/// Runs the command. Must be called from a single-threaded process (fork checks it).
pub fn run(spec: &RunSpec) -> Result<Outcome, SandboxError> {
    let argv = cstrings(spec.argv.iter().map(String::as_str))?;
    let env: Vec<String> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let envp = cstrings(env.iter().map(String::as_str))?;

    let (report_r, report_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(sys_err("create a pipe"))?;
    // With a terminal, the init opens it in the sandbox's own devpts and sends the master here.
    let console = if spec.tty {
        Some(
            std::os::unix::net::UnixStream::pair().map_err(|e| SandboxError::Sys {
                what: "create a socket pair",
                errno: nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
            })?,
        )
    } else {
        None
    };

    let mask = forwarded();
    let mut old_mask = SigSet::empty();
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), Some(&mut old_mask))
        .map_err(sys_err("block signals"))?;
    let restore_mask = || {
        let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old_mask), None);
    };
    let signals = match SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC) {
        Ok(s) => s,
        Err(e) => {
            restore_mask();
            return Err(sys_err("create a signalfd")(e));
        }
    };

    let mut flags = CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC;
    if spec.network == Network::None {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    if let Err(e) = nix::sched::unshare(flags) {
        restore_mask();
        return Err(sys_err("create namespaces")(e));
    }
    tracing::debug!(?flags, "sandbox namespaces unshared");

    let forked = sys::fork_single_threaded();
    match forked {
        Err(e) => {
            restore_mask();
            Err(e.into())
        }
        Ok(ForkResult::Child) => {
            drop(report_r);
            drop(signals);
            let sock = console.map(|(_, theirs)| theirs);
            init(spec, &argv, &envp, report_w, sock)
        }
        Ok(ForkResult::Parent { child }) => {
            drop(report_w);
            let master = console.and_then(|(ours, theirs)| {
                drop(theirs);
                sys::recv_fd(&ours)
            });
            let terminal = master.map(Terminal::attach);
            let code = supervise(child, &signals, terminal.as_ref());
            drop(terminal);
            restore_mask();
            let mut outcome = Outcome {
                code,
                ..Outcome::default()
            };
            let mut text = String::new();
            let _ = File::from(report_r).read_to_string(&mut text);
            for m in report::receive(&text) {
                match m {
                    Message::Created(p) => outcome.created.push(p),
                    Message::Warning(w) => outcome.warnings.push(w),
                    Message::Failed(e) => outcome.error = Some(e),
                }
            }
            Ok(outcome)
        }
    }
}

/// The worker's loop: forward signals to the init until it exits, relaying the terminal when
/// there is one; returns the init's status.
fn supervise(init: Pid, signals: &SignalFd, terminal: Option<&Terminal>) -> i32 {
    let stdin = std::io::stdin();
    let mut input_open = terminal.is_some();
    let mut output_open = terminal.is_some();
    loop {
        let mut fds = vec![PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
        if let Some(t) = terminal {
            if input_open {
                fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
            }
            if output_open {
                fds.push(PollFd::new(t.master.as_fd(), PollFlags::POLLIN));
            }
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::Error::EINTR) => continue,
            Err(_) => return SETUP_FAILED,
        }
        let ready = |i: usize| {
            fds.get(i)
                .and_then(PollFd::revents)
                .is_some_and(|r| !r.is_empty())
        };
        let (sig_ready, in_ready, out_ready) = match (input_open, output_open) {
            (true, true) => (ready(0), ready(1), ready(2)),
            (true, false) => (ready(0), ready(1), false),
            (false, true) => (ready(0), false, ready(1)),
            (false, false) => (ready(0), false, false),
        };
        drop(fds);
        if let Some(t) = terminal {
            if in_ready && !t.copy_in() {
                input_open = false;
            }
            if out_ready && !t.copy_out() {
                output_open = false;
            }
        }
        if !sig_ready {
            continue;
        }
        let Ok(Some(info)) = signals.read_signal() else {
            continue;
        };
        let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else {
            continue;
        };
        match sig {
            Signal::SIGCHLD => loop {
                match waitpid(init, Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::Exited(_, c)) => {
                        if let Some(t) = terminal {
                            t.drain();
                        }
                        return c;
                    }
                    Ok(WaitStatus::Signaled(_, s, _)) => return 128 + s as i32,
                    Ok(WaitStatus::StillAlive) => break,
                    Ok(_) => continue,
                    Err(nix::Error::EINTR) => continue,
                    Err(_) => return SETUP_FAILED,
                }
            },
            Signal::SIGWINCH => {
                if let Some(t) = terminal {
                    t.resize();
                }
            }
            other => {
                let _ = kill(init, other);
            }
        }
    }
}

/// PID 1 of the sandbox. Never returns.
fn init(
    spec: &RunSpec,
    argv: &[CString],
    envp: &[CString],
    report: OwnedFd,
    console: Option<std::os::unix::net::UnixStream>,
) -> ! {
    let mut report = File::from(report);
    let fail = |report: &mut File, e: SetupError| -> ! {
        report::send(report, &Message::Failed(e));
        sys::exit_now(SETUP_FAILED)
    };
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    let _ = nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0));
    if let Err(e) = nix::sched::unshare(CloneFlags::CLONE_NEWNS) {
        fail(&mut report, SetupError::sys("create a mount namespace", e));
    }
    let prepared = match super::mounts::setup(spec) {
        Ok(p) => p,
        Err(e) => fail(&mut report, e),
    };
    for c in prepared.created {
        report::send(&mut report, &Message::Created(c));
    }
    for w in prepared.warnings {
        report::send(&mut report, &Message::Warning(w));
    }
    let _ = nix::sys::prctl::set_dumpable(false);
    super::caps::drop_extra_effective();
    let slave = match console {
        None => None,
        Some(sock) => match open_pty_pair() {
            Ok((master, slave)) => {
                if let Err(e) = sys::send_fd(&sock, &master) {
                    fail(&mut report, SetupError::sys("pass the terminal", e));
                }
                Some(slave)
            }
            Err(e) => fail(
                &mut report,
                SetupError::sys("open a terminal in the sandbox", e),
            ),
        },
    };

    let command = match sys::fork_single_threaded() {
        Ok(ForkResult::Child) => exec_command(spec, argv, envp, &mut report, slave),
        Ok(ForkResult::Parent { child }) => child,
        Err(e) => fail(
            &mut report,
            SetupError::Invalid(format!("cannot fork the command: {e}")),
        ),
    };
    drop(slave);
    drop(report);
    let mask = forwarded();
    let mut status: Option<i32> = None;
    loop {
        let Ok(sig) = mask.wait() else { continue };
        if sig != Signal::SIGCHLD {
            let _ = kill(command, sig);
            continue;
        }
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, c)) if pid == command => status = Some(c),
                Ok(WaitStatus::Signaled(pid, s, _)) if pid == command => {
                    status = Some(128 + s as i32)
                }
                Ok(WaitStatus::StillAlive) | Err(nix::Error::ECHILD) => break,
                Err(nix::Error::EINTR) => continue,
                Ok(_) => continue,
                Err(_) => break,
            }
        }
        if let Some(code) = status {
            // Leaving PID 1 ends every other process of the sandbox.
            sys::exit_now(code);
        }
    }
}

/// A new pseudo-terminal pair in the current mount namespace's `/dev/ptmx` (the sandbox's own
/// devpts instance): (master, slave).
fn open_pty_pair() -> rustix::io::Result<(OwnedFd, OwnedFd)> {
    use rustix::pty::OpenptFlags;
    let master = rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY)?;
    rustix::pty::unlockpt(&master)?;
    let slave = rustix::pty::ioctl_tiocgptpeer(&master, OpenptFlags::RDWR | OpenptFlags::NOCTTY)?;
    Ok((master, slave))
}

/// The command's process: terminal, user, capabilities, then exec. Never returns.
fn exec_command(
    spec: &RunSpec,
    argv: &[CString],
    envp: &[CString],
    report: &mut File,
    slave: Option<OwnedFd>,
) -> ! {
    let fail = |report: &mut File, e: SetupError| -> ! {
        let code = e.code();
        report::send(report, &Message::Failed(e));
        sys::exit_now(code)
    };
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    // A session of its own, always: without `-t` the command must not share the user's
    // terminal session (no TIOCSTI into the user's shell, no SIGTTIN on reads).
    let _ = nix::unistd::setsid();
    if let Some(slave) = &slave {
        let attached = rustix::stdio::dup2_stdin(slave)
            .and_then(|_| rustix::stdio::dup2_stdout(slave))
            .and_then(|_| rustix::stdio::dup2_stderr(slave));
        if let Err(e) = attached {
            fail(report, SetupError::sys("attach the terminal", e));
        }
        if let Err(e) = rustix::process::ioctl_tiocsctty(std::io::stdin()) {
            fail(report, SetupError::sys("set the controlling terminal", e));
        }
    } else if !spec.stdin
        && let Ok(null) = File::open("/dev/null")
    {
        let _ = rustix::stdio::dup2_stdin(&null);
    }
    drop(slave);

    let mut env: Vec<CString> = envp.to_vec();
    let has_home = env.iter().any(|e| e.as_bytes().starts_with(b"HOME="));
    let (mut uid, mut gid, mut groups) = (0u32, 0u32, vec![0u32]);
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let group = std::fs::read_to_string("/etc/group").unwrap_or_default();
    let user_spec = spec.user.clone().unwrap_or_else(|| "0:0".to_string());
    let mut home = "/root".to_string();
    match super::user::resolve(&user_spec, &passwd, &group) {
        Ok(u) => {
            uid = u.uid;
            gid = u.gid;
            groups = u.groups;
            home = u
                .home
                .unwrap_or_else(|| if uid == 0 { "/root".into() } else { "/".into() });
        }
        Err(reason) if spec.user.is_some() => fail(
            report,
            SetupError::User {
                user: user_spec,
                reason,
            },
        ),
        Err(_) => {}
    }
    if !has_home && let Ok(h) = CString::new(format!("HOME={home}")) {
        env.push(h);
    }
    if let Err(e) = std::env::set_current_dir(&spec.cwd) {
        fail(
            report,
            SetupError::sys(format!("enter the working directory {}", spec.cwd), &e),
        );
    }
    if let Err(e) = super::caps::restrict_to_default() {
        fail(
            report,
            SetupError::Invalid(format!("cannot restrict capabilities: {e}")),
        );
    }
    let gids: Vec<nix::unistd::Gid> = groups
        .iter()
        .map(|g| nix::unistd::Gid::from_raw(*g))
        .collect();
    // In a user namespace that maps only one ID, setgroups is denied: fine when the groups are
    // just the one group there is.
    let groups_denied =
        std::fs::read_to_string("/proc/self/setgroups").is_ok_and(|s| s.trim() == "deny");
    let set_groups = match nix::unistd::setgroups(&gids) {
        Err(nix::Error::EPERM) if groups_denied && groups.iter().all(|g| *g == gid) => Ok(()),
        other => other,
    };
    if let Err(e) = set_groups
        .and_then(|_| nix::unistd::setgid(nix::unistd::Gid::from_raw(gid)))
        .and_then(|_| nix::unistd::setuid(nix::unistd::Uid::from_raw(uid)))
    {
        let hint = if groups_denied {
            " (this user namespace maps only your own ID, as root; other users need subordinate IDs in /etc/subuid and /etc/subgid)"
        } else {
            ""
        };
        fail(
            report,
            SetupError::User {
                user: user_spec,
                reason: format!("{e}{hint}"),
            },
        );
    }
    // Nothing emubuild inherited beyond stdio reaches the command.
    sys::close_inherited_fds();
    let program = &spec.argv[0];
    let candidates: Vec<PathBuf> = if program.contains('/') {
        vec![PathBuf::from(program)]
    } else {
        let path = spec
            .env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.as_str())
            .unwrap_or(crate::container::DEFAULT_PATH);
        path.split(':')
            .filter(|d| !d.is_empty())
            .map(|d| PathBuf::from(d).join(program))
            .collect()
    };
    let mut last = nix::Error::ENOENT;
    let mut last_path = None;
    for c in &candidates {
        let Ok(cpath) = CString::new(c.as_os_str().as_bytes()) else {
            continue;
        };
        match nix::unistd::execve(&cpath, argv, &env) {
            Err(nix::Error::ENOENT) => continue,
            Err(e) => {
                last = e;
                last_path = Some(c);
                if e != nix::Error::EACCES {
                    break;
                }
            }
        }
    }
    let program = program.clone();
    match last {
        nix::Error::ENOENT => fail(report, SetupError::NotFound { program }),
        nix::Error::ENOEXEC => {
            // Say which handler would run it, as preflight does.
            let target = last_path
                .and_then(|p| crate::elf::read_headers(p).ok())
                .and_then(|h| h.target);
            fail(report, SetupError::ExecFormat { program, target })
        }
        e => fail(
            report,
            SetupError::NotExecutable {
                program,
                errno: e.into(),
            },
        ),
    }
}

fn cstrings<'a>(items: impl Iterator<Item = &'a str>) -> Result<Vec<CString>, SandboxError> {
    items
        .map(|s| CString::new(s).map_err(|_| SandboxError::Nul(s.to_string())))
        .collect()
}

/// The user's terminal joined to the sandbox's (`-t`): raw mode while attached (restored on
/// drop), copies in both directions done by the worker's poll loop.
struct Terminal {
    master: OwnedFd,
    saved: Option<rustix::termios::Termios>,
}

impl Terminal {
    fn attach(master: OwnedFd) -> Terminal {
        let stdin = std::io::stdin();
        let saved = rustix::termios::tcgetattr(&stdin).ok();
        if let Some(t) = &saved {
            let mut raw = t.clone();
            raw.make_raw();
            let _ = rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &raw);
        }
        let t = Terminal { master, saved };
        t.resize();
        t
    }

    /// The sandbox's terminal gets the user's window size.
    fn resize(&self) {
        if let Ok(ws) = rustix::termios::tcgetwinsize(std::io::stdin()) {
            let _ = rustix::termios::tcsetwinsize(&self.master, ws);
        }
    }

    /// Copies what the user typed; false once stdin is closed.
    fn copy_in(&self) -> bool {
        let mut buf = [0u8; 4096];
        match rustix::io::read(std::io::stdin(), &mut buf) {
            Ok(0) | Err(_) => false,
            Ok(n) => rustix::io::write(&self.master, &buf[..n]).is_ok(),
        }
    }

    /// Copies what the sandbox wrote; false once its side is closed (EIO).
    fn copy_out(&self) -> bool {
        let mut buf = [0u8; 4096];
        match rustix::io::read(&self.master, &mut buf) {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                let mut out = std::io::stdout().lock();
                out.write_all(&buf[..n]).is_ok() && out.flush().is_ok()
            }
        }
    }

    /// Copies what is still buffered once the command is gone.
    fn drain(&self) {
        loop {
            let mut fds = [PollFd::new(self.master.as_fd(), PollFlags::POLLIN)];
            if !matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0) || !self.copy_out() {
                return;
            }
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            let _ = rustix::termios::tcsetattr(
                std::io::stdin(),
                rustix::termios::OptionalActions::Now,
                t,
            );
        }
    }
}
