//! Copying images between places by digest: an image or index as a tree of documents (`Node`,
//! read from a layout, the store or a registry repository, every document checked), the blobs
//! it names and where each can be had (`Blobs`: a local file, or registry repositories known to
//! hold it), written to a registry (`registry::push`) or to a layout (`to_layout`: blobs first,
//! the tag last). The exact bytes of every document are kept, so digests never change.

use std::collections::HashMap;
use std::path::PathBuf;

use crate::oci::document::{
    Descriptor, ImageIndex, ImageManifest, MediaType, describe, is_index, parse,
};
use crate::oci::image::{Documents, SelectError};
use crate::oci::reference::RegistryRef;
use crate::oci::write::{LayoutWriter, WriteError};

/// A document to copy and what it needs first.
#[derive(Debug, Clone)]
pub enum Node {
    /// An image manifest and the blobs it names (config first, then layers).
    Manifest {
        /// Its bytes.
        bytes: Vec<u8>,
        /// Its media type.
        media_type: String,
        /// The blobs: digest and size.
        blobs: Vec<(String, u64)>,
    },
    /// An index and its children.
    Index {
        /// Its bytes.
        bytes: Vec<u8>,
        /// Its media type.
        media_type: String,
        /// The children, in order.
        children: Vec<Node>,
    },
}

/// `sha256:` of some bytes.
pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", crate::digest::sha256_hex(bytes))
}

impl Node {
    /// The document's bytes.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Node::Manifest { bytes, .. } | Node::Index { bytes, .. } => bytes,
        }
    }

    /// Its media type.
    pub fn media_type(&self) -> &str {
        match self {
            Node::Manifest { media_type, .. } | Node::Index { media_type, .. } => media_type,
        }
    }

    /// Its digest.
    pub fn digest(&self) -> String {
        digest_of(self.bytes())
    }

    /// A descriptor of it.
    pub fn descriptor(&self) -> Descriptor {
        describe(MediaType::from(self.media_type()), self.bytes())
    }

    /// Every blob below it, once each, in order.
    pub fn blobs(&self, out: &mut Vec<(String, u64)>) {
        match self {
            Node::Manifest { blobs, .. } => {
                for b in blobs {
                    if !out.contains(b) {
                        out.push(b.clone());
                    }
                }
            }
            Node::Index { children, .. } => children.iter().for_each(|c| c.blobs(out)),
        }
    }

    /// Every manifest and index below it, once each, children before their parents (not
    /// itself).
    pub fn below(&self, out: &mut Vec<(Vec<u8>, String)>) {
        if let Node::Index { children, .. } = self {
            for c in children {
                c.below(out);
                if !out.iter().any(|(b, _)| b.as_slice() == c.bytes()) {
                    out.push((c.bytes().to_vec(), c.media_type().to_string()));
                }
            }
        }
    }

    /// An index of exactly one image manifest as that manifest (a registry gets it alone, as
    /// `docker push` sends it); anything else as it is.
    pub fn single(self) -> Node {
        match self {
            Node::Index { mut children, .. }
                if children.len() == 1 && matches!(children[0], Node::Manifest { .. }) =>
            {
                children.pop().expect("one child")
            }
            other => other,
        }
    }

    /// How many documents it holds, itself included (repeats counted).
    pub fn count(&self) -> usize {
        match self {
            Node::Manifest { .. } => 1,
            Node::Index { children, .. } => 1 + children.iter().map(Node::count).sum::<usize>(),
        }
    }
}

/// The most documents (counting repeats) a tree may hold: an index naming the same child many
/// times, nested, would otherwise cost exponentially many reads and nodes.
pub const MAX_NODES: usize = 4096;

/// The tree below `d` in `docs` (every document read and checked against its descriptor, and
/// its own `mediaType`, when it has one, agreeing with the descriptor's).
pub fn tree(docs: &dyn Documents, d: &Descriptor, depth: usize) -> Result<Node, SelectError> {
    let mut walk = Walk {
        docs,
        seen: HashMap::new(),
        nodes: 0,
    };
    walk.node(d, depth)
}

struct Walk<'d> {
    docs: &'d dyn Documents,
    /// Documents read so far, by digest (a repeated child is read once).
    seen: HashMap<String, Node>,
    nodes: usize,
}

