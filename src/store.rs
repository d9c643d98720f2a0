//! The store: one shared blob directory, unpacked layers cached by diff_id (each an overlayfs
//! lower directory, unpacked once whatever image uses it), and working containers with their
//! steps. Root: `--store` (or `$EMUBUILD_STORE`), else `/var/lib/emubuild` as root, else
//! `$XDG_DATA_HOME/emubuild`.
//!
//! ```text
//! <store>/blobs/sha256/<hex>        layer, config and manifest blobs (an OCI blob directory)
//! <store>/layers/<diff_id hex>/     unpacked layers (read-only once renamed into place)
//! <store>/containers/<name>/container.json
//! <store>/containers/<name>/<platform>/state.json, steps/<n>/, run/
//! ```
//!
//! Everything is written to a temporary name and renamed; locks (flock) guard layers being
//! unpacked and containers being changed.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::oci::document::{Descriptor, ImageConfig, MT_LAYER_TAR};
use crate::oci::layout::{Layout, LayoutError, VerifyingReader, sha256_hex};
use crate::platform::Platform;
use crate::rootfs::unpack::{self, UnpackOptions, XattrNamespace};
use crate::util::{FileLock, write_atomic};
use crate::warning::Warning;

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file operation failed.
    #[error("store: cannot {action} `{path}`")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Reading the source layout failed.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// A layer could not be applied.
    #[error("layer {digest}")]
    Unpack {
        /// The layer.
        digest: String,
        /// The cause.
        #[source]
        source: unpack::UnpackError,
    },
    /// A layer's transfer failed (after retries and resumes).
    #[error("cannot fetch layer {digest}: {reason}")]
    Fetch {
        /// The layer.
        digest: String,
        /// What failed.
        reason: String,
    },
    /// A layer's content does not match the image's description of it.
    #[error("layer {digest} is corrupt: {reason}; refusing it")]
    Corrupt {
        /// The layer.
        digest: String,
        /// What is wrong.
        reason: String,
    },
    /// A working container does not exist.
    #[error(
        "no working container `{0}`; `emubuild ls` lists them, `emubuild from IMAGE` makes one"
    )]
    NoContainer(String),
    /// A state file is damaged.
    #[error(
        "state file `{path}` cannot be read: {reason}; remove the working container (`emubuild rm NAME`) and make it again"
    )]
    BadState {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// A layer as an image and the store know it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LayerRef {
    /// `sha256:` of the uncompressed tar.
    pub diff_id: String,
    /// `sha256:` of the blob.
    pub digest: String,
    /// The blob's media type.
    pub media_type: String,
    /// The blob's size.
    pub size: u64,
}

/// The store.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// Where layer blobs are read from: a layout, a registry repository.
pub trait BlobSource: Sync {
    /// The blob `desc` names, as a stream (the store checks digest and size).
    fn open(&self, desc: &Descriptor) -> Result<Box<dyn Read + Send + '_>, StoreError>;
    /// `registry/repository`, when the blobs come from a registry.
    fn origin(&self) -> Option<String> {
        None
    }
}

impl BlobSource for Layout {
    fn open(&self, desc: &Descriptor) -> Result<Box<dyn Read + Send + '_>, StoreError> {
        Ok(Box::new(self.open_blob(desc.digest().as_ref())?))
    }
}

/// Passes reads through, remembering the first failure of the transfer itself (anything but
/// the data being wrong).
struct Watch<'a, R> {
    inner: R,
    failed: &'a std::sync::Mutex<Option<String>>,
}

impl<R: Read> Read for Watch<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).inspect_err(|e| {
            if e.kind() != io::ErrorKind::InvalidData {
                let mut f = self.failed.lock().expect("not poisoned");
                f.get_or_insert_with(|| e.to_string());
            }
        })
    }
}

/// Reads everything through and writes it to `out` as well.
struct Tee<R, W> {
    inner: R,
    out: W,
}

