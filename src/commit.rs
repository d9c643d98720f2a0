//! `emubuild commit`: every step of every platform as a layer (snapshotted once, cached in the
//! store), an image config and manifest per platform, and one OCI image index naming them all,
//! written to an OCI layout (`oci:DIR:TAG`) or an `oci-archive:FILE:TAG`.
//!
//! Pipeline: state -> rootfs::snapshot (step diff -> tar) -> oci::compress (digests in the same
//! pass) -> store blob -> config/manifest per platform -> index -> oci::write (blobs first,
//! index.json last).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::container::{ContainerError, Context};
use crate::oci::compress::{Compression, LayerWriter};
use crate::oci::document::{
    self, Descriptor, ImageConfig, ImageIndex, ImageManifest, MT_LAYER_GZIP, MT_LAYER_TAR,
    MT_LAYER_ZSTD, MediaType, to_json,
};
use crate::oci::reference::Destination;
use crate::oci::write::{LayoutWriter, pack_archive};
use crate::platform::Platform;
use crate::rootfs::snapshot::{SnapshotOptions, write_layer};
use crate::store::{LayerRef, PlatformState, StoreError};
use crate::warning::Warning;

/// Changes to the image config.
#[derive(Debug, Clone, Default)]
pub struct ConfigEdits {
    /// `Cmd`.
    pub cmd: Option<Vec<String>>,
    /// `Entrypoint` (empty clears it).
    pub entrypoint: Option<Vec<String>>,
    /// Environment variables to set.
    pub env: Vec<(String, String)>,
    /// Labels to set.
    pub labels: Vec<(String, String)>,
    /// `WorkingDir`.
    pub workdir: Option<String>,
    /// `User`.
    pub user: Option<String>,
}

/// Options of a commit.
#[derive(Debug, Clone)]
pub struct CommitOptions {
    /// Layer compression.
    pub compression: Compression,
    /// Config changes.
    pub edits: ConfigEdits,
    /// To a registry, an index even for one platform (otherwise its image manifest is pushed
    /// alone, as `docker push` and buildx's push-by-digest do). Layouts always get an index.
    pub index: bool,
}

/// One platform's image as committed.
#[derive(Debug, Clone, Serialize)]
pub struct PlatformImage {
    /// The platform.
    pub platform: String,
    /// Manifest digest.
    pub manifest: String,
    /// Config digest.
    pub config: String,
    /// Layers (bottom first).
    pub layers: Vec<String>,
}

/// What a commit wrote.
#[derive(Debug, Clone, Serialize)]
pub struct Committed {
    /// The digest DEST names: the index's, or the image manifest's when one image went to a
    /// registry alone.
    pub digest: String,
    /// The index's digest, when an index was written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<String>,
    /// Per platform.
    pub images: Vec<PlatformImage>,
    /// Where.
    pub dest: String,
    /// Things the user should know (platforms whose steps differ).
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        serialize_with = "crate::warning::as_text"
    )]
    pub warnings: Vec<Warning>,
}

struct Built {
    platform: Platform,
    /// The commands of its steps, in order.
    steps: Vec<String>,
    layers: Vec<LayerRef>,
    config: Vec<u8>,
    manifest: Vec<u8>,
}

