//! Looking things up in a stack of overlay lower directories (top first) without mounting it:
//! does a path exist in the merged view, where does a path really lead once symlinks are
//! followed, and which owner, mode and times does a directory have there. Used to place mount
//! points and copied files beside the image without changing how its directories look.

use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sys::stat::SFlag;

use super::within::{open_in_root, open_root};

/// The topmost entry for `rel`: Some(Ok(meta)) when a layer has it, Some(Err(())) when a layer
/// whites it out, None when no layer has it.
fn topmost(
    lowers: &[PathBuf],
    rel: &Path,
) -> Option<Result<(PathBuf, nix::sys::stat::FileStat), ()>> {
    for l in lowers {
        let Ok(root) = open_root(l) else { continue };
        if let Ok(fd) = open_in_root(&root, rel, OFlag::O_PATH | OFlag::O_NOFOLLOW) {
            let st = nix::sys::stat::fstat(&fd).ok()?;
            if super::overlay::is_whiteout(&st) {
                return Some(Err(()));
            }
            return Some(Ok((l.clone(), st)));
        }
    }
    None
}

fn kind(st: &nix::sys::stat::FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT
}

/// Does `rel` exist in the merged view? Some(true/false) when decided, None when a symlink at
/// its end makes it unknown.
pub fn exists(lowers: &[PathBuf], rel: &Path) -> Option<bool> {
    match topmost(lowers, rel) {
        None | Some(Err(())) => Some(false),
        Some(Ok((_, st))) if kind(&st) == SFlag::S_IFLNK => None,
        Some(Ok(_)) => Some(true),
    }
}

/// The path `rel` reaches in the merged view with every symlinked directory on the way
/// followed (inside the root); components that do not exist are kept as they are. The last
/// component is not followed (it is what gets written).
pub fn resolve(lowers: &[PathBuf], rel: &Path) -> Result<PathBuf, String> {
    resolve_inner(lowers, rel, false)
}

/// Reads up to `limit` bytes of the regular file `rel` names in the merged view, every symlink
/// followed inside the root. None when it is missing, whited out or not a regular file.
pub fn read_file(lowers: &[PathBuf], rel: &Path, limit: u64) -> Option<Vec<u8>> {
    let real = resolve_inner(lowers, rel, true).ok()?;
    let Some(Ok((layer, st))) = topmost(lowers, &real) else {
        return None;
    };
    if kind(&st) != SFlag::S_IFREG {
        return None;
    }
    let root = open_root(&layer).ok()?;
    let file = super::within::open_regular_in_root(&root, &real).ok()?;
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(file, limit), &mut out).ok()?;
    Some(out)
}

/// A symlink's target, read through a descriptor resolved inside the layer.
fn read_link_in(layer: &Path, rel: &Path) -> Result<PathBuf, String> {
    let root = open_root(layer).map_err(|e| e.to_string())?;
    let fd =
        open_in_root(&root, rel, OFlag::O_PATH | OFlag::O_NOFOLLOW).map_err(|e| e.to_string())?;
    nix::fcntl::readlinkat(&fd, "")
        .map(PathBuf::from)
        .map_err(|e| e.to_string())
}

fn resolve_inner(lowers: &[PathBuf], rel: &Path, follow_last: bool) -> Result<PathBuf, String> {
    let mut todo: std::collections::VecDeque<OsString> = rel
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    let mut out = PathBuf::new();
    let mut hops = 0;
    while let Some(name) = todo.pop_front() {
        if name == ".." {
            out.pop();
            continue;
        }
        let candidate = out.join(&name);
        if todo.is_empty() && !follow_last {
            out = candidate;
            break;
        }
        match topmost(lowers, &candidate) {
            Some(Ok((layer, st))) if kind(&st) == SFlag::S_IFLNK => {
                hops += 1;
                if hops > 40 {
                    return Err(format!("too many symlinks resolving /{}", rel.display()));
                }
                let target = read_link_in(&layer, &candidate)?;
                let mut parts: Vec<OsString> = target
                    .components()
                    .filter_map(|c| match c {
                        Component::Normal(n) => Some(n.to_os_string()),
                        Component::ParentDir => Some("..".into()),
                        _ => None,
                    })
                    .collect();
                if target.is_absolute() {
                    out = PathBuf::new();
                }
                while let Some(p) = parts.pop() {
                    todo.push_front(p);
                }
            }
            Some(Ok((_, st))) if kind(&st) != SFlag::S_IFDIR && !todo.is_empty() => {
                return Err(format!(
                    "/{} is not a directory in the image",
                    candidate.display()
                ));
            }
            _ => out = candidate,
        }
    }
    Ok(out)
}

