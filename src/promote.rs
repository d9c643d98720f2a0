//! `emubuild tag`: pointing tags at an image or index by digest. The source's exact bytes go
//! to every destination, so the digest is the same there. Within a registry no layer moves:
//! what the destination repository has is skipped (within the same repository, only the tag is
//! written), manifests are copied and blobs mounted from the source repository; across
//! registries blobs are streamed from one to the other, never unpacked; a layout or archive
//! gets the blobs copied in.

use crate::container::{ContainerError, Context};
use crate::oci::image::Documents as _;
use crate::oci::reference::{Destination, Reference};
use crate::transfer::{self, Sources};

/// What `tag` did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Tagged {
    /// The digest every destination now names.
    pub digest: String,
    /// The destinations.
    pub dests: Vec<String>,
}

/// Why `tag` failed.
#[derive(Debug, thiserror::Error)]
pub enum PromoteError {
    /// Opening the source.
    #[error(transparent)]
    Open(#[from] transfer::OpenError),
    /// Reading its documents.
    #[error(transparent)]
    Select(#[from] crate::oci::image::SelectError),
    /// Copying.
    #[error(transparent)]
    Copy(#[from] transfer::CopyError),
    /// A registry.
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
    /// The store or a session.
    #[error(transparent)]
    Container(Box<ContainerError>),
}

impl From<ContainerError> for PromoteError {
    fn from(e: ContainerError) -> Self {
        PromoteError::Container(Box::new(e))
    }
}

/// Points each of `dests` at what `src` names.
pub fn tag(ctx: &Context, src: &Reference, dests: &[Destination]) -> Result<Tagged, PromoteError> {
    let session = ctx.session()?;
    let opened = transfer::open(src, &session, &ctx.store, &ctx.store.root().join("tmp"))?;
    let bytes = opened.docs.read(&opened.root)?;
    let media_type = opened.root.media_type().to_string();
    let digest = transfer::digest_of(&bytes);
    let mut sources = Sources::with_store(&ctx.store);
    // The whole tree is read only for a destination that lacks the root.
    let mut tree = None;
    for d in dests {
        if let Destination::Registry(r) = d
            && crate::registry::push::retag(&session, r, &bytes, &media_type)?
        {
            tracing::info!(dest = %d, %digest, "tagged");
            continue;
        }
        if tree.is_none() {
            tree = Some(opened.tree(&opened.root, &mut sources)?);
        }
        let root = tree.as_ref().expect("read above");
        let wrote = transfer::to_destination(&session, &ctx.store, root, &sources, d)?;
        debug_assert_eq!(wrote, digest);
        tracing::info!(dest = %d, %digest, "tagged");
    }
    Ok(Tagged {
        digest,
        dests: dests.iter().map(ToString::to_string).collect(),
    })
}
