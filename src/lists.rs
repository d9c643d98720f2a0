//! Manifest lists kept in the store (`emubuild manifest`): a list is named by any string
//! (usually the reference it will be pushed to) and holds entries, each a manifest descriptor
//! (media type, digest, size, the platform read from the image's config, annotations) and
//! where the image lives (a registry repository, or a layout). Pushing one builds the index
//! (OCI, or a Docker manifest list), copies every child the destination lacks (by digest:
//! blobs mounted within a registry, streamed across registries, copied from layouts) and
//! writes the list last, by tag or digest, to a registry, a layout or an archive. With
//! `amend_remote` the remote list is re-read, merged and checked again after the write, since
//! registries have no compare-and-swap.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::container::{ContainerError, Context};
use crate::oci::document::{Descriptor, ImageConfig, ImageIndex, ImageManifest, MediaType};
use crate::oci::image::{Documents, SelectError, is_attestation};
use crate::oci::reference::{Destination, Reference, RegistryRef};
use crate::platform::Platform;
use crate::transfer::{self, Node, Opened, Sources};

/// The list file format's version.
pub const LIST_VERSION: u32 = 1;

use crate::oci::document::{MT_DOCKER_LIST as DOCKER_LIST, MT_DOCKER_MANIFEST as DOCKER_MANIFEST};

/// A manifest list being put together.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct List {
    /// The file format.
    pub schema_version: u32,
    /// Its name.
    pub name: String,
    /// The index's own annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Its entries, in order.
    pub entries: Vec<Entry>,
}

/// One image of a list.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    /// The manifest's descriptor, with platform and annotations.
    pub descriptor: Descriptor,
    /// Where it lives.
    pub source: Source,
}

/// Where an entry's image lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Source {
    /// A registry repository, `registry/repository`.
    Registry {
        /// `registry/repository`.
        repository: String,
    },
    /// An OCI layout (an archive's is extracted into the store).
    Layout {
        /// The layout's directory.
        dir: PathBuf,
    },
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Registry { repository } => write!(f, "{repository}"),
            Source::Layout { dir } => write!(f, "oci:{}", dir.display()),
        }
    }
}

