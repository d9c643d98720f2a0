//! Pushing a tree of documents to a repository in the order registries need: every blob
//! (skipped when the repository has it, mounted from another repository of the same registry
//! that is known to hold it, else uploaded; several at once), then each image's manifest by
//! digest, then the root (an index or a manifest) by tag, or by digest alone. The index is
//! written last, only after every child exists. The exact bytes given are pushed; nothing is
//! serialised again.

use std::path::PathBuf;

use futures_util::{StreamExt, TryStreamExt, stream};

use super::{Pushed, RegistryError, Session};
use crate::oci::reference::RegistryRef;

/// A document to push and what it needs first.
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

/// Where the pushed blobs are on disk, and which repositories may already hold them.
pub trait LocalBlobs: Sync {
    /// The file holding blob `digest`.
    fn file(&self, digest: &str) -> Result<PathBuf, RegistryError>;
    /// `registry/repository` names known to hold `digest` (for mounts).
    fn origins(&self, digest: &str) -> Vec<String>;
    /// Learns that `origin` (`registry/repository`) now holds `digest` (a later push to
    /// another repository of that registry mounts it).
    fn held(&self, _digest: &str, _origin: &str) {}
}

/// How many blobs go at once.
const PARALLEL: usize = 4;

fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", crate::digest::sha256_hex(bytes))
}

impl Node {
    fn bytes(&self) -> &[u8] {
        match self {
            Node::Manifest { bytes, .. } | Node::Index { bytes, .. } => bytes,
        }
    }

    fn media_type(&self) -> &str {
        match self {
            Node::Manifest { media_type, .. } | Node::Index { media_type, .. } => media_type,
        }
    }

    fn blobs(&self, out: &mut Vec<(String, u64)>) {
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

    /// Every manifest and index below the root, children before their parents.
    fn below(&self, out: &mut Vec<(Vec<u8>, String)>) {
        if let Node::Index { children, .. } = self {
            for c in children {
                c.below(out);
                out.push((c.bytes().to_vec(), c.media_type().to_string()));
            }
        }
    }
}

/// What happened to one blob.
enum Done {
    Existing,
    Mounted,
    Uploaded,
}

async fn push_blob(
    session: &Session,
    dest: &RegistryRef,
    files: &dyn LocalBlobs,
    digest: &str,
    size: u64,
) -> Result<Done, RegistryError> {
    let here = format!("{}/{}", dest.registry, dest.repository);
    let done = send_blob(session, dest, files, digest, size, &here).await?;
    files.held(digest, &here);
    Ok(done)
}

async fn send_blob(
    session: &Session,
    dest: &RegistryRef,
    files: &dyn LocalBlobs,
    digest: &str,
    size: u64,
    here: &str,
) -> Result<Done, RegistryError> {
    let c = &session.client;
    if c.blob_exists(dest, digest, true).await? {
        return Ok(Done::Existing);
    }
    let prefix = format!("{}/", dest.registry);
    let mut from: Vec<String> = files.origins(digest);
    from.extend(
        c.origins
            .lock()
            .expect("not poisoned")
            .get(digest)
            .cloned()
            .unwrap_or_default(),
    );
    for o in from
        .iter()
        .filter(|o| o.starts_with(&prefix) && o.as_str() != here)
    {
        let repo = &o[prefix.len()..];
        match c.mount(dest, digest, repo).await {
            Ok(true) => {
                tracing::info!(%digest, from = %repo, "mounted");
                return Ok(Done::Mounted);
            }
            Ok(false) => tracing::debug!(%digest, from = %repo, "mount declined; uploading"),
            Err(e) => tracing::debug!(%digest, from = %repo, error = %e, "mount failed; uploading"),
        }
    }
    let file = files.file(digest)?;
    c.upload(dest, digest, size, &file).await?;
    tracing::info!(%digest, size, "uploaded");
    Ok(Done::Uploaded)
}

/// Pushes `root` and everything it needs to `dest`: by `dest`'s tag, or by digest when it has
/// none.
pub fn push(
    session: &Session,
    dest: &RegistryRef,
    root: &Node,
    files: &dyn LocalBlobs,
) -> Result<Pushed, RegistryError> {
    let mut blobs = Vec::new();
    root.blobs(&mut blobs);
    let mut pushed = Pushed {
        digest: digest_of(root.bytes()),
        uploaded: 0,
        mounted: 0,
        existing: 0,
    };
    session.block_on(async {
        let done: Vec<Done> = stream::iter(&blobs)
            .map(|(d, size)| push_blob(session, dest, files, d, *size))
            .buffer_unordered(PARALLEL)
            .try_collect()
            .await?;
        for d in done {
            match d {
                Done::Existing => pushed.existing += 1,
                Done::Mounted => pushed.mounted += 1,
                Done::Uploaded => pushed.uploaded += 1,
            }
        }
        let mut children = Vec::new();
        root.below(&mut children);
        for (bytes, media_type) in &children {
            let d = digest_of(bytes);
            session
                .client
                .put_manifest(dest, &d, media_type, bytes)
                .await?;
        }
        let reference = dest.tag.clone().unwrap_or_else(|| pushed.digest.clone());
        session
            .client
            .put_manifest(dest, &reference, root.media_type(), root.bytes())
            .await?;
        tracing::info!(dest = %dest, digest = %pushed.digest, "pushed");
        Ok::<(), RegistryError>(())
    })?;
    Ok(pushed)
}

impl LocalBlobs for crate::store::Store {
    fn file(&self, digest: &str) -> Result<PathBuf, RegistryError> {
        self.blobs()
            .blob_path(digest)
            .map_err(|e| RegistryError::BadManifest {
                reference: digest.to_string(),
                reason: e.to_string(),
            })
    }

