//! Layer compression with the digests computed in the same pass: the uncompressed stream is
//! hashed (diff_id) as it is written, the compressed one (blob digest) as it leaves. gzip uses
//! every core by compressing 1 MiB chunks as separate gzip members (one valid multi-member gzip
//! stream, the same bytes whatever the thread count); zstd uses its own worker threads.

use std::io::{self, Write};
use std::str::FromStr;

use sha2::{Digest, Sha256};

use super::document::{MT_LAYER_GZIP, MT_LAYER_TAR, MT_LAYER_ZSTD};
use crate::digest::HashingWriter;

/// How layers are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Plain tar.
    None,
    /// gzip at a level (1-9).
    Gzip(u32),
    /// zstd at a level (1-19).
    Zstd(i32),
}

impl Compression {
    /// The OCI layer media type.
    pub fn media_type(&self) -> &'static str {
        match self {
            Compression::None => MT_LAYER_TAR,
            Compression::Gzip(_) => MT_LAYER_GZIP,
            Compression::Zstd(_) => MT_LAYER_ZSTD,
        }
    }
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Compression::None => f.write_str("none"),
            Compression::Gzip(l) => write!(f, "gzip:{l}"),
            Compression::Zstd(l) => write!(f, "zstd:{l}"),
        }
    }
}

impl FromStr for Compression {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kind, level) = match s.split_once(':') {
            Some((k, l)) => (
                k,
                Some(
                    l.parse::<i64>()
                        .map_err(|_| format!("bad compression level in `{s}`"))?,
                ),
            ),
            None => (s, None),
        };
        match kind {
            "gzip" => {
                let l = level.unwrap_or(6);
                if !(1..=9).contains(&l) {
                    return Err(format!("gzip levels are 1 to 9, not {l}"));
                }
                Ok(Compression::Gzip(l as u32))
            }
            "zstd" => {
                let l = level.unwrap_or(3);
                if !(1..=19).contains(&l) {
                    return Err(format!("zstd levels are 1 to 19, not {l}"));
                }
                Ok(Compression::Zstd(l as i32))
            }
            "none" | "uncompressed" if level.is_none() => Ok(Compression::None),
            _ => Err(format!(
                "unknown compression `{s}`; use gzip[:LEVEL], zstd[:LEVEL] or none"
            )),
        }
    }
}

/// The digests of a written layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerDigests {
    /// sha256 hex of the uncompressed tar.
    pub diff_id: String,
    /// sha256 hex of the blob.
    pub digest: String,
    /// Blob size.
    pub size: u64,
}

const CHUNK: usize = 1 << 20;

enum Inner<W: Write> {
    Plain(HashingWriter<W>),
    Gzip {
        out: HashingWriter<W>,
        level: u32,
        buf: Vec<u8>,
        pending: Vec<Vec<u8>>,
        threads: usize,
    },
    Zstd(zstd::stream::write::Encoder<'static, HashingWriter<W>>),
}

/// A writer that compresses a layer and hashes both sides.
pub struct LayerWriter<W: Write> {
    raw: Sha256,
    raw_count: u64,
    inner: Inner<W>,
}

impl<W: Write + Send> LayerWriter<W> {
    /// Compresses into `out`.
    pub fn new(out: W, compression: Compression) -> io::Result<Self> {
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let out = HashingWriter::new(out);
        let inner = match compression {
            Compression::None => Inner::Plain(out),
            Compression::Gzip(level) => Inner::Gzip {
                out,
                level,
                buf: Vec::with_capacity(CHUNK),
                pending: Vec::new(),
                threads,
            },
            Compression::Zstd(level) => {
                let mut e = zstd::stream::write::Encoder::new(out, level)?;
                // Always the multithreaded format, so the bytes do not depend on the core count.
                e.multithread(threads.max(1) as u32)?;
                Inner::Zstd(e)
            }
        };
        Ok(LayerWriter {
            raw: Sha256::new(),
            raw_count: 0,
            inner,
        })
    }

