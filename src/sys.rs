//! The only `unsafe` in the crate (`#![deny(unsafe_code)]` everywhere else): fork, `_exit`,
//! descriptor passing, signal dispositions, a `pre_exec` hook, and the few system calls neither
//! nix nor rustix wraps (interface flags, `close_range`, `mount_setattr`). Each block says why
//! it is sound. Terminals go through rustix's safe `pty` and `termios` calls instead.

#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, RawFd};

use nix::unistd::ForkResult;

/// Why [`fork_single_threaded`] refused to fork.
#[derive(Debug, thiserror::Error)]
pub enum ForkError {
    /// Another thread exists: forking now could leave the child holding a lock that thread had.
    #[error("cannot fork: this process has {0} threads, and forking is only sound with one")]
    Threads(usize),
    /// The thread count could not be read.
    #[error("cannot fork: cannot count this process's threads in /proc/self/task")]
    Count(#[source] std::io::Error),
    /// fork(2) failed.
    #[error("cannot fork")]
    Fork(#[source] nix::Error),
}

/// The number of threads of this process.
pub fn thread_count() -> std::io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/task")?.count())
}

/// Forks, after checking that this process has a single thread (the sandbox worker, the
/// sandbox's init, the rootless re-exec). With one thread no lock can be held by a thread that
/// does not exist in the child, so the child may allocate and use the standard library until it
/// execs or exits. A process with more threads gets [`ForkError::Threads`], never a fork.
pub fn fork_single_threaded() -> Result<ForkResult, ForkError> {
    // A thread that was just joined (a layer import, a transfer runtime shut down) can still
    // be counted for a moment while the kernel finishes its exit: wait for it, briefly.
    let mut threads = thread_count().map_err(ForkError::Count)?;
    for _ in 0..200 {
        if threads == 1 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
        threads = thread_count().map_err(ForkError::Count)?;
    }
    if threads != 1 {
        return Err(ForkError::Threads(threads));
    }
    // SAFETY: the process has exactly one thread (checked just above, and only this thread
    // could start another), which is the precondition fork(2) has in a Rust program.
    unsafe { nix::unistd::fork() }.map_err(ForkError::Fork)
}

/// Ends a forked child at once, without running the parent's atexit handlers or destructors.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` has no preconditions; it never returns.
    unsafe { libc::_exit(code) }
}

/// Brings the loopback interface up (in a new network namespace it starts down).
pub fn loopback_up() -> nix::Result<()> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socket};
    let sock = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    // SAFETY: `ifreq` is plain old data; zeroed is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS fills the flags of the valid `req` we own.
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) };
    nix::errno::Errno::result(r)?;
    // SAFETY: reading and writing the flags member of the union SIOCGIFFLAGS just filled.
    unsafe {
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    }
    // SAFETY: SIOCSIFFLAGS reads the valid `req`.
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) };
    nix::errno::Errno::result(r).map(drop)
}

/// Receives one descriptor sent with SCM_RIGHTS; None when the peer closed without sending.
pub fn recv_fd(sock: &impl AsRawFd) -> Option<std::os::fd::OwnedFd> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    use std::os::fd::FromRawFd;
    let mut byte = [0u8; 1];
    let mut iov = [std::io::IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!(RawFd);
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .ok()?;
    for c in msg.cmsgs().ok()? {
        if let ControlMessageOwned::ScmRights(fds) = c
            && let Some(&fd) = fds.first()
        {
            // SAFETY: SCM_RIGHTS installed this descriptor in our table just now; we own it.
            return Some(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) });
        }
    }
    None
}

/// Sends one descriptor with SCM_RIGHTS.
pub fn send_fd(sock: &impl AsRawFd, fd: &impl AsRawFd) -> nix::Result<()> {
    use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
    let fds = [fd.as_raw_fd()];
    let iov = [std::io::IoSlice::new(b"t")];
    sendmsg::<()>(
        sock.as_raw_fd(),
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map(drop)
}

/// Ignores a signal (SIG_IGN).
pub fn ignore_signal(sig: nix::sys::signal::Signal) {
    // SAFETY: SIG_IGN installs no handler code, so no async-signal-safety concern arises.
    unsafe {
        let _ = nix::sys::signal::signal(sig, nix::sys::signal::SigHandler::SigIgn);
    }
}

/// Marks every descriptor from 3 up close-on-exec (close_range with CLOSE_RANGE_CLOEXEC), so
/// nothing inherited by emubuild leaks into the command.
pub fn close_inherited_fds() {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: close_range takes integers only; marking descriptors close-on-exec cannot
    // invalidate memory.
    let r = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, CLOSE_RANGE_CLOEXEC) };
    if r != 0 {
        // Older kernels: walk /proc/self/fd.
        if let Ok(rd) = std::fs::read_dir("/proc/self/fd") {
            let fds: Vec<i32> = rd
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .filter(|fd| *fd > 2)
                .collect();
            for fd in fds {
                // SAFETY: setting FD_CLOEXEC on a descriptor number; failure is harmless.
                unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
            }
        }
    }
}

