//! Opening what a [`Reference`] names, once, for every command that reads images (`from`,
//! `run --from`, `inspect`, and later Containerfile `FROM` lines): a layout as it is, an
//! archive extracted into a staging directory (only the layout's own files), a root file
//! system tarball, or nothing at all (`scratch`).

use std::path::{Path, PathBuf};

use super::layout::{self, Layout, LayoutError};
use super::reference::{Reference, RegistryRef};

/// Why an image cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The layout or archive.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// A staging directory for an archive.
    #[error("cannot make a staging directory in `{dir}`")]
    Staging {
        /// Where.
        dir: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// An image in a registry where only a local one can be used.
    #[error(
        "`{0}` is in a registry; this command needs a local image (oci:DIR[:TAG] or oci-archive:FILE[:TAG])"
    )]
    Registry(RegistryRef),
}

/// An opened image source.
#[derive(Debug)]
pub enum ImageSource {
    /// An OCI layout (for an archive: extracted into `_staging`, removed on drop).
    Layout {
        /// The layout.
        layout: Layout,
        /// The tag asked for.
        tag: Option<String>,
        /// Keeps an extracted archive alive.
        _staging: Option<tempfile::TempDir>,
    },
    /// A root file system tarball.
    Rootfs(PathBuf),
    /// An empty root.
    Scratch,
    /// An image in a registry (read through `registry::Repository` when used).
    Registry(RegistryRef),
}

impl ImageSource {
    /// Opens `reference`; archives are extracted under `staging_dir` (on the store's file
    /// system, so their blobs can be linked from there).
    pub fn open(reference: &Reference, staging_dir: &Path) -> Result<ImageSource, SourceError> {
        match reference {
            Reference::Layout { dir, tag } => Ok(ImageSource::Layout {
                layout: Layout::open(dir)?,
                tag: tag.clone(),
                _staging: None,
            }),
            Reference::Archive { file, tag } => {
                let staging = tempfile::Builder::new()
                    .prefix("archive-")
                    .tempdir_in(staging_dir)
                    .map_err(|source| SourceError::Staging {
                        dir: staging_dir.to_path_buf(),
                        source,
                    })?;
                let layout = layout::extract_archive(file, staging.path())?;
                Ok(ImageSource::Layout {
                    layout,
                    tag: tag.clone(),
                    _staging: Some(staging),
                })
            }
            Reference::Rootfs(p) => Ok(ImageSource::Rootfs(p.clone())),
            Reference::Scratch => Ok(ImageSource::Scratch),
            Reference::Registry(r) => Ok(ImageSource::Registry(r.clone())),
        }
    }

    /// The layout and tag, when the source is one.
    pub fn layout(&self) -> Option<(&Layout, Option<&str>)> {
        match self {
            ImageSource::Layout { layout, tag, .. } => Some((layout, tag.as_deref())),
            _ => None,
        }
    }
}