impl<R: Read, W: Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.out.write_all(&buf[..n])?;
        Ok(n)
    }
}

impl Store {
    /// The default root (see the module documentation; `--store` and `$EMUBUILD_STORE`
    /// choose another).
    pub fn default_root(dirs: &crate::dirs::BaseDirs) -> PathBuf {
        dirs.data("/var/lib/emubuild", "emubuild")
    }

    /// Opens (creating) a store.
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        for d in [
            "blobs/sha256",
            "layers",
            "containers",
            "tmp",
            "imports",
            "origins",
        ] {
            let p = root.join(d);
            std::fs::create_dir_all(&p).map_err(io_err("create", &p))?;
        }
        // Unpacked images hold setuid programs and device nodes as their owners made them:
        // only the store's owner may reach them.
        use std::os::unix::fs::PermissionsExt;
        for d in ["", "blobs", "layers", "containers", "tmp"] {
            let p = root.join(d);
            let meta = std::fs::metadata(&p).map_err(io_err("inspect", &p))?;
            if meta.permissions().mode() & 0o077 != 0 {
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700))
                    .map_err(io_err("restrict", &p))?;
            }
        }
        Ok(Store {
            root: root.to_path_buf(),
        })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The store's blob directory, as a layout.
    pub fn blobs(&self) -> Layout {
        Layout::at(&self.root)
    }

    /// The unpacked directory of a layer.
    pub fn layer_dir(&self, diff_id: &str) -> Result<PathBuf, StoreError> {
        Ok(self.root.join("layers").join(sha256_hex(diff_id)?))
    }

    /// Is a layer unpacked and its blob stored?
    pub fn has_layer(&self, layer: &LayerRef) -> bool {
        self.layer_dir(&layer.diff_id)
            .map(|d| d.is_dir())
            .unwrap_or(false)
            && self.blobs().has_blob(&layer.digest)
    }

    /// A staging directory inside the store (same file system as everything it is renamed to).
    pub fn staging(&self) -> Result<tempfile::TempDir, StoreError> {
        let p = self.root.join("tmp");
        tempfile::Builder::new()
            .prefix("stage-")
            .tempdir_in(&p)
            .map_err(io_err("create a staging directory in", &p))
    }

    fn lock_layer(&self, key: &str) -> Result<FileLock, StoreError> {
        let p = self.root.join("layers").join(format!(".lock-{key}"));
        FileLock::acquire(&p).map_err(io_err("lock", &p))
    }

    /// Imports one layer of an image: copies its blob into the store and unpacks it, verifying
    /// the blob's digest and size and the diff_id the config declares, in one pass. A layer
    /// already in the store costs nothing.
    pub fn import_layer(
        &self,
        src: &dyn BlobSource,
        desc: &Descriptor,
        diff_id: &str,
        xattrs: XattrNamespace,
        rootless: bool,
    ) -> Result<(LayerRef, Vec<Warning>), StoreError> {
        let layer = LayerRef {
            diff_id: diff_id.to_string(),
            digest: desc.digest().to_string(),
            media_type: desc.media_type().to_string(),
            size: desc.size(),
        };
        if self.has_layer(&layer) {
            return Ok((layer, Vec::new()));
        }
        let _lock = self.lock_layer(sha256_hex(diff_id)?)?;
        if self.has_layer(&layer) {
            return Ok((layer, Vec::new()));
        }
        let stage = self.staging()?;
        let blob_tmp = stage.path().join("blob");
        let dir_tmp = stage.path().join("layer");
        std::fs::create_dir(&dir_tmp).map_err(io_err("create", &dir_tmp))?;
        let out = File::create(&blob_tmp).map_err(io_err("create", &blob_tmp))?;
        let digest = desc.digest().to_string();
        let fetch_failed = std::sync::Mutex::new(None);
        let watched = Watch {
            inner: src.open(desc)?,
            failed: &fetch_failed,
        };
        let verifying = VerifyingReader::new(watched, &digest, desc.size());
        let mut tee = Tee {
            inner: verifying,
            out: io::BufWriter::new(out),
        };
        // A transfer that broke is said as one, not as a damaged layer.
        let corrupt = |reason: String| match fetch_failed.lock().expect("not poisoned").take() {
            Some(why) => StoreError::Fetch {
                digest: digest.clone(),
                reason: why,
            },
            None => StoreError::Corrupt {
                digest: digest.clone(),
                reason,
            },
        };
        // Bytes that do not match the digest, as a registry served them, are said as that.
        let origin = src.origin();
        let mismatch = |e: io::Error| {
            corrupt(match &origin {
                Some(o) => {
                    format!("{e}: {o} served other bytes than its digest names; nothing was stored")
                }
                None => e.to_string(),
            })
        };
        let opts = UnpackOptions { xattrs, rootless };
        let unpacked = match unpack::decompress(io::BufReader::new(&mut tee)) {
            Ok(decoded) => unpack::unpack_layer(decoded, &dir_tmp, &opts).map_err(Some),
            Err(e) => {
                tracing::debug!(%digest, "cannot decompress: {e}");
                Err(None)
            }
        };
        let stats = match unpacked {
            Ok(stats) => stats,
            Err(source) => {
                // Bytes that are not what the digest names are said as that (the source
                // served other bytes), a broken transfer as one; only a blob that is what it
                // claims to be is called a bad layer.
                if let Some(why) = fetch_failed.lock().expect("not poisoned").take() {
                    return Err(StoreError::Fetch {
                        digest: digest.clone(),
                        reason: why,
                    });
                }
                if let Err(e) = tee.inner.finish() {
                    return Err(mismatch(e));
                }
                return Err(match source {
                    Some(source) => StoreError::Unpack {
                        digest: digest.clone(),
                        source,
                    },
                    None => StoreError::Corrupt {
                        digest: digest.clone(),
                        reason: "it is not a tar archive, plain or gzip-, xz- or zstd-compressed"
                            .into(),
                    },
                });
            }
        };
        // Finish the blob (bytes after the compressed stream count too) and check it.
        io::copy(&mut tee, &mut io::sink()).map_err(mismatch)?;
        let Tee { inner, out } = tee;
        inner.finish().map_err(mismatch)?;
        let file = out.into_inner().map_err(|e| corrupt(e.to_string()))?;
        file.sync_all().map_err(io_err("write", &blob_tmp))?;
        if format!("sha256:{}", stats.diff_id) != diff_id {
            return Err(corrupt(format!(
                "its uncompressed content hashes to sha256:{}, but the image config lists diff_id {diff_id}",
                stats.diff_id
            )));
        }
        self.place(&blob_tmp, &digest, &dir_tmp, diff_id)?;
        if let Some(o) = src.origin() {
            self.record_origin(&digest, &o);
        }
        Ok((layer, stats.warnings))
    }

    /// Records that `origin` (`registry/repository`) holds blob `digest` (best effort: it
    /// only lets a later push mount the blob instead of uploading it).
    pub fn record_origin(&self, digest: &str, origin: &str) {
        let Ok(hex) = sha256_hex(digest) else { return };
        let p = self.root.join("origins").join(hex);
        let mut known: Vec<String> = std::fs::read_to_string(&p)
            .map(|t| t.lines().map(str::to_string).collect())
            .unwrap_or_default();
        if !known.iter().any(|k| k == origin) {
            known.push(origin.to_string());
            // The newest few are enough to find a mount source.
            let excess = known.len().saturating_sub(8);
            known.drain(..excess);
            let _ = crate::util::replace_file(&p, (known.join("\n") + "\n").as_bytes(), 0o600);
        }
    }

    /// The repositories (`registry/repository`) known to hold blob `digest`.
    pub fn origins(&self, digest: &str) -> Vec<String> {
        let Ok(hex) = sha256_hex(digest) else {
            return Vec::new();
        };
        std::fs::read_to_string(self.root.join("origins").join(hex))
            .map(|t| {
                t.lines()
                    .filter(|l| !l.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Imports a root file system tarball (plain, gz, xz or zstd) as a single uncompressed layer.
    pub fn import_rootfs_tar(
        &self,
        path: &Path,
        xattrs: XattrNamespace,
        rootless: bool,
    ) -> Result<(LayerRef, Vec<Warning>), StoreError> {
        // The same file again (by content) is the layer already unpacked: hashing it costs one
        // read, not an unpack.
        let (file_sha, _) = crate::digest::sha256_file(path).map_err(io_err("read", path))?;
        let record = self.root.join("imports").join(&file_sha);
        if let Ok(layer) = read_json::<LayerRef>(&record)
            && self.has_layer(&layer)
        {
            return Ok((layer, Vec::new()));
        }
        let stage = self.staging()?;
        let blob_tmp = stage.path().join("blob");
        let dir_tmp = stage.path().join("layer");
        std::fs::create_dir(&dir_tmp).map_err(io_err("create", &dir_tmp))?;
        let f = File::open(path).map_err(io_err("open", path))?;
        let decoded = unpack::decompress(io::BufReader::new(f)).map_err(io_err("read", path))?;
        let out = io::BufWriter::new(File::create(&blob_tmp).map_err(io_err("create", &blob_tmp))?);
        let mut tee = Tee {
            inner: decoded,
            out,
        };
        let opts = UnpackOptions { xattrs, rootless };
        let stats = unpack::unpack_layer(&mut tee, &dir_tmp, &opts).map_err(|source| {
            StoreError::Unpack {
                digest: path.display().to_string(),
                source,
            }
        })?;
        let file = tee
            .out
            .into_inner()
            .map_err(|e| io_err("write", &blob_tmp)(e.into_error()))?;
        file.sync_all().map_err(io_err("write", &blob_tmp))?;
        let diff_id = format!("sha256:{}", stats.diff_id);
        let layer = LayerRef {
            diff_id: diff_id.clone(),
            digest: diff_id.clone(),
            media_type: MT_LAYER_TAR.to_string(),
            size: stats.size,
        };
        let _lock = self.lock_layer(&stats.diff_id)?;
        if !self.has_layer(&layer) {
            self.place(&blob_tmp, &diff_id, &dir_tmp, &diff_id)?;
        }
        // A file changed between the hash and the unpack is simply not recorded.
        if crate::digest::sha256_file(path).is_ok_and(|(sha, _)| sha == file_sha) {
            write_json(&record, &layer)?;
        }
        Ok((layer, stats.warnings))
    }

    /// Moves a verified blob and unpacked directory into place (blob first).
    fn place(
        &self,
        blob_tmp: &Path,
        digest: &str,
        dir_tmp: &Path,
        diff_id: &str,
    ) -> Result<(), StoreError> {
        let blob = self.blobs().blob_path(digest)?;
        if !blob.exists() {
            std::fs::rename(blob_tmp, &blob).map_err(io_err("store", &blob))?;
        }
        let dir = self.layer_dir(diff_id)?;
        if !dir.exists() {
            std::fs::rename(dir_tmp, &dir).map_err(io_err("store", &dir))?;
        }
        crate::util::sync_dir(&self.root.join("layers"));
        Ok(())
    }

    /// Copies a small blob (config, manifest) from a layout into the store, verified.
    pub fn import_blob(&self, src: &Layout, desc: &Descriptor) -> Result<(), StoreError> {
        if self.blobs().has_blob(desc.digest().as_ref()) {
            return Ok(());
        }
        let bytes = src.read_blob(desc.digest().as_ref(), Some(desc.size()))?;
        self.put_blob(&bytes)?;
        Ok(())
    }

    /// Stores bytes as a blob; returns its digest.
    pub fn put_blob(&self, bytes: &[u8]) -> Result<String, StoreError> {
        let digest = format!("sha256:{}", crate::digest::sha256_hex(bytes));
        let p = self.blobs().blob_path(&digest)?;
        if !p.exists() {
            write_atomic(&p, bytes, 0o644).map_err(io_err("write", &p))?;
        }
        Ok(digest)
    }

    /// The directory of a working container.
    pub fn container_dir(&self, name: &str) -> PathBuf {
        self.root.join("containers").join(name)
    }

    /// Working containers, by name.
    pub fn containers(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.root.join("containers"))
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .filter(|e| e.path().join("container.json").is_file())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

/// Checks a working container's name: letters, digits, `.`, `_`, `-`; not starting with `.`.
pub fn validate_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid container name (letters, digits, `.`, `_`, `-`; not starting with `.`)"
        ))
    }
}