/// Makes a child started with `cmd` unblock every signal and receive SIGTERM if this process
/// dies, so per-platform runs never outlive the `emubuild run` that started them.
pub fn tie_to_parent(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs between fork and exec and only makes async-signal-safe calls
    // (sigprocmask, prctl, getppid, kill); it allocates nothing.
    unsafe {
        cmd.pre_exec(|| {
            let _ = nix::sys::signal::sigprocmask(
                nix::sys::signal::SigmaskHow::SIG_SETMASK,
                Some(&nix::sys::signal::SigSet::empty()),
                None,
            );
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)
                .map_err(std::io::Error::from)?;
            Ok(())
        });
    }
}

/// Makes the mount at `fd` and every mount below it read-only, nosuid, nodev and noexec
/// (mount_setattr with AT_RECURSIVE; a plain remount would leave submounts such as
/// `/sys/fs/cgroup` writable).
pub fn make_readonly_recursive(fd: &impl AsRawFd) -> std::io::Result<()> {
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    const MOUNT_ATTR_RDONLY: u64 = 0x1;
    const MOUNT_ATTR_NOSUID: u64 = 0x2;
    const MOUNT_ATTR_NODEV: u64 = 0x4;
    const MOUNT_ATTR_NOEXEC: u64 = 0x8;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: `attr` is a live, correctly laid out struct mount_attr whose size is passed; the
    // path is a NUL-terminated empty string and the descriptor stays open for the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            (libc::AT_EMPTY_PATH | libc::AT_RECURSIVE) as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Makes `cmd`'s child, between fork and exec, enter a user and mount namespace of its own
/// (root there, mapped to our IDs), mount a private binfmt_misc instance over
/// `/proc/sys/fs/binfmt_misc` (Linux 6.7+), and register `line` in it: the program it then
/// executes runs through that handler alone, and no other process sees it.
pub fn in_private_binfmt(cmd: &mut std::process::Command, line: &str) -> std::io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::process::CommandExt;
    let invalid = |e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e);
    let uid_map = format!("0 {} 1", nix::unistd::geteuid()).into_bytes();
    let gid_map = format!("0 {} 1", nix::unistd::getegid()).into_bytes();
    let line = line.as_bytes().to_vec();
    let mount_point = CString::new("/proc/sys/fs/binfmt_misc").map_err(invalid)?;
    let register = CString::new("/proc/sys/fs/binfmt_misc/register").map_err(invalid)?;
    let fstype = CString::new("binfmt_misc").map_err(invalid)?;
    let write_file = |path: &std::ffi::CStr, data: &[u8]| -> std::io::Result<()> {
        let fd = rustix::fs::open(path, rustix::fs::OFlags::WRONLY, rustix::fs::Mode::empty())?;
        rustix::io::write(&fd, data)?;
        Ok(())
    };
    // SAFETY: the closure runs in the child between fork and exec. It allocates nothing (every
    // string was built above) and makes only system calls: unshare, open, write, mount.
    unsafe {
        cmd.pre_exec(move || {
            nix::sched::unshare(
                nix::sched::CloneFlags::CLONE_NEWUSER | nix::sched::CloneFlags::CLONE_NEWNS,
            )?;
            write_file(c"/proc/self/setgroups", b"deny")?;
            write_file(c"/proc/self/uid_map", &uid_map)?;
            write_file(c"/proc/self/gid_map", &gid_map)?;
            nix::mount::mount(
                Some(fstype.as_c_str()),
                mount_point.as_c_str(),
                Some(fstype.as_c_str()),
                nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
                None::<&std::ffi::CStr>,
            )?;
            write_file(&register, &line)?;
            Ok(())
        });
    }
    Ok(())
}
