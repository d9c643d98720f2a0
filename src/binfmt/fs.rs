//! The binfmt_misc file system: mounting it, listing and reading entries, registering, enabling,
//! disabling and removing them, and telling whose instance (host or user namespace) is visible.
//!
//! Every function takes the mount's root directory, so tests and `--root` can point elsewhere.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::entry::{Entry, EntryError, Registration};
use super::exec::{self, ExecError, ExecOutput};
use super::kernel::Kernel;
use crate::host::Host;

/// Where binfmt_misc lives normally.
pub const DEFAULT_ROOT: &str = "/proc/sys/fs/binfmt_misc";

/// Errors from the kernel interface.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// binfmt_misc is not mounted and could not be mounted.
    #[error(
        "binfmt_misc is not mounted at `{root}` and mounting it failed ({errno}); run as root (in a container: `docker run --privileged`), or mount it: `mount -t binfmt_misc binfmt_misc {root}`"
    )]
    Mount {
        /// The mount point.
        root: PathBuf,
        /// What mount(2) said.
        errno: nix::Error,
    },
    /// binfmt_misc is not mounted (and we were asked not to mount it).
    #[error(
        "binfmt_misc is not mounted at `{root}`; mount it with `mount -t binfmt_misc binfmt_misc {root}` or run `binfmtctl install`, which mounts it"
    )]
    NotMounted {
        /// The mount point.
        root: PathBuf,
    },
    /// Writing the register file failed.
    #[error("the kernel refused to register `{name}`: {reason}")]
    Register {
        /// The handler name.
        name: String,
        /// A sentence saying why (the errno, in words) and what to do.
        reason: String,
        /// What the kernel said.
        errno: Option<i32>,
    },
    /// Reading or writing a file under the root failed.
    #[error("cannot {action} `{path}`{hint}")]
    Io {
        /// What we were doing.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// A hint appended to the message (may be empty).
        hint: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// `--root` names a directory with something in it that is not binfmt_misc.
    #[error(
        "`{root}` is not a binfmt_misc mount and is not empty; mounting over it would hide what it holds. Point `--root` at an empty directory or at a binfmt_misc mount"
    )]
    NotEmpty {
        /// The directory.
        root: PathBuf,
    },
    /// An entry could not be parsed.
    #[error(transparent)]
    Entry(#[from] EntryError),
    /// The mount is a user namespace's private instance, invisible to the host.
    #[error(
        "binfmt_misc at `{root}` is a private instance of this user namespace (a rootless or userns-remapped container engine): handlers registered there are invisible to the host. Run the container with `--privileged` on a rootful engine, or name the mount with `--root` to use the private instance on purpose (`binfmtctl run` does that for one program)"
    )]
    PrivateInstance {
        /// The mount point.
        root: PathBuf,
    },
}

fn io_err(action: &'static str, path: &Path, source: io::Error) -> FsError {
    let hint = if matches!(source.kind(), io::ErrorKind::PermissionDenied)
        || source.raw_os_error() == Some(libc::EPERM)
    {
        "; binfmt_misc changes need root (in a container: `docker run --privileged`)".to_string()
    } else {
        String::new()
    };
    FsError::Io {
        action,
        path: path.to_path_buf(),
        hint,
        source,
    }
}

/// The error for a refused registration: what the errno means here and what to do.
pub(crate) fn register_error(reg: &Registration, line: &str, source: io::Error) -> FsError {
    let reason = match source.raw_os_error() {
        Some(libc::EEXIST) => format!("an entry named `{}` exists already", reg.name),
        Some(libc::ENOENT) => format!(
            "the interpreter `{}` does not exist (the F flag opens it now)",
            reg.interpreter
        ),
        Some(libc::EACCES) | Some(libc::EPERM) => {
            "permission denied; run as root (in a container: `docker run --privileged`)".into()
        }
        Some(libc::EINVAL) => format!("the kernel rejected the line `{line}` as invalid"),
        _ => format!("the write failed ({source})"),
    };
    FsError::Register {
        name: reg.name.clone(),
        reason,
        errno: source.raw_os_error(),
    }
}

/// Which binfmt_misc instance a mount shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Instance {
    /// The host's (initial user namespace) instance: entries affect every process on the machine.
    Host,
    /// The host's instance, seen from inside a user namespace (read-only for us).
    HostFromUserNamespace,
    /// A private instance owned by the user namespace we run in (Linux 6.7+).
    Private,
}

impl Instance {
    /// A phrase for humans.
    pub fn describe(self) -> &'static str {
        match self {
            Instance::Host => "the host's instance",
            Instance::HostFromUserNamespace => "the host's instance, seen from a user namespace",
            Instance::Private => "a private instance of this user namespace",
        }
    }
}

