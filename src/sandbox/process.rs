//! The sandbox's processes. The worker (this process) unshares PID, UTS, IPC (and, with
//! `--network none`, network) namespaces and forks the init, PID 1 of the new PID namespace. The
//! init takes a mount namespace of its own, builds the root (`mounts`), pivots into it and forks
//! the command; it forwards signals to the command, reaps orphans, and exits with the command's
//! status (128+N for signal N), which the worker passes on. Nothing is re-executed from
//! `/proc/self/exe`, and the init is not dumpable, so the command cannot reach the host's
//! binary through `/proc/1/exe`.
//!
//! The init reports to the worker over a pipe, one line each: `M path` (a mount point it had to
//! create), `W text` (a warning), `E text` (a fatal error before the command ran).

use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid};

use super::spec::{Network, RunSpec};
use super::sys;

/// Exit status when the sandbox itself could not be set up (as `docker run`).
pub const SETUP_FAILED: i32 = 125;
/// The command exists but cannot be executed.
pub const NOT_EXECUTABLE: i32 = 126;
/// The command was not found.
pub const NOT_FOUND: i32 = 127;

/// How a run ended.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The command's exit status (0-255; 128+N after signal N).
    pub code: i32,
    /// Mount points created in the root (relative paths), to leave out of the step.
    pub created: Vec<PathBuf>,
    /// Warnings from the init.
    pub warnings: Vec<String>,
    /// Why the command never ran, if it did not.
    pub error: Option<String>,
}

/// Errors before the sandbox could start.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// A system call in the worker failed.
    #[error(
        "cannot start the sandbox: {what}: {source}; emubuild needs root (or, rootless, user namespaces)"
    )]
    Sys {
        /// What was being done.
        what: &'static str,
        /// The cause.
        #[source]
        source: nix::Error,
    },
    /// An argument cannot be passed to exec (a NUL byte).
    #[error("argument or environment value contains a NUL byte: {0:?}")]
    Nul(String),
}

fn sys_err(what: &'static str) -> impl FnOnce(nix::Error) -> SandboxError {
    move |source| SandboxError::Sys { what, source }
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

/// Runs the command. Must be called from a single-threaded process.
pub fn run(spec: &RunSpec) -> Result<Outcome, SandboxError> {
    let argv = cstrings(spec.argv.iter().map(String::as_str))?;
    let env: Vec<String> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let _ = cstrings(env.iter().map(String::as_str))?;

    let (report_r, report_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(sys_err("create a pipe"))?;
    // With a terminal, the init opens it in the sandbox's own devpts and sends the master here.
    let console = if spec.tty {
        Some(
            std::os::unix::net::UnixStream::pair().map_err(|e| SandboxError::Sys {
                what: "create a socket pair",
                source: nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
            })?,
        )
    } else {
        None
    };
    // Threads cannot be created once the PID namespace is unshared: the terminal relay starts
    // first and waits for the master (its threads stay in the worker; the forked init has none).
    let relay = console.as_ref().map(|_| TtyRelay::start());

    let mask = forwarded();
    let mut old_mask = SigSet::empty();
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), Some(&mut old_mask))
        .map_err(sys_err("block signals"))?;

    let mut flags = CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC;
    if spec.network == Network::None {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    nix::sched::unshare(flags).map_err(sys_err("create namespaces"))?;

    match sys::fork_single_threaded().map_err(sys_err("fork"))? {
        ForkResult::Child => {
            drop(report_r);
            let sock = console.map(|(_, theirs)| theirs);
            init(spec, &argv, &env, report_w, sock)
        }
        ForkResult::Parent { child } => {
            drop(report_w);
            let master = match (console, &relay) {
                (Some((ours, theirs)), Some(relay)) => {
                    drop(theirs);
                    let m = sys::recv_fd(&ours);
                    if let Some(m) = &m {
                        relay.attach(m);
                    }
                    m
                }
                _ => None,
            };
            let code = supervise(child, &mask, master.as_ref());
            drop(relay);
            let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old_mask), None);
            let mut outcome = Outcome {
                code,
                ..Outcome::default()
            };
            let mut text = String::new();
            let _ = File::from(report_r).read_to_string(&mut text);
            for line in text.lines() {
                match line.split_at_checked(2) {
                    Some(("M ", p)) => outcome.created.push(PathBuf::from(p)),
                    Some(("W ", w)) => outcome.warnings.push(w.to_string()),
                    Some(("E ", e)) => outcome.error = Some(e.to_string()),
                    _ => {}
                }
            }
            Ok(outcome)
        }
    }
}

