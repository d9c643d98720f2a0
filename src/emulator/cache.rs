//! The emulator cache: `/var/cache/binfmtctl` as root, `$XDG_CACHE_HOME/binfmtctl` otherwise
//! (`$BINFMTCTL_CACHE_DIR` or `--cache-dir` override). Layout:
//!
//! ```text
//! <cache>/emulators/<suite>/qemu-<target>        the emulator (mode 0755)
//! <cache>/emulators/<suite>/qemu-<target>.json   its record: suite, package, version, SHA256...
//! <cache>/tmp/                                   staging (same file system, so renames are atomic)
//! <cache>/.lock                                  held while fetching or storing
//! ```
//!
//! A hit re-hashes the file and compares it with its record; a mismatch is a miss.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Emulator, Origin};
use crate::util::{FileLock, write_atomic};

/// What the cache knows about one emulator.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Record {
    /// The QEMU target.
    pub target: String,
    /// The Debian suite it came from.
    pub suite: String,
    /// The package.
    pub package: String,
    /// The package version.
    pub version: String,
    /// SHA-256 of the emulator file.
    pub sha256: String,
    /// Its size.
    pub size: u64,
    /// The package's path on the mirror.
    pub filename: String,
    /// SHA-256 of the `.deb` (as listed in the signed index).
    pub deb_sha256: String,
    /// When it was fetched (Unix seconds).
    pub fetched: u64,
}

