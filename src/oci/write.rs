//! Writing OCI image layouts safely: a lock on the layout directory so concurrent commits
//! serialise, blobs first (hardlinked from the store when possible, else copied to a temporary
//! name, synced and renamed), `index.json` last and atomically. A process killed at any moment
//! leaves the layout as it was, or complete: `index.json` never names a missing blob.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::document::{Descriptor, ImageIndex, MediaType, ref_name, tagged, to_json};
use super::layout::{Layout, LayoutError, sha256_hex};
use crate::util::write_atomic;

/// Errors writing a layout.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// A file operation failed.
    #[error("cannot {action} `{path}`")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The existing layout is damaged.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// The destination is something else.
    #[error("`{0}` exists and is not an OCI image layout; choose an empty or missing directory")]
    NotALayout(PathBuf),
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> WriteError + 'a {
    move |source| WriteError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// A layout being written, locked while this value lives.
pub struct LayoutWriter {
    layout: Layout,
    _lock: nix::fcntl::Flock<File>,
}

impl LayoutWriter {
    /// Opens (creating) the layout at `dir` and takes its lock (waits for other writers).
    pub fn open(dir: &Path) -> Result<LayoutWriter, WriteError> {
        if dir.exists() {
            let empty = std::fs::read_dir(dir)
                .map_err(io_err("read", dir))?
                .next()
                .is_none();
            if !empty && !dir.join("oci-layout").is_file() {
                return Err(WriteError::NotALayout(dir.to_path_buf()));
            }
        }
        std::fs::create_dir_all(dir.join("blobs/sha256")).map_err(io_err("create", dir))?;
        let d = File::open(dir).map_err(io_err("open", dir))?;
        let lock = nix::fcntl::Flock::lock(d, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| io_err("lock", dir)(e.into()))?;
        // Temporary blobs a killed writer left behind: no other writer runs while we hold the
        // lock, so none of them is in use.
        let blobs = dir.join("blobs/sha256");
        if let Ok(rd) = std::fs::read_dir(&blobs) {
            for e in rd.filter_map(Result::ok) {
                if e.file_name().to_string_lossy().starts_with(".tmp-") {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        let marker = dir.join("oci-layout");
        if !marker.is_file() {
            write_atomic(&marker, br#"{"imageLayoutVersion":"1.0.0"}"#, 0o644)
                .map_err(io_err("write", &marker))?;
        }
        Ok(LayoutWriter {
            layout: Layout::at(dir),
            _lock: lock,
        })
    }

    /// The layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Puts a blob that exists as a file (the store's): a hardlink when on the same file
    /// system, else a synced copy. A blob already present with the right size is kept.
    pub fn put_file(&self, digest: &str, size: u64, src: &Path) -> Result<(), WriteError> {
        let dest = self.layout.blob_path(digest)?;
        if std::fs::metadata(&dest).is_ok_and(|m| m.len() == size) {
            return Ok(());
        }
        let dir = dest.parent().expect("blob dir");
        let tmp = dir.join(format!(".tmp-{}", &sha256_hex(digest)?[..16]));
        let _ = std::fs::remove_file(&tmp);
        if std::fs::hard_link(src, &tmp).is_err() {
            let mut from = File::open(src).map_err(io_err("read", src))?;
            let mut to = File::create(&tmp).map_err(io_err("create", &tmp))?;
            io::copy(&mut from, &mut to).map_err(io_err("copy to", &tmp))?;
            to.sync_all().map_err(io_err("sync", &tmp))?;
        }
        std::fs::rename(&tmp, &dest).map_err(io_err("store", &dest))
    }

    /// Puts a blob read from `src` (another layout's file, a registry's body), checked against
    /// `digest` and `size` before it is kept: bytes that do not match are an `InvalidData` error
    /// and leave nothing behind.
    pub fn put_verified(
        &self,
        digest: &str,
        size: u64,
        src: impl io::Read,
    ) -> Result<(), WriteError> {
        let dest = self.layout.blob_path(digest)?;
        let dir = dest.parent().expect("blob dir");
        let tmp = dir.join(format!(".tmp-{}", &sha256_hex(digest)?[..16]));
        let mut reader = crate::oci::layout::VerifyingReader::new(src, digest, size);
        let result = (|| {
            let mut to = File::create(&tmp)?;
            io::copy(&mut reader, &mut to)?;
            reader.finish()?;
            to.sync_all()
        })();
        if let Err(e) = result {
            let _ = std::fs::remove_file(&tmp);
            return Err(WriteError::Io {
                action: "write",
                path: dest,
                source: e,
            });
        }
        std::fs::rename(&tmp, &dest).map_err(io_err("store", &dest))
    }

    /// Puts a blob from bytes; returns its descriptor fields (digest, size).
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<(String, u64), WriteError> {
        let digest = format!("sha256:{}", crate::digest::sha256_hex(bytes));
        let dest = self.layout.blob_path(&digest)?;
        if !dest.exists() {
            write_atomic(&dest, bytes, 0o644).map_err(io_err("write", &dest))?;
        }
        Ok((digest, bytes.len() as u64))
    }

    /// Points `tag` at `desc` in `index.json`, keeping every other entry as it was (fields
    /// oci-spec does not model included); written last, atomically.
    pub fn tag(&self, tag: &str, desc: &Descriptor) -> Result<(), WriteError> {
        use serde_json::Value;
        crate::util::sync_dir(&self.layout.dir().join("blobs/sha256"));
        let path = self.layout.dir().join("index.json");
        let mut index: Value = if path.exists() {
            // Parsed typed first: a damaged index.json is refused, not rewritten.
            let doc = self.layout.index()?;
            serde_json::from_slice(&doc.bytes).map_err(|e| WriteError::Io {
                action: "parse",
                path: path.clone(),
                source: io::Error::new(io::ErrorKind::InvalidData, e),
            })?
        } else {
            serde_json::to_value(ImageIndex::default()).expect("an index serialises")
        };
        let entry = serde_json::to_value(tagged(desc, tag)).expect("a descriptor serialises");
        let Value::Object(top) = &mut index else {
            return Err(WriteError::NotALayout(self.layout.dir().to_path_buf()));
        };
        let mut entries: Vec<Value> = match top.remove("manifests") {
            Some(Value::Array(a)) => a,
            _ => Vec::new(),
        };
        entries.retain(|d| {
            serde_json::from_value::<Descriptor>(d.clone())
                .map_or(true, |d| ref_name(&d) != Some(tag))
        });
        entries.push(entry);
        top.insert("manifests".into(), Value::Array(entries));
        top.entry("mediaType")
            .or_insert_with(|| Value::String(MediaType::ImageIndex.to_string()));
        write_atomic(&path, &to_json(&index), 0o644).map_err(io_err("write", &path))
    }
}

/// Packs a layout directory into an `oci-archive` tar at `dest` (temporary name, then renamed),
/// sorted and with fixed headers. `extra` files (name, bytes) are added at the top level.
pub fn pack_archive(
    layout_dir: &Path,
    dest: &Path,
    extra: &BTreeMap<String, Vec<u8>>,
) -> Result<(), WriteError> {
    let parent = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io_err("create", parent))?;
    let tmp = tempfile::Builder::new()
        .prefix(".tmp-oci-archive-")
        .tempfile_in(parent)
        .map_err(io_err("create a file in", parent))?;
    {
        let mut b = tar::Builder::new(io::BufWriter::new(tmp.as_file()));
        let file = |b: &mut tar::Builder<_>,
                    name: &str,
                    data: &mut dyn io::Read,
                    size: u64|
         -> io::Result<()> {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(0o644);
            h.set_size(size);
            h.set_mtime(0);
            b.append_data(&mut h, name, data)
        };
        let dir = |b: &mut tar::Builder<_>, name: &str| -> io::Result<()> {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_size(0);
            h.set_mtime(0);
            b.append_data(&mut h, name, io::empty())
        };
        let w = |e: io::Error| WriteError::Io {
            action: "write",
            path: dest.to_path_buf(),
            source: e,
        };
        dir(&mut b, "blobs/").map_err(w)?;
        dir(&mut b, "blobs/sha256/").map_err(w)?;
        let mut blobs: Vec<_> = std::fs::read_dir(layout_dir.join("blobs/sha256"))
            .map_err(io_err("read", layout_dir))?
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect();
        blobs.sort();
        for name in blobs {
            let p = layout_dir.join("blobs/sha256").join(&name);
            let mut f = File::open(&p).map_err(io_err("read", &p))?;
            let size = f.metadata().map_err(io_err("read", &p))?.len();
            file(&mut b, &format!("blobs/sha256/{name}"), &mut f, size).map_err(w)?;
        }
        for name in ["index.json", "oci-layout"] {
            let p = layout_dir.join(name);
            let mut f = File::open(&p).map_err(io_err("read", &p))?;
            let size = f.metadata().map_err(io_err("read", &p))?.len();
            file(&mut b, name, &mut f, size).map_err(w)?;
        }
        for (name, bytes) in extra {
            file(&mut b, name, &mut &bytes[..], bytes.len() as u64).map_err(w)?;
        }
        let mut inner = b.into_inner().map_err(w)?;
        inner.flush().map_err(w)?;
    }
    tmp.as_file().sync_all().map_err(io_err("sync", dest))?;
    tmp.persist(dest)
        .map_err(|e| io_err("write", dest)(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::document::describe;

    #[test]
    fn tagging_keeps_other_entries_whole() {
        let d = tempfile::tempdir().unwrap();
        let w = LayoutWriter::open(d.path()).unwrap();
        let (digest, _) = w.put_bytes(b"{}").unwrap();
        let other = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "x-tool": "kept",
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": digest, "size": 2, "x-note": "kept too",
                "annotations": {"org.opencontainers.image.ref.name": "old"}
            }]
        });
        std::fs::write(d.path().join("index.json"), other.to_string()).unwrap();
        let desc = describe(MediaType::ImageManifest, b"{}");
        w.tag("new", &desc).unwrap();
        w.tag("new", &desc).unwrap();
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(d.path().join("index.json")).unwrap()).unwrap();
        assert_eq!(v["x-tool"], "kept");
        let m = v["manifests"].as_array().unwrap();
        assert_eq!(m.len(), 2, "{v}");
        assert_eq!(m[0]["x-note"], "kept too");
        assert_eq!(m[1]["annotations"][crate::oci::document::REF_NAME], "new");
        // A damaged index.json is refused, not replaced.
        std::fs::write(d.path().join("index.json"), b"{not json").unwrap();
        assert!(w.tag("x", &desc).is_err());
    }
}