/// The version of the state files this build writes and reads.
pub const STATE_VERSION: u32 = 1;

/// A working container: its base and platforms.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Container {
    /// The state format ([`STATE_VERSION`]).
    #[serde(default)]
    pub schema_version: u32,
    /// Its name.
    pub name: String,
    /// The image reference it was made from.
    pub base: String,
    /// Unix seconds.
    pub created: u64,
    /// Its platforms.
    pub platforms: Vec<Platform>,
}

/// One step of a working container (a `run`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Step {
    /// The command, as history's `created_by`.
    pub created_by: String,
    /// RFC 3339 time.
    pub created: String,
    /// The step's diff directory (relative to the platform directory), None when it changed
    /// nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    /// The step's layer once snapshotted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<LayerRef>,
    /// The compression the layer was made with (`gzip:6`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<String>,
}

/// A working container's state for one platform.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlatformState {
    /// The state format ([`STATE_VERSION`]; 0 for files from before it was recorded, which
    /// have the same fields).
    #[serde(default)]
    pub schema_version: u32,
    /// The platform.
    pub platform: Platform,
    /// The base image's manifest digest, if it came from a layout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_manifest: Option<String>,
    /// The image config, edited by steps and `commit` options.
    pub config: ImageConfig,
    /// The base image's layers, bottom first.
    pub base_layers: Vec<LayerRef>,
    /// Steps, oldest first.
    #[serde(default)]
    pub steps: Vec<Step>,
}

