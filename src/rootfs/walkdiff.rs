//! The snapshotter for kernels without a usable overlayfs: the layer stack is copied into one
//! directory (`materialize`, applying whiteouts and opaque directories as overlayfs would show
//! them), its metadata is recorded before the command runs (`Index`), and afterwards a walk of
//! the tree against that record writes the command's changes (`diff`) in the same form as an
//! overlayfs upper directory: new and changed entries copied, deletions as 0:0 character
//! devices, replaced directories marked opaque. The step's layer is then made from it exactly
//! as from an overlay upper.
//!
//! The copy is kept between steps, so only the first step pays for it; each later step costs a
//! metadata walk plus copying what changed. Every tree here is the store's own and no process
//! runs in it while we work: paths are walked with `lstat`, descending only into real
//! directories, and nothing is ever followed through a symlink.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs::{self, Metadata};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use nix::sys::stat::{Mode, SFlag};

use super::overlay::{XattrNamespace, is_opaque, is_overlay_xattr, is_whiteout};
use crate::warning::Warning;

/// The metadata of one entry, as far as a change is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Meta {
    kind: u32,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    ino: u64,
    rdev: u64,
    nlink: u64,
    /// Birth time where the file system records it: a name removed and made again may get
    /// the same inode number back at once, but not the same birth time.
    born: Option<std::time::SystemTime>,
}

impl Meta {
    fn of(m: &Metadata) -> Meta {
        Meta {
            kind: m.mode() & libc::S_IFMT,
            mode: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
            ino: m.ino(),
            rdev: m.rdev(),
            nlink: m.nlink(),
            born: m.created().ok(),
        }
    }

    /// Did the entry change, as overlayfs would see it? A new ctime counts (content rewritten
    /// with the old size and mtime, `cp -p` over it), except when only the link count moved:
    /// another name of the file was made or removed, and overlayfs copies nothing up for that.
    fn changed_from(&self, before: &Meta) -> bool {
        if self == before {
            return false;
        }
        let same_but_ctime = Meta {
            ctime: before.ctime,
            nlink: before.nlink,
            ..*self
        } == *before;
        !(same_but_ctime && self.nlink != before.nlink)
    }

    fn is_dir(&self) -> bool {
        self.kind == libc::S_IFDIR
    }
}

/// The entries of a directory, sorted by name (so every walk is in the same order).
fn children(dir: &Path) -> io::Result<Vec<OsString>> {
    let mut names: Vec<OsString> = fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()?;
    names.sort();
    Ok(names)
}