/// Why a list operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    /// No such list.
    #[error(
        "no manifest list `{0}`; `emubuild manifest ls` lists them, `emubuild manifest create` makes one"
    )]
    NoList(String),
    /// The list exists already.
    #[error(
        "a manifest list `{0}` exists; add to it with `emubuild manifest add`, or pass `--amend`"
    )]
    Exists(String),
    /// Nothing in the list matches.
    #[error("no entry {what} in manifest list `{list}`")]
    NoEntry {
        /// The list.
        list: String,
        /// What was looked for.
        what: String,
    },
    /// An index given without saying which of its images.
    #[error(
        "{image} is an index of {count} images ({platforms}); choose one with `--platform`, or take them all with `--all`"
    )]
    ChooseEntry {
        /// The image.
        image: String,
        /// How many.
        count: usize,
        /// Their platforms.
        platforms: String,
    },
    /// `--format docker` with a child a Docker manifest list cannot name.
    #[error(
        "`--format docker`: {digest} ({platform}) is {kind}, which a Docker manifest list cannot name for clients that read only Docker's formats; push with `--format oci` (the default), or list Docker v2 images"
    )]
    DockerFormat {
        /// The child.
        digest: String,
        /// Its platform.
        platform: String,
        /// What it is.
        kind: &'static str,
    },
    /// Two entries of ours for one platform (`--amend-remote` would drop one).
    #[error(
        "the list has two entries for {platform} ({first} and {second}); remove one with `emubuild manifest remove`"
    )]
    SamePlatform {
        /// The platform.
        platform: String,
        /// One entry.
        first: String,
        /// The other.
        second: String,
    },
    /// A document from a registry or a layout that is not what it should be.
    #[error("{0}")]
    Malformed(String),
    /// A child that cannot be read; nothing was written.
    #[error("entry {digest} ({platform}) cannot be read from {source_name}; nothing was written")]
    MissingChild {
        /// The child.
        digest: String,
        /// Its platform.
        platform: String,
        /// Where it was to be read from.
        source_name: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// `--amend-remote` kept losing entries to other writers.
    #[error(
        "{dest} still lacks {missing} after {tries} writes: other jobs keep replacing it; try again"
    )]
    Lost {
        /// The destination.
        dest: String,
        /// What is missing.
        missing: String,
        /// How often it was written.
        tries: usize,
    },
    /// A bad argument.
    #[error("{0}")]
    Usage(String),
    /// A list file that cannot be read or written.
    #[error("cannot {action} `{}`", .path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A list file from another emubuild, or damaged.
    #[error("manifest list file `{}` cannot be read: {reason}", .path.display())]
    BadFile {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Opening an image.
    #[error(transparent)]
    Open(#[from] transfer::OpenError),
    /// Reading documents.
    #[error(transparent)]
    Select(#[from] SelectError),
    /// A registry.
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
    /// Copying into a layout.
    #[error(transparent)]
    Copy(#[from] transfer::CopyError),
    /// Writing a layout.
    #[error(transparent)]
    Write(#[from] crate::oci::write::WriteError),
    /// Reading a layout.
    #[error(transparent)]
    Layout(#[from] crate::oci::layout::LayoutError),
    /// The store.
    #[error(transparent)]
    Container(Box<ContainerError>),
}

impl From<ContainerError> for ListError {
    fn from(e: ContainerError) -> Self {
        ListError::Container(Box::new(e))
    }
}

fn io_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> ListError + 'a {
    move |source| ListError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// The store's lists.
fn dir(ctx: &Context) -> PathBuf {
    ctx.store.root().join("lists")
}

fn key(name: &str) -> String {
    crate::digest::sha256_hex(name.as_bytes())
}

fn file(ctx: &Context, name: &str) -> PathBuf {
    dir(ctx).join(format!("{}.json", key(name)))
}

/// Where a list keeps the layouts of archives added to it.
fn archives(ctx: &Context, name: &str) -> PathBuf {
    dir(ctx).join(format!("{}.d", key(name)))
}

/// Holds the lists' lock (every change to any list is made under it).
pub fn lock(ctx: &Context) -> Result<crate::util::FileLock, ListError> {
    let path = dir(ctx).join(".lock");
    crate::util::FileLock::acquire(&path).map_err(io_err("lock", &path))
}

/// The list `name`, if there is one.
pub fn load(ctx: &Context, name: &str) -> Result<Option<List>, ListError> {
    read_file(&file(ctx, name))
}

/// A list file, checked (None: there is none).
fn read_file(path: &Path) -> Result<Option<List>, ListError> {
    let path = path.to_path_buf();
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("read", &path)(e)),
    };
    let list: List = serde_json::from_slice(&bytes).map_err(|e| ListError::BadFile {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    if list.schema_version > LIST_VERSION {
        return Err(ListError::BadFile {
            path,
            reason: format!(
                "it is of format {}, newer than this emubuild's ({LIST_VERSION})",
                list.schema_version
            ),
        });
    }
    Ok(Some(list))
}

/// The list `name`, or an error saying there is none.
pub fn get(ctx: &Context, name: &str) -> Result<List, ListError> {
    load(ctx, name)?.ok_or_else(|| ListError::NoList(name.to_string()))
}

/// Saves a list (atomically, readable by the store's owner only).
pub fn save(ctx: &Context, list: &List) -> Result<(), ListError> {
    let path = file(ctx, &list.name);
    std::fs::create_dir_all(dir(ctx)).map_err(io_err("create", &dir(ctx)))?;
    let bytes = serde_json::to_vec_pretty(list).expect("a list serialises");
    crate::util::write_atomic(&path, &bytes, 0o600).map_err(io_err("write", &path))
}

/// Removes the list `name` (and the layouts of archives added to it); false when there was none.
pub fn remove(ctx: &Context, name: &str) -> Result<bool, ListError> {
    let path = file(ctx, name);
    // The list first: it must never name layouts that are gone.
    let existed = match std::fs::remove_file(&path) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(io_err("remove", &path)(e)),
    };
    let _ = std::fs::remove_dir_all(archives(ctx, name));
    Ok(existed)
}

/// Every list, by name.
pub fn all(ctx: &Context) -> Result<Vec<List>, ListError> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir(ctx)) else {
        return Ok(out);
    };
    for e in rd.filter_map(Result::ok) {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "json") {
            out.push(read_file(&p)?.ok_or_else(|| ListError::BadFile {
                path: p.clone(),
                reason: "it went away while being read".into(),
            })?);
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// A new, empty list.
pub fn new_list(name: &str) -> List {
    List {
        schema_version: LIST_VERSION,
        name: name.to_string(),
        annotations: BTreeMap::new(),
        entries: Vec::new(),
    }
}

/// Which images of an index to take.
#[derive(Debug, Clone, Default)]
pub struct Pick {
    /// Every one.
    pub all: bool,
    /// The one for this platform.
    pub platform: Option<Platform>,
}

/// The manifests below `d` (nested indexes followed, attestations left out).
fn manifests_below(
    docs: &dyn Documents,
    d: &Descriptor,
    depth: usize,
    out: &mut Vec<Descriptor>,
) -> Result<(), SelectError> {
    if depth > 8 {
        return Err(SelectError::Malformed(
            "image indexes nest more than 8 deep".into(),
        ));
    }
    if is_attestation(d) {
        return Ok(());
    }
    if crate::oci::document::is_index(d) {
        let bytes = docs.read(d)?;
        let idx: ImageIndex =
            crate::oci::document::parse(&bytes, d.digest().as_ref(), "image index")
                .map_err(|e| SelectError::Malformed(e.to_string()))?;
        for c in idx.manifests() {
            manifests_below(docs, c, depth + 1, out)?;
        }
    } else {
        out.push(d.clone());
    }
    Ok(())
}

/// The platform an image's config declares (os, architecture, variant, os.version,
/// os.features), as crane and regctl take it.
fn config_platform(
    docs: &dyn Documents,
    manifest: &Descriptor,
) -> Result<oci_spec::image::Platform, SelectError> {
    let bytes = docs.read(manifest)?;
    let m: ImageManifest =
        crate::oci::document::parse(&bytes, manifest.digest().as_ref(), "image manifest")
            .map_err(|e| SelectError::Malformed(e.to_string()))?;
    let cbytes = docs.read(m.config())?;
    let config: ImageConfig =
        crate::oci::document::parse(&cbytes, m.config().digest().as_ref(), "image config")
            .map_err(|e| SelectError::Malformed(e.to_string()))?;
    let s = &config.spec;
    let mut p = oci_spec::image::Platform::default();
    p.set_os(s.os().clone());
    p.set_architecture(s.architecture().clone());
    p.set_variant(s.variant().clone().filter(|v| !v.is_empty()));
    p.set_os_version(s.os_version().clone());
    p.set_os_features(s.os_features().clone().filter(|f| !f.is_empty()));
    Ok(p)
}

/// The platform of a descriptor as `os/arch[/variant]`.
pub fn platform_name(d: &Descriptor) -> String {
    d.platform()
        .as_ref()
        .map(|p| crate::oci::document::platform_of(p).to_string())
        .unwrap_or_else(|| "no platform".into())
}

/// The manifests an image brings: itself; an index's (all, the one for a platform, or the
/// only one; attestations left out).
fn chosen(opened: &Opened<'_>, name: &str, pick: &Pick) -> Result<Vec<Descriptor>, ListError> {
    let mut found = Vec::new();
    manifests_below(&opened.docs, &opened.root, 0, &mut found)?;
    if found.is_empty() {
        return Err(ListError::Malformed(format!(
            "{name} holds no image (an index of attestations only, or of nothing)"
        )));
    }
    Ok(
        if !crate::oci::document::is_index(&opened.root) || pick.all {
            found
        } else if let Some(p) = &pick.platform {
            let sel = crate::oci::image::select_from(
                &opened.docs,
                std::slice::from_ref(&opened.root),
                Some(p),
                name,
            )?;
            vec![sel.manifest_desc]
        } else if found.len() == 1 {
            found
        } else {
            let platforms = found
                .iter()
                .map(|d| match config_platform(&opened.docs, d) {
                    Ok(p) => crate::oci::document::platform_of(&p).to_string(),
                    Err(_) => platform_name(d),
                })
                .collect::<Vec<_>>()
                .join(", ");
            return Err(ListError::ChooseEntry {
                image: name.to_string(),
                count: found.len(),
                platforms,
            });
        },
    )
}

/// The digests of the manifests `image` names (`manifest annotate IMAGE`), nothing kept.
pub fn digests_of(ctx: &Context, image: &Reference) -> Result<Vec<String>, ListError> {
    let session = ctx.session()?;
    let opened = transfer::open(image, &session, &ctx.store, &ctx.store.root().join("tmp"))?;
    let pick = Pick {
        all: true,
        platform: None,
    };
    Ok(chosen(&opened, &image.to_string(), &pick)?
        .iter()
        .map(|d| d.digest().to_string())
        .collect())
}

/// The entries an image brings to a list: a manifest; an index's images (all of them, the one
/// for a platform, or the only one).
pub fn entries_of(
    opened: &Opened<'_>,
    name: &str,
    pick: &Pick,
    list_archives: &Path,
) -> Result<Vec<Entry>, ListError> {
    let chosen = chosen(opened, name, pick)?;
    // Platforms first: an archive's layout is moved away below.
    let descs = chosen
        .into_iter()
        .map(|d| {
            let platform = config_platform(&opened.docs, &d)?;
            let mut desc = crate::oci::document::bare(&d);
            desc.set_platform(Some(platform));
            Ok(desc)
        })
        .collect::<Result<Vec<_>, ListError>>()?;
    let source = match (&opened.docs, &opened.origin) {
        (transfer::Docs::Registry(_), Some(o)) => Source::Registry {
            repository: o.clone(),
        },
        (transfer::Docs::Layout(l), _) => match &opened.staging {
            // An archive's layout goes away; its images are kept with the list.
            Some(_) => Source::Layout {
                dir: keep_archive(l, list_archives)?,
            },
            None => Source::Layout {
                dir: std::path::absolute(l.dir()).map_err(io_err("resolve", l.dir()))?,
            },
        },
        (transfer::Docs::Registry(_), None) => {
            return Err(ListError::Usage(format!("{name} has no repository")));
        }
    };
    Ok(descs
        .into_iter()
        .map(|descriptor| Entry {
            descriptor,
            source: source.clone(),
        })
        .collect())
}

/// Moves an extracted archive's layout under the list's directory (kept until the list is
/// removed); its path.
fn keep_archive(l: &crate::oci::layout::Layout, under: &Path) -> Result<PathBuf, ListError> {
    std::fs::create_dir_all(under).map_err(io_err("create", under))?;
    let kept = tempfile::Builder::new()
        .prefix("archive-")
        .tempdir_in(under)
        .map_err(io_err("create a directory in", under))?
        .keep();
    let _ = std::fs::remove_dir(&kept);
    // The staging directory is on the store's file system: a rename.
    std::fs::rename(l.dir(), &kept).map_err(io_err("keep", l.dir()))?;
    std::fs::create_dir_all(l.dir()).map_err(io_err("create", l.dir()))?;
    Ok(kept)
}

/// Do two descriptors name one platform (after normalisation: `arm64` is `arm64/v8`)?
fn same_platform(a: &Descriptor, b: &Descriptor) -> bool {
    let key = |d: &Descriptor| {
        d.platform().as_ref().map(|p| {
            (
                crate::oci::document::platform_of(p),
                p.os_version().clone(),
                p.os_features().clone().unwrap_or_default(),
            )
        })
    };
    key(a).is_some() && key(a) == key(b)
}

/// Adds `entries` to `list`: an entry of the same digest is replaced, and so is one for the
/// same platform (a rebuild of that platform); the messages say which were replaced.
pub fn add(list: &mut List, entries: Vec<Entry>) -> Vec<String> {
    let mut notes = Vec::new();
    for e in entries {
        let same_platform = |x: &Entry| same_platform(&x.descriptor, &e.descriptor);
        if let Some(i) = list
            .entries
            .iter()
            .position(|x| x.descriptor.digest() == e.descriptor.digest() || same_platform(x))
        {
            let old = &list.entries[i].descriptor;
            if old.digest() != e.descriptor.digest() {
                notes.push(format!(
                    "{} replaces {} for {}",
                    e.descriptor.digest(),
                    old.digest(),
                    platform_name(old)
                ));
            }
            list.entries[i] = e;
        } else {
            list.entries.push(e);
        }
    }
    notes
}

/// The entry a digest or an image names: its index.
pub fn find(list: &List, what: &str) -> Result<usize, ListError> {
    list.entries
        .iter()
        .position(|e| e.descriptor.digest().to_string() == what)
        .ok_or_else(|| ListError::NoEntry {
            list: list.name.clone(),
            what: what.to_string(),
        })
}

/// Changes to one entry's descriptor (`manifest annotate`).
#[derive(Debug, Clone, Default)]
pub struct Annotate {
    /// `--os`.
    pub os: Option<String>,
    /// `--arch`.
    pub arch: Option<String>,
    /// `--variant`.
    pub variant: Option<String>,
    /// `--os-version`.
    pub os_version: Option<String>,
    /// `--os-features`.
    pub os_features: Option<Vec<String>>,
    /// `--annotation K=V`.
    pub annotations: Vec<(String, String)>,
}

/// Applies `a` to the entry at `i`.
pub fn annotate(list: &mut List, i: usize, a: &Annotate) {
    let d = &mut list.entries[i].descriptor;
    let mut p = d.platform().clone().unwrap_or_default();
    if let Some(os) = &a.os {
        p.set_os(oci_spec::image::Os::from(os.as_str()));
    }
    if let Some(arch) = &a.arch {
        p.set_architecture(oci_spec::image::Arch::from(arch.as_str()));
    }
    if let Some(v) = &a.variant {
        p.set_variant((!v.is_empty()).then(|| v.clone()));
    }
    if let Some(v) = &a.os_version {
        p.set_os_version((!v.is_empty()).then(|| v.clone()));
    }
    if let Some(f) = &a.os_features {
        p.set_os_features((!f.is_empty()).then(|| f.clone()));
    }
    d.set_platform(Some(p));
    if !a.annotations.is_empty() {
        let mut ann = d.annotations().clone().unwrap_or_default();
        for (k, v) in &a.annotations {
            ann.insert(k.clone(), v.clone());
        }
        d.set_annotations(Some(ann));
    }
}

/// The list's format on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// An OCI image index.
    #[default]
    Oci,
    /// A Docker manifest list (schema 2).
    Docker,
}

/// The index a list becomes: its bytes and media type.
pub fn index_bytes(list: &List, format: Format) -> Result<(Vec<u8>, String), ListError> {
    match format {
        Format::Oci => {
            let mut idx = ImageIndex::default();
            idx.set_media_type(Some(MediaType::ImageIndex));
            idx.set_manifests(list.entries.iter().map(|e| e.descriptor.clone()).collect());
            if !list.annotations.is_empty() {
                idx.set_annotations(Some(list.annotations.clone().into_iter().collect()));
            }
            Ok((
                crate::oci::document::to_json(&idx),
                MediaType::ImageIndex.to_string(),
            ))
        }
        Format::Docker => {
            let mut manifests = Vec::new();
            for e in &list.entries {
                let d = &e.descriptor;
                let mt = d.media_type().to_string();
                if mt != DOCKER_MANIFEST {
                    return Err(ListError::DockerFormat {
                        digest: d.digest().to_string(),
                        platform: platform_name(d),
                        kind: if crate::oci::document::is_index(d) {
                            "an index (a Docker manifest list names image manifests only)"
                        } else if mt == MediaType::ImageManifest.to_string() {
                            "an OCI image manifest"
                        } else {
                            "not a Docker v2 image manifest"
                        },
                    });
                }
                let mut v = serde_json::json!({
                    "mediaType": DOCKER_MANIFEST,
                    "digest": d.digest().to_string(),
                    "size": d.size(),
                });
                if let Some(p) = d.platform() {
                    v["platform"] = serde_json::to_value(p).expect("a platform serialises");
                }
                manifests.push(v);
            }
            let v = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": DOCKER_LIST,
                "manifests": manifests,
            });
            Ok((crate::oci::document::to_json(&v), DOCKER_LIST.to_string()))
        }
    }
}

/// Opens an entry's source for reading its documents.
fn open_source<'s>(
    source: &Source,
    digest: &str,
    session: &'s crate::registry::Session,
    store: &'s crate::store::Store,
) -> Result<transfer::Docs<'s>, ListError> {
    Ok(match source {
        Source::Registry { repository } => {
            let r = transfer::origin_ref(repository).ok_or_else(|| {
                ListError::Malformed(format!("`{repository}` is not a repository"))
            })?;
            transfer::Docs::Registry(crate::registry::Repository {
                session,
                reference: RegistryRef {
                    digest: Some(digest.to_string()),
                    ..r
                },
                store,
            })
        }
        Source::Layout { dir } => transfer::Docs::Layout(crate::oci::layout::Layout::open(dir)?),
    })
}

