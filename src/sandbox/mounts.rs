//! The sandbox's file system, built by its init process inside a fresh mount namespace: the
//! overlay of the image's layers with the step's upper directory, a fresh `/proc`, a minimal
//! `/dev`, read-only `/sys`, the host's `resolv.conf` and `hosts` read-only, bind mounts, then
//! `pivot_root`. Every mount target is resolved inside the root (openat2), and what had to be
//! created for a mount point is reported, so it never becomes part of a layer.

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::stat::Mode;

use super::report::{Errno, SetupError};
use super::spec::{Network, RootFs, RunSpec};
use crate::rootfs::within::{self, ensure_dir_recording, fd_path, open_in_root};
use crate::warning::Warning;

/// What setting up the root produced.
#[derive(Debug, Default)]
pub struct Prepared {
    /// Paths (relative to the root) created only to mount on.
    pub created: Vec<PathBuf>,
    /// Notes for the user.
    pub warnings: Vec<Warning>,
}

type Result<T> = std::result::Result<T, SetupError>;

/// Names the step a failed system call belonged to.
fn ctx<E: Into<Errno>>(what: impl Into<String>) -> impl FnOnce(E) -> SetupError {
    move |e| SetupError::sys(what, e)
}

/// Host device nodes bound into the sandbox's `/dev`.
const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

/// `/proc` files hidden from the command, as Docker does.
const MASKED: &[&str] = &[
    "kcore",
    "keys",
    "timer_list",
    "sched_debug",
    "latency_stats",
    "timer_stats",
];

/// `/proc` trees made read-only.
const READONLY: &[&str] = &["sys", "sysrq-trigger", "irq", "bus", "fs"];

/// The overlay mount options. Paths are relative to `spec.base`, the init's working directory,
/// which keeps the option string short for deep layer stacks.
pub fn overlay_options(spec: &RunSpec) -> String {
    let rel = |p: &Path| -> String {
        p.strip_prefix(&spec.base)
            .unwrap_or(p)
            .display()
            .to_string()
    };
    let lowers: Vec<String> = spec.lowers.iter().map(|p| rel(p)).collect();
    // No redirects: a renamed directory must be copied whole into the upper, so each step's
    // directory is self-contained. In a user namespace (userxattr) only `nofollow` is allowed,
    // which likewise never creates them.
    let redirect = if spec.userxattr { "nofollow" } else { "off" };
    let mut o = format!(
        "lowerdir={},upperdir={},workdir={},redirect_dir={redirect},index=off,metacopy=off",
        lowers.join(":"),
        rel(&spec.upper),
        rel(&spec.work)
    );
    if spec.userxattr {
        o.push_str(",userxattr");
    }
    o
}

