//! Applying an image layer (a tar stream) to a directory in overlayfs "diff" form: whiteouts
//! `.wh.NAME` become 0:0 character devices, `.wh..wh..opq` becomes the `overlay.opaque` xattr,
//! so a stack of unpacked layers mounts as overlayfs lower directories directly and each layer
//! is unpacked once, whatever image it belongs to.
//!
//! Layers are untrusted. Every path is resolved inside the layer directory (openat2
//! `RESOLVE_IN_ROOT`), so `..` (refused), absolute names (made relative), symlinks and hardlinks
//! can never reach outside it; files are created with `O_EXCL|O_NOFOLLOW`; overlayfs xattrs
//! from a layer are dropped. Modes, owners, xattrs, mtimes, symlinks, hardlinks and device nodes
//! are kept. The uncompressed stream is hashed as it is read: that is the layer's diff_id.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FileStat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid};

pub use super::overlay::XattrNamespace;
use super::overlay::{OPAQUE, WHITEOUT_PREFIX, is_overlay_xattr};
use super::within::{self, fd_path, open_in_root, split};
use crate::digest::HashingReader;
use crate::warning::Warning;

/// Errors while unpacking.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The tar stream is broken. (Only the first line of the reader's message is shown: the
    /// tar reader quotes the bytes it choked on, which for a file that is no tar at all is
    /// the file's own content.)
    #[error(
        "the layer is not a valid tar stream ({}); a layer, or a `rootfs:` file, must be a tar archive, plain or gzip-, xz- or zstd-compressed",
        first_line(.0)
    )]
    Tar(io::Error),
    /// An entry tries to leave the root or is otherwise unsafe.
    #[error("unsafe layer entry: {0}; refusing the layer")]
    Unsafe(String),
    /// A file-system operation failed.
    #[error("cannot {action} `{path}`")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path inside the layer.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// Options.
#[derive(Debug, Clone)]
pub struct UnpackOptions {
    /// Which xattr namespace overlay markers use.
    pub xattrs: XattrNamespace,
    /// Not real root: device nodes are skipped (with a warning) and ownership failures are
    /// warnings.
    pub rootless: bool,
}

/// What unpacking produced.
#[derive(Debug, Clone, Default)]
pub struct UnpackStats {
    /// SHA-256 of the uncompressed tar stream (hex).
    pub diff_id: String,
    /// Size of the uncompressed stream.
    pub size: u64,
    /// Entries applied.
    pub entries: u64,
    /// Things skipped.
    pub warnings: Vec<Warning>,
}

/// Wraps a layer blob in the right decompressor (gzip, zstd, xz, or none), by magic bytes.
pub fn decompress<'a>(mut r: impl io::BufRead + 'a) -> io::Result<Box<dyn Read + 'a>> {
    let head = r.fill_buf()?;
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::bufread::MultiGzDecoder::new(r))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::with_buffer(r)?)
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Box::new(liblzma::bufread::XzDecoder::new(r))
    } else {
        Box::new(r)
    })
}

/// Applies the uncompressed tar stream `tar_stream` to `dest` (an existing directory).
pub fn unpack_layer(
    tar_stream: impl Read,
    dest: &Path,
    opts: &UnpackOptions,
) -> Result<UnpackStats, UnpackError> {
    let root = within::open_root(dest).map_err(|source| UnpackError::Io {
        action: "open",
        path: dest.to_path_buf(),
        source,
    })?;
    let mut hashing = HashingReader::new(tar_stream);
    let mut u = Unpacker {
        root,
        opts,
        stats: UnpackStats::default(),
        dir_times: Vec::new(),
        parent: None,
    };
    {
        let mut archive = tar::Archive::new(&mut hashing);
        for entry in archive.entries().map_err(UnpackError::Tar)? {
            let entry = entry.map_err(UnpackError::Tar)?;
            u.apply(entry)?;
        }
    }
    // The diff_id covers the whole stream, including padding after the end-of-archive blocks.
    io::copy(&mut hashing, &mut io::sink()).map_err(UnpackError::Tar)?;
    u.finish_dir_times();
    let (diff_id, size) = hashing.finish();
    u.stats.diff_id = diff_id;
    u.stats.size = size;
    Ok(u.stats)
}

