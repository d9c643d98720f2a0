//! Rootless operation: a user namespace for this process (the user's subordinate ID ranges
//! through newuidmap/newgidmap when configured, else the user's own ID as root, with a
//! warning), and inside it a private binfmt_misc instance (Linux 6.7+) holding F-flag handlers
//! that nobody else sees. The host's handlers are never touched.
//!
//! `enter` forks; the child unshares a user and a mount namespace, the parent writes its ID
//! maps, and the child re-executes this program inside (marked by `EMUKIT_USERNS=1`) as root of
//! the namespace. The re-executed program never runs inside a container's PID namespace, so
//! the container cannot reach it through `/proc/<pid>/exe`.

use std::ffi::CString;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::arch::Target;
use crate::binfmt::Kernel;
use crate::binfmt::{BinfmtFs, Flags, Registration};
use crate::emulator::resolve::Resolver;
use crate::warning::Warning;

/// Set (to `1`) in the environment of the re-executed program.
pub const ENV: &str = "EMUKIT_USERNS";
/// The device number of the host's binfmt_misc mount, recorded before entering the namespace.
pub const HOST_DEV_ENV: &str = "EMUKIT_HOST_BINFMT_DEV";

/// Errors of rootless operation.
#[derive(Debug, thiserror::Error)]
pub enum RootlessError {
    /// User namespaces are not available.
    #[error("cannot create a user namespace ({reason}); {hint}")]
    NoUserNamespace {
        /// What the kernel said.
        reason: String,
        /// What to do.
        hint: String,
    },
    /// The ID maps could not be written.
    #[error("cannot write the user namespace's `{file}`")]
    Map {
        /// `uid_map`, `gid_map` or `setgroups`.
        file: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Re-executing this program in the namespace could not be prepared.
    #[error("cannot re-execute emukit in a user namespace: cannot {what}")]
    Reexec {
        /// What failed.
        what: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Forking was refused or failed.
    #[error(transparent)]
    Fork(#[from] crate::sys::ForkError),
    /// A private binfmt_misc was asked for outside our user namespace.
    #[error(
        "a private binfmt_misc needs emukit's own user namespace first (in the host's, a mount would be the host's instance)"
    )]
    NotInside,
    /// No private binfmt_misc.
    #[error(
        "this kernel ({kernel}) did not give the user namespace its own binfmt_misc ({reason}). Run as root (`sudo binfmtctl install TARGET`, then `sudo emubuild ...`), or use a kernel that allows it (Linux 6.7+)"
    )]
    NoPrivateBinfmt {
        /// `uname -r`.
        kernel: String,
        /// What mount said.
        reason: String,
    },
    /// No emulator for a target.
    #[error("cannot register a private handler for {target}: {reason}")]
    NoEmulator {
        /// The target.
        target: String,
        /// Why.
        reason: String,
    },
    /// Registering a handler failed.
    #[error("cannot register a private handler for {target}")]
    Register {
        /// The target.
        target: String,
        /// The cause.
        #[source]
        source: crate::binfmt::fs::FsError,
    },
}

/// What the child tells the parent once it tried to unshare (one JSON line).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
enum ChildReport {
    /// The namespaces exist: map the IDs, then say go.
    Ready,
    /// unshare(2) failed with this errno.
    Unshare {
        /// The errno.
        errno: i32,
    },
}

/// This process's environment for exec, without our namespace markers, plus `extra`.
pub fn environment(extra: &[(&str, String)]) -> Vec<CString> {
    let pair = |k: &[u8], v: &[u8]| {
        let mut kv = k.to_vec();
        kv.push(b'=');
        kv.extend_from_slice(v);
        CString::new(kv).ok()
    };
    std::env::vars_os()
        .filter(|(k, _)| k != ENV && k != HOST_DEV_ENV)
        .filter_map(|(k, v)| pair(k.as_encoded_bytes(), v.as_encoded_bytes()))
        .chain(
            extra
                .iter()
                .filter_map(|(k, v)| pair(k.as_bytes(), v.as_bytes())),
        )
        .collect()
}

