//! `emubuild inspect`: what an OCI layout holds under a tag: the index, each platform's
//! manifest, config, layers and history (the front end shows or prints it as JSON).

use serde::Serialize;

use crate::oci::document::{
    Descriptor, Doc, History, ImageConfig, ImageIndex, ImageManifest, is_index, platform_of,
    ref_name,
};
use crate::oci::image::{Documents, SelectError};
use crate::oci::layout::{Layout, LayoutError};

/// One image.
#[derive(Debug, Serialize)]
pub struct ImageReport {
    /// Its platform.
    pub platform: String,
    /// Manifest digest.
    pub manifest: String,
    /// Config digest.
    pub config: String,
    /// Layers.
    pub layers: Vec<Descriptor>,
    /// History entries (created, created_by, empty_layer).
    pub history: Vec<History>,
    /// Cmd, Entrypoint, Env, WorkingDir, User, Labels.
    pub settings: serde_json::Value,
}

/// A tag.
#[derive(Debug, Serialize)]
pub struct TagReport {
    /// The tag (empty when untagged).
    pub tag: String,
    /// The descriptor index.json holds.
    pub descriptor: Descriptor,
    /// The images under it.
    pub images: Vec<ImageReport>,
}

/// Reads the tags (one, or all) of a layout.
pub fn inspect(layout: &Layout, tag: Option<&str>) -> Result<Vec<TagReport>, SelectError> {
    let root = layout.index()?.typed;
    let roots: Vec<(String, Descriptor)> = root
        .manifests()
        .iter()
        .filter(|d| tag.is_none_or(|t| ref_name(d) == Some(t)))
        .map(|d| (ref_name(d).unwrap_or("").to_string(), d.clone()))
        .collect();
    if roots.is_empty() {
        return Err(LayoutError::Json {
            what: format!("tag `{}`", tag.unwrap_or("")),
            dir: layout.dir().to_path_buf(),
            reason: "not in index.json".into(),
        }
        .into());
    }
    inspect_roots(layout, &roots)
}

/// Reads what each (tag, descriptor) leads to, from any document source (a layout, a
/// registry repository).
pub fn inspect_roots(
    docs: &dyn Documents,
    roots: &[(String, Descriptor)],
) -> Result<Vec<TagReport>, SelectError> {
    let mut out = Vec::new();
    for (tag, d) in roots {
        let mut images = Vec::new();
        collect(docs, d, &mut images, 0)?;
        out.push(TagReport {
            tag: tag.clone(),
            descriptor: d.clone(),
            images,
        });
    }
    Ok(out)
}

fn parse<T: for<'de> serde::Deserialize<'de>>(
    docs: &dyn Documents,
    d: &Descriptor,
    kind: &'static str,
) -> Result<Doc<T>, SelectError> {
    let bytes = docs.read(d)?;
    let typed = crate::oci::document::parse(&bytes, d.digest().as_ref(), kind)
        .map_err(|e| SelectError::Malformed(e.to_string()))?;
    Ok(Doc { typed, bytes })
}

fn collect(
    docs: &dyn Documents,
    d: &Descriptor,
    out: &mut Vec<ImageReport>,
    depth: usize,
) -> Result<(), SelectError> {
    if depth < 8 && is_index(d) {
        let idx: Doc<ImageIndex> = parse(docs, d, "image index")?;
        for child in idx.typed.manifests() {
            collect(docs, child, out, depth + 1)?;
        }
        return Ok(());
    }
    let m: Doc<ImageManifest> = parse(docs, d, "image manifest")?;
    let config: Doc<ImageConfig> = parse(docs, m.typed.config(), "image config")?;
    let c = &config.typed;
    let platform = d
        .platform()
        .as_ref()
        .map(platform_of)
        .unwrap_or_else(|| c.platform())
        .to_string();
    let exec = serde_json::to_value(c.spec.config()).unwrap_or_default();
    let pick = |k: &str| exec.get(k).cloned().unwrap_or(serde_json::Value::Null);
    out.push(ImageReport {
        platform,
        manifest: d.digest().to_string(),
        config: m.typed.config().digest().to_string(),
        layers: m.typed.layers().clone(),
        history: c.history().to_vec(),
        settings: serde_json::json!({
            "Cmd": pick("Cmd"), "Entrypoint": pick("Entrypoint"), "Env": pick("Env"),
            "WorkingDir": pick("WorkingDir"), "User": pick("User"), "Labels": pick("Labels"),
        }),
    });
    Ok(())
}
