//! The OCI documents, typed by oci-spec: descriptors, indexes, manifests, platforms and the
//! image configuration. Docker's media types are read too (their documents have the same
//! shape). Documents that were read keep their exact bytes wherever a digest must survive
//! (`Doc`), and the image configuration keeps every field oci-spec does not model
//! (`ImageConfig`'s flattened maps: `Healthcheck`, `OnBuild`, `Shell`, Docker's
//! `container_config`...), so nothing of a base image is lost on the way to a commit.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use oci_spec::image::{
    Arch, Descriptor, Digest, History, ImageConfiguration, ImageIndex, ImageManifest, MediaType, Os,
};

use crate::platform::Platform;

/// The tag annotation of layout index entries.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
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

/// A document that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("{what} is not a valid {kind}: {reason}")]
pub struct DocError {
    /// Which document (a digest, `index.json`).
    pub what: String,
    /// What it should be (`image index`).
    pub kind: &'static str,
    /// What serde said.
    pub reason: String,
}

/// Parses a JSON document of type `T` (`kind` names it in errors).
pub fn parse<T: for<'de> Deserialize<'de>>(
    bytes: &[u8],
    what: &str,
    kind: &'static str,
) -> Result<T, DocError> {
    serde_json::from_slice(bytes).map_err(|e| DocError {
        what: what.to_string(),
        kind,
        reason: e.to_string(),
    })
}

/// A document as read: its typed form and the exact bytes its digest is of.
#[derive(Debug, Clone)]
pub struct Doc<T> {
    /// The parsed document.
    pub typed: T,
    /// Its bytes, as they were.
    pub bytes: Vec<u8>,
}

/// The JSON we write: keys sorted (serde_json's map), so the same document always gives the
/// same bytes and digest.
pub fn to_json<T: Serialize>(v: &T) -> Vec<u8> {
    let value = serde_json::to_value(v).expect("documents serialise");
    serde_json::to_vec(&value).expect("values serialise")
}

/// A descriptor of `bytes` (digest and size computed).
pub fn describe(media_type: MediaType, bytes: &[u8]) -> Descriptor {
    Descriptor::new(
        media_type,
        bytes.len() as u64,
        sha256_digest(&crate::digest::sha256_hex(bytes)),
    )
}

/// `sha256:<hex>` as a digest (the hex is ours, always valid).
pub fn sha256_digest(hex: &str) -> Digest {
    format!("sha256:{hex}")
        .parse()
        .expect("a sha256 hex digest is valid")
}

/// A descriptor with only what names the content: media type, digest and size.
pub fn bare(d: &Descriptor) -> Descriptor {
    Descriptor::new(d.media_type().clone(), d.size(), d.digest().clone())
}

/// Is this descriptor an index (OCI index or Docker manifest list)?
pub fn is_index(d: &Descriptor) -> bool {
    match d.media_type() {
        MediaType::ImageIndex => true,
        MediaType::Other(m) => m == MT_DOCKER_LIST,
        _ => false,
    }
}

/// The tag annotation, if any.
pub fn ref_name(d: &Descriptor) -> Option<&str> {
    d.annotations().as_ref()?.get(REF_NAME).map(String::as_str)
}

/// The descriptor with its tag annotation set to `tag`.
pub fn tagged(d: &Descriptor, tag: &str) -> Descriptor {
    let mut d = d.clone();
    let mut ann = d.annotations().clone().unwrap_or_default();
    ann.insert(REF_NAME.to_string(), tag.to_string());
    d.set_annotations(Some(ann));
    d
}

/// Our platform (normalised, containerd's rules) of an OCI platform.
pub fn platform_of(p: &oci_spec::image::Platform) -> Platform {
    Platform::new(
        &p.os().to_string(),
        &p.architecture().to_string(),
        p.variant().as_deref().unwrap_or(""),
    )
}

/// The OCI platform of ours (a variant only when it has one).
pub fn oci_platform(p: &Platform) -> oci_spec::image::Platform {
    let mut out = oci_spec::image::Platform::default();
    out.set_architecture(Arch::from(p.architecture.as_str()));
    out.set_os(Os::from(p.os.as_str()));
    out.set_variant(p.written_variant().map(str::to_string));
    out
}