/// The list as a tree to copy, and where its blobs are: every child read and checked, and
/// every blob of a layout child present, before anything is written.
pub fn tree<'a>(
    ctx: &'a Context,
    list: &List,
    format: Format,
    session: &crate::registry::Session,
) -> Result<(Node, Sources<'a>), ListError> {
    let (bytes, media_type) = index_bytes(list, format)?;
    let mut sources = Sources::with_store(&ctx.store);
    let mut children = Vec::new();
    for e in &list.entries {
        let d = &e.descriptor;
        let missing = |source: Box<dyn std::error::Error + Send + Sync>| ListError::MissingChild {
            digest: d.digest().to_string(),
            platform: platform_name(d),
            source_name: e.source.to_string(),
            source,
        };
        let docs = open_source(&e.source, d.digest().as_ref(), session, &ctx.store)
            .map_err(|err| missing(Box::new(err)))?;
        // Its documents may be cached here, but its blobs come from its repository: it must
        // still be there (a registry keeps the blobs of the manifests it holds).
        if let transfer::Docs::Registry(repo) = &docs {
            let r = &repo.reference;
            let head = session
                .block_on(session.client.head_manifest(r, d.digest().as_ref(), false))
                .map_err(|err| missing(Box::new(err)))?;
            if head.is_none() {
                return Err(missing(
                    format!("it is no longer in {}/{}", r.registry, r.repository).into(),
                ));
            }
        }
        let node = transfer::tree(&docs, d, 0).map_err(|err| missing(Box::new(err)))?;
        match &e.source {
            Source::Registry { repository } => sources.add_repository(repository, &node),
            Source::Layout { .. } => {
                if let transfer::Docs::Layout(l) = &docs {
                    sources.add_layout(l, &node);
                }
                if let Some(b) = sources.missing(&node).first() {
                    return Err(missing(format!("its blob {b} is not in the layout").into()));
                }
            }
        }
        children.push(node);
    }
    Ok((
        Node::Index {
            bytes,
            media_type,
            children,
        },
        sources,
    ))
}