impl Walk<'_> {
    fn node(&mut self, d: &Descriptor, depth: usize) -> Result<Node, SelectError> {
        if depth > 8 {
            return Err(SelectError::Malformed(
                "image indexes nest more than 8 deep".into(),
            ));
        }
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(SelectError::Malformed(format!(
                "the image names more than {MAX_NODES} manifests and indexes"
            )));
        }
        if let Some(n) = self.seen.get(d.digest().as_ref()) {
            let n = n.clone();
            // A repeat counts with everything below it.
            self.nodes += n.count() - 1;
            return Ok(n);
        }
        let bytes = self.docs.read(d)?;
        let media_type = d.media_type().to_string();
        let bad = |e: crate::oci::document::DocError| SelectError::Malformed(e.to_string());
        let own = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| {
                v.get("mediaType")
                    .and_then(|m| m.as_str())
                    .map(str::to_string)
            });
        if let Some(own) = own
            && own != media_type
        {
            return Err(SelectError::Malformed(format!(
                "{} says it is {own}, but it is named as {media_type}",
                d.digest()
            )));
        }
        let node = if is_index(d) {
            let idx: ImageIndex = parse(&bytes, d.digest().as_ref(), "image index").map_err(bad)?;
            let children = idx
                .manifests()
                .iter()
                .map(|c| self.node(c, depth + 1))
                .collect::<Result<Vec<_>, _>>()?;
            Node::Index {
                bytes,
                media_type,
                children,
            }
        } else {
            let m: ImageManifest =
                parse(&bytes, d.digest().as_ref(), "image manifest").map_err(bad)?;
            let blobs = std::iter::once(m.config())
                .chain(m.layers())
                .map(|b| (b.digest().to_string(), b.size()))
                .collect();
            Node::Manifest {
                bytes,
                media_type,
                blobs,
            }
        };
        self.seen.insert(d.digest().to_string(), node.clone());
        Ok(node)
    }
}

/// Where the blobs of a copy can be had.
pub trait Blobs: Sync {
    /// A local file holding blob `digest` (its bytes are checked as they are read).
    fn file(&self, digest: &str) -> Option<PathBuf>;
    /// Registry repositories (`registry/repository`) known to hold it: mount sources within a
    /// registry, stream sources across registries.
    fn origins(&self, digest: &str) -> Vec<String>;
    /// Learns that `origin` now holds `digest` (a later copy within that registry mounts it).
    fn held(&self, _digest: &str, _origin: &str) {}
}

/// `registry/repository` as a reference to that repository.
pub fn origin_ref(origin: &str) -> Option<RegistryRef> {
    let (registry, repository) = origin.split_once('/')?;
    Some(RegistryRef {
        registry: registry.to_string(),
        repository: repository.to_string(),
        tag: None,
        digest: None,
    })
}

/// Blobs gathered from several places: files of layouts, registry repositories, and what the
/// store knows of where blobs live.
#[derive(Debug, Default)]
pub struct Sources<'a> {
    files: HashMap<String, PathBuf>,
    origins: HashMap<String, Vec<String>>,
    store: Option<&'a crate::store::Store>,
}

impl<'a> Sources<'a> {
    /// Sources that also consult (and teach) the store's record of blob origins.
    pub fn with_store(store: &'a crate::store::Store) -> Sources<'a> {
        Sources {
            store: Some(store),
            ..Sources::default()
        }
    }

    /// Every blob below `node` is in the layout `dir`.
    pub fn add_layout(&mut self, layout: &crate::oci::layout::Layout, node: &Node) {
        let mut blobs = Vec::new();
        node.blobs(&mut blobs);
        for (d, _) in blobs {
            if let Ok(p) = layout.blob_path(&d)
                && p.is_file()
            {
                self.files.insert(d, p);
            }
        }
    }

    /// Every blob below `node` is in the repository `origin` (`registry/repository`).
    pub fn add_repository(&mut self, origin: &str, node: &Node) {
        let mut blobs = Vec::new();
        node.blobs(&mut blobs);
        for (d, _) in blobs {
            let e = self.origins.entry(d).or_default();
            if !e.iter().any(|o| o == origin) {
                e.push(origin.to_string());
            }
        }
    }

    /// The blobs below `node` that no source holds.
    pub fn missing(&self, node: &Node) -> Vec<String> {
        let mut blobs = Vec::new();
        node.blobs(&mut blobs);
        blobs
            .into_iter()
            .filter(|(d, _)| self.file(d).is_none() && self.origins(d).is_empty())
            .map(|(d, _)| d)
            .collect()
    }
}

impl Blobs for Sources<'_> {
    fn file(&self, digest: &str) -> Option<PathBuf> {
        if let Some(p) = self.files.get(digest) {
            return Some(p.clone());
        }
        let store = self.store?;
        store.blobs().blob_path(digest).ok().filter(|p| p.is_file())
    }