/// Top-level configuration fields oci-spec models.
const CONFIG_KEYS: &[&str] = &[
    "created",
    "author",
    "architecture",
    "os",
    "os.version",
    "os.features",
    "variant",
    "config",
    "rootfs",
    "history",
];
/// Fields of `config` oci-spec models.
const EXEC_KEYS: &[&str] = &[
    "User",
    "ExposedPorts",
    "Env",
    "Entrypoint",
    "Cmd",
    "Volumes",
    "WorkingDir",
    "Labels",
    "StopSignal",
];

/// An image configuration: oci-spec's type, and every field it does not model, kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageConfig {
    /// The modelled fields.
    pub spec: ImageConfiguration,
    /// Top-level fields oci-spec does not model.
    pub extra: Map<String, Value>,
    /// Fields of `config` oci-spec does not model (`Healthcheck`, `OnBuild`, `Shell`...).
    pub exec_extra: Map<String, Value>,
}

fn split_off(map: &mut Map<String, Value>, known: &[&str]) -> Map<String, Value> {
    let unknown: Vec<String> = map
        .keys()
        .filter(|k| !known.contains(&k.as_str()))
        .cloned()
        .collect();
    unknown
        .into_iter()
        .filter_map(|k| map.remove(&k).map(|v| (k, v)))
        .collect()
}

impl<'de> Deserialize<'de> for ImageConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut top = Map::<String, Value>::deserialize(d)?;
        let extra = split_off(&mut top, CONFIG_KEYS);
        let mut exec_extra = Map::new();
        match top.get_mut("config") {
            Some(Value::Object(c)) => exec_extra = split_off(c, EXEC_KEYS),
            // Docker writes `"config": null` for images with no settings.
            Some(Value::Null) => {
                top.remove("config");
            }
            _ => {}
        }
        let spec = serde_json::from_value(Value::Object(top)).map_err(serde::de::Error::custom)?;
        Ok(ImageConfig {
            spec,
            extra,
            exec_extra,
        })
    }
}

impl Serialize for ImageConfig {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut v = serde_json::to_value(&self.spec).map_err(serde::ser::Error::custom)?;
        if let Value::Object(top) = &mut v {
            for (k, x) in &self.extra {
                top.entry(k.clone()).or_insert_with(|| x.clone());
            }
            if !self.exec_extra.is_empty() {
                let c = top
                    .entry("config")
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(c) = c {
                    for (k, x) in &self.exec_extra {
                        c.entry(k.clone()).or_insert_with(|| x.clone());
                    }
                }
            }
        }
        v.serialize(s)
    }
}

impl ImageConfig {
    /// An empty image for `platform`: no layers, no history, PATH set.
    pub fn empty(platform: &Platform, path: &str) -> ImageConfig {
        let mut spec = ImageConfiguration::default();
        spec.set_architecture(Arch::from(platform.architecture.as_str()));
        spec.set_os(Os::from(platform.os.as_str()));
        spec.set_variant(platform.written_variant().map(str::to_string));
        spec.set_history(Some(Vec::new()));
        let mut c = ImageConfig {
            spec,
            extra: Map::new(),
            exec_extra: Map::new(),
        };
        c.edit_exec(|e| {
            e.set_env(Some(vec![format!("PATH={path}")]));
        });
        c
    }

    /// The platform it declares.
    pub fn platform(&self) -> Platform {
        Platform::new(
            &self.spec.os().to_string(),
            &self.spec.architecture().to_string(),
            self.spec.variant().as_deref().unwrap_or(""),
        )
    }

    /// Changes the execution settings (made empty first when absent).
    pub fn edit_exec(&mut self, f: impl FnOnce(&mut oci_spec::image::Config)) {
        let mut exec = self.spec.config().clone().unwrap_or_default();
        f(&mut exec);
        self.spec.set_config(Some(exec));
    }

    /// `Env`, as `K=V` strings.
    pub fn env(&self) -> &[String] {
        self.spec
            .config()
            .as_ref()
            .and_then(|c| c.env().as_deref())
            .unwrap_or(&[])
    }

    /// `WorkingDir`, when set and not empty.
    pub fn working_dir(&self) -> Option<&str> {
        self.spec
            .config()
            .as_ref()
            .and_then(|c| c.working_dir().as_deref())
            .filter(|s| !s.is_empty())
    }

    /// `User`, when set and not empty.
    pub fn user(&self) -> Option<&str> {
        self.spec
            .config()
            .as_ref()
            .and_then(|c| c.user().as_deref())
            .filter(|s| !s.is_empty())
    }

    /// The layers' diff_ids.
    pub fn diff_ids(&self) -> &[String] {
        self.spec.rootfs().diff_ids()
    }