/// Errors of the cache.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// A file operation failed.
    #[error("emulator cache `{path}`: cannot {action}")]
    Io {
        /// What we were doing.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// The cache directory.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    /// A cache rooted at `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Cache {
        Cache { dir: dir.into() }
    }

    /// The default location (see the module documentation; `--cache-dir` and
    /// `$BINFMTCTL_CACHE_DIR` choose another).
    pub fn default_dir(dirs: &crate::dirs::BaseDirs) -> PathBuf {
        dirs.cache("/var/cache/binfmtctl", "binfmtctl")
    }

    /// The root directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn io<'a>(
        action: &'static str,
        path: &'a Path,
    ) -> impl FnOnce(std::io::Error) -> CacheError + 'a {
        move |source| CacheError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }

    /// Takes the cache's lock (blocks while another fetch holds it).
    pub fn lock(&self) -> Result<FileLock, CacheError> {
        let p = self.dir.join(".lock");
        FileLock::acquire(&p).map_err(Self::io("lock", &p))
    }

    /// A fresh staging directory inside the cache (removed on drop).
    pub fn staging(&self) -> Result<tempfile::TempDir, CacheError> {
        let p = self.dir.join("tmp");
        std::fs::create_dir_all(&p).map_err(Self::io("create", &p))?;
        tempfile::Builder::new()
            .prefix("fetch-")
            .tempdir_in(&p)
            .map_err(Self::io("create a staging directory in", &p))
    }

    /// Where a suite's emulator for a target lives.
    pub fn emulator_path(&self, suite: &str, target: &str) -> PathBuf {
        self.dir
            .join("emulators")
            .join(suite)
            .join(format!("qemu-{target}"))
    }

    fn record_path(&self, suite: &str, target: &str) -> PathBuf {
        self.dir
            .join("emulators")
            .join(suite)
            .join(format!("qemu-{target}.json"))
    }

    /// The record of a cached emulator, if any.
    pub fn record(&self, suite: &str, target: &str) -> Option<Record> {
        let text = std::fs::read_to_string(self.record_path(suite, target)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// A verified hit: the record exists and the file's SHA-256 and size still match it.
    /// Ok(None) on a miss; Err(reason) when the file no longer matches its record.
    pub fn lookup(&self, suite: &str, target: &str) -> Result<Option<(Emulator, Record)>, String> {
        let Some(rec) = self.record(suite, target) else {
            return Ok(None);
        };
        let path = self.emulator_path(suite, target);
        match crate::digest::sha256_file(&path) {
            Ok((sha, size)) if sha == rec.sha256 && size == rec.size => Ok(Some((
                Emulator {
                    target: target.to_string(),
                    path,
                    origin: Origin::Cache,
                },
                rec,
            ))),
            Ok((sha, _)) => Err(format!(
                "cached `{}` changed on disk (SHA256 {sha}, recorded {})",
                path.display(),
                rec.sha256
            )),
            Err(e) => Err(format!("cached `{}` is unreadable: {e}", path.display())),
        }
    }

    /// Moves a verified staged file into place and writes its record (file first, record
    /// last, both atomically).
    pub fn store(&self, staged: &Path, rec: &Record) -> Result<PathBuf, CacheError> {
        let dest = self.emulator_path(&rec.suite, &rec.target);
        let parent = dest.parent().expect("has a parent");
        std::fs::create_dir_all(parent).map_err(Self::io("create", parent))?;
        std::fs::rename(staged, &dest).map_err(Self::io("move a file into", &dest))?;
        crate::util::sync_dir(parent);
        let json = serde_json::to_vec_pretty(rec).expect("serialisable");
        let rp = self.record_path(&rec.suite, &rec.target);
        write_atomic(&rp, &json, 0o644).map_err(Self::io("write", &rp))?;
        Ok(dest)
    }

    /// The newest `Date` (Unix seconds) of a verified InRelease accepted for `suite` from
    /// `mirror`. Kept per mirror: another mirror may lag a little behind without being a
    /// replay, but one mirror going back in time is.
    pub fn release_seen(&self, suite: &str, mirror: &str) -> Option<i64> {
        std::fs::read_to_string(self.release_path(suite, mirror))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Records a verified InRelease's `Date` for `suite` from `mirror` (keeps the newest).
    pub fn record_release(&self, suite: &str, mirror: &str, date: i64) {
        if self.release_seen(suite, mirror).is_some_and(|s| s >= date) {
            return;
        }
        let _ = write_atomic(
            &self.release_path(suite, mirror),
            date.to_string().as_bytes(),
            0o644,
        );
    }

    fn release_path(&self, suite: &str, mirror: &str) -> PathBuf {
        let key = crate::digest::sha256_hex(mirror.trim_end_matches('/').as_bytes());
        self.dir
            .join("releases")
            .join(format!("{suite}-{}", &key[..16]))
    }

    /// Every record in the cache.
    pub fn records(&self) -> Vec<Record> {
        let mut out = Vec::new();
        let Ok(suites) = std::fs::read_dir(self.dir.join("emulators")) else {
            return out;
        };
        for s in suites.filter_map(Result::ok) {
            let Ok(files) = std::fs::read_dir(s.path()) else {
                continue;
            };
            for f in files.filter_map(Result::ok) {
                if f.path().extension().is_some_and(|e| e == "json")
                    && let Ok(text) = std::fs::read_to_string(f.path())
                    && let Ok(r) = serde_json::from_str::<Record>(&text)
                {
                    out.push(r);
                }
            }
        }
        out.sort_by(|a, b| (&a.suite, &a.target).cmp(&(&b.suite, &b.target)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_lookup_and_tamper() {
        let d = tempfile::tempdir().unwrap();
        let cache = Cache::new(d.path());
        let staging = cache.staging().unwrap();
        let f = staging.path().join("x");
        std::fs::write(&f, b"emulator").unwrap();
        let (sha, size) = crate::digest::sha256_file(&f).unwrap();
        let rec = Record {
            target: "arm".into(),
            suite: "trixie".into(),
            package: "qemu-user".into(),
            version: "1:10".into(),
            sha256: sha,
            size,
            filename: "pool/x.deb".into(),
            deb_sha256: "00".into(),
            fetched: 1,
        };
        assert!(cache.lookup("trixie", "arm").unwrap().is_none());
        let p = cache.store(&f, &rec).unwrap();
        let (e, r) = cache.lookup("trixie", "arm").unwrap().unwrap();
        assert_eq!(e.path, p);
        assert_eq!(r, rec);
        assert_eq!(cache.records(), vec![rec]);
        std::fs::write(&p, b"tampered").unwrap();
        assert!(
            cache
                .lookup("trixie", "arm")
                .unwrap_err()
                .contains("changed on disk")
        );
    }
}