    fn origins(&self, digest: &str) -> Vec<String> {
        let mut o = self.origins.get(digest).cloned().unwrap_or_default();
        if let Some(store) = self.store {
            for s in store.origins(digest) {
                if !o.contains(&s) {
                    o.push(s);
                }
            }
        }
        o
    }

    fn held(&self, digest: &str, origin: &str) {
        if let Some(store) = self.store {
            store.record_origin(digest, origin);
        }
    }
}

/// Why a copy into a layout failed.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// Writing the layout.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// Reading a blob from where it was.
    #[error("cannot read blob {digest} from {from}")]
    Read {
        /// The blob.
        digest: String,
        /// Where.
        from: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A registry.
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
    /// Staging in the store.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// No source holds a blob.
    #[error(
        "blob {0} is in none of the places this copy reads from (the image it belongs to was changed or removed)"
    )]
    NoSource(String),
}

/// Copies `root` into the layout `writer`: every blob (checked against its digest as it is
/// copied or downloaded; a blob the layout has is kept), then the documents, then `tag` (when
/// given) pointing at the root, written last.
pub fn to_layout(
    writer: &LayoutWriter,
    root: &Node,
    tag: Option<&str>,
    blobs: &dyn Blobs,
    session: Option<&crate::registry::Session>,
) -> Result<Descriptor, CopyError> {
    let mut all = Vec::new();
    root.blobs(&mut all);
    for (digest, size) in &all {
        let kept = writer
            .layout()
            .blob_path(digest)
            .ok()
            .and_then(|p| std::fs::symlink_metadata(p).ok())
            .is_some_and(|m| m.is_file() && m.len() == *size);
        if kept {
            continue;
        }
        let read_err = |from: String| {
            let digest = digest.clone();
            move |source: std::io::Error| CopyError::Read {
                digest,
                from,
                source,
            }
        };
        if let Some(file) = blobs.file(digest) {
            let f = crate::oci::layout::open_regular(&file)
                .map_err(read_err(file.display().to_string()))?;
            writer.put_verified(digest, *size, f).map_err(|e| match e {
                WriteError::Io { source, .. }
                    if source.kind() == std::io::ErrorKind::InvalidData =>
                {
                    read_err(file.display().to_string())(source)
                }
                other => CopyError::Write(other),
            })?;
            continue;
        }
        // Every repository known to hold it, in turn (a record may be stale).
        let Some(session) = session else {
            return Err(CopyError::NoSource(digest.clone()));
        };
        let mut failure = None;
        let mut copied = false;
        for o in blobs.origins(digest) {
            let Some(r) = origin_ref(&o) else { continue };
            match writer.put_verified(digest, *size, session.blob(&r, digest, *size)) {
                Ok(_) => {
                    copied = true;
                    break;
                }
                Err(WriteError::Io { source, .. }) => {
                    tracing::debug!(%digest, origin = %o, error = %source, "blob not copied from there");
                    failure = Some(read_err(o.clone())(source));
                }
                Err(other) => return Err(CopyError::Write(other)),
            }
        }
        if !copied {
            return Err(failure.unwrap_or_else(|| CopyError::NoSource(digest.clone())));
        }
    }
    let mut docs = Vec::new();
    root.below(&mut docs);
    for (bytes, _) in &docs {
        writer.put_bytes(bytes)?;
    }
    writer.put_bytes(root.bytes())?;
    let desc = root.descriptor();
    if let Some(t) = tag {
        writer.tag(t, &desc)?;
    }
    Ok(desc)
}