/// Snapshots the steps of one platform that have no layer yet (or one with another
/// compression), storing each layer's blob in the store; updates the state.
fn snapshot_steps(
    ctx: &Context,
    pdir: &Path,
    state: &mut PlatformState,
    compression: Compression,
) -> Result<bool, ContainerError> {
    let clamp = ctx.epoch;
    // What a made layer depends on besides the step's files: a layer made without the clamp
    // (or with another) is not reused.
    let key = match clamp {
        Some(c) => format!("{compression};mtime<={c}"),
        None => compression.to_string(),
    };
    let mut changed = false;
    for step in state.steps.iter_mut() {
        let Some(dir) = &step.dir else { continue };
        let wanted_mt = compression.media_type();
        if step
            .layer
            .as_ref()
            .is_some_and(|l| l.media_type == wanted_mt && ctx.store.blobs().has_blob(&l.digest))
            && step.compression.as_deref() == Some(key.as_str())
        {
            continue;
        }
        let snapshot_err = |source| ContainerError::Snapshot {
            step: step.created_by.clone(),
            source,
        };
        let stage = ctx.store.staging()?;
        let tmp = stage.path().join("layer");
        let file = std::fs::File::create(&tmp).map_err(snapshot_err)?;
        let mut w = LayerWriter::new(
            std::io::BufWriter::with_capacity(1 << 20, file),
            compression,
        )
        .map_err(snapshot_err)?;
        write_layer(
            &pdir.join(dir),
            &mut w,
            &SnapshotOptions { clamp_mtime: clamp },
        )
        .map_err(snapshot_err)?;
        let (digests, out) = w.finish().map_err(snapshot_err)?;
        let file = out.into_inner().map_err(|e| snapshot_err(e.into_error()))?;
        file.sync_all().map_err(snapshot_err)?;
        let digest = format!("sha256:{}", digests.digest);
        let dest = ctx
            .store
            .blobs()
            .blob_path(&digest)
            .map_err(StoreError::from)?;
        if !dest.exists() {
            std::fs::rename(&tmp, &dest).map_err(ContainerError::io("store", &dest))?;
        }
        tracing::info!(step = %step.created_by, %digest, size = digests.size, "layer made");
        step.layer = Some(LayerRef {
            diff_id: format!("sha256:{}", digests.diff_id),
            digest,
            media_type: wanted_mt.to_string(),
            size: digests.size,
        });
        step.compression = Some(key.clone());
        changed = true;
    }
    Ok(changed)
}

/// OCI's name for a Docker layer media type (the bytes are the same).
fn oci_layer_type(mt: &str) -> &str {
    match mt {
        "application/vnd.docker.image.rootfs.diff.tar.gzip" => MT_LAYER_GZIP,
        "application/vnd.docker.image.rootfs.diff.tar" => MT_LAYER_TAR,
        "application/vnd.docker.image.rootfs.diff.tar.zstd" => MT_LAYER_ZSTD,
        "" => MT_LAYER_TAR,
        other => other,
    }
}

/// The image config of a platform after its steps and the edits, dated `now` (`epoch`, when
/// set, also clamps the base's history: nothing is dated after it).
pub fn image_config(
    state: &PlatformState,
    edits: &ConfigEdits,
    now: i64,
    epoch: Option<i64>,
) -> ImageConfig {
    let platform = &state.platform;
    let mut config = state.config.clone();
    let spec = &mut config.spec;
    spec.set_architecture(document::Arch::from(platform.architecture.as_str()));
    spec.set_os(document::Os::from(platform.os.as_str()));
    spec.set_variant(platform.written_variant().map(str::to_string));
    spec.set_created(Some(crate::util::rfc3339(now)));
    let mut diff_ids: Vec<String> = state
        .base_layers
        .iter()
        .map(|l| l.diff_id.clone())
        .collect();
    let mut history = config.history().to_vec();
    if let Some(e) = epoch {
        let limit = crate::util::rfc3339(e);
        for h in &mut history {
            let later = h
                .created()
                .as_deref()
                .is_some_and(|c| c.ends_with('Z') && c.len() >= 20 && c[..19] > limit[..19]);
            if later {
                h.set_created(Some(limit.clone()));
            }
        }
    }
    for step in &state.steps {
        let created = match epoch {
            Some(e) => crate::util::rfc3339(e),
            None => step.created.clone(),
        };
        let empty = match &step.layer {
            Some(l) => {
                diff_ids.push(l.diff_id.clone());
                false
            }
            None => true,
        };
        history.push(document::history(
            &created,
            &step.created_by,
            Some("emubuild run"),
            empty,
        ));
    }
    config.spec.rootfs_mut().set_diff_ids(diff_ids);
    config.spec.set_history(Some(history));
    config.edit_exec(|exec| {
        if let Some(cmd) = &edits.cmd {
            exec.set_cmd(Some(cmd.clone()));
        }
        if let Some(ep) = &edits.entrypoint {
            exec.set_entrypoint((!ep.is_empty()).then(|| ep.clone()));
        }
        if !edits.env.is_empty() {
            let mut env: Vec<String> = exec.env().clone().unwrap_or_default();
            for (k, v) in &edits.env {
                env.retain(|e| e.split_once('=').map(|(ek, _)| ek) != Some(k.as_str()));
                env.push(format!("{k}={v}"));
            }
            exec.set_env(Some(env));
        }
        if let Some(w) = &edits.workdir {
            exec.set_working_dir(Some(w.clone()));
        }
        if let Some(u) = &edits.user {
            exec.set_user(Some(u.clone()));
        }
    });
    for (k, v) in &edits.labels {
        config.set_label(k, v);
    }
    config
}

