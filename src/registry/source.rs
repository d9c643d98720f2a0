//! A registry repository as an image source: documents for platform selection
//! (`oci::image::Documents`) and layer blobs for the store (`store::BlobSource`). Everything
//! fetched is checked against its digest and size before use and kept in the store by digest,
//! so a second pull of the same image, or of one sharing layers, asks only for the root
//! manifest's digest (HEAD) and transfers nothing else.

use std::io::Read;

use super::{RegistryError, Session};
use crate::oci::document::{Descriptor, MediaType, is_index};
use crate::oci::image::{Documents, SelectError};
use crate::oci::layout::{MAX_JSON, VerifyingReader};
use crate::oci::reference::RegistryRef;
use crate::store::{BlobSource, Store, StoreError};

/// One repository of a registry, read through a session, cached in a store.
pub struct Repository<'a> {
    /// The session.
    pub session: &'a Session,
    /// The reference (its tag or digest names the root).
    pub reference: RegistryRef,
    /// The store documents and blobs are cached in.
    pub store: &'a Store,
}

fn fetch(what: String, e: impl std::error::Error + Send + Sync + 'static) -> SelectError {
    SelectError::Fetch {
        what,
        source: Box::new(e),
    }
}

/// Is this a manifest's or index's media type (read from the manifests endpoint)?
fn is_manifest(mt: &MediaType) -> bool {
    match mt {
        MediaType::ImageManifest | MediaType::ImageIndex => true,
        MediaType::Other(m) => {
            m == crate::oci::document::MT_DOCKER_MANIFEST
                || m == crate::oci::document::MT_DOCKER_LIST
        }
        _ => false,
    }
}

impl Repository<'_> {
    /// The descriptor of what the reference names: by HEAD, then from the store when it has
    /// those bytes, else by GET (stored).
    pub fn root(&self) -> Result<Descriptor, SelectError> {
        let r = &self.reference;
        let reference = r.reference();
        let name = format!("{}/{}:{reference}", r.registry, r.repository);
        let head = self
            .session
            .block_on(self.session.client.head_manifest(r, &reference, false))
            .map_err(|e| fetch(name.clone(), e))?
            .ok_or_else(|| {
                fetch(
                    name.clone(),
                    RegistryError::NotFound {
                        what: format!("manifest `{reference}`"),
                        reference: format!("{}/{}", r.registry, r.repository),
                    },
                )
            })?;
        let digest = head.digest.clone().or_else(|| r.digest.clone());
        if let Some(d) = &digest
            && let Ok(bytes) = self.store.blobs().read_blob(d, head.size)
        {
            tracing::info!(%name, digest = %d, "manifest already in the store");
            return Ok(self.descriptor(&bytes, head.media_type.as_deref()));
        }
        let m = self
            .session
            .manifest(r)
            .map_err(|e| fetch(name.clone(), e))?;
        if let Some(d) = &digest
            && *d != m.digest
        {
            return Err(fetch(
                name,
                RegistryError::Mismatch {
                    what: format!("manifest `{reference}`"),
                    url: r.registry.clone(),
                    field: "digest",
                    expected: d.clone(),
                    actual: m.digest.clone(),
                },
            ));
        }
        self.store
            .put_blob(&m.bytes)
            .map_err(|e| fetch(name.clone(), e))?;
        Ok(self.descriptor(&m.bytes, Some(&m.media_type)))
    }

    fn descriptor(&self, bytes: &[u8], media_type: Option<&str>) -> Descriptor {
        let declared = serde_json::from_slice::<serde_json::Value>(bytes)
            .ok()
            .and_then(|v| v.get("mediaType")?.as_str().map(str::to_string));
        let mt = declared
            .or_else(|| media_type.map(str::to_string))
            .unwrap_or_else(|| MediaType::ImageManifest.to_string());
        crate::oci::document::describe(MediaType::from(mt.as_str()), bytes)
    }
}

impl Documents for Repository<'_> {
    fn read(&self, d: &Descriptor) -> Result<Vec<u8>, SelectError> {
        let digest = d.digest().to_string();
        let r = &self.reference;
        if let Ok(bytes) = self.store.blobs().read_blob(&digest, Some(d.size())) {
            return Ok(bytes);
        }
        let what = super::at(r, &digest);
        let bytes = if is_manifest(d.media_type()) || is_index(d) {
            let m = self
                .session
                .manifest_by_digest(r, &digest)
                .map_err(|e| fetch(what.clone(), e))?;
            if m.bytes.len() as u64 != d.size() {
                return Err(fetch(
                    what.clone(),
                    RegistryError::Mismatch {
                        what: format!("manifest {digest}"),
                        url: r.registry.clone(),
                        field: "size",
                        expected: d.size().to_string(),
                        actual: m.bytes.len().to_string(),
                    },
                ));
            }
            m.bytes
        } else {
            if d.size() > MAX_JSON {
                return Err(SelectError::Malformed(format!(
                    "{what} is {} bytes, more than a configuration may be",
                    d.size()
                )));
            }
            let mut v =
                VerifyingReader::new(self.session.blob(r, &digest, d.size()), &digest, d.size());
            let mut bytes = Vec::new();
            v.read_to_end(&mut bytes)
                .map_err(|e| fetch(what.clone(), e))?;
            v.finish().map_err(|e| fetch(what.clone(), e))?;
            self.store
                .record_origin(&digest, &format!("{}/{}", r.registry, r.repository));
            bytes
        };
        self.store
            .put_blob(&bytes)
            .map_err(|e| fetch(what.clone(), e))?;
        Ok(bytes)
    }
}

impl BlobSource for Repository<'_> {
    fn open(&self, desc: &Descriptor) -> Result<Box<dyn Read + Send + '_>, StoreError> {
        Ok(Box::new(self.session.blob(
            &self.reference,
            desc.digest().as_ref(),
            desc.size(),
        )))
    }

    fn origin(&self) -> Option<String> {
        Some(format!(
            "{}/{}",
            self.reference.registry, self.reference.repository
        ))
    }
}
