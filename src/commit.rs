//! `emubuild commit`: every step of every platform as a layer (snapshotted once, cached in the
//! store), an image config and manifest per platform, and one OCI image index naming them all,
//! written to an OCI layout (`oci:DIR:TAG`) or an `oci-archive:FILE:TAG`.
//!
//! Pipeline: state -> rootfs::snapshot (step diff -> tar) -> oci::compress (digests in the same
//! pass) -> store blob -> config/manifest per platform -> index -> oci::write (blobs first,
//! index.json last).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::container::{ContainerError, Context};
use crate::oci::compress::{Compression, LayerWriter};
use crate::oci::image::{
    Descriptor, Index, MT_CONFIG, MT_INDEX, MT_LAYER_GZIP, MT_LAYER_TAR, MT_LAYER_ZSTD,
    MT_MANIFEST, Manifest, PlatformJson,
};
use crate::oci::write::{LayoutWriter, pack_archive};
use crate::platform::Platform;
use crate::rootfs::snapshot::{SnapshotOptions, write_layer};
use crate::store::{LayerRef, PlatformState, StoreError};

/// Where a commit goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dest {
    /// An OCI layout directory and a tag.
    Oci {
        /// The layout.
        dir: PathBuf,
        /// The tag.
        tag: String,
    },
    /// An `oci-archive` tar file and a tag.
    OciArchive {
        /// The file.
        file: PathBuf,
        /// The tag.
        tag: String,
    },
}

impl std::str::FromStr for Dest {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let split = |rest: &str| -> (PathBuf, String) {
            match rest.rsplit_once(':') {
                Some((p, t)) if !t.contains('/') && !t.is_empty() && !p.is_empty() => {
                    (PathBuf::from(p), t.to_string())
                }
                _ => (PathBuf::from(rest), "latest".to_string()),
            }
        };
        if let Some(rest) = s.strip_prefix("oci:") {
            let (dir, tag) = split(rest);
            return Ok(Dest::Oci { dir, tag });
        }
        if let Some(rest) = s.strip_prefix("oci-archive:") {
            let (file, tag) = split(rest);
            return Ok(Dest::OciArchive { file, tag });
        }
        Err(format!(
            "`{s}` is not a destination; use oci:DIR[:TAG] or oci-archive:FILE[:TAG]"
        ))
    }
}

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
    /// The index digest.
    pub index: String,
    /// Per platform.
    pub images: Vec<PlatformImage>,
    /// Where.
    pub dest: String,
    /// Things the user should know (platforms whose steps differ).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
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
    let clamp = crate::util::source_date_epoch();
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
        let stage = ctx.store.staging()?;
        let tmp = stage.path().join("layer");
        let file = std::fs::File::create(&tmp)
            .map_err(|e| ContainerError::Other(format!("cannot write a layer: {e}")))?;
        let mut w = LayerWriter::new(
            std::io::BufWriter::with_capacity(1 << 20, file),
            compression,
        )
        .map_err(|e| ContainerError::Other(format!("cannot start compressing: {e}")))?;
        write_layer(
            &pdir.join(dir),
            &mut w,
            &SnapshotOptions { clamp_mtime: clamp },
        )
        .map_err(|e| {
            ContainerError::Other(format!("cannot snapshot step `{}`: {e}", step.created_by))
        })?;
        let (digests, out) = w
            .finish()
            .map_err(|e| ContainerError::Other(format!("cannot finish a layer: {e}")))?;
        let file = out
            .into_inner()
            .map_err(|e| ContainerError::Other(format!("cannot write a layer: {}", e.error())))?;
        file.sync_all()
            .map_err(|e| ContainerError::Other(format!("cannot write a layer: {e}")))?;
        let digest = format!("sha256:{}", digests.digest);
        let dest = ctx
            .store
            .blobs()
            .blob_path(&digest)
            .map_err(StoreError::from)?;
        if !dest.exists() {
            std::fs::rename(&tmp, &dest)
                .map_err(|e| ContainerError::Other(format!("cannot store a layer: {e}")))?;
        }
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

