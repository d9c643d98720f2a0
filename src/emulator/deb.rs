//! Streaming `.deb` extraction: `ar` members, `data.tar.{xz,zst,gz}` decompressed on the fly
//! (xz with liblzma's multithreaded decoder), and only the wanted files written out. Nothing
//! from the archive chooses where a file goes: each wanted archive path maps to a destination
//! chosen by the caller.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use crate::digest::HashingWriter;

/// The largest file extracted (emulators are ~15 MB).
pub const MAX_FILE: u64 = 512 * 1024 * 1024;

/// Errors reading a `.deb`.
#[derive(Debug, thiserror::Error)]
pub enum DebError {
    /// Reading the archive failed (network or damaged data).
    #[error("reading the package failed")]
    Read(#[source] io::Error),
    /// The archive has no data member.
    #[error("the package has no data.tar member")]
    NoData,
    /// The data member is compressed in a way we do not read.
    #[error("the package's `{0}` uses an unsupported compression")]
    Compression(String),
    /// A wanted path is not a regular file.
    #[error("`/{path}` in the package is a {kind}, not a regular file")]
    NotRegular {
        /// The archive path.
        path: String,
        /// What it is.
        kind: String,
    },
    /// A wanted file is too large.
    #[error("`/{path}` in the package is {size} bytes, more than the {MAX_FILE} allowed")]
    TooLarge {
        /// The archive path.
        path: String,
        /// Its size.
        size: u64,
    },
    /// Writing a destination failed.
    #[error("cannot write `{path}`")]
    Write {
        /// The destination.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// One file extracted.
#[derive(Debug, Clone)]
pub struct Extracted {
    /// Its path inside the package (no leading `/` or `./`).
    pub archive_path: String,
    /// Where it was written.
    pub dest: PathBuf,
    /// Its SHA-256 (hex).
    pub sha256: String,
    /// Its size.
    pub size: u64,
}

fn normalize(p: &str) -> &str {
    p.trim_start_matches("./").trim_start_matches('/')
}

/// Extracts the `wanted` files (archive path -> destination, created new with mode 0755) from a
/// `.deb` stream. Stops decompressing once all are found. Returns what was found (possibly
/// fewer than wanted) and the reader, positioned wherever reading stopped: callers that hash
/// the whole download drain it.
pub fn extract<R: Read>(
    deb: R,
    wanted: &HashMap<String, PathBuf>,
) -> Result<(Vec<Extracted>, R), DebError> {
    let mut archive = ar::Archive::new(deb);
    let mut found = Vec::new();
    let mut saw_data = false;
    while let Some(entry) = archive.next_entry() {
        let entry = entry.map_err(DebError::Read)?;
        let id = String::from_utf8_lossy(entry.header().identifier()).into_owned();
        let Some(suffix) = id.strip_prefix("data.tar") else {
            continue;
        };
        saw_data = true;
        let decoded: Box<dyn Read + '_> = match suffix {
            ".xz" => Box::new(xz_decoder(entry)?),
            ".zst" => Box::new(zstd::stream::read::Decoder::new(entry).map_err(DebError::Read)?),
            ".gz" => Box::new(flate2::read::GzDecoder::new(entry)),
            "" => Box::new(entry),
            _ => return Err(DebError::Compression(id)),
        };
        extract_tar(decoded, wanted, &mut found)?;
        break;
    }
    if !saw_data {
        return Err(DebError::NoData);
    }
    let rest = archive.into_inner().map_err(DebError::Read)?;
    Ok((found, rest))
}

/// liblzma's multithreaded .xz decoder (blocks decoded in parallel on every core).
fn xz_decoder<R: Read>(r: R) -> Result<liblzma::read::XzDecoder<R>, DebError> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1);
    let stream = liblzma::stream::MtStreamBuilder::new()
        .threads(threads)
        .memlimit_threading(1 << 30)
        .memlimit_stop(u64::MAX)
        .decoder()
        .map_err(|e| DebError::Read(io::Error::other(e)))?;
    Ok(liblzma::read::XzDecoder::new_stream(r, stream))
}