    fn origins(&self, digest: &str) -> Vec<String> {
        crate::store::Store::origins(self, digest)
    }

    fn held(&self, digest: &str, origin: &str) {
        self.record_origin(digest, origin);
    }
}

impl LocalBlobs for crate::oci::layout::Layout {
    fn file(&self, digest: &str) -> Result<PathBuf, RegistryError> {
        let p = self
            .blob_path(digest)
            .map_err(|e| RegistryError::BadManifest {
                reference: digest.to_string(),
                reason: e.to_string(),
            })?;
        if !p.is_file() {
            return Err(RegistryError::NotFound {
                what: format!("blob {digest}"),
                reference: self.dir().display().to_string(),
            });
        }
        Ok(p)
    }

    fn origins(&self, _digest: &str) -> Vec<String> {
        Vec::new()
    }
}

/// The tree below `d` in a layout (every document read and checked), ready to push.
pub fn tree(
    docs: &dyn crate::oci::image::Documents,
    d: &crate::oci::document::Descriptor,
    depth: usize,
) -> Result<Node, crate::oci::image::SelectError> {
    use crate::oci::document::{ImageIndex, ImageManifest, is_index, parse};
    use crate::oci::image::SelectError;
    if depth > 8 {
        return Err(SelectError::Malformed(
            "image indexes nest more than 8 deep".into(),
        ));
    }
    let bytes = docs.read(d)?;
    let media_type = d.media_type().to_string();
    let bad = |e: crate::oci::document::DocError| SelectError::Malformed(e.to_string());
    if is_index(d) {
        let idx: ImageIndex = parse(&bytes, d.digest().as_ref(), "image index").map_err(bad)?;
        let children = idx
            .manifests()
            .iter()
            .map(|c| tree(docs, c, depth + 1))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(Node::Index {
            bytes,
            media_type,
            children,
        });
    }
    let m: ImageManifest = parse(&bytes, d.digest().as_ref(), "image manifest").map_err(bad)?;
    let blobs = std::iter::once(m.config())
        .chain(m.layers())
        .map(|b| (b.digest().to_string(), b.size()))
        .collect();
    Ok(Node::Manifest {
        bytes,
        media_type,
        blobs,
    })
}

/// Blob files from one place, and where they may be mounted from as the store knows it (a
/// layout pushed after a pull of the same layers mounts them instead of uploading).
pub struct KnownOrigins<'a, B> {
    /// Where the files are.
    pub files: &'a B,
    /// The store whose origins are consulted.
    pub store: &'a crate::store::Store,
}

impl<B: LocalBlobs> LocalBlobs for KnownOrigins<'_, B> {
    fn file(&self, digest: &str) -> Result<PathBuf, RegistryError> {
        self.files.file(digest)
    }

    fn origins(&self, digest: &str) -> Vec<String> {
        let mut o = self.files.origins(digest);
        o.extend(self.store.origins(digest));
        o
    }

    fn held(&self, digest: &str, origin: &str) {
        self.store.record_origin(digest, origin);
    }
}