struct Unpacker<'a> {
    root: OwnedFd,
    opts: &'a UnpackOptions,
    stats: UnpackStats,
    dir_times: Vec<(PathBuf, TimeSpec)>,
    /// The last entry's parent directory and its descriptor.
    parent: Option<(PathBuf, OwnedFd)>,
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> UnpackError + 'a {
    move |source| UnpackError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

fn nix_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(nix::Error) -> UnpackError + 'a {
    move |e| UnpackError::Io {
        action,
        path: path.to_path_buf(),
        source: e.into(),
    }
}

/// The first line of an error's message, at most 120 characters.
fn first_line(e: &io::Error) -> String {
    let text = e.to_string();
    let line = text.lines().next().unwrap_or_default();
    line.chars().take(120).collect()
}

/// Is an xattr from a layer allowed? Overlay's own metadata never is: a layer could otherwise
/// forge opaque dirs, redirects or metacopy files.
fn xattr_allowed(name: &[u8]) -> bool {
    !is_overlay_xattr(name)
}

impl Unpacker<'_> {
    /// The directory `parent` (made if missing) for an entry that creates or replaces
    /// `changed`. A tree's entries come directory by directory, so the last entry's parent is
    /// reused rather than walked to again from the root (a dozen system calls), unless this
    /// entry replaces it or a directory above it (a symlink or file where it was), which could
    /// change where the path leads.
    fn dir(&mut self, parent: &Path, changed: &Path) -> Result<OwnedFd, UnpackError> {
        if let Some((p, _)) = &self.parent
            && p.starts_with(changed)
        {
            self.parent = None;
        }
        if let Some((p, fd)) = &self.parent
            && p == parent
        {
            return fd.try_clone().map_err(io_err("open", parent));
        }
        let fd = within::ensure_dir(&self.root, parent).map_err(io_err("create", parent))?;
        let kept = fd.try_clone().map_err(io_err("open", parent))?;
        self.parent = Some((parent.to_path_buf(), kept));
        Ok(fd)
    }

    fn apply<R: Read>(&mut self, mut entry: tar::Entry<R>) -> Result<(), UnpackError> {
        let raw_path = entry.path().map_err(UnpackError::Tar)?.into_owned();
        let rel = match within::normalize(&raw_path) {
            Ok(Some(p)) => p,
            Ok(None) => return Ok(()), // the root itself
            Err(why) => return Err(UnpackError::Unsafe(why)),
        };
        let (parent, name) = split(&rel);
        let name_bytes = name.as_bytes();
        self.stats.entries += 1;

        // Whiteouts.
        if name_bytes == OPAQUE.as_bytes() {
            let dir = self.dir(&parent, &rel)?;
            // The magic link itself must be followed to reach the directory.
            xattr::set_deref(
                fd_path(&dir, OsStr::new("")),
                self.opts.xattrs.opaque(),
                b"y",
            )
            .map_err(io_err("mark opaque", &parent))?;
            return Ok(());
        }
        if let Some(target) = name_bytes.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            if target.is_empty()
                || target == b"."
                || target == b".."
                || target.starts_with(WHITEOUT_PREFIX.as_bytes())
            {
                return Err(UnpackError::Unsafe(format!(
                    "bad whiteout `{}`",
                    raw_path.display()
                )));
            }
            let target = OsStr::from_bytes(target);
            let path = parent.join(target);
            let dir = self.dir(&parent, &path)?;
            self.remove_existing(&dir, target, &path)?;
            super::overlay::make_whiteout(&dir, target)
                .map_err(nix_err("create the whiteout", &path))?;
            return Ok(());
        }

        let header = entry.header().clone();
        let kind = header.entry_type();
        let mode = Mode::from_bits_truncate(header.mode().map_err(UnpackError::Tar)? & 0o7777);
        let uid = header.uid().map_err(UnpackError::Tar)? as u32;
        let gid = header.gid().map_err(UnpackError::Tar)? as u32;
        let mtime = TimeSpec::new(header.mtime().map_err(UnpackError::Tar)? as i64, 0);
        let xattrs = self.pax_xattrs(&mut entry);
        let dir = self.dir(&parent, &rel)?;

        match kind {
            tar::EntryType::Directory => {
                match nix::sys::stat::fstatat(&dir, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
                {
                    Ok(st)
                        if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT
                            == SFlag::S_IFDIR => {}
                    Ok(_) => {
                        self.remove_existing(&dir, &name, &rel)?;
                        nix::sys::stat::mkdirat(
                            &dir,
                            name.as_os_str(),
                            Mode::from_bits_truncate(0o700),
                        )
                        .map_err(nix_err("create", &rel))?;
                    }
                    Err(_) => {
                        nix::sys::stat::mkdirat(
                            &dir,
                            name.as_os_str(),
                            Mode::from_bits_truncate(0o700),
                        )
                        .map_err(nix_err("create", &rel))?;
                    }
                }
                self.set_owner(&dir, &name, &rel, uid, gid)?;
                nix::sys::stat::fchmodat(
                    &dir,
                    name.as_os_str(),
                    mode,
                    nix::sys::stat::FchmodatFlags::NoFollowSymlink,
                )
                .or_else(|_| {
                    let fd = open_in_root(
                        &self.root,
                        &rel,
                        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW,
                    )?;
                    nix::sys::stat::fchmod(&fd, mode).map_err(io::Error::from)
                })
                .map_err(|e: io::Error| UnpackError::Io {
                    action: "set the mode of",
                    path: rel.clone(),
                    source: e,
                })?;
                self.set_xattrs(&dir, &name, &rel, &xattrs)?;
                self.dir_times.push((rel, mtime));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                self.remove_existing(&dir, &name, &rel)?;
                let fd = nix::fcntl::openat(
                    &dir,
                    name.as_os_str(),
                    OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_WRONLY
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(nix_err("create", &rel))?;
                let mut file = File::from(fd);
                io::copy(&mut entry, &mut file).map_err(io_err("write", &rel))?;
                self.set_owner(&dir, &name, &rel, uid, gid)?;
                nix::sys::stat::fchmod(&file, mode).map_err(nix_err("set the mode of", &rel))?;
                self.set_xattrs(&dir, &name, &rel, &xattrs)?;
                nix::sys::stat::futimens(&file, &mtime, &mtime)
                    .map_err(nix_err("set the time of", &rel))?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(UnpackError::Tar)?
                    .ok_or_else(|| {
                        UnpackError::Unsafe(format!("symlink `{}` without a target", rel.display()))
                    })?
                    .into_owned();
                self.remove_existing(&dir, &name, &rel)?;
                nix::unistd::symlinkat(&target, &dir, name.as_os_str())
                    .map_err(nix_err("create the symlink", &rel))?;
                self.set_owner(&dir, &name, &rel, uid, gid)?;
                self.set_xattrs(&dir, &name, &rel, &xattrs)?;
                nix::sys::stat::utimensat(
                    &dir,
                    name.as_os_str(),
                    &mtime,
                    &mtime,
                    UtimensatFlags::NoFollowSymlink,
                )
                .map_err(nix_err("set the time of", &rel))?;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(UnpackError::Tar)?
                    .ok_or_else(|| {
                        UnpackError::Unsafe(format!(
                            "hardlink `{}` without a target",
                            rel.display()
                        ))
                    })?
                    .into_owned();
                let target = match within::normalize(&target) {
                    Ok(Some(t)) => t,
                    Ok(None) => {
                        return Err(UnpackError::Unsafe(format!(
                            "hardlink `{}` to the root",
                            rel.display()
                        )));
                    }
                    Err(why) => return Err(UnpackError::Unsafe(format!("hardlink target {why}"))),
                };
                if target == rel {
                    return Ok(());
                }
                self.remove_existing(&dir, &name, &rel)?;
                self.hardlink(&dir, &name, &rel, &target)?;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let (sflag, dev) = match kind {
                    tar::EntryType::Char => (SFlag::S_IFCHR, dev_of(&header)),
                    tar::EntryType::Block => (SFlag::S_IFBLK, dev_of(&header)),
                    _ => (SFlag::S_IFIFO, 0),
                };
                if self.opts.rootless && sflag != SFlag::S_IFIFO {
                    self.stats
                        .warnings
                        .push(Warning::SkippedDevice { path: rel.clone() });
                    return Ok(());
                }
                self.remove_existing(&dir, &name, &rel)?;
                nix::sys::stat::mknodat(&dir, name.as_os_str(), sflag, mode, dev)
                    .map_err(nix_err("create the device", &rel))?;
                self.set_owner(&dir, &name, &rel, uid, gid)?;
                nix::sys::stat::fchmodat(
                    &dir,
                    name.as_os_str(),
                    mode,
                    nix::sys::stat::FchmodatFlags::FollowSymlink,
                )
                .map_err(nix_err("set the mode of", &rel))?;
                nix::sys::stat::utimensat(
                    &dir,
                    name.as_os_str(),
                    &mtime,
                    &mtime,
                    UtimensatFlags::NoFollowSymlink,
                )
                .map_err(nix_err("set the time of", &rel))?;
            }
            other => {
                self.stats.warnings.push(Warning::SkippedEntry {
                    path: rel.clone(),
                    kind: format!("{other:?}"),
                });
            }
        }
        Ok(())
    }

    fn pax_xattrs<R: Read>(&mut self, entry: &mut tar::Entry<R>) -> Vec<(OsString, Vec<u8>)> {
        let mut out = Vec::new();
        if let Ok(Some(exts)) = entry.pax_extensions() {
            for ext in exts.flatten() {
                if let Some(name) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.") {
                    if xattr_allowed(name) {
                        out.push((
                            OsStr::from_bytes(name).to_os_string(),
                            ext.value_bytes().to_vec(),
                        ));
                    } else {
                        self.stats.warnings.push(Warning::DroppedXattr {
                            name: String::from_utf8_lossy(name).into_owned(),
                        });
                    }
                }
            }
        }
        out
    }

    /// Removes whatever is at `name` (a directory with its content) before something replaces it.
    fn remove_existing(&self, dir: &OwnedFd, name: &OsStr, rel: &Path) -> Result<(), UnpackError> {
        match nix::sys::stat::fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Err(nix::Error::ENOENT) => Ok(()),
            Err(e) => Err(nix_err("inspect", rel)(e)),
            Ok(st) if is_dir(&st) => {
                // std's remove_dir_all never follows symlinks inside the tree.
                std::fs::remove_dir_all(fd_path(dir, name)).map_err(io_err("replace", rel))
            }
            Ok(_) => nix::unistd::unlinkat(dir, name, nix::unistd::UnlinkatFlags::NoRemoveDir)
                .map_err(nix_err("replace", rel)),
        }
    }

    fn set_owner(
        &mut self,
        dir: &OwnedFd,
        name: &OsStr,
        rel: &Path,
        uid: u32,
        gid: u32,
    ) -> Result<(), UnpackError> {
        match nix::unistd::fchownat(
            dir,
            name,
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(()) => Ok(()),
            Err(e) if self.opts.rootless => {
                self.stats.warnings.push(Warning::Owner {
                    path: rel.to_path_buf(),
                    uid: uid.into(),
                    gid: gid.into(),
                    reason: e.to_string(),
                });
                Ok(())
            }
            Err(e) => Err(nix_err("change the owner of", rel)(e)),
        }
    }

    fn set_xattrs(
        &mut self,
        dir: &OwnedFd,
        name: &OsStr,
        rel: &Path,
        xattrs: &[(OsString, Vec<u8>)],
    ) -> Result<(), UnpackError> {
        for (k, v) in xattrs {
            if let Err(e) = xattr::set(fd_path(dir, name), k, v) {
                // Some file systems or namespaces refuse some xattrs (trusted.* rootless,
                // user.* on symlinks): keep going, but say so.
                self.stats.warnings.push(Warning::Xattr {
                    name: k.to_string_lossy().into_owned(),
                    path: rel.to_path_buf(),
                    reason: e.to_string(),
                });
            }
        }
        Ok(())
    }

    /// Hardlinks within this layer. A target in another layer is refused: copying it in would
    /// make this layer's unpacked content depend on which image it came with (and the layer
    /// directory is shared, by diff_id, between images).
    fn hardlink(
        &mut self,
        dir: &OwnedFd,
        name: &OsStr,
        rel: &Path,
        target: &Path,
    ) -> Result<(), UnpackError> {
        let (tparent, tname) = split(target);
        if let Ok(tdir) = open_in_root(&self.root, &tparent, OFlag::O_PATH | OFlag::O_DIRECTORY)
            && nix::sys::stat::fstatat(&tdir, tname.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
                .is_ok()
        {
            return nix::unistd::linkat(&tdir, tname.as_os_str(), dir, name, AtFlags::empty())
                .map_err(nix_err("create the hardlink", rel));
        }
        Err(UnpackError::Unsafe(format!(
            "hardlink /{} points at /{}, which is not in this layer",
            rel.display(),
            target.display()
        )))
    }

    /// Directory mtimes last (creating children changed them), deepest first.
    fn finish_dir_times(&mut self) {
        let mut times = std::mem::take(&mut self.dir_times);
        times.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
        for (rel, t) in times {
            let (parent, name) = split(&rel);
            if let Ok(dir) = open_in_root(&self.root, &parent, OFlag::O_PATH | OFlag::O_DIRECTORY) {
                let _ = nix::sys::stat::utimensat(
                    &dir,
                    name.as_os_str(),
                    &t,
                    &t,
                    UtimensatFlags::NoFollowSymlink,
                );
            }
        }
    }
}