/// Removes whatever is at `path` (a directory with everything in it).
fn remove_any(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Copies one entry that is not a directory from `src` to `dest` (which must not exist) with
/// its owner, mode, xattrs and times. `rootless`: device nodes are skipped (reported).
fn copy_entry(
    src: &Path,
    dest: &Path,
    m: &Metadata,
    warnings: &mut Vec<Warning>,
) -> io::Result<()> {
    let ft = m.file_type();
    if ft.is_file() {
        fs::copy(src, dest)?;
    } else if ft.is_symlink() {
        std::os::unix::fs::symlink(fs::read_link(src)?, dest)?;
    } else if ft.is_fifo() || ft.is_char_device() || ft.is_block_device() {
        let kind = if ft.is_fifo() {
            SFlag::S_IFIFO
        } else if ft.is_char_device() {
            SFlag::S_IFCHR
        } else {
            SFlag::S_IFBLK
        };
        if let Err(e) = nix::sys::stat::mknod(dest, kind, Mode::from_bits_truncate(0o600), m.rdev())
        {
            warnings.push(Warning::NotCopied {
                path: src.to_path_buf(),
                reason: e.to_string(),
            });
            return Ok(());
        }
    } else {
        // A socket: nothing to keep (Docker's layers leave them out too).
        return Ok(());
    }
    apply_meta(src, dest, m)
}

/// Gives `dest` the owner, mode, xattrs and times of `src` (metadata `m`).
fn apply_meta(src: &Path, dest: &Path, m: &Metadata) -> io::Result<()> {
    // Owner first: chown clears setuid bits.
    let _ = std::os::unix::fs::lchown(dest, Some(m.uid()), Some(m.gid()));
    if !m.file_type().is_symlink() {
        fs::set_permissions(
            dest,
            std::os::unix::fs::PermissionsExt::from_mode(m.mode() & 0o7777),
        )?;
    }
    if let Ok(names) = xattr::list(src) {
        for n in names.filter(|n| !is_overlay_xattr(n.as_encoded_bytes())) {
            if let Ok(Some(v)) = xattr::get(src, &n) {
                let _ = xattr::set(dest, &n, &v);
            }
        }
    }
    set_times(dest, m)
}

fn set_times(dest: &Path, m: &Metadata) -> io::Result<()> {
    let a = nix::sys::time::TimeSpec::new(m.atime(), m.atime_nsec());
    let t = nix::sys::time::TimeSpec::new(m.mtime(), m.mtime_nsec());
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        dest,
        &a,
        &t,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .map_err(io::Error::from)
}

/// Makes `dest` a real directory (replacing anything else there) with `src`'s metadata.
fn make_dir_like(src: &Path, dest: &Path, m: &Metadata) -> io::Result<()> {
    match fs::symlink_metadata(dest) {
        Ok(d) if d.is_dir() => {}
        Ok(_) => {
            fs::remove_file(dest)?;
            fs::create_dir(dest)?;
        }
        Err(_) => fs::create_dir(dest)?,
    }
    apply_meta(src, dest, m)
}

/// Copies the merged view of `lowers` (top first, overlay "diff" form) into `dest`, which must
/// be an empty directory. Returns warnings (entries that could not be made).
pub fn materialize(lowers: &[PathBuf], dest: &Path) -> io::Result<Vec<Warning>> {
    let mut warnings = Vec::new();
    for layer in lowers.iter().rev() {
        apply_layer(layer, dest, &mut warnings)?;
    }
    Ok(warnings)
}

/// Applies one layer directory (overlay "diff" form) on top of `dest`.
pub fn apply_layer(layer: &Path, dest: &Path, warnings: &mut Vec<Warning>) -> io::Result<()> {
    let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
    apply_dir(layer, dest, Path::new(""), &mut links, warnings)?;
    // Directory times last: creating their entries changed them.
    fix_dir_times(layer, dest, Path::new(""))
}

fn apply_dir(
    layer: &Path,
    dest: &Path,
    rel: &Path,
    links: &mut HashMap<(u64, u64), PathBuf>,
    warnings: &mut Vec<Warning>,
) -> io::Result<()> {
    for name in children(&layer.join(rel))? {
        let r = rel.join(&name);
        let (src, to) = (layer.join(&r), dest.join(&r));
        let m = fs::symlink_metadata(&src)?;
        let st = nix::sys::stat::lstat(&src)?;
        if is_whiteout(&st) {
            remove_any(&to)?;
            continue;
        }
        if m.is_dir() {
            if is_opaque(&src) {
                remove_any(&to)?;
            }
            make_dir_like(&src, &to, &m)?;
            apply_dir(layer, dest, &r, links, warnings)?;
            continue;
        }
        remove_any(&to)?;
        if m.is_file() && m.nlink() > 1 {
            if let Some(first) = links.get(&(m.dev(), m.ino())) {
                fs::hard_link(dest.join(first), &to)?;
                continue;
            }
            links.insert((m.dev(), m.ino()), r.clone());
        }
        copy_entry(&src, &to, &m, warnings)?;
    }
    Ok(())
}

fn fix_dir_times(layer: &Path, dest: &Path, rel: &Path) -> io::Result<()> {
    for name in children(&layer.join(rel))? {
        let r = rel.join(&name);
        let m = fs::symlink_metadata(layer.join(&r))?;
        if m.is_dir() {
            fix_dir_times(layer, dest, &r)?;
            set_times(&dest.join(&r), &m)?;
        }
    }
    Ok(())
}

/// A record of a tree's metadata, taken before the command runs.
#[derive(Debug, Default)]
pub struct Index {
    meta: HashMap<PathBuf, Meta>,
    children: HashMap<PathBuf, Vec<OsString>>,
}

impl Index {
    /// Records every entry under `root`.
    pub fn of(root: &Path) -> io::Result<Index> {
        let mut idx = Index::default();
        idx.walk(root, Path::new(""))?;
        Ok(idx)
    }

    fn walk(&mut self, root: &Path, rel: &Path) -> io::Result<()> {
        let names = children(&root.join(rel))?;
        for name in &names {
            let r = rel.join(name);
            let m = Meta::of(&fs::symlink_metadata(root.join(&r))?);
            self.meta.insert(r.clone(), m);
            if m.is_dir() {
                self.walk(root, &r)?;
            }
        }
        self.children.insert(rel.to_path_buf(), names);
        Ok(())
    }

    /// How many entries it holds.
    pub fn len(&self) -> usize {
        self.meta.len()
    }

    /// Does it hold nothing?
    pub fn is_empty(&self) -> bool {
        self.meta.is_empty()
    }
}

/// What a diff wrote.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DiffStats {
    /// Entries copied (new or changed).
    pub copied: u64,
    /// Whiteouts made.
    pub whiteouts: u64,
    /// Directories marked opaque.
    pub opaque: u64,
}

