//! `emubuild copy`: host files into every platform of a working container as a new step,
//! with no emulation. The destination is resolved through the image's own symlinks, and the
//! parents it needs keep the image's owner and mode (`rootfs::stack`).

use std::path::{Path, PathBuf};

use super::{ContainerError, Context, stack_of};
use crate::store::Step;

/// Options of `copy`.
#[derive(Debug, Clone)]
pub struct CopyOptions {
    /// Host paths.
    pub sources: Vec<PathBuf>,
    /// Destination inside the container (absolute; a trailing `/` means a directory).
    pub dest: String,
    /// Mode for every copied file and directory.
    pub chmod: Option<u32>,
    /// `user[:group]` for every copied entry (names from the image).
    pub chown: Option<String>,
    /// Only these platforms of the container (all when None).
    pub platforms: Option<Vec<crate::platform::Platform>>,
    /// The history's `created_by` (default: `emubuild copy SRC... DEST`).
    pub created_by: Option<String>,
}

/// Copies host files into every platform of a working container as a new step (no emulation),
/// as Docker's COPY: a directory's contents are copied, several sources or a destination ending
/// in `/` make the destination a directory. Parent directories keep the image's owner and mode,
/// and symlinked directories in the image are followed.
pub fn copy_step(
    ctx: &Context,
    name: &str,
    opts: &CopyOptions,
) -> Result<Vec<Step>, ContainerError> {
    let cdir = ctx.container(name);
    let c = super::read(ctx, name)?;
    if !opts.dest.starts_with('/') {
        return Err(ContainerError::Path(format!(
            "`{}`: the destination must be an absolute path inside the container",
            opts.dest
        )));
    }
    for s in &opts.sources {
        if std::fs::symlink_metadata(s).is_err() {
            return Err(ContainerError::Path(format!(
                "`{}` does not exist on the host",
                s.display()
            )));
        }
    }
    let dest_rel = crate::rootfs::within::normalize(Path::new(&opts.dest))
        .map_err(ContainerError::Path)?
        .unwrap_or_default();
    let into_dir =
        opts.dest.ends_with('/') || opts.sources.len() > 1 || dest_rel.as_os_str().is_empty();
    let mut steps = Vec::new();
    for p in c
        .platforms
        .into_iter()
        .filter(|p| opts.platforms.as_ref().is_none_or(|o| o.contains(p)))
    {
        let _lock = cdir.lock_platform(&p)?;
        let mut state = cdir.read_platform(&p)?;
        let pdir = cdir.platform_dir(&p);
        let lowers = stack_of(&ctx.store, &state, &pdir)?;
        let owner = match &opts.chown {
            None => (0, 0),
            Some(spec) => {
                let read = |f: &str| {
                    crate::rootfs::stack::read_file(&lowers, Path::new(f), 4 << 20)
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                        .unwrap_or_default()
                };
                let u =
                    crate::sandbox::user::resolve(spec, &read("etc/passwd"), &read("etc/group"))
                        .map_err(ContainerError::User)?;
                (u.uid, u.gid)
            }
        };
        // Where the destination really is in this image, and whether it is a directory there.
        let dest =
            crate::rootfs::stack::resolve(&lowers, &dest_rel).map_err(ContainerError::Path)?;
        let dest_is_dir = into_dir
            || dest.as_os_str().is_empty()
            || crate::rootfs::stack::dir_meta(&lowers, &dest).is_some()
            || (opts.sources.len() == 1 && opts.sources[0].is_dir());
        let n = state.steps.len() + 1;
        let steps_dir = pdir.join("steps");
        std::fs::create_dir_all(&steps_dir).map_err(ContainerError::io("create", &steps_dir))?;
        let stage = tempfile::Builder::new()
            .prefix(".copy-")
            .tempdir_in(&steps_dir)
            .map_err(ContainerError::io("stage the copy in", &steps_dir))?;
        let root = stage.path();
        let target_dir = if dest_is_dir {
            dest.clone()
        } else {
            dest.parent().map(Path::to_path_buf).unwrap_or_default()
        };
        // Parents, with the image's metadata where the image has them.
        let mut parents = Vec::new();
        let mut a = Some(target_dir.as_path());
        while let Some(d) = a.filter(|d| !d.as_os_str().is_empty()) {
            parents.push(d.to_path_buf());
            a = d.parent();
        }
        let into = root.join(&target_dir);
        std::fs::create_dir_all(&into).map_err(ContainerError::io("create", &into))?;
        for src in &opts.sources {
            let meta = std::fs::symlink_metadata(src).map_err(ContainerError::io("read", src))?;
            if meta.is_dir() {
                copy_tree(src, &root.join(&target_dir), opts.chmod, owner)?;
            } else {
                let file_name = if dest_is_dir {
                    src.file_name().map(PathBuf::from).unwrap_or_default()
                } else {
                    dest.file_name().map(PathBuf::from).unwrap_or_default()
                };
                copy_entry(
                    src,
                    &root.join(&target_dir).join(file_name),
                    opts.chmod,
                    owner,
                )?;
            }
        }
        // Deepest first: setting a child's times would change its parent's.
        parents.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for d in &parents {
            if crate::rootfs::stack::dir_meta(&lowers, d).is_some() {
                crate::rootfs::stack::copy_dir_meta(&lowers, d, &root.join(d));
            } else if dest_is_dir && *d == target_dir {
                apply_owner_mode(&root.join(d), Some(opts.chmod.unwrap_or(0o755)), owner)?;
            }
        }
        let rel = format!("steps/{n}");
        let final_dir = pdir.join(&rel);
        let _ = std::fs::remove_dir_all(&final_dir);
        let staged = stage.keep();
        std::fs::rename(&staged, &final_dir)
            .map_err(ContainerError::io("keep the copy in", &final_dir))?;
        let mut words: Vec<String> = vec!["emubuild".into(), "copy".into()];
        words.extend(opts.sources.iter().map(|s| s.display().to_string()));
        words.push(opts.dest.clone());
        let step = Step {
            created_by: opts
                .created_by
                .clone()
                .unwrap_or_else(|| crate::util::shell_join(&words)),
            created: ctx.now_rfc3339(),
            dir: Some(rel),
            layer: None,
            compression: None,
        };
        state.steps.push(step.clone());
        cdir.write_platform(&state)?;
        steps.push(step);
    }
    Ok(steps)
}

