//! Making a working container: the image opened (`oci::source`), its image for each platform
//! chosen (`oci::image`), its layers unpacked into the store once per content, or a root file
//! system tarball imported whole (its platform read from its programs), or nothing (`scratch`).

use std::path::{Path, PathBuf};

use super::{ContainerError, Context, DEFAULT_PATH};
use crate::arch::Table;
use crate::oci::document::ImageConfig;
use crate::oci::image::{self, Selected};
use crate::oci::layout::Layout;
use crate::oci::reference::Reference;
use crate::oci::source::ImageSource;
use crate::platform::Platform;
use crate::store::{Container, LayerRef, PlatformState, STATE_VERSION};
use crate::warning::Warning;

/// What creating produced.
#[derive(Debug)]
pub struct Created {
    /// The container.
    pub container: Container,
    /// Warnings (skipped entries of layers...).
    pub warnings: Vec<Warning>,
    /// True when it existed already with the same base and platforms.
    pub reused: bool,
}

/// Makes a working container `name` from `image` for `platforms` (the image's own platform, or
/// the host's, when empty). With `reuse`, an existing container of that name with the same
/// base and platforms is kept as it is.
pub fn create(
    ctx: &Context,
    name: &str,
    image: &Reference,
    platforms: &[Platform],
    reuse: bool,
) -> Result<Created, ContainerError> {
    crate::store::validate_name(name).map_err(|_| ContainerError::InvalidName(name.into()))?;
    let cdir = ctx.container(name);
    let _lock = cdir.lock()?;
    if cdir.exists() {
        let existing = cdir.read()?;
        if reuse
            && existing.base == image.to_string()
            && (platforms.is_empty() || platforms == existing.platforms)
        {
            return Ok(Created {
                container: existing,
                warnings: Vec::new(),
                reused: true,
            });
        }
        return Err(ContainerError::Exists {
            name: name.to_string(),
            base: existing.base,
            platforms: join(&existing.platforms),
        });
    }
    let source = ImageSource::open(image, &ctx.store.root().join("tmp"))?;
    let wanted: Vec<Option<&Platform>> = if platforms.is_empty() {
        vec![None]
    } else {
        platforms.iter().map(Some).collect()
    };
    let session = match &source {
        ImageSource::Registry(_) => Some(ctx.session()?),
        _ => None,
    };
    let mut warnings = Vec::new();
    let mut states = Vec::new();
    for p in wanted {
        let (state, w) = match &source {
            ImageSource::Registry(r) => import_from_registry(
                ctx,
                session.as_ref().expect("made above"),
                r,
                p,
                &image.to_string(),
            )?,
            ImageSource::Layout { layout, tag, .. } => {
                import_from_layout(ctx, layout, tag.as_deref(), p, &image.to_string())?
            }
            ImageSource::Rootfs(file) => import_rootfs(ctx, file, p)?,
            ImageSource::Scratch => (
                scratch_state(p.cloned().unwrap_or_else(Platform::host)),
                Vec::new(),
            ),
        };
        tracing::info!(container = name, platform = %state.platform, layers = state.base_layers.len(), "platform imported");
        warnings.extend(w);
        states.push(state);
    }
    drop(session);
    let container = Container {
        schema_version: STATE_VERSION,
        name: name.to_string(),
        base: image.to_string(),
        created: ctx.now() as u64,
        platforms: states.iter().map(|s| s.platform.clone()).collect(),
    };
    for s in &states {
        let dir = cdir.platform_dir(&s.platform);
        std::fs::create_dir_all(&dir).map_err(ContainerError::io("create", &dir))?;
        cdir.write_platform(s)?;
    }
    cdir.write(&container)?;
    Ok(Created {
        container,
        warnings,
        reused: false,
    })
}