struct Differ<'a> {
    tree: &'a Path,
    upper: &'a Path,
    before: &'a Index,
    opaque_xattr: &'static str,
    links: HashMap<(u64, u64), PathBuf>,
    made_dirs: Vec<PathBuf>,
    made: HashSet<PathBuf>,
    stats: DiffStats,
    warnings: Vec<Warning>,
}

/// Writes into `upper` (an empty directory) what changed in `tree` since `before` was taken,
/// in overlayfs upper form (`xattrs` names the opaque marker).
pub fn diff(
    tree: &Path,
    before: &Index,
    upper: &Path,
    xattrs: XattrNamespace,
) -> io::Result<(DiffStats, Vec<Warning>)> {
    let mut d = Differ {
        tree,
        upper,
        before,
        opaque_xattr: xattrs.opaque(),
        links: HashMap::new(),
        made_dirs: Vec::new(),
        made: HashSet::new(),
        stats: DiffStats::default(),
        warnings: Vec::new(),
    };
    d.dir(Path::new(""), false)?;
    // Directory times last (entries made in them changed them), deepest first.
    d.made_dirs
        .sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for rel in &d.made_dirs {
        let m = fs::symlink_metadata(tree.join(rel))?;
        set_times(&upper.join(rel), &m)?;
    }
    Ok((d.stats, d.warnings))
}

impl Differ<'_> {
    /// Walks directory `rel` of the tree. `fresh`: the directory is new or replaced, so all it
    /// holds is new.
    fn dir(&mut self, rel: &Path, fresh: bool) -> io::Result<()> {
        let names = children(&self.tree.join(rel))?;
        if !fresh && let Some(old) = self.before.children.get(rel) {
            let now: HashSet<&OsString> = names.iter().collect();
            for gone in old.iter().filter(|n| !now.contains(n)) {
                self.upper_dir(rel)?;
                let dir = fs::File::open(self.upper.join(rel))?;
                super::overlay::make_whiteout(&dir, gone)?;
                self.stats.whiteouts += 1;
            }
        }
        for name in &names {
            let r = rel.join(name);
            let m = fs::symlink_metadata(self.tree.join(&r))?;
            let now = Meta::of(&m);
            let prev = if fresh {
                None
            } else {
                self.before.meta.get(&r).copied()
            };
            match prev {
                // New, or something else now stands at the name.
                None => self.add(&r, &m, false)?,
                Some(p) if p.kind != now.kind || p.ino != now.ino || p.born != now.born => {
                    self.add(&r, &m, now.is_dir())?
                }
                Some(p) if now.is_dir() => {
                    if now.changed_from(&p) {
                        self.upper_dir(&r)?;
                    }
                    self.dir(&r, false)?;
                }
                Some(p) if now.changed_from(&p) => self.add(&r, &m, false)?,
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// Copies entry `rel` (and, for a directory, all it holds) into the upper directory.
    fn add(&mut self, rel: &Path, m: &Metadata, opaque: bool) -> io::Result<()> {
        if let Some(parent) = rel.parent() {
            self.upper_dir(parent)?;
        }
        let (src, dest) = (self.tree.join(rel), self.upper.join(rel));
        self.stats.copied += 1;
        if m.is_dir() {
            fs::create_dir(&dest)?;
            apply_meta(&src, &dest, m)?;
            if opaque {
                xattr::set(&dest, self.opaque_xattr, b"y")?;
                self.stats.opaque += 1;
            }
            self.made.insert(rel.to_path_buf());
            self.made_dirs.push(rel.to_path_buf());
            return self.dir(rel, true);
        }
        if m.is_file() && m.nlink() > 1 {
            if let Some(first) = self.links.get(&(m.dev(), m.ino())) {
                return fs::hard_link(self.upper.join(first), &dest);
            }
            self.links.insert((m.dev(), m.ino()), rel.to_path_buf());
        }
        copy_entry(&src, &dest, m, &mut self.warnings)
    }

    /// Makes directory `rel` (and its parents) exist in the upper directory with the tree's
    /// metadata, as overlayfs copies a directory up when something in it changes.
    fn upper_dir(&mut self, rel: &Path) -> io::Result<()> {
        if rel.as_os_str().is_empty() || self.made.contains(rel) {
            return Ok(());
        }
        if let Some(parent) = rel.parent() {
            self.upper_dir(parent)?;
        }
        let (src, dest) = (self.tree.join(rel), self.upper.join(rel));
        let m = fs::symlink_metadata(&src)?;
        fs::create_dir(&dest)?;
        apply_meta(&src, &dest, &m)?;
        self.made.insert(rel.to_path_buf());
        self.made_dirs.push(rel.to_path_buf());
        Ok(())
    }
}
