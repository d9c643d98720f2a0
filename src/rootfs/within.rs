//! Path resolution confined to a root directory (openat2 `RESOLVE_IN_ROOT`): symlinks and `..`
//! are resolved as if the directory were `/`, so nothing an image contains can point a write
//! outside it. Used by the unpacker and by the sandbox when it creates mount points.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::Mode;

/// Normalises an untrusted relative path from an archive: leading `/` and `.` are dropped;
/// `..` is refused. Ok(None) for the root itself.
pub fn normalize(p: &Path) -> Result<Option<PathBuf>, String> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => return Err(format!("`{}` contains `..`", p.display())),
            Component::Normal(n) => out.push(n),
        }
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

/// Opens the root directory (O_PATH).
pub fn open_root(root: &Path) -> io::Result<OwnedFd> {
    nix::fcntl::open(
        root,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(io::Error::from)
}

/// Opens `rel` under `root` with symlinks resolved inside the root.
pub fn open_in_root(root: &impl AsFd, rel: &Path, flags: OFlag) -> io::Result<OwnedFd> {
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    openat2(root, rel, how).map_err(io::Error::from)
}

/// How many symlinks one resolution may follow (as the kernel's limit).
const MAX_SYMLINKS: usize = 40;

/// Opens (creating missing components as 0755 directories) the directory `rel` under `root`.
/// Symlinks met on the way are followed *inside* the root, as if it were `/` (an absolute
/// target restarts at the root, `..` stops at it), including links whose target does not
/// exist yet: the missing directories are created where the link points, inside the root.
pub fn ensure_dir(root: &impl AsFd, rel: &Path) -> io::Result<OwnedFd> {
    ensure_dir_recording(root, rel, &mut Vec::new())
}

/// [`ensure_dir`], adding each directory it creates (relative to the root, parents first) to
/// `created`.
pub fn ensure_dir_recording(
    root: &impl AsFd,
    rel: &Path,
    created: &mut Vec<PathBuf>,
) -> io::Result<OwnedFd> {
    let open_dir = |dir: &OwnedFd, name: &OsStr| {
        nix::fcntl::openat(
            dir,
            name,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(io::Error::from)
    };
    let root_fd = open_in_root(root, Path::new("."), OFlag::O_PATH | OFlag::O_DIRECTORY)?;
    // The directories from the root to the current one (for `..`), and what is left to walk.
    let mut stack: Vec<OwnedFd> = Vec::new();
    let mut cur = root_fd.try_clone()?;
    let mut cur_path = PathBuf::new();
    let mut todo: std::collections::VecDeque<OsString> = rel
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect();
    let mut hops = 0;
    while let Some(name) = todo.pop_front() {
        if name == ".." {
            if let Some(parent) = stack.pop() {
                cur = parent;
                cur_path.pop();
            }
            continue;
        }
        match nix::sys::stat::fstatat(
            &cur,
            name.as_os_str(),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Err(nix::Error::ENOENT) => {
                nix::sys::stat::mkdirat(&cur, name.as_os_str(), Mode::from_bits_truncate(0o755))?;
                let next = open_dir(&cur, &name)?;
                stack.push(std::mem::replace(&mut cur, next));
                cur_path.push(&name);
                created.push(cur_path.clone());
            }
            Err(e) => return Err(e.into()),
            Ok(st) => {
                let kind = nix::sys::stat::SFlag::from_bits_truncate(st.st_mode)
                    & nix::sys::stat::SFlag::S_IFMT;
                if kind == nix::sys::stat::SFlag::S_IFLNK {
                    hops += 1;
                    if hops > MAX_SYMLINKS {
                        return Err(io::Error::from_raw_os_error(libc::ELOOP));
                    }
                    let target = nix::fcntl::readlinkat(&cur, name.as_os_str())?;
                    let target = Path::new(&target);
                    let mut parts: Vec<OsString> = target
                        .components()
                        .filter_map(|c| match c {
                            Component::Normal(n) => Some(n.to_os_string()),
                            Component::ParentDir => Some(OsString::from("..")),
                            _ => None,
                        })
                        .collect();
                    if target.is_absolute() {
                        stack.clear();
                        cur = root_fd.try_clone()?;
                        cur_path = PathBuf::new();
                    }
                    while let Some(p) = parts.pop() {
                        todo.push_front(p);
                    }
                } else {
                    let next = open_dir(&cur, &name)?;
                    stack.push(std::mem::replace(&mut cur, next));
                    cur_path.push(&name);
                }
            }
        }
    }
    Ok(cur)
}

/// Opens `rel` under `root` for reading only if it is a regular file (resolved inside the
/// root; a FIFO, device or socket is refused without being opened for reading, so it can
/// neither block nor trigger a device's side effects).
pub fn open_regular_in_root(root: &impl AsFd, rel: &Path) -> io::Result<std::fs::File> {
    let fd = open_in_root(root, rel, OFlag::O_PATH | OFlag::O_NOFOLLOW)?;
    let st = nix::sys::stat::fstat(&fd)?;
    if nix::sys::stat::SFlag::from_bits_truncate(st.st_mode) & nix::sys::stat::SFlag::S_IFMT
        != nix::sys::stat::SFlag::S_IFREG
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("/{} is not a regular file", rel.display()),
        ));
    }
    std::fs::File::open(fd_path(&fd, OsStr::new("")))
}

