//! Working containers: made from an image for one or more platforms (`create`), then changed
//! one `run` step at a time (`run_step`). Each step's changes are the overlay upper directory of
//! that run, kept as the step's diff and stacked as a lower directory for the next run.
//!
//! Pipeline of a step: state -> lowers (steps, then base layers, top
//! first) -> sandbox -> prune mount points -> the upper becomes `steps/<n>` (or an empty step).

use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::arch::Table;
use crate::oci::image::{self, Descriptor};
use crate::oci::layout::{self, Layout};
use crate::platform::Platform;
use crate::rootfs::unpack::XattrNamespace;
use crate::sandbox::report::{SETUP_FAILED, SetupError};
use crate::sandbox::{self, Bind, Network, RunSpec, preflight};
use crate::store::{Container, ContainerDir, LayerRef, PlatformState, Step, Store, StoreError};

/// The PATH a command gets when the image sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Errors of working-container operations.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// The store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Choosing the image.
    #[error(transparent)]
    Select(#[from] image::SelectError),
    /// The layout.
    #[error(transparent)]
    Layout(#[from] layout::LayoutError),
    /// Emulation is missing.
    #[error(transparent)]
    Preflight(#[from] Box<preflight::PreflightError>),
    /// The sandbox could not start.
    #[error(transparent)]
    Sandbox(#[from] sandbox::SandboxError),
    /// The sandbox's init could not build the root or start the command.
    #[error(transparent)]
    Setup(SetupError),
    /// Anything else, already phrased for the user.
    #[error("{0}")]
    Other(String),
}

/// Where a base image comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageRef {
    /// `oci:DIR[:TAG]`.
    Oci {
        /// The layout.
        dir: PathBuf,
        /// The tag.
        tag: Option<String>,
    },
    /// `oci-archive:FILE[:TAG]`.
    OciArchive {
        /// The archive.
        file: PathBuf,
        /// The tag.
        tag: Option<String>,
    },
    /// `rootfs:FILE`: a root file system tarball.
    Rootfs(PathBuf),
    /// `scratch`: an empty root.
    Scratch,
}

/// Splits `PATH[:TAG]`: the part after the last `:` is a tag when it holds no `/`.
fn split_tag(s: &str) -> (PathBuf, Option<String>) {
    match s.rsplit_once(':') {
        Some((p, t)) if !t.contains('/') && !t.is_empty() && !p.is_empty() => {
            (PathBuf::from(p), Some(t.to_string()))
        }
        _ => (PathBuf::from(s), None),
    }
}

impl FromStr for ImageRef {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "scratch" {
            return Ok(ImageRef::Scratch);
        }
        if let Some(rest) = s.strip_prefix("oci:") {
            let (dir, tag) = split_tag(rest);
            return Ok(ImageRef::Oci { dir, tag });
        }
        if let Some(rest) = s.strip_prefix("oci-archive:") {
            let (file, tag) = split_tag(rest);
            return Ok(ImageRef::OciArchive { file, tag });
        }
        if let Some(rest) = s.strip_prefix("rootfs:") {
            return Ok(ImageRef::Rootfs(PathBuf::from(rest)));
        }
        Err(format!(
            "`{s}` is not an image this tool reads; use oci:DIR[:TAG], oci-archive:FILE[:TAG], rootfs:FILE (a root file system tarball) or scratch"
        ))
    }
}

impl std::fmt::Display for ImageRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tagged =
            |f: &mut std::fmt::Formatter<'_>, kind: &str, p: &Path, t: &Option<String>| match t {
                Some(t) => write!(f, "{kind}:{}:{t}", p.display()),
                None => write!(f, "{kind}:{}", p.display()),
            };
        match self {
            ImageRef::Oci { dir, tag } => tagged(f, "oci", dir, tag),
            ImageRef::OciArchive { file, tag } => tagged(f, "oci-archive", file, tag),
            ImageRef::Rootfs(p) => write!(f, "rootfs:{}", p.display()),
            ImageRef::Scratch => f.write_str("scratch"),
        }
    }
}

/// Shared settings.
#[derive(Debug, Clone)]
pub struct Context {
    /// The store.
    pub store: Store,
    /// The binfmt_misc mount the preflight reads.
    pub binfmt_root: PathBuf,
    /// Not real root (user namespace).
    pub rootless: bool,
}

impl Context {
    fn xattrs(&self) -> XattrNamespace {
        if self.rootless {
            XattrNamespace::User
        } else {
            XattrNamespace::Trusted
        }
    }

    /// A container's files.
    pub fn container(&self, name: &str) -> ContainerDir {
        ContainerDir::new(self.store.container_dir(name))
    }
}

/// What creating produced, per platform.
#[derive(Debug)]
pub struct Created {
    /// The container.
    pub container: Container,
    /// Warnings (skipped entries of layers...).
    pub warnings: Vec<String>,
    /// True when it existed already with the same base and platforms.
    pub reused: bool,
}

