//! The root file system stages that need real root (whiteouts are 0:0 character devices,
//! overlay markers `trusted.` xattrs), through the library's public API: unpacking a layer,
//! snapshotting an upper directory as a layer, and the copying snapshotter.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use emukit::rootfs::overlay::is_whiteout;
use emukit::rootfs::snapshot::{SnapshotOptions, write_layer};
use emukit::rootfs::unpack::{
    UnpackError, UnpackOptions, UnpackStats, XattrNamespace, unpack_layer,
};
use emukit::rootfs::walkdiff::{DiffStats, Index, diff, materialize};
use nix::sys::stat::{Mode, SFlag};

use crate::case;

/// As real root: overlay markers in `trusted.`, device nodes made.
fn root_opts() -> UnpackOptions {
    UnpackOptions {
        xattrs: XattrNamespace::Trusted,
        rootless: false,
    }
}

/// A tar of empty-or-small regular files whose names are written raw (the tar crate's path
/// setters refuse some of the names these tests need).
fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        let name = path.as_bytes();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap()
}

/// Unpacks `tar` into `root/` of a fresh directory.
fn unpack(tar: &[u8]) -> (tempfile::TempDir, Result<UnpackStats, UnpackError>) {
    let d = tempfile::tempdir().unwrap();
    fs::create_dir(d.path().join("root")).unwrap();
    let r = unpack_layer(tar, &d.path().join("root"), &root_opts());
    (d, r)
}

/// Names and kinds of a tar's entries, in order.
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

fn whiteout_at(p: &Path) -> bool {
    is_whiteout(&nix::sys::stat::lstat(p).unwrap())
}

fn whiteouts_become_overlay_markers() {
    let (d, r) = unpack(&tar_of(&[
        ("data/.wh.gone", b""),
        ("opt/replaced/.wh..wh..opq", b""),
        ("opt/replaced/c", b"c"),
    ]));
    r.unwrap();
    assert!(whiteout_at(&d.path().join("root/data/gone")));
    assert!(!d.path().join("root/data/.wh.gone").exists());
    assert_eq!(
        xattr::get(d.path().join("root/opt/replaced"), "trusted.overlay.opaque").unwrap(),
        Some(b"y".to_vec())
    );
    assert!(!d.path().join("root/opt/replaced/.wh..wh..opq").exists());
    assert_eq!(
        fs::read(d.path().join("root/opt/replaced/c")).unwrap(),
        b"c"
    );
    // Malformed whiteout names are refused, and nothing is made for them.
    for bad in [".wh..", ".wh.", ".wh..wh.x", ".wh..."] {
        let (d, r) = unpack(&tar_of(&[(&format!("dir/{bad}"), b"")]));
        assert!(matches!(r, Err(UnpackError::Unsafe(_))), "{bad}: {r:?}");
        let made: Vec<_> = fs::read_dir(d.path().join("root/dir"))
            .map(|rd| rd.filter_map(Result::ok).map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(made.is_empty(), "{bad}: made {made:?}");
    }
}
case! { whiteouts_become_overlay_markers, needs = [Root] }

fn whiteouts_and_opaque_round_trip_through_unpack() {
    let d = tempfile::tempdir().unwrap();
    let u = d.path().join("upper");
    fs::create_dir_all(u.join("etc")).unwrap();
    fs::create_dir_all(u.join("opt/new")).unwrap();
    nix::sys::stat::mknod(&u.join("etc/gone"), SFlag::S_IFCHR, Mode::empty(), 0).unwrap();
    xattr::set(u.join("opt/new"), "trusted.overlay.opaque", b"y").unwrap();
    xattr::set(u.join("etc"), "trusted.overlay.impure", b"y").unwrap();
    fs::write(u.join("opt/new/c"), b"c").unwrap();
    let mut out = Vec::new();
    let stats = write_layer(&u, &mut out, &SnapshotOptions::default()).unwrap();
    assert_eq!((stats.whiteouts, stats.opaque), (1, 1));
    let names: Vec<String> = listing(&out).into_iter().map(|(n, _)| n).collect();
    assert!(names.contains(&"etc/.wh.gone".to_string()), "{names:?}");
    assert!(
        names.contains(&"opt/new/.wh..wh..opq".to_string()),
        "{names:?}"
    );
    // No overlay bookkeeping in the layer.
    let mut a = tar::Archive::new(&out[..]);
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        if let Ok(Some(exts)) = e.pax_extensions() {
            for x in exts.flatten() {
                assert!(!x.key().unwrap().contains("overlay"), "{:?}", x.key());
            }
        }
    }
    // And back: our unpacker reproduces the upper's meaning.
    let back = d.path().join("back");
    fs::create_dir(&back).unwrap();
    unpack_layer(&out[..], &back, &root_opts()).unwrap();
    assert!(whiteout_at(&back.join("etc/gone")));
    assert_eq!(
        xattr::get(back.join("opt/new"), "trusted.overlay.opaque").unwrap(),
        Some(b"y".to_vec())
    );
}
case! { whiteouts_and_opaque_round_trip_through_unpack, needs = [Root] }