/// Copies `root` to `dest`: a registry (by its tag, or by digest), a layout or an archive
/// (tagged). The digest `dest` now names.
pub fn to_destination(
    session: &crate::registry::Session,
    store: &crate::store::Store,
    root: &Node,
    blobs: &dyn Blobs,
    dest: &crate::oci::reference::Destination,
) -> Result<String, CopyError> {
    use crate::oci::reference::Destination;
    match dest {
        Destination::Registry(r) => {
            Ok(crate::registry::push::push(session, r, root, blobs)?.digest)
        }
        Destination::Layout { dir, tag } => {
            let writer = LayoutWriter::open(dir)?;
            Ok(to_layout(&writer, root, Some(tag), blobs, Some(session))?
                .digest()
                .to_string())
        }
        Destination::Archive { file, tag } => {
            let staging = store.staging()?;
            let dir = staging.path().join("layout");
            let writer = LayoutWriter::open(&dir)?;
            let desc = to_layout(&writer, root, Some(tag), blobs, Some(session))?;
            drop(writer);
            crate::oci::write::pack_archive(&dir, file, &std::collections::BTreeMap::new())?;
            Ok(desc.digest().to_string())
        }
    }
}

/// Where the documents of an opened image are read from.
pub enum Docs<'s> {
    /// A registry repository (documents cached in the store).
    Registry(crate::registry::Repository<'s>),
    /// A layout.
    Layout(crate::oci::layout::Layout),
}

impl Documents for Docs<'_> {
    fn read(&self, d: &Descriptor) -> Result<Vec<u8>, SelectError> {
        match self {
            Docs::Registry(r) => r.read(d),
            Docs::Layout(l) => l.read(d),
        }
    }
}

/// An image or index opened to be copied by digest: its root, its documents, and where its
/// blobs are.
pub struct Opened<'s> {
    /// What the reference names.
    pub root: Descriptor,
    /// Its documents.
    pub docs: Docs<'s>,
    /// `registry/repository` for a registry image.
    pub origin: Option<String>,
    /// Keeps an extracted archive alive.
    pub staging: Option<tempfile::TempDir>,
}

/// Why an image could not be opened for copying.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Not an image that can be copied.
    #[error(
        "`{0}` is not an image to copy; name a registry reference, oci:DIR[:TAG] or oci-archive:FILE[:TAG]"
    )]
    NotAnImage(String),
    /// Opening it.
    #[error(transparent)]
    Source(#[from] crate::oci::source::SourceError),
    /// Reading its documents.
    #[error(transparent)]
    Select(#[from] SelectError),
}

/// The descriptor `tag` names in a layout's `index.json` (the only entry when no tag is given).
pub fn layout_root(
    layout: &crate::oci::layout::Layout,
    tag: Option<&str>,
) -> Result<Descriptor, SelectError> {
    let index = layout.index()?.typed;
    let tags: Vec<&str> = index
        .manifests()
        .iter()
        .filter_map(crate::oci::document::ref_name)
        .collect();
    let dir = layout.dir().display().to_string();
    let tags_s = if tags.is_empty() {
        "none".to_string()
    } else {
        tags.join(", ")
    };
    let entries: Vec<&Descriptor> = index
        .manifests()
        .iter()
        .filter(|d| tag.is_none_or(|t| crate::oci::document::ref_name(d) == Some(t)))
        .collect();
    match (entries.as_slice(), tag) {
        ([one], _) => Ok((*one).clone()),
        ([], Some(t)) => Err(SelectError::NoTag {
            tag: t.to_string(),
            dir,
            tags: tags_s,
        }),
        _ => Err(SelectError::Ambiguous { dir, tags: tags_s }),
    }
}

/// Opens `reference` (a registry image through `session`, a layout, an archive extracted under
/// `staging_dir`) for copying.
pub fn open<'s>(
    reference: &crate::oci::reference::Reference,
    session: &'s crate::registry::Session,
    store: &'s crate::store::Store,
    staging_dir: &std::path::Path,
) -> Result<Opened<'s>, OpenError> {
    use crate::oci::source::ImageSource;
    match ImageSource::open(reference, staging_dir)? {
        ImageSource::Registry(r) => {
            let origin = format!("{}/{}", r.registry, r.repository);
            let repo = crate::registry::Repository {
                session,
                reference: r,
                store,
            };
            let root = repo.root()?;
            Ok(Opened {
                root,
                docs: Docs::Registry(repo),
                origin: Some(origin),
                staging: None,
            })
        }
        ImageSource::Layout {
            layout,
            tag,
            _staging,
        } => {
            let root = layout_root(&layout, tag.as_deref())?;
            Ok(Opened {
                root,
                docs: Docs::Layout(layout),
                origin: None,
                staging: _staging,
            })
        }
        ImageSource::Rootfs(_) | ImageSource::Scratch => {
            Err(OpenError::NotAnImage(reference.to_string()))
        }
    }
}