fn extract_tar(
    data: impl Read,
    wanted: &HashMap<String, PathBuf>,
    found: &mut Vec<Extracted>,
) -> Result<(), DebError> {
    let mut tar = tar::Archive::new(data);
    for entry in tar.entries().map_err(DebError::Read)? {
        let mut entry = entry.map_err(DebError::Read)?;
        let raw = entry.path_bytes();
        let path = normalize(&String::from_utf8_lossy(&raw)).to_string();
        let Some(dest) = wanted.get(&path) else {
            continue;
        };
        let kind = entry.header().entry_type();
        if !matches!(kind, tar::EntryType::Regular | tar::EntryType::Continuous) {
            return Err(DebError::NotRegular {
                path,
                kind: format!("{kind:?}").to_lowercase(),
            });
        }
        let size = entry.size();
        if size > MAX_FILE {
            return Err(DebError::TooLarge { path, size });
        }
        let werr = |source| DebError::Write {
            path: dest.clone(),
            source,
        };
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o755)
            .open(dest)
            .map_err(werr)?;
        let mut w = HashingWriter::new(file);
        io::copy(&mut (&mut entry).take(MAX_FILE), &mut w).map_err(DebError::Read)?;
        let (sha256, written, file) = w.finish();
        file.sync_all().map_err(werr)?;
        found.push(Extracted {
            archive_path: path,
            dest: dest.clone(),
            sha256,
            size: written,
        });
        if found.len() == wanted.len() {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a tiny .deb: debian-binary, control.tar.gz, data.tar.<comp>.
    fn make_deb(files: &[(&str, &[u8], tar::EntryType)], comp: &str) -> Vec<u8> {
        let mut tar_bytes = Vec::new();
        {
            let mut b = tar::Builder::new(&mut tar_bytes);
            for (p, data, kind) in files {
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(*kind);
                h.set_size(if *kind == tar::EntryType::Regular {
                    data.len() as u64
                } else {
                    0
                });
                h.set_mode(0o755);
                if *kind == tar::EntryType::Symlink {
                    h.set_link_name("qemu-real").unwrap();
                }
                h.set_cksum();
                let body: &[u8] = if *kind == tar::EntryType::Regular {
                    data
                } else {
                    &[]
                };
                b.append_data(&mut h, p, body).unwrap();
            }
            b.finish().unwrap();
        }
        let data = match comp {
            "xz" => {
                let mut out = Vec::new();
                let mut e = liblzma::read::XzEncoder::new(&tar_bytes[..], 1);
                e.read_to_end(&mut out).unwrap();
                out
            }
            "zst" => zstd::encode_all(&tar_bytes[..], 1).unwrap(),
            _ => tar_bytes.clone(),
        };
        let mut deb = Vec::new();
        {
            let mut a = ar::Builder::new(&mut deb);
            a.append(
                &ar::Header::new(b"debian-binary".to_vec(), 4),
                &b"2.0\n"[..],
            )
            .unwrap();
            a.append(&ar::Header::new(b"control.tar".to_vec(), 0), &b""[..])
                .unwrap();
            let name = if comp.is_empty() {
                "data.tar".to_string()
            } else {
                format!("data.tar.{comp}")
            };
            a.append(
                &ar::Header::new(name.into_bytes(), data.len() as u64),
                &data[..],
            )
            .unwrap();
        }
        deb
    }

    #[test]
    fn extracts_only_wanted_files() {
        for comp in ["xz", "zst", ""] {
            let deb = make_deb(
                &[
                    ("./usr/bin/qemu-a", b"AAAA", tar::EntryType::Regular),
                    ("./usr/bin/qemu-b", b"BB", tar::EntryType::Regular),
                    ("./usr/share/doc/x", b"doc", tar::EntryType::Regular),
                ],
                comp,
            );
            let d = tempfile::tempdir().unwrap();
            let wanted: HashMap<String, PathBuf> =
                [("usr/bin/qemu-b".to_string(), d.path().join("b"))].into();
            let (found, _) = extract(&deb[..], &wanted).unwrap();
            assert_eq!(found.len(), 1, "{comp}");
            assert_eq!(std::fs::read(d.path().join("b")).unwrap(), b"BB");
            assert_eq!(found[0].sha256, crate::digest::sha256_hex(b"BB"));
            assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
        }
    }

    #[test]
    fn links_are_refused_and_destinations_never_overwritten() {
        let deb = make_deb(&[("./usr/bin/qemu-a", b"", tar::EntryType::Symlink)], "");
        let d = tempfile::tempdir().unwrap();
        let wanted: HashMap<String, PathBuf> =
            [("usr/bin/qemu-a".to_string(), d.path().join("a"))].into();
        assert!(matches!(
            extract(&deb[..], &wanted),
            Err(DebError::NotRegular { .. })
        ));

        let deb = make_deb(&[("./usr/bin/qemu-a", b"A", tar::EntryType::Regular)], "");
        std::fs::write(d.path().join("a"), b"mine").unwrap();
        assert!(matches!(
            extract(&deb[..], &wanted),
            Err(DebError::Write { .. })
        ));
        assert_eq!(std::fs::read(d.path().join("a")).unwrap(), b"mine");
    }

    #[test]
    fn garbage_is_an_error() {
        let wanted = HashMap::new();
        assert!(extract(&b"not an ar archive"[..], &wanted).is_err());
    }
}