/// Platforms as `a, b`.
pub(crate) fn join(platforms: &[Platform]) -> String {
    platforms
        .iter()
        .map(Platform::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn import_from_layout(
    ctx: &Context,
    l: &Layout,
    tag: Option<&str>,
    platform: Option<&Platform>,
    source: &str,
) -> Result<(PlatformState, Vec<Warning>), ContainerError> {
    let sel = image::select(l, tag, platform, source)?;
    import_selected(ctx, l, sel)
}

fn import_from_registry(
    ctx: &Context,
    session: &crate::registry::Session,
    r: &crate::oci::reference::RegistryRef,
    platform: Option<&Platform>,
    source: &str,
) -> Result<(PlatformState, Vec<Warning>), ContainerError> {
    let repo = crate::registry::Repository {
        session,
        reference: r.clone(),
        store: &ctx.store,
    };
    let root = repo.root()?;
    let sel = image::select_from(&repo, &[root], platform, source)?;
    import_selected(ctx, &repo, sel)
}

/// How many layers are fetched and unpacked at once.
const PARALLEL_LAYERS: usize = 4;

/// The chosen image's layers into the store (in parallel: each is verified and unpacked in
/// the same pass as it arrives), its config and manifest too; the platform's state.
fn import_selected(
    ctx: &Context,
    src: &dyn crate::store::BlobSource,
    sel: Selected,
) -> Result<(PlatformState, Vec<Warning>), ContainerError> {
    let Selected {
        manifest_desc,
        manifest,
        config,
        platform,
    } = sel;
    let layers_in = manifest.typed.layers();
    let diff_ids = config.typed.diff_ids();
    if diff_ids.len() != layers_in.len() {
        return Err(ContainerError::LayerCount {
            manifest: manifest_desc.digest().to_string(),
            layers: layers_in.len(),
            diff_ids: diff_ids.len(),
        });
    }
    let jobs: Vec<(&crate::oci::document::Descriptor, &String)> =
        layers_in.iter().zip(diff_ids).collect();
    let mut results = Vec::new();
    for chunk in jobs.chunks(PARALLEL_LAYERS) {
        let done: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = chunk
                .iter()
                .map(|(desc, diff_id)| {
                    s.spawn(|| {
                        ctx.store
                            .import_layer(src, desc, diff_id, ctx.xattrs(), ctx.rootless)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("layer import does not panic"))
                .collect()
        });
        results.extend(done);
    }
    let mut warnings = Vec::new();
    let mut layers: Vec<LayerRef> = Vec::new();
    for r in results {
        let (layer, w) = r?;
        warnings.extend(w);
        layers.push(layer);
    }
    ctx.store.put_blob(&config.bytes)?;
    ctx.store.put_blob(&manifest.bytes)?;
    Ok((
        PlatformState {
            schema_version: STATE_VERSION,
            platform,
            base_manifest: Some(manifest_desc.digest().to_string()),
            config: config.typed,
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
) -> Result<(PlatformState, Vec<Warning>), ContainerError> {
    let (layer, warnings) = ctx
        .store
        .import_rootfs_tar(file, ctx.xattrs(), ctx.rootless)?;
    let dir = ctx.store.layer_dir(&layer.diff_id)?;
    let detected = detect_platform(&dir);
    let target = |p: &Platform| Table::get().for_platform(p).map(|t| &t.name);
    let platform = match (platform, detected) {
        (Some(p), Some(d)) if target(p) != target(&d) => {
            return Err(ContainerError::RootfsPlatform {
                asked: p.to_string(),
                file: file.to_path_buf(),
                found: d.to_string(),
            });
        }
        (Some(p), _) => p.clone(),
        (None, Some(d)) => d,
        (None, None) => return Err(ContainerError::UnknownRootfsPlatform(file.to_path_buf())),
    };
    let mut state = scratch_state(platform);
    state.base_layers.push(layer.clone());
    state.config.push_layer(
        &layer.diff_id,
        &ctx.now_rfc3339(),
        &format!("emubuild from rootfs:{}", file.display()),
    );
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
    PlatformState {
        schema_version: STATE_VERSION,
        config: ImageConfig::empty(&platform, DEFAULT_PATH),
        platform,
        base_manifest: None,
        base_layers: Vec::new(),
        steps: Vec::new(),
    }
}