/// What a push wrote.
#[derive(Debug, Clone, Serialize)]
pub struct Pushed {
    /// The list's digest.
    pub digest: String,
    /// Where.
    pub dest: String,
    /// Its entries.
    pub entries: usize,
    /// Entries merged in from the remote list (`--amend-remote`).
    pub merged: usize,
}

/// Pushes `list` to `dest`.
pub fn push(
    ctx: &Context,
    list: &List,
    dest: &Destination,
    format: Format,
    amend_remote: bool,
) -> Result<Pushed, ListError> {
    let session = ctx.session()?;
    match dest {
        Destination::Registry(r) if amend_remote => push_amending(ctx, &session, list, r, format),
        _ if amend_remote => Err(ListError::Usage(
            "`--amend-remote` is for registries; to add to a local layout's list, `emubuild manifest create --amend oci:DIR:TAG` and push it back".into(),
        )),
        _ => {
            let (root, sources) = tree(ctx, list, format, &session)?;
            let digest = transfer::to_destination(&session, &ctx.store, &root, &sources, dest)?;
            Ok(Pushed {
                digest,
                dest: dest.to_string(),
                entries: list.entries.len(),
                merged: 0,
            })
        }
    }
}

/// How often `--amend-remote` writes before giving up.
const AMEND_TRIES: usize = 8;