/// Builds the root under `spec.merged` and pivots into it. Runs in the sandbox's init (PID 1 of
/// a new PID namespace, in a new mount namespace).
pub fn setup(spec: &RunSpec) -> Result<Prepared> {
    let mut prep = Prepared::default();
    // Nothing we mount may propagate back to the host.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(ctx("make mounts private"))?;
    std::env::set_current_dir(&spec.base)
        .map_err(ctx(format!("enter `{}`", spec.base.display())))?;
    match spec.rootfs {
        RootFs::Overlay => {
            let opts = overlay_options(spec);
            if opts.len() > 4000 {
                return Err(SetupError::TooManyLayers {
                    layers: spec.lowers.len(),
                });
            }
            mount(
                Some("overlay"),
                &spec.merged,
                Some("overlay"),
                MsFlags::MS_NODEV,
                Some(opts.as_str()),
            )
            .map_err(|e| SetupError::Overlay {
                options: opts.clone(),
                errno: e.into(),
            })?;
            tracing::info!(target = %spec.merged.display(), options = %opts, "mounted overlay");
        }
        RootFs::Copy => {
            // A mount of its own (pivot_root needs one), nodev as the overlay is.
            mount(
                Some(&spec.merged),
                &spec.merged,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(ctx("bind the root"))?;
            mount(
                None::<&str>,
                &spec.merged,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_NODEV,
                None::<&str>,
            )
            .map_err(ctx("make the root nodev"))?;
            tracing::info!(target = %spec.merged.display(), "bound the copied root");
        }
    }
    let root = within::open_root(&spec.merged).map_err(ctx("open the root"))?;

    // /proc: a fresh instance for the new PID namespace.
    let proc_fd = ensure_dir_recording(&root, Path::new("proc"), &mut prep.created)
        .map_err(ctx("create /proc"))?;
    mount_at(
        Some("proc"),
        &proc_fd,
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None,
    )
    .map_err(ctx("mount /proc"))?;
    tracing::info!("mounted proc on /proc");

    // /dev: a tmpfs with the host's harmless device nodes bound in, devpts, shm.
    let dev = ensure_dir_recording(&root, Path::new("dev"), &mut prep.created)
        .map_err(ctx("create /dev"))?;
    mount_at(
        Some("tmpfs"),
        &dev,
        Some("tmpfs"),
        // nodev: a node the command makes with mknod is inert; ours are bind mounts of the
        // host's own, which keep working.
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_STRICTATIME,
        Some("mode=755,size=65536k"),
    )
    .map_err(ctx("mount /dev"))?;
    let dev = open_in_root(&root, Path::new("dev"), OFlag::O_PATH | OFlag::O_DIRECTORY)
        .map_err(ctx("open /dev"))?;
    for d in DEVICES {
        let host = Path::new("/dev").join(d);
        if !host.exists() {
            continue;
        }
        let f = nix::fcntl::openat(
            &dev,
            *d,
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o666),
        )
        .map_err(ctx(format!("create /dev/{d}")))?;
        drop(f);
        let target = open_in_root(&root, &Path::new("dev").join(d), OFlag::O_PATH)
            .map_err(ctx(format!("open /dev/{d}")))?;
        mount_at(
            Some(host.as_os_str()),
            &target,
            None,
            MsFlags::MS_BIND,
            None,
        )
        .map_err(ctx(format!("bind /dev/{d}")))?;
    }
    for (name, mode) in [("pts", 0o755), ("shm", 0o1777)] {
        nix::sys::stat::mkdirat(&dev, name, Mode::from_bits_truncate(mode))
            .map_err(ctx(format!("create /dev/{name}")))?;
    }
    let pts = open_in_root(
        &root,
        Path::new("dev/pts"),
        OFlag::O_PATH | OFlag::O_DIRECTORY,
    )
    .map_err(ctx("open /dev/pts"))?;
    mount_at(
        Some("devpts"),
        &pts,
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    )
    .map_err(ctx("mount /dev/pts"))?;
    let shm = open_in_root(
        &root,
        Path::new("dev/shm"),
        OFlag::O_PATH | OFlag::O_DIRECTORY,
    )
    .map_err(ctx("open /dev/shm"))?;
    mount_at(
        Some("shm"),
        &shm,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=1777,size=65536k"),
    )
    .map_err(ctx("mount /dev/shm"))?;
    tracing::info!(devices = ?DEVICES, "mounted tmpfs on /dev with host devices, devpts, shm");
    for (link, target) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        nix::unistd::symlinkat(target, &dev, link).map_err(ctx(format!("create /dev/{link}")))?;
    }

    // /sys, read-only.
    let sys = ensure_dir_recording(&root, Path::new("sys"), &mut prep.created)
        .map_err(ctx("create /sys"))?;
    let ro = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    if mount_at(Some("sysfs"), &sys, Some("sysfs"), ro, None).is_err() {
        // A sysfs of its own needs the network namespace to be ours; bind the host's instead.
        mount_at(
            Some("/sys"),
            &sys,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None,
        )
        .map_err(ctx("bind /sys"))?;
        let sys = open_in_root(&root, Path::new("sys"), OFlag::O_PATH | OFlag::O_DIRECTORY)
            .map_err(ctx("open /sys"))?;
        // Every submount too (cgroups, tracing, ...); a kernel without mount_setattr gets the
        // top one at least.
        if crate::sys::make_readonly_recursive(&sys).is_err() {
            mount_at(
                None::<&str>,
                &sys,
                None,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | ro,
                None,
            )
            .map_err(ctx("make /sys read-only"))?;
        }
    }

    tracing::info!("mounted /sys read-only");
    // The host's name resolution, read-only (never part of a layer).
    if spec.network == Network::Host {
        for file in ["etc/resolv.conf", "etc/hosts"] {
            let host = Path::new("/").join(file);
            let Ok(source) = std::fs::canonicalize(&host) else {
                continue;
            };
            match bind_file(
                &root,
                &spec.merged,
                Path::new(file),
                &source,
                true,
                &mut prep.created,
            ) {
                Ok(()) => {
                    tracing::info!(source = %source.display(), target = %format!("/{file}"), "bound read-only")
                }
                Err(e) => prep.warnings.push(Warning::NotProvided {
                    path: file.into(),
                    reason: e.to_string(),
                }),
            }
        }
    }

    // Bind mounts from the command line.
    for m in &spec.mounts {
        let rel = within::normalize(&m.target)
            .map_err(|e| SetupError::Invalid(format!("mount target {e}")))?
            .ok_or_else(|| SetupError::Invalid("cannot mount over /".into()))?;
        let meta = std::fs::metadata(&m.source)
            .map_err(ctx(format!("bind source `{}`", m.source.display())))?;
        if meta.is_dir() {
            let fd = ensure_dir_recording(&root, &rel, &mut prep.created)
                .map_err(ctx(format!("create /{}", rel.display())))?;
            mount_at(
                Some(m.source.as_os_str()),
                &fd,
                None,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None,
            )
            .map_err(ctx(format!(
                "bind `{}` on /{}",
                m.source.display(),
                rel.display()
            )))?;
            if m.readonly {
                let fd = open_in_root(&root, &rel, OFlag::O_PATH | OFlag::O_DIRECTORY)
                    .map_err(ctx("reopen bind"))?;
                mount_at(
                    None::<&str>,
                    &fd,
                    None,
                    MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                    None,
                )
                .map_err(ctx("make the bind mount read-only"))?;
            }
        } else {
            bind_file(
                &root,
                &spec.merged,
                &rel,
                &m.source,
                m.readonly,
                &mut prep.created,
            )?;
        }
    }

    for m in &spec.mounts {
        tracing::info!(source = %m.source.display(), target = %m.target.display(), readonly = m.readonly, "bound");
    }
    // The working directory exists (as Docker creates WORKDIR).
    if let Some(rel) = within::normalize(Path::new(&spec.cwd))
        .map_err(|e| SetupError::Invalid(format!("working directory {e}")))?
    {
        within::ensure_dir(&root, &rel)
            .map_err(ctx(format!("create the working directory {}", spec.cwd)))?;
    }

    drop(root);
    nix::unistd::sethostname(&spec.hostname).map_err(ctx("set the host name"))?;

    // Into the new root; the old one is detached.
    std::env::set_current_dir(&spec.merged).map_err(ctx("enter the root"))?;
    nix::unistd::pivot_root(".", ".").map_err(ctx("pivot_root"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(ctx("detach the old root"))?;
    std::env::set_current_dir("/").map_err(ctx("chdir /"))?;
    tracing::debug!(root = %spec.merged.display(), "pivoted into the root");

    for m in MASKED {
        let p = Path::new("/proc").join(m);
        if p.exists() {
            let _ = mount(
                Some("/dev/null"),
                &p,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            );
        }
    }
    for r in READONLY {
        let p = Path::new("/proc").join(r);
        if p.exists()
            && mount(
                Some(&p),
                &p,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .is_ok()
        {
            let _ = mount(
                None::<&str>,
                &p,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                None::<&str>,
            );
        }
    }
    if spec.network == Network::None {
        crate::sys::loopback_up().map_err(ctx("bring up the loopback interface"))?;
    }
    Ok(prep)
}

/// Mounts onto an open directory or file (through its `/proc/self/fd` magic link, so the target
/// is exactly what was resolved inside the root).
fn mount_at(
    source: Option<&(impl AsRef<OsStr> + ?Sized)>,
    target: &impl AsRawFd,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> nix::Result<()> {
    let t = PathBuf::from(format!("/proc/self/fd/{}", target.as_raw_fd()));
    mount(
        source.map(|s| Path::new(s.as_ref())),
        &t,
        fstype,
        flags,
        data,
    )
}

/// Binds a host file onto `rel` inside the root, creating an empty file to mount on if needed
/// (and reporting it). A symlink whose target is missing is left alone.
fn bind_file(
    root: &impl std::os::fd::AsFd,
    merged: &Path,
    rel: &Path,
    source: &Path,
    readonly: bool,
    created: &mut Vec<PathBuf>,
) -> Result<()> {
    let (parent, name) = within::split(rel);
    let dir = ensure_dir_recording(root, &parent, created)
        .map_err(ctx(format!("create /{}", parent.display())))?;
    let target = match open_in_root(root, rel, OFlag::O_PATH) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
            if nix::sys::stat::fstatat(
                &dir,
                name.as_os_str(),
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .is_ok()
            {
                return Err(SetupError::Invalid(format!(
                    "/{} is a link to a missing file",
                    rel.display()
                )));
            }
            let f = nix::fcntl::openat(
                &dir,
                name.as_os_str(),
                OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_WRONLY
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o644),
            )
            .map_err(ctx(format!("create /{}", rel.display())))?;
            drop(File::from(f));
            // Where the file really is (the parent may have been reached through links).
            created.push(resolved_rel(merged, &dir, &name).unwrap_or_else(|| rel.to_path_buf()));
            open_in_root(root, rel, OFlag::O_PATH)
                .map_err(ctx(format!("open /{}", rel.display())))?
        }
        Err(e) => return Err(SetupError::sys(format!("open /{}", rel.display()), &e)),
    };
    mount_at(
        Some(source.as_os_str()),
        &target,
        None,
        MsFlags::MS_BIND,
        None,
    )
    .map_err(ctx(format!(
        "bind `{}` on /{}",
        source.display(),
        rel.display()
    )))?;
    if readonly {
        let t = open_in_root(root, rel, OFlag::O_PATH).map_err(ctx("reopen bind"))?;
        mount_at(
            None::<&str>,
            &t,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None,
        )
        .map_err(ctx(format!("make /{} read-only", rel.display())))?;
    }
    Ok(())
}

/// The path of `dir/name` relative to the root being built (read back from `/proc/self/fd`).
fn resolved_rel(merged: &Path, dir: &impl AsRawFd, name: &OsStr) -> Option<PathBuf> {
    let full = std::fs::read_link(fd_path(dir, OsStr::new(""))).ok()?;
    let merged = std::fs::canonicalize(merged).ok()?;
    Some(full.strip_prefix(merged).ok()?.join(name))
}
