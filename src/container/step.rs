//! Running one step: the preflight (will the kernel run these programs?), the stack of layer
//! directories (steps newest first, then the base layers; a layer of mount points the image
//! lacks on top; short links when the stack is too deep for one mount's options), the
//! snapshotter chosen for it, the sandbox, and the step recorded when the command succeeded.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{ContainerError, Context, command_env, stack_of};
use crate::platform::Platform;
use crate::sandbox::report::SETUP_FAILED;
use crate::sandbox::{self, Bind, Network, RunSpec, SetupError, preflight};
use crate::snapshotter::{self, Choice, Copying, KernelFacts, Overlay, Snapshotter};
use crate::store::{Step, StoreError};
use crate::warning::Warning;

/// Options of one run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunOptions {
    /// The command.
    pub argv: Vec<String>,
    /// `-e K=V` (applied last).
    pub env: Vec<(String, String)>,
    /// `-w`.
    pub workdir: Option<String>,
    /// `--user`.
    pub user: Option<String>,
    /// `-v`.
    pub mounts: Vec<Bind>,
    /// `--network`.
    pub network: Network,
    /// `-t`.
    pub tty: bool,
    /// `-i`.
    pub stdin: bool,
    /// TARGETPLATFORM, TARGETOS, TARGETARCH and TARGETVARIANT in the environment (`emubuild
    /// run`); a build passes only the ARGs a stage declares, as BuildKit does.
    #[serde(default = "yes")]
    pub platform_env: bool,
}

fn yes() -> bool {
    true
}

/// How a step ended.
#[derive(Debug)]
pub struct StepResult {
    /// The command's status.
    pub code: i32,
    /// The step recorded (None when the command failed and its changes were discarded).
    pub step: Option<Step>,
    /// Warnings.
    pub warnings: Vec<Warning>,
}

