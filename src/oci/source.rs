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
    /// Registries are read by the registry client, which this build does not have yet.
    #[error(
        "`{0}` is in a registry, and this emubuild reads only local images so far; copy it into a layout first (`skopeo copy docker://{0} oci:DIR:TAG`) and name that (`oci:DIR:TAG`)"
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
            Reference::Registry(r) => Err(SourceError::Registry(r.clone())),
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