/// Makes a working container `name` from `image` for `platforms` (the image's own platform, or
/// the host's, when empty).
pub fn create(
    ctx: &Context,
    name: &str,
    image: &ImageRef,
    platforms: &[Platform],
    reuse: bool,
) -> Result<Created, ContainerError> {
    crate::store::validate_name(name).map_err(ContainerError::Other)?;
    let cdir = ctx.container(name);
    let _lock = cdir.lock()?;
    if let Ok(existing) = cdir.read() {
        let wanted: Vec<String> = platforms.iter().map(Platform::to_string).collect();
        if reuse
            && existing.base == image.to_string()
            && (wanted.is_empty() || wanted == existing.platforms)
        {
            return Ok(Created {
                container: existing,
                warnings: Vec::new(),
                reused: true,
            });
        }
        return Err(ContainerError::Other(format!(
            "a working container `{name}` exists already (from {}, for {}); remove it with `emubuild rm {name}` or choose another `--name`",
            existing.base,
            existing.platforms.join(", ")
        )));
    }
    let mut warnings = Vec::new();
    let mut states = Vec::new();
    let archive_dir;
    let layout = match image {
        ImageRef::Oci { dir, .. } => Some(Layout::open(dir)?),
        ImageRef::OciArchive { file, .. } => {
            archive_dir = ctx.store.staging()?;
            Some(layout::extract_archive(file, archive_dir.path())?)
        }
        _ => None,
    };
    let tag = match image {
        ImageRef::Oci { tag, .. } | ImageRef::OciArchive { tag, .. } => tag.clone(),
        _ => None,
    };
    let wanted: Vec<Option<&Platform>> = if platforms.is_empty() {
        vec![None]
    } else {
        platforms.iter().map(Some).collect()
    };
    for p in wanted {
        let (state, w) = match (&layout, image) {
            (Some(l), _) => import_from_layout(ctx, l, tag.as_deref(), p, &image.to_string())?,
            (None, ImageRef::Rootfs(file)) => import_rootfs(ctx, file, p)?,
            (None, _) => (
                scratch_state(p.cloned().unwrap_or_else(Platform::host)),
                Vec::new(),
            ),
        };
        warnings.extend(w);
        states.push(state);
    }
    let container = Container {
        name: name.to_string(),
        base: image.to_string(),
        created: crate::util::build_time() as u64,
        platforms: states.iter().map(|s| s.platform.clone()).collect(),
    };
    for s in &states {
        std::fs::create_dir_all(cdir.platform_dir(&s.platform()))
            .map_err(|e| ContainerError::Other(format!("cannot create the container: {e}")))?;
        cdir.write_platform(s)?;
    }
    cdir.write(&container)?;
    Ok(Created {
        container,
        warnings,
        reused: false,
    })
}

fn import_from_layout(
    ctx: &Context,
    l: &Layout,
    tag: Option<&str>,
    platform: Option<&Platform>,
    source: &str,
) -> Result<(PlatformState, Vec<String>), ContainerError> {
    let sel = image::select(l, tag, platform, source)?;
    let diff_ids: Vec<String> = sel
        .config
        .pointer("/rootfs/diff_ids")
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|d| d.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if diff_ids.len() != sel.manifest.layers.len() {
        return Err(ContainerError::Other(format!(
            "image {} lists {} layers but its config has {} diff_ids; the image is malformed",
            sel.manifest_desc.digest,
            sel.manifest.layers.len(),
            diff_ids.len()
        )));
    }
    let mut warnings = Vec::new();
    let mut layers: Vec<LayerRef> = Vec::new();
    for (desc, diff_id) in sel.manifest.layers.iter().zip(&diff_ids) {
        let (layer, w) = ctx
            .store
            .import_layer(l, desc, diff_id, ctx.xattrs(), ctx.rootless)?;
        warnings.extend(w);
        layers.push(layer);
    }
    ctx.store.import_blob(l, &sel.manifest.config)?;
    ctx.store.import_blob(l, &sel.manifest_desc)?;
    Ok((
        PlatformState {
            platform: sel.platform.to_string(),
            base_manifest: Some(sel.manifest_desc.digest.clone()),
            config: sel.config,
            base_layers: layers,
            steps: Vec::new(),
        },
        warnings,
    ))
}

