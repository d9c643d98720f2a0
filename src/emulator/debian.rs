//! Fetching static emulators from the Debian archive, verifying every link of the chain of
//! trust before anything is cached:
//!
//! ```text
//! InRelease (OpenPGP, archive keyring) -> Packages.xz (SHA256 + size from InRelease)
//!     -> .deb (SHA256 + size from Packages) -> ar -> data.tar.xz (multithreaded) -> tar
//!     -> the wanted emulators -> static ELF for this host? -> cache (atomic renames)
//! ```
//!
//! The `.deb` is streamed: it is hashed while the emulators are extracted into a staging
//! directory, and only when the whole download matches the signed index are they moved into
//! the cache.

use std::collections::HashMap;
use std::io::{self, Read};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use super::cache::{Cache, CacheError, Record};
use super::deb::{self, DebError};
use super::download::{BodyError, DownloadError, Downloader, FetchFailure};
use super::release::{self, Keyring, Release, ReleaseError};
use super::suites::Suite;
use super::{Emulator, Origin};
use crate::arch::{Table, Target};
use crate::digest::HashingReader;

/// The largest InRelease accepted.
const MAX_INRELEASE: u64 = 16 << 20;
/// The largest decompressed Packages index accepted.
const MAX_PACKAGES: u64 = 1 << 30;

/// Errors that stop a whole fetch (nothing is cached).
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The network or server.
    #[error(transparent)]
    Download(#[from] DownloadError),
    /// The signed index.
    #[error(transparent)]
    Release(#[from] ReleaseError),
    /// A file does not match what the signed index says.
    #[error(
        "`{url}` failed its integrity check: {what} is {actual}, but the signed index says {expected}; refusing it (nothing was cached or registered)"
    )]
    Integrity {
        /// The file.
        url: String,
        /// `SHA256` or `size`.
        what: &'static str,
        /// What the index says.
        expected: String,
        /// What arrived.
        actual: String,
    },
    /// The package is not in the index.
    #[error(
        "`{url}` has no package `{package}`; this suite may not ship static emulators for {arch}"
    )]
    NoPackage {
        /// The index.
        url: String,
        /// The package.
        package: String,
        /// The Debian architecture.
        arch: String,
    },
    /// The Packages index could not be decompressed.
    #[error("`{url}` could not be decompressed: {reason}")]
    BadIndex {
        /// The index.
        url: String,
        /// Why.
        reason: String,
    },
    /// The package could not be read.
    #[error("`{url}`")]
    Deb {
        /// The package URL.
        url: String,
        /// The cause.
        #[source]
        source: DebError,
    },
    /// The cache.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// This host has no Debian architecture.
    #[error("this host's architecture has no Debian name in the arch table")]
    UnknownHost,
}

/// Options of a fetch.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// Mirror base URL (no trailing `/`).
    pub mirror: String,
    /// The keyring to verify InRelease with.
    pub keyring: PathBuf,
    /// The cache.
    pub cache: Cache,
    /// Where download progress goes.
    pub progress: crate::progress::SharedReporter,
}

/// One target's outcome.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The emulator, in the cache.
    pub emulator: Emulator,
    /// Its record.
    pub record: Record,
    /// True when it came from the cache without network.
    pub from_cache: bool,
}

/// Per-target outcomes, in the order asked; warnings to show.
#[derive(Debug, Default)]
pub struct FetchReport {
    /// (target, result).
    pub results: Vec<(String, Result<Fetched, String>)>,
    /// Things worth saying.
    pub warnings: Vec<crate::warning::Warning>,
}

/// Only cache hits, no network. Err(reason) when a cached file no longer matches its record.
pub fn cached(
    targets: &[&Target],
    suite: &Suite,
    cache: &Cache,
) -> Vec<(String, Result<Option<Fetched>, String>)> {
    targets
        .iter()
        .map(|t| {
            let hit = cache.lookup(&suite.name, &t.name).map(|h| {
                h.map(|(emulator, record)| Fetched {
                    emulator,
                    record,
                    from_cache: true,
                })
            });
            (t.name.clone(), hit)
        })
        .collect()
}