/// Handles on one working container's files.
#[derive(Debug, Clone)]
pub struct ContainerDir {
    dir: PathBuf,
}

impl ContainerDir {
    /// The container at `dir`.
    pub fn new(dir: PathBuf) -> Self {
        ContainerDir { dir }
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Reads `container.json`.
    pub fn read(&self) -> Result<Container, StoreError> {
        let path = self.dir.join("container.json");
        let c: Container = read_json(&path)?;
        check_version(&path, c.schema_version)?;
        Ok(c)
    }

    /// Does the container exist (a `container.json`, readable or not)?
    pub fn exists(&self) -> bool {
        self.dir.join("container.json").exists()
    }

    /// Writes `container.json`.
    pub fn write(&self, c: &Container) -> Result<(), StoreError> {
        let c = Container {
            schema_version: STATE_VERSION,
            ..c.clone()
        };
        write_json(&self.dir.join("container.json"), &c)
    }

    /// The directory of one platform.
    pub fn platform_dir(&self, p: &Platform) -> PathBuf {
        self.dir.join(p.file_name())
    }

    /// Reads a platform's state.
    pub fn read_platform(&self, p: &Platform) -> Result<PlatformState, StoreError> {
        let path = self.platform_dir(p).join("state.json");
        let s: PlatformState = read_json(&path)?;
        check_version(&path, s.schema_version)?;
        if s.platform != *p {
            return Err(StoreError::BadState {
                path,
                reason: format!("it holds {} where {p} was expected", s.platform),
            });
        }
        Ok(s)
    }

    /// Writes a platform's state.
    pub fn write_platform(&self, s: &PlatformState) -> Result<(), StoreError> {
        let s = PlatformState {
            schema_version: STATE_VERSION,
            ..s.clone()
        };
        write_json(&self.platform_dir(&s.platform).join("state.json"), &s)
    }

    /// Locks one platform of the container (runs and commits take it).
    pub fn lock_platform(&self, p: &Platform) -> Result<FileLock, StoreError> {
        let path = self.platform_dir(p).join(".lock");
        FileLock::acquire(&path).map_err(io_err("lock", &path))
    }

    /// Locks the whole container (creation and removal).
    pub fn lock(&self) -> Result<FileLock, StoreError> {
        let path = self.dir.with_extension("lock");
        FileLock::acquire(&path).map_err(io_err("lock", &path))
    }
}

/// A state file from a newer emubuild is refused rather than misread.
fn check_version(path: &Path, version: u32) -> Result<(), StoreError> {
    if version > STATE_VERSION {
        return Err(StoreError::BadState {
            path: path.to_path_buf(),
            reason: format!(
                "it is of state format {version}, newer than this emubuild's ({STATE_VERSION}); use the emubuild that made it"
            ),
        });
    }
    Ok(())
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, StoreError> {
    let bytes = std::fs::read(path).map_err(io_err("read", path))?;
    serde_json::from_slice(&bytes).map_err(|e| StoreError::BadState {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

fn write_json<T: Serialize>(path: &Path, v: &T) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec_pretty(v).expect("serialisable");
    crate::util::replace_file(path, &bytes, 0o644).map_err(io_err("write", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_name("default").is_ok());
        assert!(validate_name("my-app_1.2").is_ok());
        for bad in ["", "../x", "a/b", ".hidden", "a b"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rootfs_tar_is_imported_once() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(&d.path().join("store")).unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_path("hello").unwrap();
        h.set_size(2);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        b.append(&h, &b"hi"[..]).unwrap();
        let tar_bytes = b.into_inner().unwrap();
        let gz = {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(&tar_bytes).unwrap();
            e.finish().unwrap()
        };
        let p = d.path().join("rootfs.tar.gz");
        std::fs::write(&p, gz).unwrap();
        let (layer, _) = store
            .import_rootfs_tar(&p, XattrNamespace::Trusted, true)
            .unwrap();
        assert_eq!(
            layer.diff_id,
            format!("sha256:{}", crate::digest::sha256_hex(&tar_bytes))
        );
        assert!(store.has_layer(&layer));
        let dir = store.layer_dir(&layer.diff_id).unwrap();
        assert_eq!(std::fs::read(dir.join("hello")).unwrap(), b"hi");
        // The stored blob is the uncompressed tar.
        assert_eq!(
            std::fs::read(store.blobs().blob_path(&layer.digest).unwrap()).unwrap(),
            tar_bytes
        );
        // The second import of the same file unpacks nothing: with no staging directory to
        // unpack into, it still succeeds.
        let tmp = d.path().join("store/tmp");
        std::fs::remove_dir(&tmp).unwrap();
        std::fs::write(&tmp, b"").unwrap();
        let (again, _) = store
            .import_rootfs_tar(&p, XattrNamespace::Trusted, true)
            .unwrap();
        assert_eq!(again, layer);
        std::fs::remove_file(&tmp).unwrap();
        std::fs::create_dir(&tmp).unwrap();
        // A layer gone from the store is unpacked again.
        std::fs::remove_dir_all(&dir).unwrap();
        let (again, _) = store
            .import_rootfs_tar(&p, XattrNamespace::Trusted, true)
            .unwrap();
        assert_eq!(again, layer);
        assert_eq!(std::fs::read(dir.join("hello")).unwrap(), b"hi");
    }
}
