//! OCI image layouts on disk (`oci-layout`, `index.json`, `blobs/<alg>/<hex>`): reading blobs
//! with their digests verified, and `oci-archive` tar files (only the layout's own files are
//! taken from the archive, so it cannot write anywhere else).

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::document::{self, Descriptor, Doc, ImageIndex};
use crate::digest::HashingReader;

/// The largest JSON document (index, manifest, config) read into memory.
pub const MAX_JSON: u64 = 16 << 20;

/// Errors reading a layout.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// Not a layout.
    #[error(
        "`{0}` is not an OCI image layout (no `oci-layout` file); create one with `emubuild commit oci:DIR:TAG` or `skopeo copy ... oci:DIR:TAG`"
    )]
    NotALayout(PathBuf),
    /// A digest string is malformed or uses an unsupported algorithm.
    #[error("unsupported or malformed digest `{0}` (only sha256 is read)")]
    BadDigest(String),
    /// A blob is missing.
    #[error("blob {digest} is missing from `{dir}`; the layout is incomplete")]
    Missing {
        /// The digest.
        digest: String,
        /// The layout.
        dir: PathBuf,
    },
    /// A blob's content does not match its digest or size.
    #[error(
        "blob {digest} in `{dir}` is corrupt: its content hashes to sha256:{actual} ({size} bytes); refusing it"
    )]
    Corrupt {
        /// The expected digest.
        digest: String,
        /// The layout.
        dir: PathBuf,
        /// What it hashes to.
        actual: String,
        /// Its size.
        size: u64,
    },
    /// A JSON document could not be parsed.
    #[error("`{what}` in `{dir}` is not valid: {reason}")]
    Json {
        /// Which document.
        what: String,
        /// The layout.
        dir: PathBuf,
        /// Why.
        reason: String,
    },
    /// An I/O error.
    #[error("cannot read `{path}`")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// Splits `sha256:<64 hex>` into its hex part, refusing anything else.
pub fn sha256_hex(digest: &str) -> Result<&str, LayoutError> {
    let hex = digest
        .strip_prefix("sha256:")
        .ok_or_else(|| LayoutError::BadDigest(digest.to_string()))?;
    if hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(hex)
    } else {
        Err(LayoutError::BadDigest(digest.to_string()))
    }
}

/// A layout directory opened for reading.
#[derive(Debug, Clone)]
pub struct Layout {
    dir: PathBuf,
}

impl Layout {
    /// Opens a layout, checking the `oci-layout` marker.
    pub fn open(dir: &Path) -> Result<Layout, LayoutError> {
        if !dir.join("oci-layout").is_file() {
            return Err(LayoutError::NotALayout(dir.to_path_buf()));
        }
        Ok(Layout {
            dir: dir.to_path_buf(),
        })
    }

    /// A handle for a directory that may not be a layout yet (for writing).
    pub fn at(dir: &Path) -> Layout {
        Layout {
            dir: dir.to_path_buf(),
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of a blob.
    pub fn blob_path(&self, digest: &str) -> Result<PathBuf, LayoutError> {
        let hex = sha256_hex(digest)?;
        Ok(self.dir.join("blobs").join("sha256").join(hex))
    }

    /// Does the blob exist?
    pub fn has_blob(&self, digest: &str) -> bool {
        self.blob_path(digest).map(|p| p.is_file()).unwrap_or(false)
    }

    /// Opens a blob for streaming; the caller verifies (see [`VerifyingReader`]).
    pub fn open_blob(&self, digest: &str) -> Result<File, LayoutError> {
        let p = self.blob_path(digest)?;
        open_regular(&p).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                LayoutError::Missing {
                    digest: digest.to_string(),
                    dir: self.dir.clone(),
                }
            } else {
                LayoutError::Io { path: p, source: e }
            }
        })
    }

    /// Reads a small blob whole, verifying its digest (and size, when given).
    pub fn read_blob(&self, digest: &str, size: Option<u64>) -> Result<Vec<u8>, LayoutError> {
        let f = self.open_blob(digest)?;
        let mut r = HashingReader::new(f.take(MAX_JSON + 1));
        let mut buf = Vec::new();
        r.read_to_end(&mut buf).map_err(|e| LayoutError::Io {
            path: self.blob_path(digest).unwrap_or_default(),
            source: e,
        })?;
        let (actual, n) = r.finish();
        if Some(actual.as_str()) != sha256_hex(digest).ok() || size.is_some_and(|s| s != n) {
            return Err(LayoutError::Corrupt {
                digest: digest.to_string(),
                dir: self.dir.clone(),
                actual,
                size: n,
            });
        }
        Ok(buf)
    }

    /// Reads and parses `index.json`.
    pub fn index(&self) -> Result<Doc<ImageIndex>, LayoutError> {
        let p = self.dir.join("index.json");
        let bytes = std::fs::read(&p).map_err(|e| LayoutError::Io { path: p, source: e })?;
        let typed = self.parse(&bytes, "index.json", "image index")?;
        Ok(Doc { typed, bytes })
    }

    /// Reads the blob a descriptor names, verified against its digest and size, and parses it
    /// as `kind`.
    pub fn document<T: for<'de> serde::Deserialize<'de>>(
        &self,
        d: &Descriptor,
        kind: &'static str,
    ) -> Result<Doc<T>, LayoutError> {
        let bytes = self.read_blob(d.digest().as_ref(), Some(d.size()))?;
        let typed = self.parse(&bytes, d.digest().as_ref(), kind)?;
        Ok(Doc { typed, bytes })
    }

    fn parse<T: for<'de> serde::Deserialize<'de>>(
        &self,
        bytes: &[u8],
        what: &str,
        kind: &'static str,
    ) -> Result<T, LayoutError> {
        document::parse(bytes, what, kind).map_err(|e| LayoutError::Json {
            what: what.to_string(),
            dir: self.dir.clone(),
            reason: format!("not a valid {kind}: {}", e.reason),
        })
    }
}

