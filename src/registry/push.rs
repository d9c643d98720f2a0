//! Pushing a tree of documents to a repository in the order registries need: every blob
//! (skipped when the repository has it, mounted from another repository of the same registry
//! that is known to hold it, else uploaded; several at once), then each image's manifest by
//! digest, then the root (an index or a manifest) by tag, or by digest alone. The index is
//! written last, only after every child exists. The exact bytes given are pushed; nothing is
//! serialised again.

use futures_util::{StreamExt, TryStreamExt, stream};

use super::{Pushed, RegistryError, Session};
use crate::oci::reference::RegistryRef;
pub use crate::transfer::{Blobs, Node};
use crate::transfer::{digest_of, origin_ref};

/// How many blobs go at once.
const PARALLEL: usize = 4;

/// What happened to one blob.
enum Done {
    Existing,
    Mounted,
    Uploaded,
    Copied,
}

async fn push_blob(
    session: &Session,
    dest: &RegistryRef,
    files: &dyn Blobs,
    digest: &str,
    size: u64,
) -> Result<Done, RegistryError> {
    let here = format!("{}/{}", dest.registry, dest.repository);
    let done = send_blob(session, dest, files, digest, size, &here).await?;
    files.held(digest, &here);
    Ok(done)
}

/// One blob into `dest`: nothing when it is there; else a mount from a repository of the same
/// registry known to hold it; else an upload of a local file; else a stream from a repository
/// that holds it (on this registry or another).
async fn send_blob(
    session: &Session,
    dest: &RegistryRef,
    files: &dyn Blobs,
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
    for o in c
        .origins
        .lock()
        .expect("not poisoned")
        .get(digest)
        .cloned()
        .unwrap_or_default()
    {
        if !from.contains(&o) {
            from.push(o);
        }
    }
    from.retain(|o| o.as_str() != here);
    for o in from.iter().filter(|o| o.starts_with(&prefix)) {
        let repo = &o[prefix.len()..];
        match c.mount(dest, digest, repo).await {
            Ok(true) => {
                tracing::info!(%digest, from = %repo, "mounted");
                return Ok(Done::Mounted);
            }
            Ok(false) => tracing::debug!(%digest, from = %repo, "mount declined"),
            Err(e) => tracing::debug!(%digest, from = %repo, error = %e, "mount failed"),
        }
    }
    if let Some(file) = files.file(digest) {
        c.upload(dest, digest, size, &file).await?;
        tracing::info!(%digest, size, "uploaded");
        return Ok(Done::Uploaded);
    }
    let mut last = None;
    for source in from.iter().filter_map(|o| origin_ref(o)) {
        match c.copy_blob(dest, digest, size, &source).await {
            Ok(()) => {
                tracing::info!(%digest, size, from = %source, "copied");
                return Ok(Done::Copied);
            }
            Err(e) => {
                tracing::debug!(%digest, from = %source, error = %e, "copy failed");
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or_else(|| RegistryError::NotFound {
        what: format!("blob {digest}"),
        reference: "any place this push reads from".into(),
    }))
}

/// Pushes `root` and everything it needs to `dest`: by `dest`'s tag, or by digest when it has
/// none. A manifest or index the repository has already is not pushed again, nor anything
/// below it (a registry keeps a manifest only with what it names): promoting a tag within a
/// repository writes the tag alone.
pub fn push(
    session: &Session,
    dest: &RegistryRef,
    root: &Node,
    files: &dyn Blobs,
) -> Result<Pushed, RegistryError> {
    let mut pushed = Pushed {
        digest: digest_of(root.bytes()),
        uploaded: 0,
        mounted: 0,
        existing: 0,
        copied: 0,
    };
    if let Some(wanted) = &dest.digest
        && *wanted != pushed.digest
    {
        return Err(RegistryError::WrongDigest {
            dest: dest.to_string(),
            wanted: wanted.clone(),
            actual: pushed.digest,
        });
    }
    session.block_on(async {
        // Which documents the repository has, root included.
        let mut docs = Vec::new();
        root.below(&mut docs);
        docs.push((root.bytes().to_vec(), root.media_type().to_string()));
        let digests: Vec<String> = docs.iter().map(|(b, _)| digest_of(b)).collect();
        let present: Vec<bool> = stream::iter(&digests)
            .map(|d| async move {
                Ok::<bool, RegistryError>(
                    session.client.head_manifest(dest, d, true).await?.is_some(),
                )
            })
            .buffered(PARALLEL)
            .try_collect()
            .await?;
        let have: std::collections::HashSet<&str> = digests
            .iter()
            .zip(&present)
            .filter(|(_, p)| **p)
            .map(|(d, _)| d.as_str())
            .collect();
        let mut blobs = Vec::new();
        needed_blobs(root, &have, &mut blobs);
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
                Done::Copied => pushed.copied += 1,
            }
        }
        for ((bytes, media_type), d) in docs.iter().zip(&digests).take(docs.len() - 1) {
            if !have.contains(d.as_str()) {
                session
                    .client
                    .put_manifest(dest, d, media_type, bytes)
                    .await?;
            }
        }
        match &dest.tag {
            // A tag that names the root already is left as it is.
            Some(tag)
                if have.contains(pushed.digest.as_str())
                    && session
                        .client
                        .head_manifest(dest, tag, true)
                        .await?
                        .and_then(|h| h.digest)
                        .as_deref()
                        == Some(pushed.digest.as_str()) => {}
            Some(tag) => {
                session
                    .client
                    .put_manifest(dest, tag, root.media_type(), root.bytes())
                    .await?;
            }
            None if !have.contains(pushed.digest.as_str()) => {
                session
                    .client
                    .put_manifest(dest, &pushed.digest, root.media_type(), root.bytes())
                    .await?;
            }
            None => {}
        }
        tracing::info!(dest = %dest, digest = %pushed.digest, "pushed");
        Ok::<(), RegistryError>(())
    })?;
    Ok(pushed)
}