/// A handle on one binfmt_misc mount of this machine: the real [`Kernel`].
#[derive(Debug, Clone)]
pub struct BinfmtFs {
    root: PathBuf,
    host: &'static Host,
}

impl BinfmtFs {
    /// A handle on the mount at `root` (not checked yet).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        BinfmtFs {
            root: root.into(),
            host: Host::detect(),
        }
    }

    /// The mount point.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Is binfmt_misc mounted here (is there a `register` file)?
    pub fn is_mounted(&self) -> bool {
        self.root.join("register").exists()
    }

    /// Mounts binfmt_misc at the root unless it is mounted already. Returns true when it mounted.
    pub fn ensure_mounted(&self) -> Result<bool, FsError> {
        if self.is_mounted() {
            return Ok(false);
        }
        if !self.root.is_dir() {
            return Err(FsError::Mount {
                root: self.root.clone(),
                errno: nix::Error::ENOENT,
            });
        }
        // binfmt_misc's own place may hold nothing else; any other directory must be empty, so
        // that a mistyped `--root` never hides a directory's files under a mount.
        if self.root != Path::new(DEFAULT_ROOT)
            && fs::read_dir(&self.root).is_ok_and(|mut d| d.next().is_some())
        {
            return Err(FsError::NotEmpty {
                root: self.root.clone(),
            });
        }
        nix::mount::mount(
            Some("binfmt_misc"),
            &self.root,
            Some("binfmt_misc"),
            nix::mount::MsFlags::MS_NOSUID
                | nix::mount::MsFlags::MS_NODEV
                | nix::mount::MsFlags::MS_NOEXEC,
            None::<&str>,
        )
        .map_err(|errno| FsError::Mount {
            root: self.root.clone(),
            errno,
        })?;
        Ok(true)
    }

    /// Fails with a helpful error when binfmt_misc is not mounted.
    pub fn require_mounted(&self) -> Result<(), FsError> {
        if self.is_mounted() {
            Ok(())
        } else {
            Err(FsError::NotMounted {
                root: self.root.clone(),
            })
        }
    }

    /// Is the whole facility enabled (`status` reads `enabled`)?
    pub fn enabled(&self) -> Result<bool, FsError> {
        let p = self.root.join("status");
        let s = fs::read_to_string(&p).map_err(|e| io_err("read", &p, e))?;
        Ok(s.trim() == "enabled")
    }

    /// The entry names, newest registration first (the kernel's search order; binfmt_misc lists
    /// its directory newest first).
    pub fn names(&self) -> Result<Vec<String>, FsError> {
        let rd = fs::read_dir(&self.root).map_err(|e| io_err("list", &self.root, e))?;
        let mut names = Vec::new();
        for de in rd {
            let de = de.map_err(|e| io_err("list", &self.root, e))?;
            let name = de.file_name().to_string_lossy().into_owned();
            if name != "register" && name != "status" {
                names.push(name);
            }
        }
        Ok(names)
    }

    /// Reads one entry; Ok(None) when it does not exist.
    pub fn entry(&self, name: &str) -> Result<Option<Entry>, FsError> {
        super::entry::validate_name(name)?;
        let p = self.root.join(name);
        match fs::read_to_string(&p) {
            Ok(text) => Ok(Some(Entry::parse(name, &text)?)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("read", &p, e)),
        }
    }

    /// Every entry, newest first. Entries that vanish while listing are skipped.
    pub fn entries(&self) -> Result<Vec<Entry>, FsError> {
        let mut out = Vec::new();
        for name in self.names()? {
            if let Some(e) = self.entry(&name)? {
                out.push(e);
            }
        }
        Ok(out)
    }

    /// Writes a registration to `register`.
    pub fn register(&self, reg: &Registration) -> Result<(), FsError> {
        let line = reg.encode()?;
        let p = self.root.join("register");
        let mut f = fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .map_err(|e| io_err("open", &p, e))?;
        f.write_all(line.as_bytes())
            .map_err(|source| register_error(reg, &line, source))
    }

    fn write_control(&self, name: &str, value: &str) -> Result<(), FsError> {
        super::entry::validate_name(name)?;
        let p = self.root.join(name);
        fs::write(&p, value).map_err(|e| io_err("write", &p, e))
    }

    /// Removes one entry (writes `-1` to it).
    pub fn remove(&self, name: &str) -> Result<(), FsError> {
        self.write_control(name, "-1")
    }

    /// Enables or disables one entry.
    pub fn set_enabled(&self, name: &str, on: bool) -> Result<(), FsError> {
        self.write_control(name, if on { "1" } else { "0" })
    }

    /// Which instance this mount is: the host's, or a private one of our user namespace.
    pub fn instance(&self) -> Instance {
        if in_initial_user_namespace() {
            return Instance::Host;
        }
        // Inside binfmtctl's own user namespace the host's mount device was recorded first.
        if let (Some(host), Ok(m)) = (crate::rootless::host_binfmt_dev(), fs::metadata(&self.root))
        {
            return if m.dev() == host {
                Instance::HostFromUserNamespace
            } else {
                Instance::Private
            };
        }
        // In a user namespace, a private instance's files belong to the namespace's root (a
        // mapped ID); the host's instance shows its files as the overflow ID (unmapped).
        let overflow = fs::read_to_string("/proc/sys/kernel/overflowuid")
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .unwrap_or(65534);
        match fs::metadata(self.root.join("register")) {
            Ok(m) if m.uid() != overflow => Instance::Private,
            _ => Instance::HostFromUserNamespace,
        }
    }
}