/// The image config of a platform after its steps and the edits.
pub fn image_config(state: &PlatformState, edits: &ConfigEdits) -> serde_json::Value {
    let platform = state.platform();
    let epoch = crate::util::source_date_epoch();
    let mut config = state.config.clone();
    if !config.is_object() {
        config = serde_json::json!({});
    }
    config["architecture"] = serde_json::json!(platform.architecture);
    config["os"] = serde_json::json!(platform.os);
    match platform.variant() {
        Some(v) => config["variant"] = serde_json::json!(v),
        None => {
            if let Some(o) = config.as_object_mut() {
                o.remove("variant");
            }
        }
    }
    config["created"] = serde_json::json!(crate::util::rfc3339(crate::util::build_time()));
    let mut diff_ids: Vec<serde_json::Value> = state
        .base_layers
        .iter()
        .map(|l| serde_json::json!(l.diff_id))
        .collect();
    let mut history: Vec<serde_json::Value> = config
        .get("history")
        .and_then(|h| h.as_array())
        .cloned()
        .unwrap_or_default();
    // SOURCE_DATE_EPOCH clamps the base's history too (`emubuild from rootfs:` dates its entry
    // at import): nothing is dated after the epoch.
    if let Some(e) = epoch {
        let limit = crate::util::rfc3339(e);
        for h in &mut history {
            let later = h
                .get("created")
                .and_then(|c| c.as_str())
                .is_some_and(|c| c.ends_with('Z') && c.len() >= 20 && c[..19] > limit[..19]);
            if later {
                h["created"] = serde_json::json!(limit);
            }
        }
    }
    for step in &state.steps {
        let created = match epoch {
            Some(e) => crate::util::rfc3339(e),
            None => step.created.clone(),
        };
        let mut h = serde_json::json!({"created": created, "created_by": step.created_by, "comment": "emubuild run"});
        match &step.layer {
            Some(l) => diff_ids.push(serde_json::json!(l.diff_id)),
            None => h["empty_layer"] = serde_json::json!(true),
        }
        history.push(h);
    }
    config["rootfs"] = serde_json::json!({"type": "layers", "diff_ids": diff_ids});
    config["history"] = serde_json::Value::Array(history);
    if !config.get("config").is_some_and(|c| c.is_object()) {
        config["config"] = serde_json::json!({});
    }
    let c = &mut config["config"];
    if let Some(cmd) = &edits.cmd {
        c["Cmd"] = serde_json::json!(cmd);
    }
    if let Some(ep) = &edits.entrypoint {
        if ep.is_empty() {
            if let Some(o) = c.as_object_mut() {
                o.remove("Entrypoint");
            }
        } else {
            c["Entrypoint"] = serde_json::json!(ep);
        }
    }
    if !edits.env.is_empty() {
        let mut env: Vec<String> = c
            .get("Env")
            .and_then(|e| e.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        for (k, v) in &edits.env {
            env.retain(|e| e.split_once('=').map(|(ek, _)| ek) != Some(k.as_str()));
            env.push(format!("{k}={v}"));
        }
        c["Env"] = serde_json::json!(env);
    }
    if !edits.labels.is_empty() {
        if !c.get("Labels").is_some_and(|l| l.is_object()) {
            c["Labels"] = serde_json::json!({});
        }
        for (k, v) in &edits.labels {
            c["Labels"][k] = serde_json::json!(v);
        }
    }
    if let Some(w) = &edits.workdir {
        c["WorkingDir"] = serde_json::json!(w);
    }
    if let Some(u) = &edits.user {
        c["User"] = serde_json::json!(u);
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
    let config = image_config(&state, &opts.edits);
    let config_bytes = serde_json::to_vec(&config).expect("serialisable");
    let config_digest = format!("sha256:{}", crate::digest::sha256_hex(&config_bytes));
    let mut layers: Vec<LayerRef> = state.base_layers.clone();
    layers.extend(state.steps.iter().filter_map(|s| s.layer.clone()));
    for l in &layers {
        if !ctx.store.blobs().has_blob(&l.digest) {
            return Err(ContainerError::Other(format!(
                "layer {} of {platform} is missing from the store; recreate the working container",
                l.digest
            )));
        }
    }
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(MT_MANIFEST.to_string()),
        config: Descriptor {
            media_type: MT_CONFIG.to_string(),
            digest: config_digest,
            size: config_bytes.len() as u64,
            annotations: None,
            platform: None,
        },
        layers: layers
            .iter()
            .map(|l| Descriptor {
                media_type: oci_layer_type(&l.media_type).to_string(),
                digest: l.digest.clone(),
                size: l.size,
                annotations: None,
                platform: None,
            })
            .collect(),
        annotations: None,
    };
    Ok(Built {
        platform: platform.clone(),
        steps,
        layers,
        config: config_bytes,
        manifest: serde_json::to_vec(&manifest).expect("serialisable"),
    })
}

/// Commits working container `name` to `dest`.
pub fn commit(
    ctx: &Context,
    name: &str,
    dest: &Dest,
    opts: &CommitOptions,
) -> Result<Committed, ContainerError> {
    let c = ctx
        .container(name)
        .read()
        .map_err(|_| ContainerError::Store(StoreError::NoContainer(name.to_string())))?;
    let platforms: Vec<Platform> = c.platforms.iter().filter_map(|p| p.parse().ok()).collect();
    if platforms.len() != c.platforms.len() || platforms.is_empty() {
        return Err(ContainerError::Other(format!(
            "working container `{name}` has unreadable platforms: {:?}",
            c.platforms
        )));
    }
    // Every platform, or nothing: a failure names the platform and writes nothing.
    let mut built = Vec::new();
    for p in &platforms {
        let b = build_platform(ctx, name, p, opts)
            .map_err(|e| ContainerError::Other(format!("{p}: {e}; nothing was written")))?;
        built.push(b);
    }
    // Platforms built by different steps (one failed, or a later `run --platform` took only
    // some) make an index whose images differ: said, not silently written.
    let mut warnings = Vec::new();
    if let Some(first) = built.first() {
        for b in &built[1..] {
            if b.steps != first.steps {
                warnings.push(format!(
                    "{} and {} were built by different steps ({} vs {}: {}); their images differ",
                    first.platform,
                    b.platform,
                    first.steps.len(),
                    b.steps.len(),
                    first_difference(&first.steps, &b.steps)
                ));
            }
        }
    }
    let index = Index {
        schema_version: 2,
        media_type: Some(MT_INDEX.to_string()),
        manifests: built
            .iter()
            .map(|b| Descriptor {
                media_type: MT_MANIFEST.to_string(),
                digest: format!("sha256:{}", crate::digest::sha256_hex(&b.manifest)),
                size: b.manifest.len() as u64,
                annotations: None,
                platform: Some(PlatformJson::from_platform(&b.platform)),
            })
            .collect(),
        annotations: None,
    };
    let index_bytes = serde_json::to_vec(&index).expect("serialisable");
    let (dir, tag, archive, staging) = match dest {
        Dest::Oci { dir, tag } => (dir.clone(), tag.clone(), None, None),
        Dest::OciArchive { file, tag } => {
            let s = ctx.store.staging()?;
            (
                s.path().join("layout"),
                tag.clone(),
                Some(file.clone()),
                Some(s),
            )
        }
    };
    let io = |e: crate::oci::write::WriteError| ContainerError::Other(format!("{e:#}"));
    // Writes every blob, then the tag, into the layout at `into` (under its lock).
    let write_into = |into: &Path| -> Result<(String, Vec<PlatformImage>), ContainerError> {
        let w = LayoutWriter::open(into).map_err(io)?;
        let mut images = Vec::new();
        for b in &built {
            for l in &b.layers {
                let src = ctx
                    .store
                    .blobs()
                    .blob_path(&l.digest)
                    .map_err(StoreError::from)?;
                w.put_file(&l.digest, l.size, &src).map_err(io)?;
            }
            let (config_digest, _) = w.put_bytes(&b.config).map_err(io)?;
            let (manifest_digest, _) = w.put_bytes(&b.manifest).map_err(io)?;
            images.push(PlatformImage {
                platform: b.platform.to_string(),
                manifest: manifest_digest,
                config: config_digest,
                layers: b.layers.iter().map(|l| l.digest.clone()).collect(),
            });
        }
        let (index_digest, index_size) = w.put_bytes(&index_bytes).map_err(io)?;
        let index_desc = Descriptor {
            media_type: MT_INDEX.to_string(),
            digest: index_digest.clone(),
            size: index_size,
            annotations: None,
            platform: None,
        };
        w.tag(&tag, &index_desc).map_err(io)?;
        Ok((index_digest, images))
    };
    // A new layout is written beside its destination and renamed into place whole: killed
    // midway, nothing appears at DEST. An existing one is added to in place, blobs first and
    // `index.json` last.
    let fresh = std::fs::read_dir(&dir).map_or(true, |mut d| d.next().is_none());
    let (index_digest, images) = if fresh {
        let parent = dir
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).map_err(|e| {
            ContainerError::Other(format!("cannot create `{}`: {e}", parent.display()))
        })?;
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}.emubuild-"))
            .tempdir_in(parent)
            .map_err(|e| {
                ContainerError::Other(format!("cannot write into `{}`: {e}", parent.display()))
            })?;
        let out = write_into(tmp.path())?;
        crate::util::sync_dir(tmp.path());
        match std::fs::rename(tmp.path(), &dir) {
            Ok(()) => {
                crate::util::sync_dir(parent);
                let _ = tmp.keep();
                out
            }
            // Another commit made the layout meanwhile: add to it as to any existing one.
            Err(_) if dir.join("oci-layout").is_file() => write_into(&dir)?,
            Err(e) => {
                return Err(ContainerError::Other(format!(
                    "cannot move the new layout into `{}`: {e}",
                    dir.display()
                )));
            }
        }
    } else {
        write_into(&dir)?
    };
    if let Some(file) = &archive {
        let extra = docker_manifest(&tag, &images);
        pack_archive(&dir, file, &extra).map_err(io)?;
    }
    drop(staging);
    Ok(Committed {
        index: index_digest,
        images,
        dest: match dest {
            Dest::Oci { dir, tag } => format!("oci:{}:{tag}", dir.display()),
            Dest::OciArchive { file, tag } => format!("oci-archive:{}:{tag}", file.display()),
        },
        warnings,
    })
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
    fn destinations() {
        assert_eq!(
            "oci:/out:v1".parse::<Dest>().unwrap(),
            Dest::Oci {
                dir: "/out".into(),
                tag: "v1".into()
            }
        );
        assert_eq!(
            "oci:./out".parse::<Dest>().unwrap(),
            Dest::Oci {
                dir: "./out".into(),
                tag: "latest".into()
            }
        );
        assert!("docker://x".parse::<Dest>().is_err());
    }

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
        let c = image_config(&state, &edits);
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
    }
}