/// When `dest`'s repository has the document `bytes` already, points `dest` at it (PUT of the
/// same bytes by tag; nothing when the tag names it already, or `dest` has no tag) and says
/// true: nothing below it is needed. False when the repository lacks it.
pub fn retag(
    session: &Session,
    dest: &RegistryRef,
    bytes: &[u8],
    media_type: &str,
) -> Result<bool, RegistryError> {
    let digest = digest_of(bytes);
    if let Some(wanted) = &dest.digest
        && *wanted != digest
    {
        return Err(RegistryError::WrongDigest {
            dest: dest.to_string(),
            wanted: wanted.clone(),
            actual: digest,
        });
    }
    session.block_on(async {
        if session
            .client
            .head_manifest(dest, &digest, true)
            .await?
            .is_none()
        {
            return Ok(false);
        }
        if let Some(tag) = &dest.tag {
            let named = session
                .client
                .head_manifest(dest, tag, true)
                .await?
                .and_then(|h| h.digest);
            if named.as_deref() != Some(digest.as_str()) {
                session
                    .client
                    .put_manifest(dest, tag, media_type, bytes)
                    .await?;
            }
        }
        tracing::info!(dest = %dest, %digest, "tagged what the repository has");
        Ok(true)
    })
}

/// The blobs below `node` that are not under a document the repository has.
fn needed_blobs(node: &Node, have: &std::collections::HashSet<&str>, out: &mut Vec<(String, u64)>) {
    if have.contains(node.digest().as_str()) {
        return;
    }
    match node {
        Node::Manifest { blobs, .. } => {
            for b in blobs {
                if !out.contains(b) {
                    out.push(b.clone());
                }
            }
        }
        Node::Index { children, .. } => children.iter().for_each(|c| needed_blobs(c, have, out)),
    }
}