/// The device number of the host's binfmt_misc mount, as recorded before entering our user
/// namespace (None outside it, or when the host had none mounted).
pub fn host_binfmt_dev() -> Option<u64> {
    std::env::var(HOST_DEV_ENV).ok()?.parse().ok()
}

/// Are we the re-executed program inside the user namespace?
pub fn inside() -> bool {
    std::env::var_os(ENV).is_some_and(|v| v == "1")
}

/// A subordinate ID range from /etc/subuid or /etc/subgid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubRange {
    /// First ID.
    pub start: u64,
    /// How many.
    pub count: u64,
}

/// The first range for `user` (name or number) in a subuid/subgid file's text.
pub fn sub_range(text: &str, name: &str, id: u32) -> Option<SubRange> {
    text.lines().find_map(|l| {
        let mut f = l.trim().split(':');
        let (who, start, count) = (f.next()?, f.next()?, f.next()?);
        if who != name && who != id.to_string() {
            return None;
        }
        Some(SubRange {
            start: start.parse().ok()?,
            count: count.parse().ok()?,
        })
    })
}

fn why_no_userns(e: nix::Error) -> RootlessError {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .map(|s| s.trim().to_string())
    };
    let hint = if read("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        "unprivileged user namespaces are disabled (sysctl kernel.unprivileged_userns_clone=0); enable them (`sysctl -w kernel.unprivileged_userns_clone=1`) or run as root".to_string()
    } else if read("/proc/sys/user/max_user_namespaces").as_deref() == Some("0") {
        "user namespaces are disabled (sysctl user.max_user_namespaces=0); raise it (`sysctl -w user.max_user_namespaces=15000`) or run as root".to_string()
    } else if read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").as_deref() == Some("1")
    {
        "AppArmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns=1); allow them for this program or run as root".to_string()
    } else {
        "run as root, or enable unprivileged user namespaces".to_string()
    };
    RootlessError::NoUserNamespace {
        reason: e.to_string(),
        hint,
    }
}