    /// The history entries.
    pub fn history(&self) -> &[History] {
        self.spec.history().as_deref().unwrap_or(&[])
    }

    /// Appends a layer (`diff_id`) and its history entry.
    pub fn push_layer(&mut self, diff_id: &str, created: &str, created_by: &str) {
        self.spec
            .rootfs_mut()
            .diff_ids_mut()
            .push(diff_id.to_string());
        self.push_history(history(created, created_by, None, false));
    }

    /// Appends a history entry.
    pub fn push_history(&mut self, h: History) {
        let mut all = self.spec.history().clone().unwrap_or_default();
        all.push(h);
        self.spec.set_history(Some(all));
    }

    /// Sets one label.
    pub fn set_label(&mut self, k: &str, v: &str) {
        self.edit_exec(|exec| {
            let mut labels = exec.labels().clone().unwrap_or_else(HashMap::new);
            labels.insert(k.to_string(), v.to_string());
            exec.set_labels(Some(labels));
        });
    }
}

/// A history entry.
pub fn history(created: &str, created_by: &str, comment: Option<&str>, empty: bool) -> History {
    let mut h = History::default();
    h.set_created(Some(created.to_string()));
    h.set_created_by(Some(created_by.to_string()));
    h.set_comment(comment.map(str::to_string));
    h.set_empty_layer(empty.then_some(true));
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_survive() {
        let text = r#"{"architecture":"arm64","os":"linux","variant":"v8","container_config":{"Hostname":"x"},
            "config":{"Env":["PATH=/bin"],"Healthcheck":{"Test":["CMD","true"]},"OnBuild":["RUN x"],"Shell":["/bin/sh","-c"]},
            "rootfs":{"type":"layers","diff_ids":[]},"history":[{"created_by":"x","empty_layer":true}]}"#;
        let c: ImageConfig = serde_json::from_str(text).unwrap();
        assert_eq!(c.env(), ["PATH=/bin"]);
        assert_eq!(c.platform().to_string(), "linux/arm64");
        let back: Value = serde_json::from_slice(&to_json(&c)).unwrap();
        let orig: Value = serde_json::from_str(text).unwrap();
        assert_eq!(back["container_config"], orig["container_config"]);
        assert_eq!(back["config"]["Healthcheck"], orig["config"]["Healthcheck"]);
        assert_eq!(back["config"]["OnBuild"], orig["config"]["OnBuild"]);
        assert_eq!(back["config"]["Shell"], orig["config"]["Shell"]);
        assert_eq!(back["history"], orig["history"]);
        // Docker's `"config": null`.
        let c: ImageConfig = serde_json::from_str(
            r#"{"architecture":"amd64","os":"linux","config":null,"rootfs":{"type":"layers","diff_ids":[]}}"#,
        )
        .unwrap();
        assert!(c.env().is_empty());
    }

    #[test]
    fn empty_configs_and_layers() {
        let mut c = ImageConfig::empty(&"linux/arm/v7".parse().unwrap(), "/bin");
        c.push_layer(
            "sha256:aa",
            "2026-01-01T00:00:00Z",
            "emubuild from rootfs:x",
        );
        c.set_label("a", "b");
        let v: Value = serde_json::from_slice(&to_json(&c)).unwrap();
        assert_eq!(v["architecture"], "arm");
        assert_eq!(v["variant"], "v7");
        assert_eq!(v["rootfs"]["diff_ids"][0], "sha256:aa");
        assert_eq!(v["config"]["Labels"]["a"], "b");
        assert_eq!(v["config"]["Env"][0], "PATH=/bin");
    }

    #[test]
    fn descriptors_and_platforms() {
        let d = describe(MediaType::ImageManifest, b"{}");
        assert_eq!(d.size(), 2);
        let t = tagged(&d, "v1");
        assert_eq!(ref_name(&t), Some("v1"));
        assert!(!is_index(&t));
        let p: Platform = "linux/arm64".parse().unwrap();
        assert_eq!(platform_of(&oci_platform(&p)), p);
        // arm64 is written `v8`, as BuildKit writes it; s390x has no variant.
        let v: Value = serde_json::to_value(oci_platform(&p)).unwrap();
        assert_eq!(v["variant"], "v8", "{v}");
        let s390x: Platform = "linux/s390x".parse().unwrap();
        let v: Value = serde_json::to_value(oci_platform(&s390x)).unwrap();
        assert!(v.get("variant").is_none(), "{v}");
    }
}