    /// Finishes the stream; returns the digests and the inner writer.
    pub fn finish(mut self) -> io::Result<(LayerDigests, W)> {
        let diff_id = hex::encode(self.raw.clone().finalize());
        let out = match self.inner {
            Inner::Plain(w) => w,
            Inner::Gzip {
                mut out,
                level,
                buf,
                mut pending,
                ..
            } => {
                if !buf.is_empty() || (pending.is_empty() && self.raw_count == 0) {
                    pending.push(buf);
                }
                flush_gzip(&mut out, level, &mut pending)?;
                out
            }
            Inner::Zstd(e) => e.finish()?,
        };
        let (digest, size, w) = out.finish();
        self.raw_count = 0;
        Ok((
            LayerDigests {
                diff_id,
                digest,
                size,
            },
            w,
        ))
    }
}

/// Would deflate gain nothing on this chunk? Three 8 KiB samples (start, middle, end) are
/// compressed at the fastest level; when none shrinks below 97%, the chunk is stored instead of
/// compressed (already-compressed or random data), which costs a copy rather than a search.
/// The decision depends only on the bytes, so output stays reproducible.
fn looks_incompressible(data: &[u8]) -> bool {
    const SAMPLE: usize = 8 << 10;
    if data.len() < 4 * SAMPLE {
        return false;
    }
    [0, data.len() / 2 - SAMPLE / 2, data.len() - SAMPLE]
        .iter()
        .all(|&at| {
            let sample = &data[at..at + SAMPLE];
            let mut e = flate2::write::DeflateEncoder::new(
                Vec::with_capacity(SAMPLE + 64),
                flate2::Compression::fast(),
            );
            e.write_all(sample).is_ok()
                && e.finish().is_ok_and(|c| c.len() * 100 > sample.len() * 97)
        })
}

fn gzip_member(data: &[u8], level: u32) -> io::Result<Vec<u8>> {
    let level = if looks_incompressible(data) { 0 } else { level };
    let mut e = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 2 + 64),
        flate2::Compression::new(level),
    );
    e.write_all(data)?;
    e.finish()
}

fn flush_gzip<W: Write>(
    out: &mut HashingWriter<W>,
    level: u32,
    pending: &mut Vec<Vec<u8>>,
) -> io::Result<()> {
    let results: Vec<io::Result<Vec<u8>>> = std::thread::scope(|s| {
        let handles: Vec<_> = pending
            .iter()
            .map(|c| s.spawn(move || gzip_member(c, level)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(io::Error::other("gzip worker panicked")))
            })
            .collect()
    });
    for r in results {
        out.write_all(&r?)?;
    }
    pending.clear();
    Ok(())
}

impl<W: Write + Send> Write for LayerWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.raw.update(data);
        self.raw_count += data.len() as u64;
        match &mut self.inner {
            Inner::Plain(w) => w.write_all(data)?,
            Inner::Zstd(e) => e.write_all(data)?,
            Inner::Gzip {
                out,
                level,
                buf,
                pending,
                threads,
            } => {
                let mut rest = data;
                while !rest.is_empty() {
                    let take = (CHUNK - buf.len()).min(rest.len());
                    buf.extend_from_slice(&rest[..take]);
                    rest = &rest[take..];
                    if buf.len() == CHUNK {
                        pending.push(std::mem::replace(buf, Vec::with_capacity(CHUNK)));
                        if pending.len() >= *threads {
                            flush_gzip(out, *level, pending)?;
                        }
                    }
                }
            }
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn roundtrip(c: Compression, data: &[u8]) {
        let mut w = LayerWriter::new(Vec::new(), c).unwrap();
        w.write_all(data).unwrap();
        let (d, blob) = w.finish().unwrap();
        assert_eq!(d.diff_id, crate::digest::sha256_hex(data));
        assert_eq!(d.digest, crate::digest::sha256_hex(&blob));
        assert_eq!(d.size, blob.len() as u64);
        let mut out = Vec::new();
        crate::rootfs::unpack::decompress(io::BufReader::new(&blob[..]))
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, data, "{c}");
    }

    #[test]
    fn compressions_round_trip() {
        let big: Vec<u8> = (0..5 * CHUNK + 123).map(|i| (i % 251) as u8).collect();
        for c in [
            Compression::None,
            Compression::Gzip(6),
            Compression::Zstd(3),
        ] {
            roundtrip(c, b"");
            roundtrip(c, b"small");
            roundtrip(c, &big);
        }
    }

    #[test]
    fn incompressible_chunks_are_stored_and_still_valid() {
        // Pseudo-random bytes (xorshift): deflate cannot shrink them.
        let mut x: u64 = 0x9e3779b97f4a7c15;
        let random: Vec<u8> = (0..CHUNK)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        assert!(looks_incompressible(&random));
        let text = b"the quick brown fox ".repeat(CHUNK / 20);
        assert!(!looks_incompressible(&text));
        roundtrip(Compression::Gzip(6), &random);
        let mut mixed = random.clone();
        mixed.extend_from_slice(&text);
        roundtrip(Compression::Gzip(9), &mixed);
    }

    #[test]
    fn parsing() {
        assert_eq!("gzip".parse::<Compression>().unwrap(), Compression::Gzip(6));
        assert_eq!(
            "zstd:19".parse::<Compression>().unwrap(),
            Compression::Zstd(19)
        );
        assert!("zstd:30".parse::<Compression>().is_err());
        assert!("lz4".parse::<Compression>().is_err());
    }

    #[test]
    fn deterministic() {
        let data: Vec<u8> = (0..3 * CHUNK).map(|i| (i * 7 % 256) as u8).collect();
        let run = |c| {
            let mut w = LayerWriter::new(Vec::new(), c).unwrap();
            w.write_all(&data).unwrap();
            w.finish().unwrap().0
        };
        for c in [Compression::Gzip(6), Compression::Zstd(3)] {
            assert_eq!(run(c), run(c));
        }
    }
}