/// Splits a normalised path into its parent and final name.
pub fn split(rel: &Path) -> (PathBuf, OsString) {
    let name = rel.file_name().map(OsStr::to_os_string).unwrap_or_default();
    let parent = rel.parent().map(Path::to_path_buf).unwrap_or_default();
    (parent, name)
}

/// A path through `/proc/self/fd` that names `name` inside an open directory, for calls that
/// have no `*at` form (xattrs). The final component is not followed by the l* calls.
pub fn fd_path(dir: &impl AsRawFd, name: &OsStr) -> PathBuf {
    let mut p = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    if !name.is_empty() {
        p.push(name);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation() {
        assert_eq!(
            normalize(Path::new("/etc/passwd")).unwrap(),
            Some(PathBuf::from("etc/passwd"))
        );
        assert_eq!(
            normalize(Path::new("./a/./b")).unwrap(),
            Some(PathBuf::from("a/b"))
        );
        assert_eq!(normalize(Path::new("./")).unwrap(), None);
        assert!(normalize(Path::new("a/../../b")).is_err());
    }

    #[test]
    fn only_regular_files_are_opened() {
        let d = tempfile::tempdir().unwrap();
        nix::unistd::mkfifo(
            &d.path().join("fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o644),
        )
        .unwrap();
        std::fs::write(d.path().join("file"), b"x").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.path().join("link")).unwrap();
        let root = open_root(d.path()).unwrap();
        // A FIFO is refused at once (opening it for reading would block).
        assert!(open_regular_in_root(&root, Path::new("fifo")).is_err());
        assert!(open_regular_in_root(&root, Path::new("file")).is_ok());
        // A symlink out of the root resolves inside it (there is no etc/passwd here).
        assert!(open_regular_in_root(&root, Path::new("link")).is_err());
    }

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        std::fs::create_dir(&root).unwrap();
        std::os::unix::fs::symlink("/", root.join("up")).unwrap();
        std::os::unix::fs::symlink("../../..", root.join("rel")).unwrap();
        let fd = open_root(&root).unwrap();
        // `up/tmp` is root/tmp, created inside.
        ensure_dir(&fd, Path::new("up/tmp/x")).unwrap();
        assert!(root.join("tmp/x").is_dir());
        let mut created = Vec::new();
        ensure_dir_recording(&fd, Path::new("rel/y/z"), &mut created).unwrap();
        assert!(root.join("y/z").is_dir());
        assert_eq!(created, vec![PathBuf::from("y"), PathBuf::from("y/z")]);
        assert!(!d.path().join("y").exists());
    }
}