/// Fetches emulators for `targets` from `suite`, using verified cache hits where possible.
pub fn fetch(
    targets: &[&Target],
    suite: &Suite,
    opts: &FetchOptions,
) -> Result<FetchReport, FetchError> {
    let _lock = opts.cache.lock()?;
    let mut report = FetchReport::default();
    let mut slots: Vec<(String, Option<Result<Fetched, String>>)> = Vec::new();
    let mut needed: Vec<&Target> = Vec::new();
    for t in targets {
        match opts.cache.lookup(&suite.name, &t.name) {
            Ok(Some((emulator, record))) => slots.push((
                t.name.clone(),
                Some(Ok(Fetched {
                    emulator,
                    record,
                    from_cache: true,
                })),
            )),
            Ok(None) => {
                slots.push((t.name.clone(), None));
                needed.push(t);
            }
            Err(why) => {
                report
                    .warnings
                    .push(crate::warning::Warning::CacheDamaged { why });
                slots.push((t.name.clone(), None));
                needed.push(t);
            }
        }
    }
    let mut fresh: HashMap<String, Result<Fetched, String>> = HashMap::new();
    if !needed.is_empty() {
        fresh = download_and_extract(&needed, suite, opts)?;
    }
    for (name, slot) in slots {
        let r = slot
            .or_else(|| fresh.remove(&name))
            .unwrap_or_else(|| Err(format!("{name} was not fetched")));
        report.results.push((name, r));
    }
    Ok(report)
}