fn import_rootfs(
    ctx: &Context,
    file: &Path,
    platform: Option<&Platform>,
) -> Result<(PlatformState, Vec<String>), ContainerError> {
    let (layer, warnings) = ctx
        .store
        .import_rootfs_tar(file, ctx.xattrs(), ctx.rootless)?;
    let dir = ctx.store.layer_dir(&layer.diff_id)?;
    let detected = detect_platform(&dir);
    let platform = match (platform, detected) {
        (Some(p), Some(d))
            if Table::get().for_platform(p).map(|t| &t.name)
                != Table::get().for_platform(&d).map(|t| &t.name) =>
        {
            return Err(ContainerError::Other(format!(
                "`--platform {p}` disagrees with the root file system `{}`, whose programs are for {d}",
                file.display()
            )));
        }
        (Some(p), _) => p.clone(),
        (None, Some(d)) => d,
        (None, None) => {
            return Err(ContainerError::Other(format!(
                "cannot tell the platform of `{}` (no ELF programs found); pass `--platform`",
                file.display()
            )));
        }
    };
    let mut state = scratch_state(platform);
    state.base_layers.push(layer.clone());
    if let Some(ids) = state
        .config
        .pointer_mut("/rootfs/diff_ids")
        .and_then(|v| v.as_array_mut())
    {
        ids.push(serde_json::Value::String(layer.diff_id.clone()));
    }
    if let Some(h) = state
        .config
        .get_mut("history")
        .and_then(|v| v.as_array_mut())
    {
        h.push(serde_json::json!({
            "created": crate::util::rfc3339(crate::util::build_time()),
            "created_by": format!("emubuild from rootfs:{}", file.display()),
        }));
    }
    Ok((state, warnings))
}

/// The platform of a root file system, from its ELF programs: `/bin/sh` (followed inside the
/// tree), then the first ELF programs in the usual directories.
pub fn detect_platform(root: &Path) -> Option<Platform> {
    let rootfd = crate::rootfs::within::open_root(root).ok()?;
    let mut candidates: Vec<PathBuf> =
        vec!["bin/sh".into(), "bin/busybox".into(), "usr/bin/env".into()];
    for d in ["bin", "usr/bin", "sbin", "usr/sbin"] {
        if let Ok(rd) = std::fs::read_dir(root.join(d)) {
            candidates.extend(
                rd.filter_map(Result::ok)
                    .take(64)
                    .map(|e| Path::new(d).join(e.file_name())),
            );
        }
    }
    for c in candidates {
        let Ok(mut file) = crate::rootfs::within::open_regular_in_root(&rootfd, &c) else {
            continue;
        };
        let mut bytes = Vec::new();
        if std::io::Read::read_to_end(&mut std::io::Read::take(&mut file, 64 << 20), &mut bytes)
            .is_err()
            || !crate::elf::is_elf(&bytes)
        {
            continue;
        }
        if let Ok(info) = crate::elf::inspect_bytes(&c, &bytes)
            && let Some(p) = info.platform
        {
            return Some(p);
        }
    }
    None
}

/// The state of an empty image for a platform.
pub fn scratch_state(platform: Platform) -> PlatformState {
    let mut config = serde_json::json!({
        "architecture": platform.architecture,
        "os": platform.os,
        "config": {"Env": [format!("PATH={DEFAULT_PATH}")]},
        "rootfs": {"type": "layers", "diff_ids": []},
        "history": [],
    });
    if let Some(v) = platform.variant() {
        config["variant"] = serde_json::Value::String(v.to_string());
    }
    PlatformState {
        platform: platform.to_string(),
        base_manifest: None,
        config,
        base_layers: Vec::new(),
        steps: Vec::new(),
    }
}

/// A platform's layer directories, top first: its steps, newest first, then the base layers.
fn stack_of(
    ctx: &Context,
    state: &PlatformState,
    pdir: &Path,
) -> Result<Vec<PathBuf>, ContainerError> {
    let mut lowers: Vec<PathBuf> = state
        .steps
        .iter()
        .rev()
        .filter_map(|s| s.dir.as_ref().map(|d| pdir.join(d)))
        .collect();
    for l in state.base_layers.iter().rev() {
        lowers.push(ctx.store.layer_dir(&l.diff_id)?);
    }
    Ok(lowers)
}

/// Options of one run.
#[derive(Debug, Clone)]
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
}

/// How a step ended.
#[derive(Debug)]
pub struct StepResult {
    /// The command's status.
    pub code: i32,
    /// The step recorded (None when the command failed and its changes were discarded).
    pub step: Option<Step>,
    /// Warnings.
    pub warnings: Vec<String>,
}

/// The environment a command sees: the image's, then TARGET*, then `-e`; PATH defaulted.
pub fn command_env(
    config: &serde_json::Value,
    platform: &Platform,
    extra: &[(String, String)],
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |k: String, v: String| {
        if let Some(e) = env.iter_mut().find(|(ek, _)| *ek == k) {
            e.1 = v;
        } else {
            env.push((k, v));
        }
    };
    if let Some(list) = config.pointer("/config/Env").and_then(|v| v.as_array()) {
        for e in list.iter().filter_map(|v| v.as_str()) {
            if let Some((k, v)) = e.split_once('=') {
                set(k.to_string(), v.to_string());
            }
        }
    }
    for (k, v) in platform.target_env() {
        set(k, v);
    }
    for (k, v) in extra {
        set(k.clone(), v.clone());
    }
    if !env.iter().any(|(k, _)| k == "PATH") {
        env.insert(0, ("PATH".into(), DEFAULT_PATH.into()));
    }
    env
}