fn build_platform(
    ctx: &Context,
    name: &str,
    platform: &Platform,
    opts: &CommitOptions,
) -> Result<Built, ContainerError> {
    let cdir = ctx.container(name);
    let _lock = cdir.lock_platform(platform)?;
    let mut state = cdir.read_platform(platform)?;
    if snapshot_steps(
        ctx,
        &cdir.platform_dir(platform),
        &mut state,
        opts.compression,
    )? {
        cdir.write_platform(&state)?;
    }
    let steps: Vec<String> = state.steps.iter().map(|s| s.created_by.clone()).collect();
    let config = to_json(&image_config(&state, &opts.edits, ctx.now(), ctx.epoch));
    let mut layers: Vec<LayerRef> = state.base_layers.clone();
    layers.extend(state.steps.iter().filter_map(|s| s.layer.clone()));
    let mut layer_descs = Vec::new();
    for l in &layers {
        if !ctx.store.blobs().has_blob(&l.digest) {
            return Err(ContainerError::MissingLayer {
                digest: l.digest.clone(),
                platform: platform.clone(),
            });
        }
        let digest: document::Digest =
            l.digest.parse().map_err(|_| ContainerError::MissingLayer {
                digest: l.digest.clone(),
                platform: platform.clone(),
            })?;
        layer_descs.push(Descriptor::new(
            MediaType::from(oci_layer_type(&l.media_type)),
            l.size,
            digest,
        ));
    }
    let manifest: ImageManifest = oci_spec::image::ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(document::describe(MediaType::ImageConfig, &config))
        .layers(layer_descs)
        .build()
        .expect("every field of the manifest is set");
    Ok(Built {
        platform: platform.clone(),
        steps,
        layers,
        config,
        manifest: to_json(&manifest),
    })
}

/// Commits working container `name` to `dest`.
pub fn commit(
    ctx: &Context,
    name: &str,
    dest: &Destination,
    opts: &CommitOptions,
) -> Result<Committed, ContainerError> {
    let c = crate::container::read(ctx, name)?;
    let (dir, tag, archive, staging) = match dest {
        Destination::Layout { dir, tag } => (dir.clone(), tag.clone(), None, None),
        Destination::Archive { file, tag } => {
            let s = ctx.store.staging()?;
            (
                s.path().join("layout"),
                tag.clone(),
                Some(file.clone()),
                Some(s),
            )
        }
        Destination::Registry(r) => {
            return commit_to_registry(ctx, c.platforms, opts, name, r, dest);
        }
    };
    let built = build_all(ctx, name, &c.platforms, opts)?;
    let warnings = differences(&built);
    let index_bytes = index_of(&built);
    // Writes every blob, then the tag, into the layout at `into` (under its lock).
    let write_into = |into: &Path| -> Result<(String, Vec<PlatformImage>), ContainerError> {
        let w = LayoutWriter::open(into)?;
        let mut images = Vec::new();
        for b in &built {
            for l in &b.layers {
                let src = ctx
                    .store
                    .blobs()
                    .blob_path(&l.digest)
                    .map_err(StoreError::from)?;
                w.put_file(&l.digest, l.size, &src)?;
            }
            let (config_digest, _) = w.put_bytes(&b.config)?;
            let (manifest_digest, _) = w.put_bytes(&b.manifest)?;
            images.push(PlatformImage {
                platform: b.platform.to_string(),
                manifest: manifest_digest,
                config: config_digest,
                layers: b.layers.iter().map(|l| l.digest.clone()).collect(),
            });
        }
        w.put_bytes(&index_bytes)?;
        let index_desc = document::describe(MediaType::ImageIndex, &index_bytes);
        w.tag(&tag, &index_desc)?;
        Ok((index_desc.digest().to_string(), images))
    };
    let (index_digest, images) = write_layout(&dir, &write_into)?;
    if let Some(file) = &archive {
        let extra = docker_manifest(&tag, &images);
        pack_archive(&dir, file, &extra)?;
    }
    drop(staging);
    tracing::info!(dest = %dest, index = %index_digest, "committed");
    Ok(Committed {
        digest: index_digest.clone(),
        index: Some(index_digest),
        images,
        dest: dest.to_string(),
        warnings,
    })
}

