//! Image documents (index, manifest, config) as read from a layout, and choosing the image for
//! a platform the way containerd does: tags via `org.opencontainers.image.ref.name`, nested
//! indexes followed, the best platform match (arm/v7 falls back to v6, v5...) preferred. Docker's
//! media types are read too.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::layout::{Layout, LayoutError};
use crate::platform::Platform;

/// OCI image index media type.
pub const MT_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image manifest media type.
pub const MT_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image config media type.
pub const MT_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Uncompressed layer.
pub const MT_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// Gzip layer.
pub const MT_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// Zstd layer.
pub const MT_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// Docker manifest list.
pub const MT_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker manifest.
pub const MT_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// The tag annotation.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// A platform as JSON documents carry it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PlatformJson {
    /// CPU architecture.
    pub architecture: String,
    /// Operating system.
    pub os: String,
    /// Variant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// OS version.
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    /// OS features.
    #[serde(
        rename = "os.features",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_features: Option<Vec<String>>,
}

impl PlatformJson {
    /// Normalised.
    pub fn platform(&self) -> Platform {
        Platform::new(
            &self.os,
            &self.architecture,
            self.variant.as_deref().unwrap_or(""),
        )
    }

    /// From a normalised platform (variant only when it has one).
    pub fn from_platform(p: &Platform) -> PlatformJson {
        PlatformJson {
            architecture: p.architecture.clone(),
            os: p.os.clone(),
            variant: p.variant().map(str::to_string),
            os_version: None,
            os_features: None,
        }
    }
}

/// A content descriptor.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type.
    #[serde(default)]
    pub media_type: String,
    /// `sha256:...`.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
    /// Annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Platform (index entries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<PlatformJson>,
}

impl Descriptor {
    /// The tag annotation, if any.
    pub fn ref_name(&self) -> Option<&str> {
        self.annotations.as_ref()?.get(REF_NAME).map(String::as_str)
    }

    /// Is this an index (OCI or Docker)?
    pub fn is_index(&self) -> bool {
        self.media_type == MT_INDEX || self.media_type == MT_DOCKER_LIST
    }
}

/// An image index.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// 2.
    pub schema_version: u32,
    /// Media type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// Entries.
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// An image manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// 2.
    pub schema_version: u32,
    /// Media type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The config blob.
    pub config: Descriptor,
    /// Layers, bottom first.
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// The image chosen for one platform.
#[derive(Debug, Clone)]
pub struct Selected {
    /// The manifest's descriptor.
    pub manifest_desc: Descriptor,
    /// The manifest.
    pub manifest: Manifest,
    /// The config, as JSON (kept whole so nothing unknown is lost).
    pub config: serde_json::Value,
    /// The platform the config declares.
    pub platform: Platform,
}

/// Errors choosing an image.
#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    /// Reading the layout failed.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// The tag is not there.
    #[error("no tag `{tag}` in `{dir}`; tags there: {tags}")]
    NoTag {
        /// The tag.
        tag: String,
        /// The layout.
        dir: String,
        /// Its tags.
        tags: String,
    },
    /// Several images and no tag.
    #[error("`{dir}` holds several images; name one with `:TAG` (tags: {tags})")]
    Ambiguous {
        /// The layout.
        dir: String,
        /// Its tags.
        tags: String,
    },
    /// No image for the platform.
    #[error("no image for {wanted} in {source_ref}; it has {have}")]
    NoPlatform {
        /// The platform asked for.
        wanted: Platform,
        /// The image reference.
        source_ref: String,
        /// The platforms present.
        have: String,
    },
    /// A document is malformed.
    #[error("{0}")]
    Malformed(String),
}

fn parse<T: for<'de> Deserialize<'de>>(v: serde_json::Value, what: &str) -> Result<T, SelectError> {
    serde_json::from_value(v)
        .map_err(|e| SelectError::Malformed(format!("{what} is malformed: {e}")))
}