/// Runs one command in a platform of a working container and records the step.
pub fn run_step(
    ctx: &Context,
    name: &str,
    platform: &Platform,
    opts: &RunOptions,
) -> Result<StepResult, ContainerError> {
    let cdir = ctx.container(name);
    if cdir.read().is_err() {
        return Err(StoreError::NoContainer(name.to_string()).into());
    }
    let _lock = cdir.lock_platform(platform)?;
    let mut state = cdir.read_platform(platform)?;
    let pdir = cdir.platform_dir(platform);

    let mut lowers = stack_of(ctx, &state, &pdir)?;
    // Checked against one of the image's own programs where it has a shell: a handler whose
    // mask takes only some of the target's programs (no PIE, say) is caught here too.
    let sample = crate::rootfs::stack::read_file(
        &lowers,
        Path::new("bin/sh"),
        crate::binfmt::entry::MAX_MAGIC_END as u64,
    );
    preflight::check(platform, &ctx.binfmt_root, sample.as_deref())?;
    if lowers.is_empty() {
        let empty = ctx.store.root().join("empty");
        std::fs::create_dir_all(&empty).map_err(|e| {
            ContainerError::Other(format!("cannot create `{}`: {e}", empty.display()))
        })?;
        lowers.push(empty);
    }
    // The run directory is kept between runs; an upper left over by a killed run is cleared.
    let run = pdir.join("run");
    let upper_dir = run.join("upper");
    if std::fs::read_dir(&upper_dir)
        .map(|mut d| d.next().is_some())
        .unwrap_or(false)
    {
        let _ = std::fs::remove_dir_all(&upper_dir);
    }
    for d in ["upper", "work", "merged"] {
        let p = run.join(d);
        if !p.is_dir() {
            std::fs::create_dir_all(&p).map_err(|e| {
                ContainerError::Other(format!("cannot prepare `{}`: {e}", p.display()))
            })?;
        }
    }
    // Mount points the image lacks live in a layer of their own on top, never in the step.
    let mut wanted_points: Vec<(PathBuf, bool)> = ["proc", "dev", "sys"]
        .iter()
        .map(|d| (PathBuf::from(d), true))
        .collect();
    if opts.network == Network::Host {
        wanted_points.push(("etc/resolv.conf".into(), false));
        wanted_points.push(("etc/hosts".into(), false));
    }
    for b in &opts.mounts {
        if let Ok(Some(rel)) = crate::rootfs::within::normalize(&b.target) {
            wanted_points.push((rel, b.source.is_dir()));
        }
    }
    // Where each really is once the image's symlinks are followed (`/var/run` -> `/run`): the
    // layer must not put a directory where the image has a link.
    for (p, _) in wanted_points.iter_mut() {
        if let Ok(r) = crate::rootfs::stack::resolve(&lowers, p) {
            *p = r;
        }
    }
    let stack = lowers.clone();
    let mnt = mountpoint_layer(&run, &lowers, &wanted_points);
    if let Some(mnt) = &mnt {
        lowers.insert(0, mnt.clone());
    }
    let cwd = opts
        .workdir
        .clone()
        .or_else(|| {
            state
                .config
                .pointer("/config/WorkingDir")
                .and_then(|v| v.as_str())
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        })
        .unwrap_or_else(|| "/".to_string());
    let user = opts.user.clone().or_else(|| {
        state
            .config
            .pointer("/config/User")
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    });
    // A deep stack would not fit one overlay mount's options (a page): its layers are then
    // named through short links in the run directory (`l/0`, `l/1`, ...), as Docker does.
    let (base, lowers) = short_lowers(ctx.store.root(), &run, lowers)?;
    let mut spec = RunSpec {
        rootfs: sandbox::RootFs::Overlay,
        base,
        lowers,
        upper: run.join("upper"),
        work: run.join("work"),
        merged: run.join("merged"),
        userxattr: ctx.rootless,
        argv: opts.argv.clone(),
        env: command_env(&state.config, platform, &opts.env),
        cwd,
        user,
        mounts: opts.mounts.clone(),
        network: opts.network,
        tty: opts.tty,
        stdin: opts.stdin,
        hostname: name.to_string(),
    };
    let driver = Driver::from_env()?;
    let mut warnings = Vec::new();
    let copy = Copier::new(&pdir, &stack);
    let use_copy = match driver {
        Driver::Copy => true,
        Driver::Overlay => false,
        Driver::Auto => match overlay_unusable(spec.lowers.len(), ctx.rootless) {
            Some(why) => {
                warnings.push(format!(
                    "{why}; using the copying snapshotter (slower: it keeps a whole copy of the tree)"
                ));
                true
            }
            None => false,
        },
    };
    let outcome = if use_copy {
        copy.run(&mut spec, mnt.as_deref(), ctx.xattrs(), &mut warnings)?
    } else {
        sandbox::run(&spec)?
    };
    warnings.extend(outcome.warnings.iter().cloned());
    if let Some(e) = &outcome.error {
        if outcome.code == SETUP_FAILED {
            let _ = std::fs::remove_dir_all(&upper_dir);
            return Err(ContainerError::Setup(e.clone()));
        }
        warnings.push(format!("cannot run the command: {e}"));
    }
    let step = if outcome.code == 0 {
        let upper = run.join("upper");
        prune_created(&upper, &spec.lowers, &outcome.created);
        let n = state.steps.len() + 1;
        let empty = std::fs::read_dir(&upper)
            .map(|mut d| d.next().is_none())
            .unwrap_or(true);
        let dir = if empty {
            None
        } else {
            let rel = format!("steps/{n}");
            let dest = pdir.join(&rel);
            std::fs::create_dir_all(pdir.join("steps"))
                .map_err(|e| ContainerError::Other(e.to_string()))?;
            let _ = std::fs::remove_dir_all(&dest);
            std::fs::rename(&upper, &dest).map_err(|e| {
                ContainerError::Other(format!("cannot keep the step's changes: {e}"))
            })?;
            Some(rel)
        };
        let step = Step {
            created_by: crate::util::shell_join(&opts.argv),
            created: crate::util::rfc3339(crate::util::build_time()),
            dir,
            layer: None,
            compression: None,
        };
        state.steps.push(step.clone());
        cdir.write_platform(&state)?;
        // The copy now shows the new stack: the next step starts from it.
        if spec.rootfs == sandbox::RootFs::Copy {
            copy.mark_current(&stack_of(ctx, &state, &pdir)?);
        }
        Some(step)
    } else {
        warnings.push(format!(
            "the command failed (exit {}); this step's changes were discarded",
            outcome.code
        ));
        let _ = std::fs::remove_dir_all(&upper_dir);
        None
    };
    Ok(StepResult {
        code: outcome.code,
        step,
        warnings,
    })
}