/// Every platform, or nothing: a failure names the platform and writes nothing.
fn build_all(
    ctx: &Context,
    name: &str,
    platforms: &[Platform],
    opts: &CommitOptions,
) -> Result<Vec<Built>, ContainerError> {
    platforms
        .iter()
        .map(|p| {
            build_platform(ctx, name, p, opts).map_err(|e| ContainerError::CommitPlatform {
                platform: p.clone(),
                source: Box::new(e),
            })
        })
        .collect()
}

/// Platforms built by different steps (one failed, or a later `run --platform` took only
/// some) make an index whose images differ: said, not silently written.
fn differences(built: &[Built]) -> Vec<Warning> {
    let mut warnings = Vec::new();
    if let Some(first) = built.first() {
        for b in &built[1..] {
            if b.steps != first.steps {
                warnings.push(Warning::PlatformsDiffer {
                    a: first.platform.to_string(),
                    b: b.platform.to_string(),
                    count_a: first.steps.len(),
                    count_b: b.steps.len(),
                    difference: first_difference(&first.steps, &b.steps),
                });
            }
        }
    }
    warnings
}

/// The index naming every platform's manifest, with its platform.
fn index_of(built: &[Built]) -> Vec<u8> {
    let mut index = ImageIndex::default();
    index.set_media_type(Some(MediaType::ImageIndex));
    index.set_manifests(
        built
            .iter()
            .map(|b| {
                let mut d = document::describe(MediaType::ImageManifest, &b.manifest);
                d.set_platform(Some(document::oci_platform(&b.platform)));
                d
            })
            .collect(),
    );
    to_json(&index)
}

/// Builds every platform (all or none), then pushes blobs, manifests and the index, the
/// index last: by the reference's tag, or by digest alone.
fn commit_to_registry(
    ctx: &Context,
    platforms: Vec<Platform>,
    opts: &CommitOptions,
    name: &str,
    r: &crate::oci::reference::RegistryRef,
    dest: &Destination,
) -> Result<Committed, ContainerError> {
    use crate::registry::push::{Node, push};
    let built = build_all(ctx, name, &platforms, opts)?;
    let warnings = differences(&built);
    let mut images = Vec::new();
    let mut children = Vec::new();
    for b in &built {
        let config_digest = ctx.store.put_blob(&b.config)?;
        let mut blobs = vec![(config_digest.clone(), b.config.len() as u64)];
        blobs.extend(b.layers.iter().map(|l| (l.digest.clone(), l.size)));
        children.push(Node::Manifest {
            bytes: b.manifest.clone(),
            media_type: MediaType::ImageManifest.to_string(),
            blobs,
        });
        images.push(PlatformImage {
            platform: b.platform.to_string(),
            manifest: format!("sha256:{}", crate::digest::sha256_hex(&b.manifest)),
            config: config_digest,
            layers: b.layers.iter().map(|l| l.digest.clone()).collect(),
        });
    }
    let mut root = Node::Index {
        bytes: index_of(&built),
        media_type: MediaType::ImageIndex.to_string(),
        children,
    };
    if !opts.index {
        root = root.single();
    }
    let is_index = matches!(root, Node::Index { .. });
    let session = ctx.session()?;
    let pushed = push(
        &session,
        r,
        &root,
        &crate::transfer::Sources::with_store(&ctx.store),
    )?;
    Ok(Committed {
        index: is_index.then(|| pushed.digest.clone()),
        digest: pushed.digest,
        images,
        dest: dest.to_string(),
        warnings,
    })
}

/// A new layout is written beside its destination and renamed into place whole: killed
/// midway, nothing appears at DEST. An existing one is added to in place, blobs first and
/// `index.json` last.
fn write_layout<T>(
    dir: &Path,
    write_into: &dyn Fn(&Path) -> Result<T, ContainerError>,
) -> Result<T, ContainerError> {
    let fresh = std::fs::read_dir(dir).map_or(true, |mut d| d.next().is_none());
    if !fresh {
        return write_into(dir);
    }
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(ContainerError::io("create", parent))?;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}.emubuild-"))
        .tempdir_in(parent)
        .map_err(ContainerError::io("write into", parent))?;
    let out = write_into(tmp.path())?;
    crate::util::sync_dir(tmp.path());
    match std::fs::rename(tmp.path(), dir) {
        Ok(()) => {
            crate::util::sync_dir(parent);
            let _ = tmp.keep();
            Ok(out)
        }
        // Another commit made the layout meanwhile: add to it as to any existing one.
        Err(_) if dir.join("oci-layout").is_file() => write_into(dir),
        Err(e) => Err(ContainerError::io("move the new layout into", dir)(e)),
    }
}