/// Runs one command in a platform of a working container and records the step.
pub fn run_step(
    ctx: &Context,
    name: &str,
    platform: &Platform,
    opts: &RunOptions,
) -> Result<StepResult, ContainerError> {
    let cdir = ctx.container(name);
    if !cdir.exists() {
        return Err(StoreError::NoContainer(name.to_string()).into());
    }
    let _lock = cdir.lock_platform(platform)?;
    let mut state = cdir.read_platform(platform)?;
    let pdir = cdir.platform_dir(platform);

    let mut lowers = stack_of(&ctx.store, &state, &pdir)?;
    // Checked against one of the image's own programs where it has a shell: a handler whose
    // mask takes only some of the target's programs (no PIE, say) is caught here too.
    let sample = crate::rootfs::stack::read_file(
        &lowers,
        Path::new("bin/sh"),
        crate::binfmt::entry::MAX_MAGIC_END as u64,
    );
    preflight::check(&ctx.kernel, platform, sample.as_deref())?;
    if lowers.is_empty() {
        let empty = ctx.store.root().join("empty");
        std::fs::create_dir_all(&empty).map_err(ContainerError::io("create", &empty))?;
        lowers.push(empty);
    }
    // The run directory is kept between runs; an upper left over by a killed run is cleared.
    let run = pdir.join("run");
    let upper = run.join("upper");
    if std::fs::read_dir(&upper).is_ok_and(|mut d| d.next().is_some()) {
        let _ = std::fs::remove_dir_all(&upper);
    }
    for d in ["upper", "work", "merged"] {
        let p = run.join(d);
        if !p.is_dir() {
            std::fs::create_dir_all(&p).map_err(ContainerError::io("prepare", &p))?;
        }
    }
    let stack = lowers.clone();
    let mnt = mountpoint_layer(&run, &lowers, &mount_points(&lowers, opts));
    if let Some(mnt) = &mnt {
        lowers.insert(0, mnt.clone());
    }
    let cwd = opts
        .workdir
        .clone()
        .or_else(|| state.config.working_dir().map(str::to_string))
        .unwrap_or_else(|| "/".to_string());
    let user = opts
        .user
        .clone()
        .or_else(|| state.config.user().map(str::to_string));
    // A deep stack would not fit one overlay mount's options (a page): its layers are then
    // named through short links in the run directory (`l/0`, `l/1`, ...), as Docker does.
    let (base, lowers) = short_lowers(ctx.store.root(), &run, lowers)?;
    tracing::info!(
        container = name,
        %platform,
        lowers = ?lowers.iter().map(|l| l.strip_prefix(&base).unwrap_or(l).display().to_string()).collect::<Vec<_>>(),
        upper = %upper.display(),
        "layer stack"
    );
    let mut spec = RunSpec {
        rootfs: sandbox::RootFs::Overlay,
        base,
        lowers,
        upper: upper.clone(),
        work: run.join("work"),
        merged: run.join("merged"),
        userxattr: ctx.rootless,
        argv: opts.argv.clone(),
        env: command_env(
            &state.config,
            opts.platform_env.then_some(platform),
            &opts.env,
        ),
        cwd,
        user,
        mounts: opts.mounts.clone(),
        network: opts.network,
        tty: opts.tty,
        stdin: opts.stdin,
        hostname: name.to_string(),
    };
    let mut warnings = Vec::new();
    let choice = snapshotter::choose(
        ctx.driver,
        KernelFacts::detect(),
        spec.lowers.len(),
        ctx.rootless,
    );
    let copying = || Copying::new(&pdir, &stack, ctx.xattrs());
    tracing::info!(?choice, "snapshotter chosen");
    let mut snap: Box<dyn Snapshotter> = match choice {
        Choice::Overlay => Box::new(Overlay),
        Choice::Copy(reason) => {
            if let Some(reason) = reason {
                warnings.push(Warning::CopySnapshotter { reason });
            }
            Box::new(copying())
        }
    };
    snap.prepare(&mut spec, mnt.as_deref(), &mut warnings)?;
    let mut outcome = sandbox::run(&spec)?;
    // overlayfs refused this mount although the kernel has it (a security module, a
    // container runtime): the command never ran, so the copying snapshotter runs it instead.
    if let Some(SetupError::Overlay { options, errno }) = &outcome.error
        && ctx.driver == snapshotter::Driver::Auto
    {
        tracing::info!(%options, %errno, "overlay mount refused; falling back to the copying snapshotter");
        warnings.push(Warning::CopySnapshotter {
            reason: format!("the overlay mount was refused ({errno})"),
        });
        snap = Box::new(copying());
        spec.merged = run.join("merged");
        snap.prepare(&mut spec, mnt.as_deref(), &mut warnings)?;
        outcome = sandbox::run(&spec)?;
    }
    warnings.extend(outcome.warnings.iter().cloned());
    if let Some(e) = &outcome.error {
        if outcome.code == SETUP_FAILED {
            snap.discard(&spec);
            return Err(ContainerError::Setup(e.clone()));
        }
        warnings.push(Warning::CommandDidNotRun {
            error: e.to_string(),
        });
    }
    if outcome.code != 0 {
        warnings.push(Warning::StepDiscarded { code: outcome.code });
        snap.discard(&spec);
        return Ok(StepResult {
            code: outcome.code,
            step: None,
            warnings,
        });
    }
    snap.diff(&spec, &mut warnings)?;
    prune_created(&upper, &spec.lowers, &outcome.created);
    let n = state.steps.len() + 1;
    let empty = std::fs::read_dir(&upper).map_or(true, |mut d| d.next().is_none());
    let dir = if empty {
        None
    } else {
        let rel = format!("steps/{n}");
        let dest = pdir.join(&rel);
        let steps = pdir.join("steps");
        std::fs::create_dir_all(&steps).map_err(ContainerError::io("create", &steps))?;
        let _ = std::fs::remove_dir_all(&dest);
        std::fs::rename(&upper, &dest)
            .map_err(ContainerError::io("keep the step's changes in", &dest))?;
        Some(rel)
    };
    let step = Step {
        created_by: crate::util::shell_join(&opts.argv),
        created: ctx.now_rfc3339(),
        dir,
        layer: None,
        compression: None,
    };
    state.steps.push(step.clone());
    cdir.write_platform(&state)?;
    // The copy now shows the new stack: the next step starts from it.
    snap.commit(&stack_of(&ctx.store, &state, &pdir)?);
    Ok(StepResult {
        code: 0,
        step: Some(step),
        warnings,
    })
}