/// Which snapshotter runs steps: `EMUBUILD_DRIVER` = `overlay`, `copy`, or `auto` (the default:
/// overlayfs, falling back to copying where it cannot be mounted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Driver {
    Auto,
    Overlay,
    Copy,
}

impl Driver {
    fn from_env() -> Result<Driver, ContainerError> {
        match std::env::var("EMUBUILD_DRIVER").as_deref() {
            Err(_) | Ok("") | Ok("auto") => Ok(Driver::Auto),
            Ok("overlay") => Ok(Driver::Overlay),
            Ok("copy") => Ok(Driver::Copy),
            Ok(other) => Err(ContainerError::Other(format!(
                "EMUBUILD_DRIVER is `{other}`; use auto, overlay or copy"
            ))),
        }
    }
}

/// Why overlayfs cannot hold this step, if it cannot: more lower layers than it stacks, no
/// overlayfs in the kernel, or (rootless) a kernel too old to mount it in a user namespace.
fn overlay_unusable(lowers: usize, rootless: bool) -> Option<String> {
    const MAX_STACK: usize = 500;
    if lowers > MAX_STACK {
        return Some(format!(
            "the step stacks {lowers} layers and overlayfs takes at most {MAX_STACK}"
        ));
    }
    let release = crate::rootless::kernel_release();
    if let Ok(fs) = std::fs::read_to_string("/proc/filesystems")
        && !fs
            .lines()
            .any(|l| l.split_whitespace().last() == Some("overlay"))
        && !Path::new("/sys/module/overlay").exists()
    {
        // Not loaded: it may still load on first use (modules load on mount), so only a
        // kernel with no overlay module at all is counted out.
        let module = Path::new("/lib/modules")
            .join(&release)
            .join("kernel/fs/overlayfs");
        if !module.exists() {
            return Some("this kernel has no overlayfs".into());
        }
    }
    if rootless && crate::rootless::kernel_older_than(&release, (5, 11)) {
        return Some(format!(
            "this kernel ({release}) cannot mount overlayfs in a user namespace (Linux 5.11+)"
        ));
    }
    None
}

/// The copying snapshotter's state for one platform of a working container: `copy/` holds the
/// whole stack, `copy.key` names the stack it shows (absent while a step runs in it, so a
/// failed or killed step makes the next one copy afresh).
struct Copier {
    dir: PathBuf,
    key_file: PathBuf,
    /// The stack this step runs on (without the mount-point layer).
    stack: Vec<PathBuf>,
}