fn apply_owner_mode(p: &Path, mode: Option<u32>, owner: (u32, u32)) -> Result<(), ContainerError> {
    std::os::unix::fs::lchown(p, Some(owner.0), Some(owner.1))
        .map_err(ContainerError::io("set the owner of", p))?;
    if let Some(m) = mode {
        std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(m))
            .map_err(ContainerError::io("set the mode of", p))?;
    }
    Ok(())
}

/// Copies one host entry (file, symlink, directory tree) to `dest` in a new layer.
fn copy_entry(
    src: &Path,
    dest: &Path,
    chmod: Option<u32>,
    owner: (u32, u32),
) -> Result<(), ContainerError> {
    use std::os::unix::fs::MetadataExt;
    let err = |source| ContainerError::Io {
        action: "copy".into(),
        path: src.to_path_buf(),
        source,
    };
    let meta = std::fs::symlink_metadata(src).map_err(err)?;
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(src).map_err(err)?;
        std::os::unix::fs::symlink(target, dest).map_err(err)?;
        let _ = std::os::unix::fs::lchown(dest, Some(owner.0), Some(owner.1));
        return Ok(());
    }
    if meta.is_dir() {
        std::fs::create_dir_all(dest).map_err(err)?;
        copy_tree(src, dest, chmod, owner)?;
        apply_owner_mode(dest, chmod.or(Some(meta.mode() & 0o7777)), owner)?;
        return Ok(());
    }
    if !meta.is_file() {
        return Err(ContainerError::Path(format!(
            "`{}` is not a regular file, directory or symlink",
            src.display()
        )));
    }
    std::fs::copy(src, dest).map_err(err)?;
    apply_owner_mode(dest, chmod.or(Some(meta.mode() & 0o7777)), owner)?;
    let t = nix::sys::time::TimeSpec::new(meta.mtime(), meta.mtime_nsec());
    let _ = nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        dest,
        &t,
        &t,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    );
    Ok(())
}

/// Copies a directory's contents into `dest`.
fn copy_tree(
    src: &Path,
    dest: &Path,
    chmod: Option<u32>,
    owner: (u32, u32),
) -> Result<(), ContainerError> {
    let mut names: Vec<_> = std::fs::read_dir(src)
        .map_err(ContainerError::io("read", src))?
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    names.sort();
    for n in names {
        copy_entry(&src.join(&n), &dest.join(&n), chmod, owner)?;
    }
    Ok(())
}