/// Re-executes this program inside a new user and mount namespace, as root there, and exits
/// with its status. Returns only on failure (nothing has changed then). Must be called while
/// the process is single-threaded.
pub fn enter(warn: &dyn Fn(&Warning)) -> Result<std::convert::Infallible, RootlessError> {
    use nix::sched::CloneFlags;
    use nix::unistd::ForkResult;
    let uid = nix::unistd::getuid().as_raw();
    let gid = nix::unistd::getgid().as_raw();
    let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_default();
    let subuid = std::fs::read_to_string("/etc/subuid")
        .ok()
        .and_then(|t| sub_range(&t, &user, uid));
    let subgid = std::fs::read_to_string("/etc/subgid")
        .ok()
        .and_then(|t| sub_range(&t, &user, gid));
    let helpers =
        Path::new("/usr/bin/newuidmap").exists() && Path::new("/usr/bin/newgidmap").exists();
    let ranges = match (subuid, subgid, helpers) {
        (Some(u), Some(g), true) if uid != 0 => Some((u, g)),
        _ => None,
    };
    // Test now, in this process's child, that a user namespace can be made at all: a failure
    // is reported before anything else happens.
    let (to_parent_r, to_parent_w) =
        std::os::unix::net::UnixStream::pair().map_err(|source| RootlessError::Reexec {
            what: "create a socket pair",
            source,
        })?;
    let host_dev = {
        use std::os::unix::fs::MetadataExt;
        let fs = BinfmtFs::new(crate::binfmt::fs::DEFAULT_ROOT);
        fs.is_mounted()
            .then(|| std::fs::metadata(fs.root()).map(|m| m.dev()).ok())
            .flatten()
    };
    let exe = std::fs::read_link("/proc/self/exe").map_err(|source| RootlessError::Reexec {
        what: "find this program (/proc/self/exe)",
        source,
    })?;
    let args: Vec<CString> = std::env::args_os()
        .filter_map(|a| CString::new(a.as_bytes()).ok())
        .collect();
    let exe_c = CString::new(exe.as_os_str().as_bytes()).map_err(|e| RootlessError::Reexec {
        what: "pass this program's path to exec",
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
    })?;
    // The program's environment inside: ours, plus the markers of the namespace (passed to
    // exec, so the child never changes its own environment).
    let mut markers = vec![(ENV, "1".to_string())];
    if let Some(dev) = host_dev {
        markers.push((HOST_DEV_ENV, dev.to_string()));
    }
    let envp = environment(&markers);
    match crate::sys::fork_single_threaded()? {
        ForkResult::Child => {
            drop(to_parent_r);
            let mut sock = to_parent_w;
            let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM);
            let unshared = nix::sched::unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS);
            let report = match unshared {
                Ok(()) => ChildReport::Ready,
                Err(e) => ChildReport::Unshare { errno: e as i32 },
            };
            let mut line = serde_json::to_vec(&report).unwrap_or_default();
            line.push(b'\n');
            let _ = sock.write_all(&line);
            if unshared.is_err() {
                crate::sys::exit_now(125);
            }
            let mut go = [0u8; 1];
            if sock.read_exact(&mut go).is_err() || go[0] != b'G' {
                crate::sys::exit_now(125);
            }
            let _ = nix::unistd::execve(&exe_c, &args, &envp);
            crate::sys::exit_now(125)
        }
        ForkResult::Parent { child } => {
            drop(to_parent_w);
            let mut sock = to_parent_r;
            let mut line = Vec::new();
            let mut byte = [0u8; 1];
            while line.len() < 4096 && sock.read_exact(&mut byte).is_ok() && byte[0] != b'\n' {
                line.push(byte[0]);
            }
            match serde_json::from_slice::<ChildReport>(&line) {
                Ok(ChildReport::Ready) => {}
                other => {
                    let _ = nix::sys::wait::waitpid(child, None);
                    let errno = match other {
                        Ok(ChildReport::Unshare { errno }) => nix::Error::from_raw(errno),
                        _ => nix::Error::EPERM,
                    };
                    return Err(why_no_userns(errno));
                }
            }
            let pid = child.as_raw().to_string();
            let mapped = match ranges {
                Some((u, g)) => {
                    let run = |cmd: &str, id: u32, r: SubRange| {
                        std::process::Command::new(cmd)
                            .args([
                                pid.as_str(),
                                "0",
                                &id.to_string(),
                                "1",
                                "1",
                                &r.start.to_string(),
                                &r.count.min(u64::from(u32::MAX - 1)).to_string(),
                            ])
                            .status()
                            .map(|s| s.success())
                            .unwrap_or(false)
                    };
                    run("/usr/bin/newuidmap", uid, u) && run("/usr/bin/newgidmap", gid, g)
                }
                None => false,
            };
            if !mapped {
                if ranges.is_some() {
                    warn(&Warning::IdMapRefused);
                }
                warn(&Warning::SingleIdMap { user: user.clone() });
                let w = |file: &'static str, s: String| {
                    std::fs::write(format!("/proc/{pid}/{file}"), s)
                        .map_err(|source| RootlessError::Map { file, source })
                };
                if let Err(e) = w("setgroups", "deny".into())
                    .and_then(|_| w("uid_map", format!("0 {uid} 1")))
                    .and_then(|_| w("gid_map", format!("0 {gid} 1")))
                {
                    let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
                    let _ = nix::sys::wait::waitpid(child, None);
                    return Err(e);
                }
            }
            let _ = sock.write_all(b"G");
            // Terminal signals reach the child directly (same process group); the parent only waits.
            for s in [
                nix::sys::signal::Signal::SIGINT,
                nix::sys::signal::Signal::SIGQUIT,
            ] {
                crate::sys::ignore_signal(s);
            }
            let code = loop {
                match nix::sys::wait::waitpid(child, None) {
                    Ok(nix::sys::wait::WaitStatus::Exited(_, c)) => break c,
                    Ok(nix::sys::wait::WaitStatus::Signaled(_, s, _)) => break 128 + s as i32,
                    Err(nix::Error::EINTR) | Ok(_) => continue,
                    Err(_) => break 125,
                }
            };
            std::process::exit(code)
        }
    }
}