/// Owner, mode and times of a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirMeta {
    /// Mode bits (with the type).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time.
    pub mtime: (i64, i64),
    /// Access time.
    pub atime: (i64, i64),
}

/// The metadata of directory `rel` in the merged view (its topmost layer), if it is one. Read
/// from the descriptor resolved inside that layer, never through a host path.
pub fn dir_meta(lowers: &[PathBuf], rel: &Path) -> Option<DirMeta> {
    match topmost(lowers, rel)? {
        Ok((_, st)) if kind(&st) == SFlag::S_IFDIR => Some(DirMeta {
            mode: st.st_mode,
            uid: st.st_uid,
            gid: st.st_gid,
            mtime: (st.st_mtime, st.st_mtime_nsec),
            atime: (st.st_atime, st.st_atime_nsec),
        }),
        _ => None,
    }
}

/// Gives `dest` (a directory in a new layer, which we created) the owner, mode and times `rel`
/// has below.
pub fn copy_dir_meta(lowers: &[PathBuf], rel: &Path, dest: &Path) {
    if let Some(m) = dir_meta(lowers, rel) {
        let _ = std::os::unix::fs::lchown(dest, Some(m.uid), Some(m.gid));
        let _ = std::fs::set_permissions(
            dest,
            std::os::unix::fs::PermissionsExt::from_mode(m.mode & 0o7777),
        );
        let t = nix::sys::time::TimeSpec::new(m.mtime.0, m.mtime.1);
        let a = nix::sys::time::TimeSpec::new(m.atime.0, m.atime.1);
        let _ = nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            dest,
            &a,
            &t,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        );
    }
}

/// The entries of directory `rel` in the layers `visible` (top first, already cut at an
/// opaque directory): each name once, whited-out ones left out.
fn names_in(
    visible: &[PathBuf],
    rel: &Path,
) -> std::io::Result<std::collections::BTreeSet<OsString>> {
    let mut names = std::collections::BTreeSet::new();
    let mut gone = std::collections::BTreeSet::new();
    for l in visible {
        for e in std::fs::read_dir(l.join(rel))? {
            let e = e?;
            let name = e.file_name();
            if names.contains(&name) || gone.contains(&name) {
                continue;
            }
            let st = nix::sys::stat::lstat(&e.path()).map_err(std::io::Error::from)?;
            if super::overlay::is_whiteout(&st) {
                gone.insert(name);
            } else {
                names.insert(name);
            }
        }
    }
    Ok(names)
}

/// The layers that show directory `rel`'s entries: from its topmost layer down to an opaque
/// directory, or to a layer where it is not a directory.
fn visible_layers(lowers: &[PathBuf], rel: &Path) -> Vec<PathBuf> {
    let Some(Ok((layer, _))) = topmost(lowers, rel) else {
        return Vec::new();
    };
    let start = lowers.iter().position(|l| *l == layer).unwrap_or(0);
    let mut visible = Vec::new();
    for l in &lowers[start..] {
        match std::fs::symlink_metadata(l.join(rel)) {
            Ok(m) if m.is_dir() => {
                visible.push(l.clone());
                if super::overlay::is_opaque(&l.join(rel)) {
                    break;
                }
            }
            Ok(_) => break,
            Err(_) => {}
        }
    }
    visible
}

/// The paths a shell pattern (`*`, `?`, `[...]` within one component) matches in the merged
/// view, sorted (`COPY --from=STAGE 'lib/*.so' ...`).
pub fn glob(lowers: &[PathBuf], pattern: &Path) -> Result<Vec<PathBuf>, String> {
    let mut found = vec![PathBuf::new()];
    for c in pattern.components() {
        let Component::Normal(c) = c else { continue };
        let c = c.to_string_lossy();
        if !c.contains(['*', '?', '[']) {
            found = found.into_iter().map(|f| f.join(&*c)).collect();
            continue;
        }
        let mut re = String::from("^");
        for ch in c.chars() {
            match ch {
                '*' => re.push_str(".*"),
                '?' => re.push('.'),
                '[' | ']' => re.push(ch),
                '!' if re.ends_with('[') => re.push('^'),
                ch => re.push_str(&regex::escape(&ch.to_string())),
            }
        }
        re.push('$');
        let re = regex::Regex::new(&re).map_err(|e| format!("`{c}`: {e}"))?;
        let mut next = Vec::new();
        for f in found {
            let Ok(real) = resolve_inner(lowers, &f, true) else {
                continue;
            };
            let visible = visible_layers(lowers, &real);
            if visible.is_empty() {
                continue;
            }
            let names = names_in(&visible, &real).map_err(|e| e.to_string())?;
            for n in names {
                if re.is_match(&n.to_string_lossy()) {
                    next.push(f.join(n));
                }
            }
        }
        found = next;
    }
    found.retain(|f| exists(lowers, f) != Some(false));
    found.sort();
    Ok(found)
}

