//! `emubuild inspect`: what an OCI layout holds under a tag: the index, each platform's
//! manifest, config, layers and history.

use serde::Serialize;

use crate::oci::image::{Descriptor, Index, Manifest, config_platform};
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
    pub history: Vec<serde_json::Value>,
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
pub fn inspect(layout: &Layout, tag: Option<&str>) -> Result<Vec<TagReport>, LayoutError> {
    let root: Index = serde_json::from_value(layout.index()?).map_err(|e| LayoutError::Json {
        what: "index.json".into(),
        dir: layout.dir().to_path_buf(),
        reason: e.to_string(),
    })?;
    let mut out = Vec::new();
    for d in root
        .manifests
        .iter()
        .filter(|d| tag.is_none_or(|t| d.ref_name() == Some(t)))
    {
        let mut images = Vec::new();
        collect(layout, d, &mut images, 0)?;
        out.push(TagReport {
            tag: d.ref_name().unwrap_or("").to_string(),
            descriptor: d.clone(),
            images,
        });
    }
    if out.is_empty() {
        return Err(LayoutError::Json {
            what: format!("tag `{}`", tag.unwrap_or("")),
            dir: layout.dir().to_path_buf(),
            reason: "not in index.json".into(),
        });
    }
    Ok(out)
}

fn collect(
    layout: &Layout,
    d: &Descriptor,
    out: &mut Vec<ImageReport>,
    depth: usize,
) -> Result<(), LayoutError> {
    let doc = layout.json_blob(&d.digest, Some(d.size))?;
    if depth < 8 && (d.is_index() || doc.get("manifests").is_some()) {
        let idx: Index = serde_json::from_value(doc).map_err(|e| LayoutError::Json {
            what: d.digest.clone(),
            dir: layout.dir().to_path_buf(),
            reason: e.to_string(),
        })?;
        for child in &idx.manifests {
            collect(layout, child, out, depth + 1)?;
        }
        return Ok(());
    }
    let m: Manifest = serde_json::from_value(doc).map_err(|e| LayoutError::Json {
        what: d.digest.clone(),
        dir: layout.dir().to_path_buf(),
        reason: e.to_string(),
    })?;
    let config = layout.json_blob(&m.config.digest, Some(m.config.size))?;
    let platform = config_platform(&config)
        .map(|p| p.to_string())
        .or_else(|| d.platform.as_ref().map(|p| p.platform().to_string()))
        .unwrap_or_default();
    let c = config.get("config").cloned().unwrap_or_default();
    let pick = |k: &str| c.get(k).cloned().unwrap_or(serde_json::Value::Null);
    out.push(ImageReport {
        platform,
        manifest: d.digest.clone(),
        config: m.config.digest.clone(),
        layers: m.layers.clone(),
        history: config
            .get("history")
            .and_then(|h| h.as_array())
            .cloned()
            .unwrap_or_default(),
        settings: serde_json::json!({
            "Cmd": pick("Cmd"), "Entrypoint": pick("Entrypoint"), "Env": pick("Env"),
            "WorkingDir": pick("WorkingDir"), "User": pick("User"), "Labels": pick("Labels"),
        }),
    });
    Ok(())
}

/// Prints a human-readable report.
pub fn print(tags: &[TagReport]) {
    for t in tags {
        println!(
            "tag {}: {} {}",
            if t.tag.is_empty() { "(none)" } else { &t.tag },
            t.descriptor.media_type,
            t.descriptor.digest
        );
        for i in &t.images {
            println!("  {}  manifest {}", i.platform, i.manifest);
            println!("    config {}", i.config);
            for s in ["Entrypoint", "Cmd", "WorkingDir", "User"] {
                if !i.settings[s].is_null() && i.settings[s] != "" {
                    println!("    {s}: {}", i.settings[s]);
                }
            }
            println!("    layers:");
            for l in &i.layers {
                println!("      {} {:>10} {}", l.digest, l.size, l.media_type);
            }
            println!("    history:");
            for h in &i.history {
                let by = h.get("created_by").and_then(|v| v.as_str()).unwrap_or("");
                let empty = h
                    .get("empty_layer")
                    .and_then(|v| v.as_bool())
                    .unwrap_or(false);
                let at = h.get("created").and_then(|v| v.as_str()).unwrap_or("");
                println!("      {at}  {}{by}", if empty { "(no layer) " } else { "" });
            }
        }
    }
}