/// The mount points a run needs (`/proc`, `/dev`, `/sys`, the host's name files, `-v`
/// targets), each where it really is once the image's symlinks are followed (`/var/run` ->
/// `/run`: the layer must not put a directory where the image has a link). True: a directory.
fn mount_points(lowers: &[PathBuf], opts: &RunOptions) -> Vec<(PathBuf, bool)> {
    let mut wanted: Vec<(PathBuf, bool)> = ["proc", "dev", "sys"]
        .iter()
        .map(|d| (PathBuf::from(d), true))
        .collect();
    if opts.network == Network::Host {
        wanted.push(("etc/resolv.conf".into(), false));
        wanted.push(("etc/hosts".into(), false));
    }
    for b in &opts.mounts {
        if let Ok(Some(rel)) = crate::rootfs::within::normalize(&b.target) {
            wanted.push((rel, b.source.is_dir()));
        }
    }
    for (p, _) in wanted.iter_mut() {
        if let Ok(r) = crate::rootfs::stack::resolve(lowers, p) {
            *p = r;
        }
    }
    wanted
}

/// The directory overlay paths are relative to, and the lower directories: the store's root
/// and the layers themselves while their names fit comfortably in a mount's options, else the
/// run directory and links `l/<n>` to each layer.
fn short_lowers(
    store: &Path,
    run: &Path,
    lowers: Vec<PathBuf>,
) -> Result<(PathBuf, Vec<PathBuf>), ContainerError> {
    let length: usize = lowers
        .iter()
        .map(|l| l.strip_prefix(store).unwrap_or(l).as_os_str().len() + 1)
        .sum();
    if length < 3000 {
        return Ok((store.to_path_buf(), lowers));
    }
    let links = run.join("l");
    let _ = std::fs::remove_dir_all(&links);
    std::fs::create_dir_all(&links).map_err(ContainerError::io("create", &links))?;
    let mut out = Vec::with_capacity(lowers.len());
    for (i, l) in lowers.iter().enumerate() {
        let link = links.join(i.to_string());
        let target = std::fs::canonicalize(l).unwrap_or_else(|_| l.clone());
        std::os::unix::fs::symlink(&target, &link).map_err(ContainerError::io("create", &link))?;
        out.push(link);
    }
    Ok((run.to_path_buf(), out))
}

/// Builds (or reuses) `run/mnt`, a layer holding the mount points the stack lacks, so they never
/// land in the step's upper directory. Parent directories copy the owner, mode and times of the
/// same directory below, so the merged view looks as without it. None when nothing is needed.
fn mountpoint_layer(run: &Path, lowers: &[PathBuf], wanted: &[(PathBuf, bool)]) -> Option<PathBuf> {
    let missing: Vec<&(PathBuf, bool)> = wanted
        .iter()
        .filter(|(p, _)| crate::rootfs::stack::exists(lowers, p) == Some(false))
        .collect();
    if missing.is_empty() {
        return None;
    }
    // What the layer must hold, including the metadata of the parents it shadows.
    let mut key = String::new();
    let mut parents: Vec<PathBuf> = Vec::new();
    for (p, is_dir) in &missing {
        key.push_str(&format!("{}:{is_dir}\n", p.display()));
        let mut a = p.parent();
        while let Some(d) = a.filter(|d| !d.as_os_str().is_empty()) {
            if !parents.iter().any(|x| x == d) {
                parents.push(d.to_path_buf());
            }
            a = d.parent();
        }
    }
    parents.sort();
    for d in &parents {
        if let Some(m) = crate::rootfs::stack::dir_meta(lowers, d) {
            key.push_str(&format!(
                "{}:{:o}:{}:{}:{}\n",
                d.display(),
                m.mode,
                m.uid,
                m.gid,
                m.mtime.0
            ));
        }
    }
    let mnt = run.join("mnt");
    let key_file = run.join("mnt.key");
    if mnt.is_dir() && std::fs::read_to_string(&key_file).ok().as_deref() == Some(key.as_str()) {
        return Some(mnt);
    }
    let _ = std::fs::remove_dir_all(&mnt);
    for d in &parents {
        std::fs::create_dir_all(mnt.join(d)).ok()?;
    }
    std::fs::create_dir_all(&mnt).ok()?;
    for (p, is_dir) in &missing {
        let target = mnt.join(p);
        if *is_dir {
            std::fs::create_dir_all(&target).ok()?;
        } else {
            std::fs::File::create(&target).ok()?;
        }
    }
    // Parents last (creating children changed their times), deepest first.
    let mut by_depth = parents.clone();
    by_depth.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for d in by_depth {
        crate::rootfs::stack::copy_dir_meta(lowers, &d, &mnt.join(&d));
    }
    std::fs::write(&key_file, key).ok()?;
    Some(mnt)
}