impl Copier {
    fn new(pdir: &Path, stack: &[PathBuf]) -> Copier {
        Copier {
            dir: pdir.join("copy"),
            key_file: pdir.join("copy.key"),
            stack: stack.to_vec(),
        }
    }

    fn key_of(stack: &[PathBuf]) -> String {
        let joined: Vec<String> = stack.iter().map(|p| p.display().to_string()).collect();
        crate::digest::sha256_hex(joined.join("\n").as_bytes())
    }

    /// Runs `spec` in the copy (made first when it is not of this stack) and writes the
    /// command's changes into `spec.upper`.
    fn run(
        &self,
        spec: &mut RunSpec,
        mnt: Option<&Path>,
        xattrs: XattrNamespace,
        warnings: &mut Vec<String>,
    ) -> Result<sandbox::Outcome, ContainerError> {
        use crate::rootfs::walkdiff;
        let fail = |what: &str, e: std::io::Error| {
            ContainerError::Other(format!("copying snapshotter: cannot {what}: {e}"))
        };
        let key = Copier::key_of(&self.stack);
        let current = std::fs::read_to_string(&self.key_file).is_ok_and(|k| k == key);
        let _ = std::fs::remove_file(&self.key_file);
        if !current {
            if self.dir.exists() {
                std::fs::remove_dir_all(&self.dir).map_err(|e| fail("clear the copy", e))?;
            }
            std::fs::create_dir_all(&self.dir).map_err(|e| fail("create the copy", e))?;
            warnings.extend(
                walkdiff::materialize(&self.stack, &self.dir)
                    .map_err(|e| fail("copy the stack", e))?,
            );
        }
        if let Some(m) = mnt {
            walkdiff::apply_layer(m, &self.dir, warnings)
                .map_err(|e| fail("add the mount points", e))?;
        }
        let before = walkdiff::Index::of(&self.dir).map_err(|e| fail("record the tree", e))?;
        spec.rootfs = sandbox::RootFs::Copy;
        spec.merged = self.dir.clone();
        let outcome = sandbox::run(spec)?;
        if outcome.code == 0 {
            let (_, w) = walkdiff::diff(&self.dir, &before, &spec.upper, xattrs)
                .map_err(|e| fail("find the changes", e))?;
            warnings.extend(w);
        }
        Ok(outcome)
    }