/// The platform a config declares.
pub fn config_platform(config: &serde_json::Value) -> Option<Platform> {
    let arch = config.get("architecture")?.as_str()?;
    let os = config.get("os")?.as_str().unwrap_or("linux");
    let variant = config.get("variant").and_then(|v| v.as_str()).unwrap_or("");
    Some(Platform::new(os, arch, variant))
}

/// Chooses the image in `layout` for `wanted` (any platform when None), by `tag` when given.
pub fn select(
    layout: &Layout,
    tag: Option<&str>,
    wanted: Option<&Platform>,
    source_ref: &str,
) -> Result<Selected, SelectError> {
    let root: Index = parse(layout.index()?, "index.json")?;
    let tags: Vec<String> = root
        .manifests
        .iter()
        .filter_map(|d| d.ref_name().map(str::to_string))
        .collect();
    let tags_s = if tags.is_empty() {
        "none".to_string()
    } else {
        tags.join(", ")
    };
    let candidates: Vec<Descriptor> = match tag {
        Some(t) => {
            let c: Vec<_> = root
                .manifests
                .iter()
                .filter(|d| d.ref_name() == Some(t))
                .cloned()
                .collect();
            if c.is_empty() {
                return Err(SelectError::NoTag {
                    tag: t.to_string(),
                    dir: layout.dir().display().to_string(),
                    tags: tags_s,
                });
            }
            c
        }
        None => root.manifests.clone(),
    };
    let mut seen = Vec::new();
    let mut best: Option<(u32, Selected)> = None;
    for d in &candidates {
        walk(layout, d, wanted, 0, &mut seen, &mut best)?;
    }
    if tag.is_none() && wanted.is_none() && candidates.len() > 1 {
        return Err(SelectError::Ambiguous {
            dir: layout.dir().display().to_string(),
            tags: tags_s,
        });
    }
    best.map(|(_, s)| s).ok_or_else(|| SelectError::NoPlatform {
        wanted: wanted.cloned().unwrap_or_else(Platform::host),
        source_ref: source_ref.to_string(),
        have: if seen.is_empty() {
            "no images".into()
        } else {
            seen.iter()
                .map(Platform::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        },
    })
}

fn walk(
    layout: &Layout,
    d: &Descriptor,
    wanted: Option<&Platform>,
    depth: usize,
    seen: &mut Vec<Platform>,
    best: &mut Option<(u32, Selected)>,
) -> Result<(), SelectError> {
    if depth > 8 {
        return Err(SelectError::Malformed(
            "image indexes nest more than 8 deep".into(),
        ));
    }
    // An entry whose platform cannot match is skipped without reading it.
    if let (Some(p), Some(w)) = (&d.platform, wanted)
        && p.platform().match_rank(w).is_none()
    {
        seen.push(p.platform());
        return Ok(());
    }
    let doc = layout.json_blob(&d.digest, Some(d.size))?;
    let is_index = d.is_index() || (d.media_type.is_empty() && doc.get("manifests").is_some());
    if is_index {
        let idx: Index = parse(doc, &format!("index {}", d.digest))?;
        for child in &idx.manifests {
            walk(layout, child, wanted, depth + 1, seen, best)?;
        }
        return Ok(());
    }
    let manifest: Manifest = parse(doc, &format!("manifest {}", d.digest))?;
    let config = layout.json_blob(&manifest.config.digest, Some(manifest.config.size))?;
    let platform = config_platform(&config)
        .or_else(|| d.platform.as_ref().map(PlatformJson::platform))
        .unwrap_or_else(Platform::host);
    seen.push(platform.clone());
    let rank = match wanted {
        Some(w) => match platform.match_rank(w) {
            Some(r) => r,
            None => return Ok(()),
        },
        None => 0,
    };
    if best.as_ref().is_none_or(|(r, _)| rank < *r) {
        *best = Some((
            rank,
            Selected {
                manifest_desc: d.clone(),
                manifest,
                config,
                platform,
            },
        ));
    }
    Ok(())
}