/// Removes mount points the sandbox created, when they are still empty (deepest first), then
/// the directories the overlay copied up only to hold them: a parent left empty whose owner and
/// mode equal the lower layer's is no change of the command's. The upper directory is the
/// command's to shape, so every path is resolved with no symlinks followed at all.
fn prune_created(upper: &Path, lowers: &[PathBuf], created: &[PathBuf]) {
    use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag};
    use nix::sys::stat::SFlag;
    let Ok(root) = crate::rootfs::within::open_root(upper) else {
        return;
    };
    let open_dir = |rel: &Path| {
        let rel = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        let how = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
        nix::fcntl::openat2(&root, rel, how).ok()
    };
    let kind =
        |st: &nix::sys::stat::FileStat| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
    let mut paths: Vec<PathBuf> = created
        .iter()
        .filter_map(|p| crate::rootfs::within::normalize(p).ok().flatten())
        .collect();
    paths.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    let mut parents: Vec<PathBuf> = Vec::new();
    for rel in &paths {
        let (parent, name) = crate::rootfs::within::split(rel);
        let Some(dir) = open_dir(&parent) else {
            continue;
        };
        let Ok(st) = nix::sys::stat::fstatat(&dir, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
        else {
            continue;
        };
        let removed = match kind(&st) {
            SFlag::S_IFDIR => nix::unistd::unlinkat(
                &dir,
                name.as_os_str(),
                nix::unistd::UnlinkatFlags::RemoveDir,
            )
            .is_ok(),
            SFlag::S_IFREG if st.st_size == 0 => nix::unistd::unlinkat(
                &dir,
                name.as_os_str(),
                nix::unistd::UnlinkatFlags::NoRemoveDir,
            )
            .is_ok(),
            _ => false,
        };
        if removed && !parent.as_os_str().is_empty() {
            parents.push(parent);
        }
    }
    while let Some(rel) = parents.pop() {
        let (parent, name) = crate::rootfs::within::split(&rel);
        let Some(dir) = open_dir(&parent) else {
            continue;
        };
        let Some(this) = open_dir(&rel) else { continue };
        let Ok(st) = nix::sys::stat::fstat(&this) else {
            continue;
        };
        // The directory through its descriptor (a /proc/self/fd link, so xattrs are read
        // through it).
        let this_path = crate::rootfs::within::fd_path(&this, std::ffi::OsStr::new(""));
        let empty = std::fs::read_dir(&this_path)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
        let opaque = crate::rootfs::overlay::OPAQUE_XATTRS
            .iter()
            .any(|n| xattr::get_deref(&this_path, n).ok().flatten().is_some());
        drop(this);
        if !empty || opaque {
            continue;
        }
        let same_below = crate::rootfs::stack::dir_meta(lowers, &rel)
            .is_some_and(|m| m.mode == st.st_mode && m.uid == st.st_uid && m.gid == st.st_gid);
        if same_below
            && nix::unistd::unlinkat(
                &dir,
                name.as_os_str(),
                nix::unistd::UnlinkatFlags::RemoveDir,
            )
            .is_ok()
            && !parent.as_os_str().is_empty()
        {
            parents.push(parent);
        }
    }
}
