//! A step's changes (an overlayfs upper directory) as an OCI layer tar: 0:0 character devices
//! become `.wh.NAME` whiteouts, directories marked `overlay.opaque` get `.wh..wh..opq`, overlay's
//! own xattrs are left out, hardlinks become link entries, and everything else keeps its mode,
//! owner, xattrs and mtime. Entries are sorted and headers carry no user names or access times,
//! so the same tree gives the same bytes; `SOURCE_DATE_EPOCH` clamps mtimes.
//!
//! Cost follows the size of the change: only the step's own directory is read.

use std::collections::HashMap;
use std::fs::{File, Metadata};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::overlay::{OPAQUE, WHITEOUT_PREFIX, is_opaque, is_overlay_xattr};

/// Options.
#[derive(Debug, Clone, Default)]
pub struct SnapshotOptions {
    /// Clamp mtimes to this (SOURCE_DATE_EPOCH).
    pub clamp_mtime: Option<i64>,
}

/// What a snapshot held.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotStats {
    /// Entries written (whiteouts included).
    pub entries: u64,
    /// Whiteouts written.
    pub whiteouts: u64,
    /// Opaque directories.
    pub opaque: u64,
}

/// Writes the layer tar of `upper` to `out`.
pub fn write_layer(
    upper: &Path,
    out: impl Write,
    opts: &SnapshotOptions,
) -> io::Result<SnapshotStats> {
    let mut w = Walker {
        builder: tar::Builder::new(out),
        opts,
        links: HashMap::new(),
        stats: SnapshotStats::default(),
    };
    w.builder.follow_symlinks(false);
    w.dir(upper, Path::new(""))?;
    w.builder.finish()?;
    Ok(w.stats)
}

struct Walker<'a, W: Write> {
    builder: tar::Builder<W>,
    opts: &'a SnapshotOptions,
    links: HashMap<(u64, u64), PathBuf>,
    stats: SnapshotStats,
}