    /// Records that the copy shows `stack` (after a step that succeeded).
    fn mark_current(&self, stack: &[PathBuf]) {
        let _ = crate::util::replace_file(&self.key_file, Copier::key_of(stack).as_bytes(), 0o644);
    }
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
    std::fs::create_dir_all(&links)
        .map_err(|e| ContainerError::Other(format!("cannot create `{}`: {e}", links.display())))?;
    let mut out = Vec::with_capacity(lowers.len());
    for (i, l) in lowers.iter().enumerate() {
        let link = links.join(i.to_string());
        let target = std::fs::canonicalize(l).unwrap_or_else(|_| l.clone());
        std::os::unix::fs::symlink(&target, &link).map_err(|e| {
            ContainerError::Other(format!("cannot create `{}`: {e}", link.display()))
        })?;
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
        let opaque = crate::rootfs::unpack::OPAQUE_XATTRS
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

/// Removes a working container and its steps (shared layers stay in the store).
pub fn remove(ctx: &Context, name: &str) -> Result<(), ContainerError> {
    let cdir = ctx.container(name);
    if cdir.read().is_err() {
        return Err(StoreError::NoContainer(name.to_string()).into());
    }
    let _lock = cdir.lock()?;
    std::fs::remove_dir_all(cdir.dir()).map_err(|e| {
        ContainerError::Other(format!("cannot remove `{}`: {e}", cdir.dir().display()))
    })?;
    let _ = std::fs::remove_file(cdir.dir().with_extension("lock"));
    Ok(())
}

/// The layer descriptors of a base image, for display.
pub fn describe_layers(layers: &[LayerRef]) -> Vec<Descriptor> {
    layers
        .iter()
        .map(|l| Descriptor {
            media_type: l.media_type.clone(),
            digest: l.digest.clone(),
            size: l.size,
            annotations: None,
            platform: None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_refs() {
        assert_eq!(
            "oci:/tmp/x:latest".parse::<ImageRef>().unwrap(),
            ImageRef::Oci {
                dir: "/tmp/x".into(),
                tag: Some("latest".into())
            }
        );
        assert_eq!(
            "oci:./dir".parse::<ImageRef>().unwrap(),
            ImageRef::Oci {
                dir: "./dir".into(),
                tag: None
            }
        );
        assert_eq!(
            "rootfs:/a/b.tar.gz".parse::<ImageRef>().unwrap(),
            ImageRef::Rootfs("/a/b.tar.gz".into())
        );
        assert_eq!("scratch".parse::<ImageRef>().unwrap(), ImageRef::Scratch);
        assert!("docker://alpine".parse::<ImageRef>().is_err());
        assert_eq!(
            "oci-archive:/x.tar:v1"
                .parse::<ImageRef>()
                .unwrap()
                .to_string(),
            "oci-archive:/x.tar:v1"
        );
    }

    #[test]
    fn environment() {
        let config = serde_json::json!({"config": {"Env": ["PATH=/bin", "A=1"]}});
        let env = command_env(
            &config,
            &"linux/arm/v7".parse().unwrap(),
            &[("A".into(), "2".into())],
        );
        assert!(env.contains(&("PATH".into(), "/bin".into())));
        assert!(env.contains(&("A".into(), "2".into())));
        for (k, v) in [
            ("TARGETPLATFORM", "linux/arm/v7"),
            ("TARGETOS", "linux"),
            ("TARGETARCH", "arm"),
            ("TARGETVARIANT", "v7"),
        ] {
            assert!(env.contains(&(k.into(), v.into())), "{k}: {env:?}");
        }
        let env = command_env(&serde_json::json!({}), &"linux/arm64".parse().unwrap(), &[]);
        assert_eq!(env[0], ("PATH".into(), DEFAULT_PATH.into()));
    }
}

/// Options of `copy`.
#[derive(Debug, Clone)]
pub struct CopyOptions {
    /// Host paths.
    pub sources: Vec<PathBuf>,
    /// Destination inside the container (absolute; a trailing `/` means a directory).
    pub dest: String,
    /// Mode for every copied file and directory.
    pub chmod: Option<u32>,
    /// `user[:group]` for every copied entry (names from the image).
    pub chown: Option<String>,
}

/// Copies host files into every platform of a working container as a new step (no emulation),
/// as Docker's COPY: a directory's contents are copied, several sources or a destination ending
/// in `/` make the destination a directory. Parent directories keep the image's owner and mode,
/// and symlinked directories in the image are followed.
pub fn copy_step(
    ctx: &Context,
    name: &str,
    opts: &CopyOptions,
) -> Result<Vec<Step>, ContainerError> {
    let cdir = ctx.container(name);
    let c = cdir
        .read()
        .map_err(|_| StoreError::NoContainer(name.to_string()))?;
    if !opts.dest.starts_with('/') {
        return Err(ContainerError::Other(format!(
            "`{}`: the destination must be an absolute path inside the container",
            opts.dest
        )));
    }
    for s in &opts.sources {
        if std::fs::symlink_metadata(s).is_err() {
            return Err(ContainerError::Other(format!(
                "`{}` does not exist on the host",
                s.display()
            )));
        }
    }
    let dest_rel = crate::rootfs::within::normalize(Path::new(&opts.dest))
        .map_err(ContainerError::Other)?
        .unwrap_or_default();
    let into_dir =
        opts.dest.ends_with('/') || opts.sources.len() > 1 || dest_rel.as_os_str().is_empty();
    let mut steps = Vec::new();
    for p in c
        .platforms
        .iter()
        .filter_map(|p| p.parse::<Platform>().ok())
    {
        let _lock = cdir.lock_platform(&p)?;
        let mut state = cdir.read_platform(&p)?;
        let pdir = cdir.platform_dir(&p);
        let lowers = stack_of(ctx, &state, &pdir)?;
        let owner = match &opts.chown {
            None => (0, 0),
            Some(spec) => {
                let read = |f: &str| {
                    crate::rootfs::stack::read_file(&lowers, Path::new(f), 4 << 20)
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                        .unwrap_or_default()
                };
                let u =
                    crate::sandbox::user::resolve(spec, &read("etc/passwd"), &read("etc/group"))
                        .map_err(ContainerError::Other)?;
                (u.uid, u.gid)
            }
        };
        // Where the destination really is in this image, and whether it is a directory there.
        let dest =
            crate::rootfs::stack::resolve(&lowers, &dest_rel).map_err(ContainerError::Other)?;
        let dest_is_dir = into_dir
            || dest.as_os_str().is_empty()
            || crate::rootfs::stack::dir_meta(&lowers, &dest).is_some()
            || (opts.sources.len() == 1 && opts.sources[0].is_dir());
        let n = state.steps.len() + 1;
        std::fs::create_dir_all(pdir.join("steps"))
            .map_err(|e| ContainerError::Other(e.to_string()))?;
        let stage = tempfile::Builder::new()
            .prefix(".copy-")
            .tempdir_in(pdir.join("steps"))
            .map_err(|e| ContainerError::Other(format!("cannot stage the copy: {e}")))?;
        let root = stage.path();
        let target_dir = if dest_is_dir {
            dest.clone()
        } else {
            dest.parent().map(Path::to_path_buf).unwrap_or_default()
        };
        // Parents, with the image's metadata where the image has them.
        let mut parents = Vec::new();
        let mut a = Some(target_dir.as_path());
        while let Some(d) = a.filter(|d| !d.as_os_str().is_empty()) {
            parents.push(d.to_path_buf());
            a = d.parent();
        }
        std::fs::create_dir_all(root.join(&target_dir))
            .map_err(|e| ContainerError::Other(e.to_string()))?;
        for src in &opts.sources {
            let meta = std::fs::symlink_metadata(src)
                .map_err(|e| ContainerError::Other(format!("`{}`: {e}", src.display())))?;
            if meta.is_dir() {
                copy_tree(src, &root.join(&target_dir), opts.chmod, owner)?;
            } else {
                let file_name = if dest_is_dir {
                    src.file_name().map(PathBuf::from).unwrap_or_default()
                } else {
                    dest.file_name().map(PathBuf::from).unwrap_or_default()
                };
                copy_entry(
                    src,
                    &root.join(&target_dir).join(file_name),
                    opts.chmod,
                    owner,
                )?;
            }
        }
        // Deepest first: setting a child's times would change its parent's.
        parents.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for d in &parents {
            if crate::rootfs::stack::dir_meta(&lowers, d).is_some() {
                crate::rootfs::stack::copy_dir_meta(&lowers, d, &root.join(d));
            } else if dest_is_dir && *d == target_dir {
                apply_owner_mode(&root.join(d), Some(opts.chmod.unwrap_or(0o755)), owner)?;
            }
        }
        let rel = format!("steps/{n}");
        let final_dir = pdir.join(&rel);
        let _ = std::fs::remove_dir_all(&final_dir);
        let staged = stage.keep();
        std::fs::rename(&staged, &final_dir)
            .map_err(|e| ContainerError::Other(format!("cannot keep the copy: {e}")))?;
        let mut words: Vec<String> = vec!["emubuild".into(), "copy".into()];
        words.extend(opts.sources.iter().map(|s| s.display().to_string()));
        words.push(opts.dest.clone());
        let step = Step {
            created_by: crate::util::shell_join(&words),
            created: crate::util::rfc3339(crate::util::build_time()),
            dir: Some(rel),
            layer: None,
            compression: None,
        };
        state.steps.push(step.clone());
        cdir.write_platform(&state)?;
        steps.push(step);
    }
    Ok(steps)
}

fn apply_owner_mode(p: &Path, mode: Option<u32>, owner: (u32, u32)) -> Result<(), ContainerError> {
    std::os::unix::fs::lchown(p, Some(owner.0), Some(owner.1)).map_err(|e| {
        ContainerError::Other(format!("cannot set the owner of {}: {e}", p.display()))
    })?;
    if let Some(m) = mode {
        std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(m)).map_err(
            |e| ContainerError::Other(format!("cannot set the mode of {}: {e}", p.display())),
        )?;
    }
    Ok(())
}

/// Copies one host entry (file, symlink, directory tree) to `dest` in a new layer.
fn copy_entry(
    src: &Path,
    dest: &Path,
    chmod: Option<u32>,
    owner: (u32, u32),
) -> Result<(), ContainerError> {
    use std::os::unix::fs::MetadataExt;
    let err =
        |e: std::io::Error| ContainerError::Other(format!("cannot copy `{}`: {e}", src.display()));
    let meta = std::fs::symlink_metadata(src).map_err(err)?;
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(src).map_err(err)?;
        std::os::unix::fs::symlink(target, dest).map_err(err)?;
        let _ = std::os::unix::fs::lchown(dest, Some(owner.0), Some(owner.1));
        return Ok(());
    }
    if meta.is_dir() {
        std::fs::create_dir_all(dest).map_err(err)?;
        copy_tree(src, dest, chmod, owner)?;
        apply_owner_mode(dest, chmod.or(Some(meta.mode() & 0o7777)), owner)?;
        return Ok(());
    }
    if !meta.is_file() {
        return Err(ContainerError::Other(format!(
            "`{}` is not a regular file, directory or symlink",
            src.display()
        )));
    }
    std::fs::copy(src, dest).map_err(err)?;
    apply_owner_mode(dest, chmod.or(Some(meta.mode() & 0o7777)), owner)?;
    let t = nix::sys::time::TimeSpec::new(meta.mtime(), meta.mtime_nsec());
    let _ = nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        dest,
        &t,
        &t,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    );
    Ok(())
}

/// Copies a directory's contents into `dest`.
fn copy_tree(
    src: &Path,
    dest: &Path,
    chmod: Option<u32>,
    owner: (u32, u32),
) -> Result<(), ContainerError> {
    let mut names: Vec<_> = std::fs::read_dir(src)
        .map_err(|e| ContainerError::Other(format!("cannot read `{}`: {e}", src.display())))?
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    names.sort();
    for n in names {
        copy_entry(&src.join(&n), &dest.join(&n), chmod, owner)?;
    }
    Ok(())
}