impl Kernel for BinfmtFs {
    fn root(&self) -> &Path {
        &self.root
    }
    fn host(&self) -> &Host {
        self.host
    }
    fn is_mounted(&self) -> bool {
        BinfmtFs::is_mounted(self)
    }
    fn ensure_mounted(&self) -> Result<bool, FsError> {
        BinfmtFs::ensure_mounted(self)
    }
    fn instance(&self) -> Instance {
        BinfmtFs::instance(self)
    }
    fn enabled(&self) -> Result<bool, FsError> {
        BinfmtFs::enabled(self)
    }
    fn entries(&self) -> Result<Vec<Entry>, FsError> {
        BinfmtFs::entries(self)
    }
    fn entry(&self, name: &str) -> Result<Option<Entry>, FsError> {
        BinfmtFs::entry(self, name)
    }
    fn register(&self, reg: &Registration) -> Result<(), FsError> {
        tracing::debug!(name = %reg.name, interpreter = %reg.interpreter, flags = %reg.flags, root = %self.root.display(), "registering a binfmt_misc handler");
        BinfmtFs::register(self, reg)
    }
    fn remove(&self, name: &str) -> Result<(), FsError> {
        tracing::debug!(name, root = %self.root.display(), "removing a binfmt_misc entry");
        BinfmtFs::remove(self, name)
    }
    fn set_enabled(&self, name: &str, on: bool) -> Result<(), FsError> {
        BinfmtFs::set_enabled(self, name, on)
    }
    fn exec(&self, name: &str, program: &[u8], argv0: &str) -> Result<ExecOutput, ExecError> {
        let file = exec::write_executable(name, program)?;
        exec::run(file.path(), argv0)
    }
    fn exec_in_scratch(
        &self,
        reg: &Registration,
        name: &str,
        program: &[u8],
        argv0: &str,
    ) -> Result<ExecOutput, ExecError> {
        let line = reg
            .encode()
            .map_err(|e| ExecError::NoScratch(e.to_string()))?;
        let file = exec::write_executable(name, program)?;
        exec::in_scratch(file.path(), argv0, &line)
    }
}

/// Are we in the initial user namespace (the full identity map)?
pub fn in_initial_user_namespace() -> bool {
    match fs::read_to_string("/proc/self/uid_map") {
        Ok(map) => map
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"]),
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_parses_a_fake_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::write(root.join("register"), "").unwrap();
        fs::write(root.join("status"), "enabled\n").unwrap();
        fs::write(
            root.join("qemu-arm"),
            "enabled\ninterpreter /usr/bin/qemu-arm-static\nflags: F\noffset 0\nmagic 7f454c4601010100000000000000000002002800\nmask ffffffffffffff00fffffffffffffffffeffffff\n",
        )
        .unwrap();
        let b = BinfmtFs::new(root);
        assert!(b.is_mounted());
        assert!(b.enabled().unwrap());
        assert_eq!(b.names().unwrap(), vec!["qemu-arm".to_string()]);
        let e = b.entry("qemu-arm").unwrap().unwrap();
        assert_eq!(e.target().unwrap().name, "arm");
        assert!(b.entry("qemu-none").unwrap().is_none());
        assert!(b.entry("../etc").is_err());
    }

    #[test]
    fn unmounted_root_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let b = BinfmtFs::new(dir.path());
        assert!(!b.is_mounted());
        let msg = b.require_mounted().unwrap_err().to_string();
        assert!(msg.contains("mount -t binfmt_misc"), "{msg}");
    }
}