/// The remote list `r` names: its digest and entries (None: there is none yet).
fn remote_entries(
    session: &crate::registry::Session,
    r: &RegistryRef,
) -> Result<Option<(String, Vec<Descriptor>)>, ListError> {
    let m = match session.manifest(r) {
        Ok(m) => m,
        Err(crate::registry::RegistryError::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let v: serde_json::Value =
        serde_json::from_slice(&m.bytes).map_err(|e| ListError::Malformed(format!("{r}: {e}")))?;
    if v.get("manifests").is_none() {
        return Err(ListError::Usage(format!(
            "{r} is an image, not a list; `--amend-remote` adds to a list"
        )));
    }
    let idx: ImageIndex = crate::oci::document::parse(&m.bytes, &m.digest, "image index")
        .map_err(|e| ListError::Malformed(e.to_string()))?;
    Ok(Some((m.digest, idx.manifests().clone())))
}

/// Our digests `remote` lacks.
fn lacking(ours: &[String], remote: &[Descriptor]) -> Vec<String> {
    ours.iter()
        .filter(|d| !remote.iter().any(|x| x.digest().to_string() == **d))
        .cloned()
        .collect()
}

/// `--amend-remote`: reads the remote list, merges ours into it (ours win for the same
/// digest or platform), writes, waits, reads it again; while an entry of ours is missing
/// (another job wrote in between), merges and writes again. Registries have no compare-and-
/// swap, so this narrows the window to a read and a write but cannot close it: the wait
/// after each write is what lets a concurrent writer's loss be seen and repaired. What is
/// reported is what the tag names when it was last read back.
fn push_amending(
    ctx: &Context,
    session: &crate::registry::Session,
    list: &List,
    r: &RegistryRef,
    format: Format,
) -> Result<Pushed, ListError> {
    if r.tag.is_none() || r.digest.is_some() {
        return Err(ListError::Usage(format!(
            "`--amend-remote` adds to the list a tag names; `{r}` {}",
            if r.digest.is_some() {
                "pins a digest"
            } else {
                "has no tag"
            }
        )));
    }
    // Ours must not replace each other in the merge, or one could never land.
    for (i, a) in list.entries.iter().enumerate() {
        if let Some(b) = list.entries[..i]
            .iter()
            .find(|b| same_platform(&a.descriptor, &b.descriptor))
        {
            return Err(ListError::SamePlatform {
                platform: platform_name(&a.descriptor),
                first: b.descriptor.digest().to_string(),
                second: a.descriptor.digest().to_string(),
            });
        }
    }
    let ours: Vec<String> = list
        .entries
        .iter()
        .map(|e| e.descriptor.digest().to_string())
        .collect();
    let repository = format!("{}/{}", r.registry, r.repository);
    let mut remote = remote_entries(session, r)?;
    for attempt in 1..=AMEND_TRIES {
        let theirs = remote.as_ref().map(|(_, e)| e.clone()).unwrap_or_default();
        // Theirs first (in their order, the ones ours replace left out), then ours.
        let mut merged = new_list(&list.name);
        merged.annotations = list.annotations.clone();
        for d in &theirs {
            merged.entries.push(Entry {
                descriptor: d.clone(),
                source: Source::Registry {
                    repository: repository.clone(),
                },
            });
        }
        add(&mut merged, list.entries.clone());
        let (root, sources) = tree(ctx, &merged, format, session)?;
        crate::registry::push::push(session, r, &root, &sources)?;
        tracing::info!(
            attempt,
            entries = merged.entries.len(),
            "wrote the merged list"
        );
        // Long enough for a concurrent writer's read-then-write to land, so it is seen.
        let pause = 300 + (std::process::id() as u64 * 37 + attempt as u64 * 101) % 400;
        std::thread::sleep(std::time::Duration::from_millis(pause));
        remote = remote_entries(session, r)?;
        if let Some((digest, now)) = &remote
            && lacking(&ours, now).is_empty()
        {
            let kept = now
                .iter()
                .filter(|d| !ours.contains(&d.digest().to_string()))
                .count();
            return Ok(Pushed {
                digest: digest.clone(),
                dest: r.to_string(),
                entries: now.len(),
                merged: kept,
            });
        }
    }
    let now = remote.map(|(_, e)| e).unwrap_or_default();
    Err(ListError::Lost {
        dest: r.to_string(),
        missing: lacking(&ours, &now).join(", "),
        tries: AMEND_TRIES,
    })
}

/// `manifest create`/`add`: the entries of each image, opened through one session.
pub fn resolve_all(
    ctx: &Context,
    list_name: &str,
    images: &[Reference],
    pick: &Pick,
) -> Result<Vec<Entry>, ListError> {
    let session = ctx.session()?;
    let staging = ctx.store.root().join("tmp");
    let mut out = Vec::new();
    for image in images {
        let opened = transfer::open(image, &session, &ctx.store, &staging)?;
        out.extend(entries_of(
            &opened,
            &image.to_string(),
            pick,
            &archives(ctx, list_name),
        )?);
    }
    Ok(out)
}

/// `--amend` from an existing index (a registry's or a layout's): its entries, as a list.
pub fn from_index(ctx: &Context, name: &str, image: &Reference) -> Result<List, ListError> {
    let mut list = new_list(name);
    let pick = Pick {
        all: true,
        platform: None,
    };
    let session = ctx.session()?;
    let staging = ctx.store.root().join("tmp");
    let opened = transfer::open(image, &session, &ctx.store, &staging)?;
    if crate::oci::document::is_index(&opened.root) {
        let bytes = opened.docs.read(&opened.root)?;
        let idx: ImageIndex =
            crate::oci::document::parse(&bytes, opened.root.digest().as_ref(), "image index")
                .map_err(|e| ListError::Malformed(e.to_string()))?;
        if let Some(a) = idx.annotations() {
            list.annotations = a.clone().into_iter().collect();
        }
        // The index's own descriptors (platforms, annotations) as they are.
        let source = match &opened.origin {
            Some(o) => Source::Registry {
                repository: o.clone(),
            },
            None => entries_of(&opened, &image.to_string(), &pick, &archives(ctx, name))?
                .first()
                .map(|e| e.source.clone())
                .ok_or_else(|| ListError::Usage(format!("{image} is an empty index")))?,
        };
        for d in idx.manifests() {
            if !is_attestation(d) {
                add(
                    &mut list,
                    vec![Entry {
                        descriptor: d.clone(),
                        source: source.clone(),
                    }],
                );
            }
        }
    } else {
        add(
            &mut list,
            entries_of(&opened, &image.to_string(), &pick, &archives(ctx, name))?,
        );
    }
    Ok(list)
}

/// One child of an inspected list (`manifest inspect --verbose`): its manifest, layer count
/// and size.
#[derive(Debug, Clone, Serialize)]
pub struct Child {
    /// Where it is read from.
    #[serde(rename = "ref")]
    pub reference: String,
    /// Its descriptor in the list.
    pub descriptor: Descriptor,
    /// Its manifest (an index's, for a nested index).
    pub manifest: serde_json::Value,
    /// How many layers.
    pub layers: usize,
    /// Config, layers and the manifest itself, in bytes.
    pub size: u64,
}

/// Reads a child's manifest and adds up its size.
fn describe(docs: &dyn Documents, reference: String, d: &Descriptor) -> Result<Child, ListError> {
    let bytes = docs.read(d)?;
    let manifest: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| ListError::Malformed(format!("{reference}: {}: {e}", d.digest())))?;
    let (layers, size) = if crate::oci::document::is_index(d) {
        (0, d.size())
    } else {
        let m: ImageManifest =
            crate::oci::document::parse(&bytes, d.digest().as_ref(), "image manifest")
                .map_err(|e| ListError::Malformed(e.to_string()))?;
        let layers: u64 = m.layers().iter().map(|l| l.size()).sum();
        (m.layers().len(), d.size() + m.config().size() + layers)
    };
    Ok(Child {
        reference,
        descriptor: d.clone(),
        manifest,
        layers,
        size,
    })
}

/// `manifest inspect` of a local list: the index it pushes as (OCI), pretty; with `verbose`,
/// each child described instead.
pub fn inspect_list(ctx: &Context, list: &List, verbose: bool) -> Result<Vec<u8>, ListError> {
    if !verbose {
        let (bytes, _) = index_bytes(list, Format::Oci)?;
        let v: serde_json::Value = serde_json::from_slice(&bytes).expect("our own JSON");
        return Ok(serde_json::to_vec_pretty(&v).expect("values serialise"));
    }
    let session = ctx.session()?;
    let mut out = Vec::new();
    for e in &list.entries {
        let d = &e.descriptor;
        let docs = open_source(&e.source, d.digest().as_ref(), &session, &ctx.store)?;
        out.push(describe(&docs, format!("{}@{}", e.source, d.digest()), d)?);
    }
    Ok(serde_json::to_vec_pretty(&out).expect("values serialise"))
}

/// `manifest inspect` of an image reference: its root document's exact bytes (as
/// `docker manifest inspect` prints a remote one); with `verbose`, each child (or the image)
/// described.
pub fn inspect_image(
    ctx: &Context,
    image: &Reference,
    verbose: bool,
) -> Result<Vec<u8>, ListError> {
    let session = ctx.session()?;
    let opened = transfer::open(image, &session, &ctx.store, &ctx.store.root().join("tmp"))?;
    let bytes = opened.docs.read(&opened.root)?;
    if !verbose {
        return Ok(bytes);
    }
    let name = image.to_string();
    let children = if crate::oci::document::is_index(&opened.root) {
        let idx: ImageIndex =
            crate::oci::document::parse(&bytes, opened.root.digest().as_ref(), "image index")
                .map_err(|e| ListError::Malformed(e.to_string()))?;
        idx.manifests().clone()
    } else {
        vec![opened.root.clone()]
    };
    let out = children
        .iter()
        .map(|d| describe(&opened.docs, format!("{name}@{}", d.digest()), d))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(serde_json::to_vec_pretty(&out).expect("values serialise"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(digest_byte: u8, platform: &str, variant: Option<&str>) -> Entry {
        let mut d = crate::oci::document::describe(MediaType::ImageManifest, &[digest_byte]);
        let (os, arch) = platform.split_once('/').unwrap();
        let mut p = oci_spec::image::Platform::default();
        p.set_os(oci_spec::image::Os::from(os));
        p.set_architecture(oci_spec::image::Arch::from(arch));
        p.set_variant(variant.map(str::to_string));
        d.set_platform(Some(p));
        Entry {
            descriptor: d,
            source: Source::Registry {
                repository: "r.example/x".into(),
            },
        }
    }

    #[test]
    fn add_replaces_the_same_digest_or_platform_normalised() {
        let mut l = new_list("l");
        add(
            &mut l,
            vec![
                entry(1, "linux/arm64", Some("v8")),
                entry(2, "linux/s390x", None),
            ],
        );
        // arm64 without a variant is arm64/v8: a rebuild replaces it, and says so.
        let notes = add(&mut l, vec![entry(3, "linux/arm64", None)]);
        assert_eq!(l.entries.len(), 2);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].contains("replaces"));
        // arm/v7 is another platform than arm/v6.
        add(&mut l, vec![entry(4, "linux/arm", Some("v7"))]);
        add(&mut l, vec![entry(5, "linux/arm", Some("v6"))]);
        assert_eq!(l.entries.len(), 4);
        // The same digest again changes nothing.
        assert!(add(&mut l, vec![entry(2, "linux/s390x", None)]).is_empty());
        assert_eq!(l.entries.len(), 4);
    }

    #[test]
    fn docker_format_refuses_oci_children_and_writes_docker_lists() {
        let mut l = new_list("l");
        add(&mut l, vec![entry(1, "linux/arm64", Some("v8"))]);
        let e = index_bytes(&l, Format::Docker).unwrap_err().to_string();
        assert!(e.contains("OCI image manifest"), "{e}");
        let (oci, mt) = index_bytes(&l, Format::Oci).unwrap();
        assert_eq!(mt, MediaType::ImageIndex.to_string());
        let v: serde_json::Value = serde_json::from_slice(&oci).unwrap();
        assert_eq!(v["manifests"][0]["platform"]["variant"], "v8");
        l.entries[0]
            .descriptor
            .set_media_type(MediaType::Other(DOCKER_MANIFEST.into()));
        let (docker, mt) = index_bytes(&l, Format::Docker).unwrap();
        assert_eq!(mt, DOCKER_LIST);
        let v: serde_json::Value = serde_json::from_slice(&docker).unwrap();
        assert_eq!(v["mediaType"], DOCKER_LIST);
        assert_eq!(v["manifests"][0]["mediaType"], DOCKER_MANIFEST);
    }
}