/// Mounts this user namespace's own binfmt_misc instance at `root` (in our mount namespace).
/// Always a fresh mount: whatever was visible there before may be the host's instance, which
/// must never receive our handlers.
pub fn mount_private_binfmt(root: &Path) -> Result<BinfmtFs, RootlessError> {
    // The marker alone is not trusted: in the host's user namespace a mount here would be the
    // host's instance, seen by every process.
    if !inside() || crate::binfmt::fs::in_initial_user_namespace() {
        return Err(RootlessError::NotInside);
    }
    nix::mount::mount(
        Some("binfmt_misc"),
        root,
        Some("binfmt_misc"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .map_err(|e| {
        let kernel = kernel_release();
        let old = kernel_older_than(&kernel, (6, 7));
        RootlessError::NoPrivateBinfmt {
            reason: if old {
                format!("{e}; that needs Linux 6.7 or later")
            } else {
                format!("{e}, although this kernel is new enough; a security module or a container runtime may forbid it")
            },
            kernel,
        }
    })?;
    let fs = BinfmtFs::new(root);
    // The host's instance keeps its device number; a private one has its own.
    if let (Some(host), Ok(m)) = (host_binfmt_dev(), std::fs::metadata(root)) {
        use std::os::unix::fs::MetadataExt;
        if m.dev() == host {
            return Err(RootlessError::NoPrivateBinfmt {
                kernel: kernel_release(),
                reason: "the mount shows the host's instance".into(),
            });
        }
    }
    Ok(fs)
}

/// This kernel's release (`uname -r`), empty when unknown.
pub fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Is the kernel release (`6.1.0-28-amd64`) older than `major.minor`? Unknown counts as older.
pub fn kernel_older_than(release: &str, (major, minor): (u32, u32)) -> bool {
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    match (parts.next(), parts.next()) {
        (Some(a), Some(b)) => (a, b) < (major, minor),
        _ => true,
    }
}

/// Registers P and F handlers for `targets` in the private instance, emulators from `resolver`
/// (installed, cached, or fetched and verified). Native targets are skipped.
pub fn register_private(
    fs: &BinfmtFs,
    targets: &[&Target],
    resolver: &Resolver,
    warn: &dyn Fn(&Warning),
) -> Result<(), RootlessError> {
    let foreign: Vec<&Target> = targets
        .iter()
        .copied()
        .filter(|t| !fs.host().runs_natively(t))
        .collect();
    if foreign.is_empty() {
        return Ok(());
    }
    let (emulators, warnings) = resolver.resolve(&foreign);
    for w in &warnings {
        warn(w);
    }
    for t in foreign {
        if fs.entry(&t.handler_name()).ok().flatten().is_some() {
            continue;
        }
        let e = emulators
            .get(&t.name)
            .cloned()
            .unwrap_or_else(|| Err("no emulator".into()))
            .map_err(|reason| RootlessError::NoEmulator {
                target: t.name.clone(),
                reason,
            })?;
        let flags = Flags {
            preserve_argv0: true,
            ..Flags::fix_binary()
        };
        let reg = Registration::for_target(t, &e.path.to_string_lossy(), flags);
        tracing::info!(target = %t.name, interpreter = %reg.interpreter, flags = %reg.flags, root = %fs.root().display(), "registering a private handler");
        fs.register(&reg)
            .map_err(|source| RootlessError::Register {
                target: t.name.clone(),
                source,
            })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions() {
        assert!(kernel_older_than("6.1.0-28-amd64", (6, 7)));
        assert!(!kernel_older_than("6.7.0", (6, 7)));
        assert!(!kernel_older_than("6.12.48+deb13-cloud-amd64", (6, 7)));
        assert!(kernel_older_than("5.19.17", (6, 7)));
        assert!(kernel_older_than("garbage", (6, 7)));
    }

    #[test]
    fn subordinate_ranges() {
        let text = "alice:100000:65536\n1001:200000:1000\n";
        assert_eq!(
            sub_range(text, "alice", 1000),
            Some(SubRange {
                start: 100000,
                count: 65536
            })
        );
        assert_eq!(
            sub_range(text, "bob", 1001),
            Some(SubRange {
                start: 200000,
                count: 1000
            })
        );
        assert_eq!(sub_range(text, "carol", 1002), None);
    }
}