fn dev_of(h: &tar::Header) -> u64 {
    let major = h.device_major().ok().flatten().unwrap_or(0);
    let minor = h.device_minor().ok().flatten().unwrap_or(0);
    nix::sys::stat::makedev(u64::from(major), u64::from(minor))
}

fn is_dir(st: &FileStat) -> bool {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_is_no_tar_is_named_as_such_without_its_content() {
        let text = b"root:x:0:0:root:/root:/bin/bash\nsecret:line\n".repeat(20);
        let d = tempfile::tempdir().unwrap();
        let e = unpack_layer(&text[..], d.path(), &opts())
            .unwrap_err()
            .to_string();
        assert!(e.contains("must be a tar archive"), "{e}");
        assert!(!e.contains("secret"), "{e}");
    }
    use std::os::unix::fs::MetadataExt;

    fn opts() -> UnpackOptions {
        UnpackOptions {
            xattrs: XattrNamespace::Trusted,
            rootless: !nix::unistd::geteuid().is_root(),
        }
    }

    struct TarBuilder(tar::Builder<Vec<u8>>);

    impl TarBuilder {
        fn new() -> Self {
            TarBuilder(tar::Builder::new(Vec::new()))
        }
        fn entry(
            &mut self,
            path: &str,
            kind: tar::EntryType,
            data: &[u8],
            link: Option<&str>,
            mode: u32,
        ) -> &mut Self {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_size(data.len() as u64);
            h.set_mode(mode);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(1_700_000_000);
            // Write the name bytes raw: the builder's path setters refuse `..` and absolute
            // paths, which these tests need.
            let name = path.as_bytes();
            h.as_old_mut().name[..name.len()].copy_from_slice(name);
            if let Some(l) = link {
                h.as_old_mut().linkname[..l.len()].copy_from_slice(l.as_bytes());
            }
            h.set_cksum();
            self.0.append(&h, data).unwrap();
            self
        }
        fn file(&mut self, path: &str, data: &[u8]) -> &mut Self {
            self.entry(path, tar::EntryType::Regular, data, None, 0o644)
        }
        fn done(self) -> Vec<u8> {
            self.0.into_inner().unwrap()
        }
    }

    fn unpack(tar: &[u8]) -> (tempfile::TempDir, Result<UnpackStats, UnpackError>) {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("root")).unwrap();
        let r = unpack_layer(tar, &d.path().join("root"), &opts());
        (d, r)
    }

    /// Everything under `outer` except `root/`: nothing may appear there.
    fn outside(d: &Path) -> Vec<String> {
        std::fs::read_dir(d)
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n != "root")
            .collect()
    }

    #[test]
    fn basic_tree_and_diff_id() {
        let mut t = TarBuilder::new();
        t.entry("etc/", tar::EntryType::Directory, b"", None, 0o755)
            .file("etc/hosts", b"127.0.0.1 localhost\n")
            .entry(
                "bin/sh",
                tar::EntryType::Symlink,
                b"",
                Some("busybox"),
                0o777,
            )
            .entry("bin/busybox", tar::EntryType::Regular, b"ELF", None, 0o4755)
            .entry(
                "bin/hl",
                tar::EntryType::Link,
                b"",
                Some("bin/busybox"),
                0o755,
            );
        let bytes = t.done();
        let (d, r) = unpack(&bytes);
        let stats = r.unwrap();
        assert_eq!(stats.diff_id, crate::digest::sha256_hex(&bytes));
        let root = d.path().join("root");
        assert_eq!(
            std::fs::read(root.join("etc/hosts")).unwrap(),
            b"127.0.0.1 localhost\n"
        );
        assert_eq!(
            std::fs::read_link(root.join("bin/sh")).unwrap(),
            Path::new("busybox")
        );
        let m = std::fs::metadata(root.join("bin/busybox")).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o4755);
        assert_eq!(m.mtime(), 1_700_000_000);
        assert_eq!(
            m.ino(),
            std::fs::metadata(root.join("bin/hl")).unwrap().ino()
        );
        assert_eq!(
            std::fs::metadata(root.join("etc")).unwrap().mtime(),
            1_700_000_000
        );
    }

    #[test]
    fn dotdot_is_refused() {
        let mut t = TarBuilder::new();
        t.file("../../escape", b"x");
        let (d, r) = unpack(&t.done());
        assert!(matches!(r, Err(UnpackError::Unsafe(_))), "{r:?}");
        assert!(outside(d.path()).is_empty());
    }

    #[test]
    fn absolute_names_stay_inside() {
        let mut t = TarBuilder::new();
        t.file("/escape-absolute", b"x");
        let (d, r) = unpack(&t.done());
        r.unwrap();
        assert!(d.path().join("root/escape-absolute").exists());
        assert!(outside(d.path()).is_empty());
    }

    #[test]
    fn symlink_tricks_stay_inside() {
        let outer = tempfile::tempdir().unwrap();
        let target = outer.path().display().to_string();
        let mut t = TarBuilder::new();
        t.entry("link", tar::EntryType::Symlink, b"", Some(&target), 0o777)
            .file("link/escape-symlink", b"x")
            .entry(
                "up",
                tar::EntryType::Symlink,
                b"",
                Some("../../../../../.."),
                0o777,
            )
            .file(&format!("up{target}/escape-relative"), b"x")
            .entry("a", tar::EntryType::Symlink, b"", Some("b"), 0o777)
            .entry("b", tar::EntryType::Symlink, b"", Some("/"), 0o777)
            .file("a/escape-chain", b"x");
        let (d, r) = unpack(&t.done());
        r.unwrap();
        assert_eq!(
            std::fs::read_dir(outer.path()).unwrap().count(),
            0,
            "wrote outside the root"
        );
        assert!(outside(d.path()).is_empty());
        // The writes landed inside the root, where the links point when the root is `/`.
        assert!(
            d.path()
                .join(format!("root{target}/escape-symlink"))
                .exists()
        );
        assert!(d.path().join("root/escape-chain").exists());
    }

    #[test]
    fn hardlink_tricks_are_refused() {
        for link in ["/etc/passwd", "../../../etc/passwd"] {
            let mut t = TarBuilder::new();
            t.entry("hl", tar::EntryType::Link, b"", Some(link), 0o644);
            let (d, r) = unpack(&t.done());
            assert!(matches!(r, Err(UnpackError::Unsafe(_))), "{link}: {r:?}");
            assert!(!d.path().join("root/hl").exists());
        }
        // A hardlink through a symlink to outside: the target resolves inside the root.
        let mut t = TarBuilder::new();
        t.entry("etc", tar::EntryType::Symlink, b"", Some("/etc"), 0o777)
            .entry("hl", tar::EntryType::Link, b"", Some("etc/passwd"), 0o644);
        let (_d, r) = unpack(&t.done());
        assert!(r.is_err(), "linked to the host's /etc/passwd");
    }

    #[test]
    fn overwrite_through_symlink_stays_inside() {
        let outer = tempfile::tempdir().unwrap();
        std::fs::write(outer.path().join("victim"), b"original").unwrap();
        let target = outer.path().display().to_string();
        let mut t = TarBuilder::new();
        t.entry("etc", tar::EntryType::Symlink, b"", Some(&target), 0o777)
            .file("etc/victim", b"evil");
        let (d, r) = unpack(&t.done());
        r.unwrap();
        assert_eq!(
            std::fs::read(outer.path().join("victim")).unwrap(),
            b"original"
        );
        assert!(d.path().join(format!("root{target}/victim")).exists());
    }

    #[test]
    fn overlay_xattrs_from_layers_are_dropped() {
        let mut b = tar::Builder::new(Vec::new());
        b.append_pax_extensions([("SCHILY.xattr.trusted.overlay.opaque", &b"y"[..])])
            .unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_path("dir/").unwrap();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        h.set_cksum();
        b.append(&h, &b""[..]).unwrap();
        let (d, r) = unpack(&b.into_inner().unwrap());
        let stats = r.unwrap();
        assert!(
            stats
                .warnings
                .iter()
                .any(|w| w.to_string().contains("trusted.overlay.opaque"))
        );
        assert_eq!(
            xattr::get(d.path().join("root/dir"), "trusted.overlay.opaque").unwrap(),
            None
        );
    }

    #[test]
    fn later_entries_replace_earlier_ones() {
        let mut t = TarBuilder::new();
        t.file("x", b"file")
            .entry("x", tar::EntryType::Directory, b"", None, 0o755)
            .file("x/y", b"y")
            .file("x", b"file again");
        let (d, r) = unpack(&t.done());
        r.unwrap();
        assert_eq!(
            std::fs::read(d.path().join("root/x")).unwrap(),
            b"file again"
        );
    }

    #[test]
    fn hardlink_to_another_layer_is_refused() {
        // The target is not in this layer: refused (a layer's content must not depend on the
        // image it came with, since unpacked layers are shared by diff_id).
        let mut t = TarBuilder::new();
        t.entry(
            "bin/tool2",
            tar::EntryType::Link,
            b"",
            Some("bin/tool"),
            0o755,
        );
        let (d, r) = unpack(&t.done());
        assert!(matches!(r, Err(UnpackError::Unsafe(_))), "{r:?}");
        assert!(!d.path().join("root/bin/tool2").exists());
    }

    #[test]
    fn decompress_detects_formats() {
        let data = b"hello tar";
        let gz = {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            io::Write::write_all(&mut e, data).unwrap();
            e.finish().unwrap()
        };
        let zst = zstd::encode_all(&data[..], 1).unwrap();
        for input in [gz, zst, data.to_vec()] {
            let mut out = Vec::new();
            decompress(io::BufReader::new(&input[..]))
                .unwrap()
                .read_to_end(&mut out)
                .unwrap();
            assert_eq!(out, data);
        }
    }
}
