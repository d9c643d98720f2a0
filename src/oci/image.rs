//! Image documents (index, manifest, config) as read from a layout, and choosing the image for
//! a platform the way containerd does: tags via `org.opencontainers.image.ref.name`, nested
//! indexes followed, the best platform match (arm/v7 falls back to v6, v5...) preferred. Docker's
//! media types are read too.

use super::document::{
    Descriptor, Doc, ImageConfig, ImageIndex, ImageManifest, is_index, platform_of, ref_name,
};
use super::layout::{Layout, LayoutError};
use crate::platform::Platform;

/// The image chosen for one platform.
#[derive(Debug, Clone)]
pub struct Selected {
    /// The manifest's descriptor.
    pub manifest_desc: Descriptor,
    /// The manifest, with its bytes.
    pub manifest: Doc<ImageManifest>,
    /// The config, with its bytes (every field kept, modelled or not).
    pub config: Doc<ImageConfig>,
    /// The platform chosen (the descriptor's, else the config's).
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
    /// Several platforms, none of them this host's, and none asked for.
    #[error(
        "{source_ref} holds images for several platforms ({have}) and none for this host ({host}); choose one with `--platform`"
    )]
    ChoosePlatform {
        /// The image reference.
        source_ref: String,
        /// The platforms present.
        have: String,
        /// This host's platform.
        host: String,
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
    /// A document could not be fetched.
    #[error("cannot read {what}")]
    Fetch {
        /// Which document.
        what: String,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Chooses the image in `layout` for `wanted`, by `tag` when given. With no platform asked for,
/// as containerd does: this host's platform (or its best fallback) when the image has it; the
/// only image when there is one; otherwise an error asking for `--platform`.
pub fn select(
    layout: &Layout,
    tag: Option<&str>,
    wanted: Option<&Platform>,
    source_ref: &str,
) -> Result<Selected, SelectError> {
    let root = layout.index()?.typed;
    let tags: Vec<String> = root
        .manifests()
        .iter()
        .filter_map(|d| ref_name(d).map(str::to_string))
        .collect();
    let tags_s = if tags.is_empty() {
        "none".to_string()
    } else {
        tags.join(", ")
    };
    let candidates: Vec<Descriptor> = match tag {
        Some(t) => {
            let c: Vec<_> = root
                .manifests()
                .iter()
                .filter(|d| ref_name(d) == Some(t))
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
        None => root.manifests().clone(),
    };
    // Several tagged images and no tag: which one is meant is not for us to guess.
    let mut names: Vec<&str> = candidates.iter().filter_map(ref_name).collect();
    names.sort_unstable();
    names.dedup();
    if tag.is_none() && names.len() > 1 {
        return Err(SelectError::Ambiguous {
            dir: layout.dir().display().to_string(),
            tags: tags_s,
        });
    }
    select_from(layout, &candidates, wanted, source_ref)
}

/// Where selection reads documents from: a layout, a registry repository.
pub trait Documents {
    /// The bytes of the blob `d` names, checked against its digest and size.
    fn read(&self, d: &Descriptor) -> Result<Vec<u8>, SelectError>;
}

impl Documents for Layout {
    fn read(&self, d: &Descriptor) -> Result<Vec<u8>, SelectError> {
        Ok(self.read_blob(d.digest().as_ref(), Some(d.size()))?)
    }
}

fn document<T: for<'de> serde::Deserialize<'de>>(
    docs: &dyn Documents,
    d: &Descriptor,
    kind: &'static str,
) -> Result<Doc<T>, SelectError> {
    let bytes = docs.read(d)?;
    let typed = super::document::parse(&bytes, d.digest().as_ref(), kind)
        .map_err(|e| SelectError::Malformed(e.to_string()))?;
    Ok(Doc { typed, bytes })
}

/// Chooses, among the images `roots` lead to (indexes followed), the one for `wanted`, with
/// the rules of [`select`].
pub fn select_from(
    docs: &dyn Documents,
    roots: &[Descriptor],
    wanted: Option<&Platform>,
    source_ref: &str,
) -> Result<Selected, SelectError> {
    let mut seen = Vec::new();
    let mut best: Option<(u32, Selected)> = None;
    for d in roots {
        walk(docs, d, wanted, 0, &mut seen, &mut best)?;
    }
    let have = |seen: &[Platform]| {
        let mut names: Vec<String> = seen.iter().map(Platform::to_string).collect();
        names.dedup();
        names.join(", ")
    };
    if wanted.is_none() && seen.len() > 1 && best.as_ref().is_some_and(|(r, _)| *r == NOT_HOST) {
        return Err(SelectError::ChoosePlatform {
            source_ref: source_ref.to_string(),
            have: have(&seen),
            host: Platform::host().to_string(),
        });
    }
    best.map(|(_, s)| s).ok_or_else(|| SelectError::NoPlatform {
        wanted: wanted.cloned().unwrap_or_else(Platform::host),
        source_ref: source_ref.to_string(),
        have: if seen.is_empty() {
            "no images".into()
        } else {
            have(&seen)
        },
    })
}

/// The rank of an image that is not for this host (chosen only when it is the only one).
const NOT_HOST: u32 = u32::MAX;

fn walk(
    docs: &dyn Documents,
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
    if is_attestation(d) {
        return Ok(());
    }
    // An entry whose platform cannot match is skipped without reading it.
    let declared = d.platform().as_ref().map(platform_of);
    if let (Some(p), Some(w)) = (&declared, wanted)
        && p.match_rank(w).is_none()
    {
        seen.push(p.clone());
        return Ok(());
    }
    if is_index(d) {
        let idx: Doc<ImageIndex> = document(docs, d, "image index")?;
        for child in idx.typed.manifests() {
            walk(docs, child, wanted, depth + 1, seen, best)?;
        }
        return Ok(());
    }
    let manifest: Doc<ImageManifest> = document(docs, d, "image manifest")?;
    let config: Doc<ImageConfig> = document(docs, manifest.typed.config(), "image config")?;
    // The index's word first, as containerd matches (the config's when the index gives none).
    let platform = declared.unwrap_or_else(|| config.typed.platform());
    seen.push(platform.clone());
    let rank = match wanted {
        Some(w) => match platform.match_rank(w) {
            Some(r) => r,
            None => return Ok(()),
        },
        None => platform.match_rank(&Platform::host()).unwrap_or(NOT_HOST),
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

/// Is this index entry an attestation (buildx provenance, SBOMs: `unknown/unknown`), not an
/// image?
pub fn is_attestation(d: &Descriptor) -> bool {
    d.platform().as_ref().is_some_and(|p| {
        p.os().to_string() == "unknown" || p.architecture().to_string() == "unknown"
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A layout written by hand: each image is a config and a manifest (no layers needed for
    /// selection); `index.json` holds what `top` gives.
    struct Fixture {
        dir: tempfile::TempDir,
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir_all(dir.path().join("blobs/sha256")).unwrap();
            std::fs::write(
                dir.path().join("oci-layout"),
                r#"{"imageLayoutVersion":"1.0.0"}"#,
            )
            .unwrap();
            Fixture { dir }
        }

        fn blob(&self, v: &serde_json::Value) -> (String, u64) {
            let bytes = serde_json::to_vec(v).unwrap();
            let hex = crate::digest::sha256_hex(&bytes);
            std::fs::write(self.dir.path().join("blobs/sha256").join(&hex), &bytes).unwrap();
            (format!("sha256:{hex}"), bytes.len() as u64)
        }

        /// An image whose config says `config_platform`; returns its manifest descriptor with
        /// `desc_platform` (None: no platform on the descriptor).
        fn image(
            &self,
            config_platform: (&str, &str),
            desc_platform: Option<(&str, &str)>,
        ) -> serde_json::Value {
            let (arch, variant) = config_platform;
            let mut cfg = json!({"architecture": arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}});
            if !variant.is_empty() {
                cfg["variant"] = json!(variant);
            }
            let (cd, cs) = self.blob(&cfg);
            let manifest = json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
                "layers": []
            });
            let (md, ms) = self.blob(&manifest);
            let mut d = json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms});
            if let Some((a, v)) = desc_platform {
                d["platform"] = json!({"architecture": a, "os": "linux"});
                if !v.is_empty() {
                    d["platform"]["variant"] = json!(v);
                }
            }
            d
        }

        fn nested(&self, children: Vec<serde_json::Value>) -> serde_json::Value {
            let idx = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": children});
            let (d, s) = self.blob(&idx);
            json!({"mediaType": "application/vnd.oci.image.index.v1+json", "digest": d, "size": s})
        }

        fn top(&self, entries: Vec<serde_json::Value>) -> Layout {
            let idx = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": entries});
            std::fs::write(
                self.dir.path().join("index.json"),
                serde_json::to_vec(&idx).unwrap(),
            )
            .unwrap();
            Layout::open(self.dir.path()).unwrap()
        }
    }

    fn tagged(mut d: serde_json::Value, tag: &str) -> serde_json::Value {
        d["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
        d
    }

    fn pick(l: &Layout, tag: Option<&str>, wanted: Option<&str>) -> Result<Platform, SelectError> {
        let w = wanted.map(|w| w.parse::<Platform>().unwrap());
        select(l, tag, w.as_ref(), "oci:test").map(|s| s.platform)
    }

    #[test]
    fn arm_v7_falls_back_to_the_best_lower_variant() {
        let f = Fixture::new();
        let v5 = f.image(("arm", "v5"), Some(("arm", "v5")));
        let v6 = f.image(("arm", "v6"), Some(("arm", "v6")));
        let arm64 = f.image(("arm64", ""), Some(("arm64", "")));
        let l = f.top(vec![tagged(f.nested(vec![v5, v6, arm64]), "latest")]);
        assert_eq!(
            pick(&l, None, Some("linux/arm/v7")).unwrap().to_string(),
            "linux/arm/v6"
        );
        assert_eq!(
            pick(&l, None, Some("linux/arm64/v8")).unwrap().to_string(),
            "linux/arm64"
        );
        let e = pick(&l, None, Some("linux/s390x")).unwrap_err().to_string();
        assert!(e.contains("linux/arm/v5, linux/arm/v6, linux/arm64"), "{e}");
    }

    #[test]
    fn the_descriptor_platform_is_what_matches() {
        // A config with no variant (read as arm/v7) behind a descriptor that says v6, and a
        // real v7: containerd picks the v7 one.
        let f = Fixture::new();
        let says_v6 = f.image(("arm", ""), Some(("arm", "v6")));
        let v7 = f.image(("arm", "v7"), Some(("arm", "v7")));
        let l = f.top(vec![says_v6, v7]);
        let s = select(&l, None, Some(&"linux/arm/v7".parse().unwrap()), "oci:test").unwrap();
        assert_eq!(s.platform.to_string(), "linux/arm/v7");
        assert_eq!(s.config.typed.spec.variant().as_deref(), Some("v7"));
        // With no platform on the descriptors, the config's is used.
        let f = Fixture::new();
        let l = f.top(vec![f.image(("s390x", ""), None)]);
        assert_eq!(
            pick(&l, None, Some("linux/s390x")).unwrap().to_string(),
            "linux/s390x"
        );
    }

    #[test]
    fn no_platform_asked_means_this_host_or_the_only_image() {
        let host = Platform::host();
        let f = Fixture::new();
        let native = f.image((&host.architecture, ""), Some((&host.architecture, "")));
        let other_arch = if host.architecture == "s390x" {
            "arm64"
        } else {
            "s390x"
        };
        let other = f.image((other_arch, ""), Some((other_arch, "")));
        let l = f.top(vec![tagged(
            f.nested(vec![other.clone(), native]),
            "latest",
        )]);
        assert_eq!(pick(&l, None, None).unwrap(), host);
        // Only one image, for another platform: that one.
        let f2 = Fixture::new();
        let only = f2.image((other_arch, ""), Some((other_arch, "")));
        let l = f2.top(vec![tagged(only, "latest")]);
        assert_eq!(pick(&l, None, None).unwrap().architecture, other_arch);
        // Several, none for this host: the user must choose.
        let f3 = Fixture::new();
        let a = f3.image(("ppc64le", ""), Some(("ppc64le", "")));
        let b = f3.image(("riscv64", ""), Some(("riscv64", "")));
        let l = f3.top(vec![a, b]);
        let e = pick(&l, None, None).unwrap_err().to_string();
        assert!(
            e.contains("--platform") && e.contains("linux/riscv64"),
            "{e}"
        );
    }

    #[test]
    fn attestation_entries_are_not_images() {
        let f = Fixture::new();
        let arm64 = f.image(("arm64", ""), Some(("arm64", "")));
        let att = f.image(("unknown", ""), Some(("unknown", "unknown")));
        let l = f.top(vec![att, arm64]);
        // Only one image is left, so it is chosen with no platform asked for.
        assert_eq!(pick(&l, None, None).unwrap().architecture, "arm64");
        let e = pick(&l, None, Some("linux/s390x")).unwrap_err().to_string();
        assert!(
            e.contains("it has linux/arm64") && !e.contains("unknown"),
            "{e}"
        );
    }

    #[test]
    fn tags_choose_and_several_tags_need_one() {
        let f = Fixture::new();
        let a = tagged(f.image(("arm64", ""), Some(("arm64", ""))), "one");
        let b = tagged(f.image(("s390x", ""), Some(("s390x", ""))), "two");
        let l = f.top(vec![a, b]);
        assert!(matches!(
            pick(&l, None, None),
            Err(SelectError::Ambiguous { .. })
        ));
        assert_eq!(pick(&l, Some("two"), None).unwrap().architecture, "s390x");
        let e = pick(&l, Some("three"), None).unwrap_err().to_string();
        assert!(e.contains("one, two"), "{e}");
    }

    #[test]
    fn indexes_nest_and_loops_are_bounded() {
        let f = Fixture::new();
        let img = f.image(("riscv64", ""), Some(("riscv64", "")));
        let mut d = img;
        for _ in 0..3 {
            d = f.nested(vec![d]);
        }
        let l = f.top(vec![tagged(d, "deep")]);
        assert_eq!(
            pick(&l, None, Some("linux/riscv64")).unwrap().architecture,
            "riscv64"
        );
        let mut d = f.image(("riscv64", ""), None);
        for _ in 0..12 {
            d = f.nested(vec![d]);
        }
        let l = f.top(vec![d]);
        assert!(matches!(
            pick(&l, None, None),
            Err(SelectError::Malformed(_))
        ));
    }
}
