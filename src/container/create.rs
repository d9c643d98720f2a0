//! Making a working container: the image opened (`oci::source`), its image for each platform
//! chosen (`oci::image`), its layers unpacked into the store once per content, or a root file
//! system tarball imported whole (its platform read from its programs), or nothing (`scratch`).

use std::path::{Path, PathBuf};

use super::{ContainerError, Context, DEFAULT_PATH};
use crate::arch::Table;
use crate::oci::document::ImageConfig;
use crate::oci::image::{self, Selected};
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
    // Each platform's image is chosen first (documents only), then every layer of all of
    // them is fetched and unpacked at once.
    let mut warnings = Vec::new();
    let states = match &source {
        ImageSource::Registry(r) => {
            let session = ctx.session()?;
            let repo = crate::registry::Repository {
                session: &session,
                reference: r.clone(),
                store: &ctx.store,
            };
            let root = repo.root()?;
            let name = image.to_string();
            // Each platform's manifest and config are fetched at once, not one after another.
            let selected = std::thread::scope(|s| {
                let handles: Vec<_> = wanted
                    .iter()
                    .map(|p| {
                        let (repo, root, name) = (&repo, &root, &name);
                        s.spawn(move || {
                            image::select_from(repo, std::slice::from_ref(root), *p, name)
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("choosing a platform does not panic"))
                    .collect::<Result<Vec<_>, _>>()
            })?;
            import_selected(ctx, &repo, selected, &mut warnings)?
        }
        ImageSource::Layout { layout, tag, .. } => {
            let selected = wanted
                .iter()
                .map(|p| image::select(layout, tag.as_deref(), *p, &image.to_string()))
                .collect::<Result<Vec<_>, _>>()?;
            import_selected(ctx, layout, selected, &mut warnings)?
        }
        ImageSource::Rootfs(file) => {
            let mut states = Vec::new();
            for p in &wanted {
                let (state, w) = import_rootfs(ctx, file, *p)?;
                warnings.extend(w);
                states.push(state);
            }
            states
        }
        ImageSource::Scratch => wanted
            .iter()
            .map(|p| scratch_state(p.cloned().unwrap_or_else(Platform::host)))
            .collect(),
    };
    for state in &states {
        tracing::info!(container = name, platform = %state.platform, layers = state.base_layers.len(), "platform imported");
    }
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

/// How many layers are fetched and unpacked at once.
const PARALLEL_LAYERS: usize = 6;

/// The chosen images' layers into the store, all platforms' at once (each layer once, each
/// verified and unpacked in the same pass as it arrives; the first failure stops the rest),
/// their configs and manifests too; each platform's state.
fn import_selected(
    ctx: &Context,
    src: &dyn crate::store::BlobSource,
    selected: Vec<Selected>,
    warnings: &mut Vec<Warning>,
) -> Result<Vec<PlatformState>, ContainerError> {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let mut jobs: Vec<(&crate::oci::document::Descriptor, &String)> = Vec::new();
    for sel in &selected {
        let layers_in = sel.manifest.typed.layers();
        let diff_ids = sel.config.typed.diff_ids();
        if diff_ids.len() != layers_in.len() {
            return Err(ContainerError::LayerCount {
                manifest: sel.manifest_desc.digest().to_string(),
                layers: layers_in.len(),
                diff_ids: diff_ids.len(),
            });
        }
        for job in layers_in.iter().zip(diff_ids) {
            if !jobs
                .iter()
                .any(|(d, id)| d.digest() == job.0.digest() && *id == job.1)
            {
                jobs.push(job);
            }
        }
    }
    type Imported = Result<(LayerRef, Vec<Warning>), crate::store::StoreError>;
    let results: Vec<Mutex<Option<Imported>>> = jobs.iter().map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    std::thread::scope(|s| {
        for _ in 0..PARALLEL_LAYERS.min(jobs.len()) {
            s.spawn(|| {
                while !failed.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((desc, diff_id)) = jobs.get(i) else {
                        break;
                    };
                    let r = ctx
                        .store
                        .import_layer(src, desc, diff_id, ctx.xattrs(), ctx.rootless);
                    if r.is_err() {
                        failed.store(true, Ordering::Relaxed);
                    }
                    *results[i].lock().expect("not poisoned") = Some(r);
                }
            });
        }
    });
    let mut imported: Vec<LayerRef> = Vec::new();
    for r in results {
        // Jobs never started (after a failure) have no result; the failure comes first.
        match r.into_inner().expect("not poisoned") {
            Some(Ok((layer, w))) => {
                warnings.extend(w);
                imported.push(layer);
            }
            Some(Err(e)) => return Err(e.into()),
            None => {}
        }
    }
    let mut states = Vec::new();
    for sel in selected {
        let Selected {
            manifest_desc,
            manifest,
            config,
            platform,
        } = sel;
        let layers = manifest
            .typed
            .layers()
            .iter()
            .zip(config.typed.diff_ids())
            .map(|(d, id)| {
                imported
                    .iter()
                    .find(|l| l.digest == d.digest().to_string() && l.diff_id == *id)
                    .cloned()
                    .expect("every layer was imported")
            })
            .collect();
        ctx.store.put_blob(&config.bytes)?;
        ctx.store.put_blob(&manifest.bytes)?;
        states.push(PlatformState {
            schema_version: STATE_VERSION,
            platform,
            base_manifest: Some(manifest_desc.digest().to_string()),
            config: config.typed,
            base_layers: layers,
            steps: Vec::new(),
        });
    }
    Ok(states)
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