/// The worker's loop: forward signals to the init until it exits; return its status.
fn supervise(init: Pid, mask: &SigSet, master: Option<&OwnedFd>) -> i32 {
    loop {
        let sig = match mask.wait() {
            Ok(s) => s,
            Err(_) => continue,
        };
        match sig {
            Signal::SIGCHLD => loop {
                match waitpid(init, Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::Exited(_, c)) => return c,
                    Ok(WaitStatus::Signaled(_, s, _)) => return 128 + s as i32,
                    Ok(WaitStatus::StillAlive) => break,
                    Ok(_) => continue,
                    Err(nix::Error::EINTR) => continue,
                    Err(_) => return SETUP_FAILED,
                }
            },
            Signal::SIGWINCH => {
                if let (Some(m), Some(ws)) = (master, sys::window_size(&std::io::stdin())) {
                    sys::set_window_size(m, &ws);
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
    env: &[String],
    report: OwnedFd,
    console: Option<std::os::unix::net::UnixStream>,
) -> ! {
    let mut report = File::from(report);
    let fail = |report: &mut File, msg: String| -> ! {
        let _ = writeln!(report, "E {}", msg.replace('\n', " "));
        sys::exit_now(SETUP_FAILED)
    };
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    let _ = nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0));
    if let Err(e) = nix::sched::unshare(CloneFlags::CLONE_NEWNS) {
        fail(&mut report, format!("cannot create a mount namespace: {e}"));
    }
    let prepared = match super::mounts::setup(spec) {
        Ok(p) => p,
        Err(e) => fail(&mut report, e),
    };
    for c in &prepared.created {
        let _ = writeln!(
            report,
            "M {}",
            String::from_utf8_lossy(c.as_os_str().as_bytes())
        );
    }
    for w in &prepared.warnings {
        let _ = writeln!(report, "W {w}");
    }
    let _ = nix::sys::prctl::set_dumpable(false);
    super::caps::drop_extra_effective();
    let slave = match console {
        None => None,
        Some(sock) => match sys::open_pty_pair() {
            Ok((master, slave)) => {
                if let Err(e) = sys::send_fd(&sock, &master) {
                    fail(&mut report, format!("cannot pass the terminal: {e}"));
                }
                Some(OwnedFd::from(slave))
            }
            Err(e) => fail(
                &mut report,
                format!("cannot open a terminal in the sandbox: {e}"),
            ),
        },
    };

    let command = match sys::fork_single_threaded() {
        Ok(ForkResult::Child) => exec_command(spec, argv, env, &mut report, slave),
        Ok(ForkResult::Parent { child }) => child,
        Err(e) => fail(&mut report, format!("cannot fork the command: {e}")),
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

/// The command's process: terminal, user, capabilities, then exec. Never returns.
fn exec_command(
    spec: &RunSpec,
    argv: &[CString],
    env: &[String],
    report: &mut File,
    slave: Option<OwnedFd>,
) -> ! {
    let fail = |report: &mut File, code: i32, msg: String| -> ! {
        let _ = writeln!(report, "E {}", msg.replace('\n', " "));
        sys::exit_now(code)
    };
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    // A session of its own, always: without `-t` the command must not share the user's
    // terminal session (no TIOCSTI into the user's shell, no SIGTTIN on reads).
    let _ = nix::unistd::setsid();
    if let Some(slave) = &slave {
        for fd in 0..3 {
            if let Err(e) = sys::dup2(slave.as_raw_fd(), fd) {
                fail(
                    report,
                    SETUP_FAILED,
                    format!("cannot attach the terminal: {e}"),
                );
            }
        }
        if let Err(e) = sys::set_controlling_tty(&std::io::stdin().as_fd()) {
            fail(
                report,
                SETUP_FAILED,
                format!("cannot set the controlling terminal: {e}"),
            );
        }
    } else if !spec.stdin
        && let Ok(null) = File::open("/dev/null")
    {
        let _ = sys::dup2(null.as_raw_fd(), 0);
    }
    drop(slave);

    let mut env: Vec<String> = env.to_vec();
    let (mut uid, mut gid, mut groups) = (0u32, 0u32, vec![0u32]);
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let group = std::fs::read_to_string("/etc/group").unwrap_or_default();
    let user_spec = spec.user.clone().unwrap_or_else(|| "0:0".to_string());
    match super::user::resolve(&user_spec, &passwd, &group) {
        Ok(u) => {
            uid = u.uid;
            gid = u.gid;
            groups = u.groups;
            if !env.iter().any(|e| e.starts_with("HOME=")) {
                env.push(format!(
                    "HOME={}",
                    u.home
                        .unwrap_or_else(|| if uid == 0 { "/root".into() } else { "/".into() })
                ));
            }
        }
        Err(e) if spec.user.is_some() => fail(report, SETUP_FAILED, e),
        Err(_) => {
            if !env.iter().any(|e| e.starts_with("HOME=")) {
                env.push("HOME=/root".into());
            }
        }
    }
    if let Err(e) = std::env::set_current_dir(&spec.cwd) {
        fail(
            report,
            SETUP_FAILED,
            format!("cannot enter the working directory {}: {e}", spec.cwd),
        );
    }
    if let Err(e) = super::caps::restrict_to_default() {
        fail(
            report,
            SETUP_FAILED,
            format!("cannot restrict capabilities: {e}"),
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
            SETUP_FAILED,
            format!("cannot become user {user_spec}: {e}{hint}"),
        );
    }
    // Nothing emubuild inherited beyond stdio reaches the command.
    sys::close_inherited_fds();
    let envp: Vec<CString> = env
        .iter()
        .filter_map(|e| CString::new(e.as_str()).ok())
        .collect();
    let program = &spec.argv[0];
    let candidates: Vec<PathBuf> = if program.contains('/') {
        vec![PathBuf::from(program)]
    } else {
        let path = env
            .iter()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
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
        match nix::unistd::execve(&cpath, argv, &envp) {
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
    match last {
        nix::Error::ENOENT => fail(
            report,
            NOT_FOUND,
            format!("`{program}`: command not found in the image"),
        ),
        nix::Error::ENOEXEC => {
            // Say which handler would run it, as preflight does.
            let target = last_path
                .and_then(|p| crate::elf::read_headers(p).ok())
                .and_then(|h| h.target);
            let hint = match target {
                Some(t) => format!(
                    "it is a {t} program and no enabled binfmt_misc handler runs it; `binfmtctl install {t}` registers one"
                ),
                None => {
                    "no binfmt_misc handler runs it (not a program this host or any handler knows)"
                        .into()
                }
            };
            fail(
                report,
                NOT_EXECUTABLE,
                format!("`{program}`: exec format error: {hint}"),
            )
        }
        e => fail(
            report,
            NOT_EXECUTABLE,
            format!("`{program}`: cannot execute: {e}"),
        ),
    }
}

fn cstrings<'a>(items: impl Iterator<Item = &'a str>) -> Result<Vec<CString>, SandboxError> {
    items
        .map(|s| CString::new(s).map_err(|_| SandboxError::Nul(s.to_string())))
        .collect()
}

/// Copies between the user's terminal and the sandbox's, in raw mode, while alive. Its threads
/// start before the PID namespace exists and wait for the terminal's master.
struct TtyRelay {
    saved: Option<nix::sys::termios::Termios>,
    to_sandbox: std::sync::mpsc::Sender<OwnedFd>,
    from_sandbox: std::sync::mpsc::Sender<OwnedFd>,
}

impl TtyRelay {
    fn start() -> TtyRelay {
        let (to_tx, to_rx) = std::sync::mpsc::channel::<OwnedFd>();
        let (from_tx, from_rx) = std::sync::mpsc::channel::<OwnedFd>();
        std::thread::spawn(move || {
            let Ok(fd) = to_rx.recv() else { return };
            let mut out = File::from(fd);
            let mut buf = [0u8; 4096];
            let mut input = std::io::stdin().lock();
            while let Ok(n) = input.read(&mut buf) {
                if n == 0 || out.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        });
        std::thread::spawn(move || {
            let Ok(fd) = from_rx.recv() else { return };
            let mut input = File::from(fd);
            let mut buf = [0u8; 4096];
            let mut out = std::io::stdout();
            while let Ok(n) = input.read(&mut buf) {
                if n == 0 || out.write_all(&buf[..n]).is_err() {
                    break;
                }
                let _ = out.flush();
            }
        });
        TtyRelay {
            saved: None,
            to_sandbox: to_tx,
            from_sandbox: from_tx,
        }
    }

    /// Hands the master to the relay threads and puts the user's terminal in raw mode.
    fn attach(&self, master: &OwnedFd) {
        let stdin = std::io::stdin();
        if let Ok(t) = nix::sys::termios::tcgetattr(&stdin) {
            let mut raw = t.clone();
            nix::sys::termios::cfmakeraw(&mut raw);
            let _ = nix::sys::termios::tcsetattr(&stdin, nix::sys::termios::SetArg::TCSANOW, &raw);
            if let Some(ws) = sys::window_size(&stdin) {
                sys::set_window_size(master, &ws);
            }
            // Restored on drop; kept in a cell-free way: the relay lives until the run ends.
            SAVED_TERMIOS.with(|s| *s.borrow_mut() = Some(t));
        }
        if let (Ok(a), Ok(b)) = (master.try_clone(), master.try_clone()) {
            let _ = self.to_sandbox.send(a);
            let _ = self.from_sandbox.send(b);
        }
    }
}

thread_local! {
    static SAVED_TERMIOS: std::cell::RefCell<Option<nix::sys::termios::Termios>> = const { std::cell::RefCell::new(None) };
}

impl Drop for TtyRelay {
    fn drop(&mut self) {
        let saved = self
            .saved
            .take()
            .or_else(|| SAVED_TERMIOS.with(|s| s.borrow_mut().take()));
        if let Some(t) = saved {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin(),
                nix::sys::termios::SetArg::TCSANOW,
                &t,
            );
        }
    }
}