/// A reader that verifies size and SHA-256 at the end of the stream: reading past the expected
/// size, or ending with the wrong digest, is an error.
pub struct VerifyingReader<R> {
    inner: HashingReader<R>,
    digest: String,
    size: u64,
}

impl<R: Read> VerifyingReader<R> {
    /// Wraps `inner`, expecting `digest` (`sha256:...`) and `size` bytes.
    pub fn new(inner: R, digest: &str, size: u64) -> Self {
        VerifyingReader {
            inner: HashingReader::new(inner),
            digest: digest.to_string(),
            size,
        }
    }

    /// Reads what is left and checks the digest.
    pub fn finish(mut self) -> io::Result<()> {
        io::copy(&mut self, &mut io::sink())?;
        let (actual, n) = self.inner.finish();
        let why = if n != self.size {
            format!("it is {n} bytes, not the {} its descriptor says", self.size)
        } else if Some(actual.as_str()) != self.digest.strip_prefix("sha256:") {
            format!("its bytes hash to sha256:{actual}, not to its digest")
        } else {
            return Ok(());
        };
        Err(io::Error::new(io::ErrorKind::InvalidData, why))
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if self.inner.count() > self.size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "blob {} is larger than its descriptor's {} bytes",
                    self.digest, self.size
                ),
            ));
        }
        Ok(n)
    }
}

/// Extracts an `oci-archive` (a tar of a layout) into `dest`: only `oci-layout`, `index.json`
/// and `blobs/sha256/<hex>` regular files are taken; anything else is ignored.
pub fn extract_archive(archive: &Path, dest: &Path) -> Result<Layout, LayoutError> {
    let io_err = |source| LayoutError::Io {
        path: archive.to_path_buf(),
        source,
    };
    let f = File::open(archive).map_err(io_err)?;
    let reader = crate::rootfs::unpack::decompress(io::BufReader::new(f)).map_err(io_err)?;
    let mut tar = tar::Archive::new(reader);
    std::fs::create_dir_all(dest.join("blobs/sha256")).map_err(io_err)?;
    for entry in tar.entries().map_err(io_err)? {
        let mut entry = entry.map_err(io_err)?;
        if !matches!(
            entry.header().entry_type(),
            tar::EntryType::Regular | tar::EntryType::Continuous
        ) {
            continue;
        }
        let path = entry.path().map_err(io_err)?.into_owned();
        let Ok(Some(rel)) = crate::rootfs::within::normalize(&path) else {
            continue;
        };
        let rel_s = rel.to_string_lossy().into_owned();
        let out = match rel_s.as_str() {
            "oci-layout" | "index.json" => dest.join(&rel_s),
            s => match s.strip_prefix("blobs/sha256/") {
                Some(hex) if sha256_hex(&format!("sha256:{hex}")).is_ok() => {
                    dest.join("blobs/sha256").join(hex)
                }
                _ => continue,
            },
        };
        let mut file = File::create(&out).map_err(io_err)?;
        io::copy(&mut entry, &mut file).map_err(io_err)?;
    }
    Layout::open(dest)
}

/// Opens a file that must be a regular file: no symlink is followed, and a FIFO or device is
/// refused without blocking (what a blob of a layout or the store must be).
pub fn open_regular(p: &Path) -> io::Result<File> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(p)?;
    if f.metadata()?.is_file() {
        Ok(f)
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a regular file",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_checked() {
        assert!(sha256_hex("sha256:../../etc/passwd").is_err());
        assert!(sha256_hex("md5:abc").is_err());
        let good = format!("sha256:{}", "a".repeat(64));
        assert_eq!(sha256_hex(&good).unwrap(), "a".repeat(64));
        assert!(sha256_hex(&format!("sha256:{}", "A".repeat(64))).is_err());
    }

    #[test]
    fn corrupt_blobs_are_refused() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("oci-layout"),
            r#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .unwrap();
        std::fs::create_dir_all(d.path().join("blobs/sha256")).unwrap();
        let good = crate::digest::sha256_hex(b"{}");
        std::fs::write(d.path().join("blobs/sha256").join(&good), b"{}").unwrap();
        let l = Layout::open(d.path()).unwrap();
        assert_eq!(
            l.read_blob(&format!("sha256:{good}"), Some(2)).unwrap(),
            b"{}"
        );
        assert!(l.read_blob(&format!("sha256:{good}"), Some(3)).is_err());
        std::fs::write(d.path().join("blobs/sha256").join(&good), b"{ }").unwrap();
        assert!(matches!(
            l.read_blob(&format!("sha256:{good}"), None),
            Err(LayoutError::Corrupt { .. })
        ));
        let mut v = VerifyingReader::new(&b"{}x"[..], &format!("sha256:{good}"), 2);
        let mut out = Vec::new();
        assert!(v.read_to_end(&mut out).is_err());
    }
}