/// Where two step lists first part: "step 3 is `apk add curl` in one, missing in the other".
fn first_difference(a: &[String], b: &[String]) -> String {
    let i = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let show = |l: &[String]| l.get(i).map_or("nothing".to_string(), |s| format!("`{s}`"));
    format!(
        "step {} is {} in one and {} in the other",
        i + 1,
        show(a),
        show(b)
    )
}

/// `manifest.json` for `docker load` (Docker 20.10 reads only its own archive format): one
/// entry per platform, tagged `TAG:<os>-<arch>[-<variant>]` when TAG is a valid repository name.
fn docker_manifest(tag: &str, images: &[PlatformImage]) -> BTreeMap<String, Vec<u8>> {
    let valid_repo = !tag.is_empty()
        && tag
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/".contains(c))
        && tag
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric());
    let entries: Vec<serde_json::Value> = images
        .iter()
        .map(|i| {
            let blob = |d: &str| format!("blobs/sha256/{}", d.trim_start_matches("sha256:"));
            let tags: Vec<String> = if valid_repo {
                vec![format!("{tag}:{}", i.platform.replace('/', "-"))]
            } else {
                Vec::new()
            };
            serde_json::json!({
                "Config": blob(&i.config),
                "RepoTags": tags,
                "Layers": i.layers.iter().map(|l| blob(l)).collect::<Vec<_>>(),
            })
        })
        .collect();
    let mut m = BTreeMap::new();
    m.insert(
        "manifest.json".to_string(),
        serde_json::to_vec(&entries).expect("serialisable"),
    );
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Step;

    #[test]
    fn config_history_and_edits() {
        let mut state = crate::container::scratch_state("linux/arm/v7".parse().unwrap());
        state.steps.push(Step {
            created_by: "apk add curl".into(),
            created: "2026-01-01T00:00:00Z".into(),
            dir: Some("steps/1".into()),
            layer: Some(LayerRef {
                diff_id: "sha256:aa".into(),
                digest: "sha256:bb".into(),
                media_type: MT_LAYER_GZIP.into(),
                size: 1,
            }),
            compression: Some("gzip:6".into()),
        });
        state.steps.push(Step {
            created_by: "true".into(),
            created: "2026-01-01T00:00:01Z".into(),
            dir: None,
            layer: None,
            compression: None,
        });
        let edits = ConfigEdits {
            cmd: Some(vec!["/bin/sh".into()]),
            env: vec![("PATH".into(), "/x".into()), ("A".into(), "1".into())],
            labels: vec![("org.example".into(), "yes".into())],
            ..ConfigEdits::default()
        };
        let c: serde_json::Value =
            serde_json::from_slice(&to_json(&image_config(&state, &edits, 0, None))).unwrap();
        assert_eq!(c["architecture"], "arm");
        assert_eq!(c["variant"], "v7");
        assert_eq!(c["rootfs"]["diff_ids"], serde_json::json!(["sha256:aa"]));
        let h = c["history"].as_array().unwrap();
        assert_eq!(h.len(), 2);
        assert_eq!(h[0]["created_by"], "apk add curl");
        assert_eq!(h[1]["empty_layer"], true);
        assert_eq!(c["config"]["Cmd"], serde_json::json!(["/bin/sh"]));
        assert_eq!(c["config"]["Env"], serde_json::json!(["PATH=/x", "A=1"]));
        assert_eq!(c["config"]["Labels"]["org.example"], "yes");
        // The epoch dates every entry and clamps later ones.
        let c: serde_json::Value =
            serde_json::from_slice(&to_json(&image_config(&state, &edits, 5, Some(5)))).unwrap();
        assert_eq!(c["created"], "1970-01-01T00:00:05Z");
        assert_eq!(c["history"][0]["created"], "1970-01-01T00:00:05Z");
    }
}