fn materialize_applies_whiteouts_opaque_dirs_and_links() {
    let d = tempfile::tempdir().unwrap();
    let (low, up, out) = (
        d.path().join("low"),
        d.path().join("up"),
        d.path().join("out"),
    );
    for p in [&low, &up, &out] {
        fs::create_dir(p).unwrap();
    }
    fs::create_dir_all(low.join("etc")).unwrap();
    fs::write(low.join("etc/gone"), b"x").unwrap();
    fs::write(low.join("etc/kept"), b"k").unwrap();
    fs::create_dir_all(low.join("opt/old")).unwrap();
    fs::write(low.join("opt/old/f"), b"f").unwrap();
    fs::write(low.join("hl1"), b"h").unwrap();
    fs::hard_link(low.join("hl1"), low.join("hl2")).unwrap();
    std::os::unix::fs::symlink("/etc", low.join("link")).unwrap();
    // The upper layer: a whiteout, an opaque /opt, a file replacing the symlink.
    fs::create_dir(up.join("etc")).unwrap();
    nix::sys::stat::mknod(&up.join("etc/gone"), SFlag::S_IFCHR, Mode::empty(), 0).unwrap();
    fs::create_dir(up.join("opt")).unwrap();
    xattr::set(up.join("opt"), "trusted.overlay.opaque", b"y").unwrap();
    fs::write(up.join("opt/new"), b"n").unwrap();
    fs::write(up.join("link"), b"now a file").unwrap();
    materialize(&[up.clone(), low.clone()], &out).unwrap();
    assert!(!out.join("etc/gone").exists());
    assert_eq!(fs::read(out.join("etc/kept")).unwrap(), b"k");
    assert!(!out.join("opt/old").exists());
    assert_eq!(fs::read(out.join("opt/new")).unwrap(), b"n");
    assert_eq!(fs::read(out.join("link")).unwrap(), b"now a file");
    let (a, b) = (
        fs::metadata(out.join("hl1")).unwrap(),
        fs::metadata(out.join("hl2")).unwrap(),
    );
    assert_eq!(a.ino(), b.ino());
    assert!(
        xattr::get(out.join("opt"), "trusted.overlay.opaque")
            .unwrap()
            .is_none()
    );
}
case! { materialize_applies_whiteouts_opaque_dirs_and_links, needs = [Root] }

fn diff_finds_additions_changes_deletions_and_replaced_dirs() {
    let d = tempfile::tempdir().unwrap();
    let (tree, upper) = (d.path().join("tree"), d.path().join("upper"));
    fs::create_dir_all(tree.join("a/b")).unwrap();
    fs::write(tree.join("a/b/same"), b"same").unwrap();
    fs::write(tree.join("a/b/edit"), b"before").unwrap();
    fs::write(tree.join("a/gone"), b"gone").unwrap();
    fs::write(tree.join("mode"), b"m").unwrap();
    fs::create_dir_all(tree.join("dir/old")).unwrap();
    fs::write(tree.join("dir/old/x"), b"x").unwrap();
    fs::create_dir(&upper).unwrap();
    let before = Index::of(&tree).unwrap();
    assert_eq!(before.len(), 9);
    // The command's changes.
    fs::write(tree.join("a/b/edit"), b"after!").unwrap();
    fs::remove_file(tree.join("a/gone")).unwrap();
    fs::set_permissions(tree.join("mode"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::remove_dir_all(tree.join("dir")).unwrap();
    fs::create_dir(tree.join("dir")).unwrap();
    fs::write(tree.join("dir/fresh"), b"fresh").unwrap();
    fs::write(tree.join("new1"), b"n").unwrap();
    fs::hard_link(tree.join("new1"), tree.join("new2")).unwrap();
    let (stats, _) = diff(&tree, &before, &upper, XattrNamespace::Trusted).unwrap();
    assert_eq!(fs::read(upper.join("a/b/edit")).unwrap(), b"after!");
    assert!(
        !upper.join("a/b/same").exists(),
        "an unchanged file was copied"
    );
    assert!(whiteout_at(&upper.join("a/gone")));
    assert_eq!(
        fs::metadata(upper.join("mode"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert_eq!(
        xattr::get(upper.join("dir"), "trusted.overlay.opaque")
            .unwrap()
            .as_deref(),
        Some(&b"y"[..])
    );
    assert_eq!(fs::read(upper.join("dir/fresh")).unwrap(), b"fresh");
    assert!(!upper.join("dir/old").exists());
    assert_eq!(
        fs::metadata(upper.join("new1")).unwrap().ino(),
        fs::metadata(upper.join("new2")).unwrap().ino()
    );
    assert_eq!(stats.whiteouts, 1);
    assert_eq!(stats.opaque, 1);
    // The parent of a changed file is copied up with the tree's metadata.
    assert!(upper.join("a/b").is_dir());
    // Nothing changed: nothing written.
    let again = Index::of(&tree).unwrap();
    let empty = d.path().join("empty");
    fs::create_dir(&empty).unwrap();
    let (stats, _) = diff(&tree, &again, &empty, XattrNamespace::Trusted).unwrap();
    assert_eq!(stats, DiffStats::default());
    assert_eq!(fs::read_dir(&empty).unwrap().count(), 0);
}
case! { diff_finds_additions_changes_deletions_and_replaced_dirs, needs = [Root] }