/// Copies what `rel` names in the merged view of `lowers` (a file, a symlink as a symlink, or
/// a directory tree: entries of every layer down to an opaque directory, whited-out ones left
/// out) to `dest` on the host, with modes, owners and times. Symlinked directories on the way
/// to `rel` are followed inside the root; nothing below is followed. Devices and FIFOs are
/// skipped. `COPY --from` reads a stage this way.
pub fn export(lowers: &[PathBuf], rel: &Path, dest: &Path) -> std::io::Result<()> {
    let real = resolve_inner(lowers, rel, true).map_err(std::io::Error::other)?;
    export_at(lowers, &real, dest)
}

fn export_at(lowers: &[PathBuf], rel: &Path, dest: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    let not_found = || {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("`/{}` does not exist", rel.display()),
        )
    };
    let Some(Ok((layer, _))) = topmost(lowers, rel) else {
        return Err(not_found());
    };
    let src = layer.join(rel);
    let meta = std::fs::symlink_metadata(&src)?;
    let ft = meta.file_type();
    if ft.is_symlink() {
        std::os::unix::fs::symlink(std::fs::read_link(&src)?, dest)?;
    } else if ft.is_file() {
        let mut from = crate::oci::layout::open_regular(&src)?;
        let mut to = std::fs::File::create(dest)?;
        std::io::copy(&mut from, &mut to)?;
        std::fs::set_permissions(dest, std::fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    } else if ft.is_dir() {
        std::fs::create_dir(dest)?;
        // The layers this directory's entries come from: down to an opaque one, or to a layer
        // where the path is not a directory.
        let visible = visible_layers(lowers, rel);
        for name in names_in(&visible, rel)? {
            let child = rel.join(&name);
            // Lower layers below this directory's own are not seen for its entries.
            let top = lowers.iter().position(|l| *l == visible[0]).unwrap_or(0);
            let end = lowers
                .iter()
                .position(|l| Some(l) == visible.last())
                .map_or(lowers.len(), |i| i + 1);
            match export_at(&lowers[top..end], &child, &dest.join(&name)) {
                Err(e) if e.kind() == std::io::ErrorKind::Unsupported => {}
                other => other?,
            }
        }
        std::fs::set_permissions(dest, std::fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    } else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            format!("`/{}` is a device or FIFO", rel.display()),
        ));
    }
    let _ = std::os::unix::fs::lchown(dest, Some(meta.uid()), Some(meta.gid()));
    let times = [
        nix::sys::time::TimeSpec::new(meta.atime(), meta.atime_nsec()),
        nix::sys::time::TimeSpec::new(meta.mtime(), meta.mtime_nsec()),
    ];
    let _ = nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        dest,
        &times[0],
        &times[1],
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinked_directories_are_followed_across_layers() {
        let d = tempfile::tempdir().unwrap();
        let base = d.path().join("base");
        let top = d.path().join("top");
        std::fs::create_dir_all(base.join("usr/bin")).unwrap();
        std::os::unix::fs::symlink("usr/bin", base.join("bin")).unwrap();
        std::fs::create_dir_all(top.join("etc")).unwrap();
        std::os::unix::fs::symlink("/opt/real", top.join("etc/conf")).unwrap();
        let lowers = vec![top.clone(), base.clone()];
        assert_eq!(
            resolve(&lowers, Path::new("bin/tool")).unwrap(),
            Path::new("usr/bin/tool")
        );
        assert_eq!(
            resolve(&lowers, Path::new("etc/conf/x")).unwrap(),
            Path::new("opt/real/x")
        );
        assert_eq!(
            resolve(&lowers, Path::new("new/dir/file")).unwrap(),
            Path::new("new/dir/file")
        );
        assert_eq!(exists(&lowers, Path::new("usr/bin")), Some(true));
        assert_eq!(exists(&lowers, Path::new("bin")), None);
        assert_eq!(exists(&lowers, Path::new("nope")), Some(false));
        nix::sys::stat::mknod(
            &top.join("usr"),
            SFlag::S_IFCHR,
            nix::sys::stat::Mode::empty(),
            0,
        )
        .ok();
        if top.join("usr").exists() {
            assert_eq!(
                exists(&lowers, Path::new("usr")),
                Some(false),
                "a whiteout hides it"
            );
        }
    }
}