fn download_and_extract(
    needed: &[&Target],
    suite: &Suite,
    opts: &FetchOptions,
) -> Result<HashMap<String, Result<Fetched, String>>, FetchError> {
    let host = Table::get().host().ok_or(FetchError::UnknownHost)?;
    let arch = host.debian.first().ok_or(FetchError::UnknownHost)?.clone();
    let dl = Downloader::new(opts.progress.clone());
    let keyring = Keyring::load(&opts.keyring)?;

    // 1. The signed index.
    let base = format!("{}/dists/{}", opts.mirror, suite.name);
    let inrelease_url = format!("{base}/InRelease");
    let inrelease = dl.get_bytes(&inrelease_url, MAX_INRELEASE)?;
    let text = String::from_utf8_lossy(&inrelease);
    let signed = keyring.verify_clearsigned(&inrelease_url, &text)?;
    let rel = Release::parse(&signed);
    let seen = opts.cache.release_seen(&suite.name, &opts.mirror);
    rel.check(&inrelease_url, &suite.name, now(), seen)?;
    tracing::info!(url = %inrelease_url, "InRelease verified against the keyring");

    // 2. Packages.xz, checked against the signed index.
    let index_path = format!("main/binary-{arch}/Packages.xz");
    let listed = rel.file(&inrelease_url, &index_path)?;
    let index_url = format!("{base}/{index_path}");
    let compressed = dl.get_bytes(&index_url, listed.size).map_err(|e| match e {
        // Longer than the signed index says: a size mismatch, named as one.
        DownloadError::TooLarge { .. } => FetchError::Integrity {
            url: index_url.clone(),
            what: "size",
            expected: listed.size.to_string(),
            actual: format!("more than {}", listed.size),
        },
        e => FetchError::Download(e),
    })?;
    check(
        &index_url,
        "size",
        &listed.size.to_string(),
        &compressed.len().to_string(),
    )?;
    check(
        &index_url,
        "SHA256",
        &listed.sha256,
        &crate::digest::sha256_hex(&compressed),
    )?;
    let mut index = String::new();
    liblzma::read::XzDecoder::new(&compressed[..])
        .take(MAX_PACKAGES)
        .read_to_string(&mut index)
        .map_err(|e| FetchError::BadIndex {
            url: index_url.clone(),
            reason: e.to_string(),
        })?;
    let pkg =
        release::find_package(&index, &suite.package).ok_or_else(|| FetchError::NoPackage {
            url: index_url.clone(),
            package: suite.package.clone(),
            arch: arch.clone(),
        })?;
    drop(index);
    tracing::info!(package = %pkg.package, version = %pkg.version, file = %pkg.filename, size = pkg.size, "package found in the signed index");

    // 3. The .deb, streamed: hashed while the wanted emulators are extracted to staging.
    let staging = opts.cache.staging()?;
    let wanted: HashMap<String, PathBuf> = needed
        .iter()
        .map(|t| {
            (
                suite.emulator_path(&t.name),
                staging.path().join(format!("qemu-{}", t.name)),
            )
        })
        .collect();
    let deb_url = format!("{}/{}", opts.mirror, pkg.filename);
    let label = format!("{} {}", pkg.package, pkg.version);
    let extracted = dl
        .with_body(&deb_url, &label, Some(pkg.size), |body| {
            for dest in wanted.values() {
                let _ = std::fs::remove_file(dest);
            }
            let mut hashing = HashingReader::new(body.take(pkg.size + 1));
            let res = deb::extract(&mut hashing, &wanted).and_then(|(found, rest)| {
                io::copy(rest, &mut io::sink()).map_err(DebError::Read)?;
                Ok(found)
            });
            // Whatever happened, hash the whole download: a damaged package is an integrity
            // failure, not a network one.
            if res.is_err() {
                io::copy(&mut hashing, &mut io::sink()).map_err(BodyError::Io)?;
            }
            let (sha, size) = hashing.finish();
            if size < pkg.size {
                return Err(BodyError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("connection closed after {size} of {} bytes", pkg.size),
                )));
            }
            // `size` is at most one byte over: reading stops there.
            let actual = if size > pkg.size {
                format!("more than {}", pkg.size)
            } else {
                size.to_string()
            };
            check(&deb_url, "size", &pkg.size.to_string(), &actual).map_err(BodyError::Stop)?;
            check(&deb_url, "SHA256", &pkg.sha256, &sha).map_err(BodyError::Stop)?;
            let found = res.map_err(|e| {
                BodyError::Stop(FetchError::Deb {
                    url: deb_url.clone(),
                    source: e,
                })
            })?;
            Ok(found)
        })
        .map_err(|f| match f {
            FetchFailure::Download(e) => FetchError::Download(e),
            FetchFailure::Other(e) => e,
        })?;

    // Remember how new a signed index this suite has had (rollback protection).
    if let Some(d) = rel.date_unix() {
        opts.cache.record_release(&suite.name, &opts.mirror, d);
    }

    // 4. Each emulator must be a static program for this host before it enters the cache.
    let mut out = HashMap::new();
    for t in needed {
        let path = suite.emulator_path(&t.name);
        let result = match extracted.iter().find(|e| e.archive_path == path) {
            None => Err(format!(
                "{} {} has no `/{path}`; try another `--suite`",
                pkg.package, pkg.version
            )),
            Some(e) => match super::check(&e.dest, t) {
                Err(super::EmulatorError::Unusable { reason, .. }) => Err(format!(
                    "refused `/{path}` in {deb_url} ({} {}): {reason}; nothing was cached",
                    pkg.package, pkg.version
                )),
                Err(err) => Err(format!("refused `/{path}` in {deb_url}: {err}")),
                Ok(()) => {
                    let record = Record {
                        target: t.name.clone(),
                        suite: suite.name.clone(),
                        package: pkg.package.clone(),
                        version: pkg.version.clone(),
                        sha256: e.sha256.clone(),
                        size: e.size,
                        filename: pkg.filename.clone(),
                        deb_sha256: pkg.sha256.clone(),
                        fetched: now() as u64,
                    };
                    opts.cache
                        .store(&e.dest, &record)
                        .map(|p| Fetched {
                            emulator: Emulator {
                                target: t.name.clone(),
                                path: p,
                                origin: Origin::Debian,
                            },
                            record,
                            from_cache: false,
                        })
                        .map_err(|e| e.to_string())
                }
            },
        };
        out.insert(t.name.clone(), result);
    }
    Ok(out)
}

fn check(url: &str, what: &'static str, expected: &str, actual: &str) -> Result<(), FetchError> {
    if expected == actual {
        Ok(())
    } else {
        Err(FetchError::Integrity {
            url: url.to_string(),
            what,
            expected: expected.to_string(),
            actual: actual.to_string(),
        })
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