impl Opened<'_> {
    /// The tree below `d` (the root, or an entry of it), and where its blobs are.
    pub fn tree(&self, d: &Descriptor, sources: &mut Sources<'_>) -> Result<Node, SelectError> {
        let node = tree(&self.docs, d, 0)?;
        match (&self.docs, &self.origin) {
            (Docs::Layout(l), _) => sources.add_layout(l, &node),
            (Docs::Registry(_), Some(o)) => sources.add_repository(o, &node),
            (Docs::Registry(_), None) => {}
        }
        Ok(node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Documents in memory, counting reads.
    #[derive(Default)]
    struct Mem {
        docs: HashMap<String, Vec<u8>>,
        reads: std::cell::Cell<usize>,
    }

    impl Mem {
        fn put(&mut self, mt: MediaType, v: serde_json::Value) -> Descriptor {
            let bytes = serde_json::to_vec(&v).unwrap();
            let d = describe(mt, &bytes);
            self.docs.insert(d.digest().to_string(), bytes);
            d
        }
    }

    impl Documents for Mem {
        fn read(&self, d: &Descriptor) -> Result<Vec<u8>, SelectError> {
            self.reads.set(self.reads.get() + 1);
            self.docs
                .get(d.digest().as_ref())
                .cloned()
                .ok_or_else(|| SelectError::Malformed("missing".into()))
        }
    }

    fn manifest(m: &mut Mem, n: u8) -> Descriptor {
        m.put(
            MediaType::ImageManifest,
            json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": format!("sha256:{}", crate::digest::sha256_hex(&[n])), "size": 1},
                "layers": []}),
        )
    }

    fn index(m: &mut Mem, children: &[Descriptor]) -> Descriptor {
        m.put(
            MediaType::ImageIndex,
            json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": children}),
        )
    }

    #[test]
    fn repeated_children_are_read_once_and_the_tree_is_bounded() {
        let mut m = Mem::default();
        let leaf = manifest(&mut m, 1);
        let mid = index(&mut m, &vec![leaf.clone(); 50]);
        let root = index(&mut m, &vec![mid.clone(); 50]);
        let node = tree(&m, &root, 0).unwrap();
        assert_eq!(node.count(), 1 + 50 + 50 * 50);
        assert_eq!(m.reads.get(), 3, "each document read once");
        let mut below = Vec::new();
        node.below(&mut below);
        assert_eq!(below.len(), 2, "each document once");
        let mut blobs = Vec::new();
        node.blobs(&mut blobs);
        assert_eq!(blobs.len(), 1);

        // Another level of 50: 125,000 nodes, refused.
        let top = index(&mut m, &vec![root; 50]);
        let e = tree(&m, &top, 0).unwrap_err().to_string();
        assert!(e.contains(&MAX_NODES.to_string()), "{e}");
    }

    #[test]
    fn a_document_naming_another_media_type_is_refused() {
        let mut m = Mem::default();
        let leaf = manifest(&mut m, 2);
        // The descriptor says Docker v2; the document says OCI.
        let mut lying = leaf.clone();
        lying.set_media_type(MediaType::Other(
            crate::oci::document::MT_DOCKER_MANIFEST.into(),
        ));
        let e = tree(&m, &lying, 0).unwrap_err().to_string();
        assert!(e.contains("says it is"), "{e}");
        tree(&m, &leaf, 0).unwrap();
    }
}