impl<W: Write> Walker<'_, W> {
    fn dir(&mut self, abs: &Path, rel: &Path) -> io::Result<()> {
        let mut names: Vec<std::ffi::OsString> = std::fs::read_dir(abs)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()?;
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for name in names {
            let child_abs = abs.join(&name);
            let child_rel = rel.join(&name);
            let meta = std::fs::symlink_metadata(&child_abs)?;
            let ft = meta.file_type();
            if ft.is_char_device() && meta.rdev() == 0 {
                self.whiteout(rel, &name)?;
            } else if ft.is_dir() {
                self.entry(&child_abs, &child_rel, &meta)?;
                if is_opaque(&child_abs) {
                    self.marker(&child_rel.join(OPAQUE))?;
                    self.stats.opaque += 1;
                }
                self.dir(&child_abs, &child_rel)?;
            } else if ft.is_socket() {
                continue;
            } else {
                self.entry(&child_abs, &child_rel, &meta)?;
            }
        }
        Ok(())
    }

    fn mtime(&self, m: i64) -> u64 {
        let m = match self.opts.clamp_mtime {
            Some(c) if m > c => c,
            _ => m,
        };
        m.max(0) as u64
    }

    fn header(&self, meta: &Metadata, kind: tar::EntryType) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(meta.mode() & 0o7777);
        h.set_uid(u64::from(meta.uid()));
        h.set_gid(u64::from(meta.gid()));
        h.set_mtime(self.mtime(meta.mtime()));
        h.set_size(0);
        h
    }

    fn xattrs(&mut self, abs: &Path) -> io::Result<()> {
        let mut exts: Vec<(String, Vec<u8>)> = Vec::new();
        if let Ok(names) = xattr::list(abs) {
            for n in names {
                let nb = n.as_bytes();
                if is_overlay_xattr(nb) {
                    continue;
                }
                if let Ok(Some(v)) = xattr::get(abs, &n) {
                    exts.push((format!("SCHILY.xattr.{}", n.to_string_lossy()), v));
                }
            }
        }
        if !exts.is_empty() {
            exts.sort();
            self.builder
                .append_pax_extensions(exts.iter().map(|(k, v)| (k.as_str(), v.as_slice())))?;
        }
        Ok(())
    }

    fn entry(&mut self, abs: &Path, rel: &Path, meta: &Metadata) -> io::Result<()> {
        let ft = meta.file_type();
        self.stats.entries += 1;
        if ft.is_file() && meta.nlink() > 1 {
            let key = (meta.dev(), meta.ino());
            if let Some(first) = self.links.get(&key).cloned() {
                let mut h = self.header(meta, tar::EntryType::Link);
                self.builder.append_link(&mut h, rel, &first)?;
                return Ok(());
            }
            self.links.insert(key, rel.to_path_buf());
        }
        self.xattrs(abs)?;
        if ft.is_dir() {
            let mut h = self.header(meta, tar::EntryType::Directory);
            let mut p = rel.as_os_str().to_os_string();
            p.push("/");
            self.builder.append_data(&mut h, Path::new(&p), io::empty())
        } else if ft.is_file() {
            let mut h = self.header(meta, tar::EntryType::Regular);
            h.set_size(meta.len());
            let f = File::open(abs)?;
            self.builder.append_data(&mut h, rel, f)
        } else if ft.is_symlink() {
            let target = std::fs::read_link(abs)?;
            let mut h = self.header(meta, tar::EntryType::Symlink);
            self.builder.append_link(&mut h, rel, &target)
        } else if ft.is_char_device() || ft.is_block_device() {
            let kind = if ft.is_char_device() {
                tar::EntryType::Char
            } else {
                tar::EntryType::Block
            };
            let mut h = self.header(meta, kind);
            let dev = meta.rdev();
            h.set_device_major(nix::sys::stat::major(dev) as u32)?;
            h.set_device_minor(nix::sys::stat::minor(dev) as u32)?;
            self.builder.append_data(&mut h, rel, io::empty())
        } else if ft.is_fifo() {
            let mut h = self.header(meta, tar::EntryType::Fifo);
            self.builder.append_data(&mut h, rel, io::empty())
        } else {
            Ok(())
        }
    }

    fn whiteout(&mut self, parent: &Path, name: &std::ffi::OsStr) -> io::Result<()> {
        let mut wh = std::ffi::OsString::from(WHITEOUT_PREFIX);
        wh.push(name);
        self.marker(&parent.join(wh))?;
        self.stats.whiteouts += 1;
        Ok(())
    }

    /// An empty, ownerless, timeless regular file (a whiteout or opaque marker).
    fn marker(&mut self, rel: &Path) -> io::Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(0);
        self.stats.entries += 1;
        self.builder.append_data(&mut h, rel, io::empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(tar_bytes: &[u8]) -> Vec<(String, tar::EntryType)> {
        let mut a = tar::Archive::new(tar_bytes);
        a.entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().display().to_string(),
                    e.header().entry_type(),
                )
            })
            .collect()
    }

    #[test]
    fn files_links_and_order() {
        let d = tempfile::tempdir().unwrap();
        let u = d.path();
        std::fs::create_dir_all(u.join("b/c")).unwrap();
        std::fs::write(u.join("b/c/file"), b"x").unwrap();
        std::fs::hard_link(u.join("b/c/file"), u.join("a-link")).unwrap();
        std::os::unix::fs::symlink("b/c/file", u.join("sym")).unwrap();
        let mut out = Vec::new();
        write_layer(u, &mut out, &SnapshotOptions::default()).unwrap();
        let l = listing(&out);
        let names: Vec<&str> = l.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["a-link", "b/", "b/c/", "b/c/file", "sym"]);
        assert_eq!(
            l[3].1,
            tar::EntryType::Link,
            "the second name of the inode is a link"
        );
        assert_eq!(l[4].1, tar::EntryType::Symlink);
        let mut again = Vec::new();
        write_layer(u, &mut again, &SnapshotOptions::default()).unwrap();
        assert_eq!(out, again, "not reproducible");
    }

    #[test]
    fn clamp() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("f"), b"x").unwrap();
        let mut out = Vec::new();
        write_layer(
            d.path(),
            &mut out,
            &SnapshotOptions {
                clamp_mtime: Some(1000),
            },
        )
        .unwrap();
        let mut a = tar::Archive::new(&out[..]);
        let e = a.entries().unwrap().next().unwrap().unwrap();
        assert_eq!(e.header().mtime().unwrap(), 1000);
    }
}
