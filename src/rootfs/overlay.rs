//! overlayfs's on-disk format, as the layers and snapshots of the store use it: in a layer tar a
//! deletion is `.wh.NAME` and a replaced directory holds `.wh..wh..opq`; in an overlay
//! directory a deletion is a 0:0 character device and a replaced directory carries the opaque
//! xattr (`trusted.overlay.opaque=y` as root, `user.overlay.opaque=y` in a user namespace).
//! `unpack` writes this form, `snapshot` and `walkdiff` read and make it, `stack` follows it.

use std::path::Path;

use nix::sys::stat::{FileStat, SFlag};

/// Prefix of whiteout files in a layer tar.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// The opaque-directory marker in a layer tar.
pub const OPAQUE: &str = ".wh..wh..opq";

/// Where the overlay xattrs go: `trusted.` as real root, `user.` in a user namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XattrNamespace {
    /// `trusted.overlay.*` (needs CAP_SYS_ADMIN in the initial namespace).
    Trusted,
    /// `user.overlay.*` (overlayfs mounted with `userxattr`).
    User,
}

impl XattrNamespace {
    /// The opaque xattr's name.
    pub fn opaque(self) -> &'static str {
        match self {
            XattrNamespace::Trusted => "trusted.overlay.opaque",
            XattrNamespace::User => "user.overlay.opaque",
        }
    }
}

/// The opaque xattr in either namespace (a tree may come from a root or a rootless run).
pub const OPAQUE_XATTRS: [&str; 2] = ["trusted.overlay.opaque", "user.overlay.opaque"];

/// Is this xattr overlayfs's own bookkeeping (never part of a layer, never taken from one)?
pub fn is_overlay_xattr(name: &[u8]) -> bool {
    name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.")
}

/// Is the directory at `path` (not followed if a symlink) marked opaque?
pub fn is_opaque(path: &Path) -> bool {
    OPAQUE_XATTRS
        .iter()
        .any(|n| matches!(xattr::get(path, n), Ok(Some(v)) if v == b"y"))
}

/// Makes a whiteout (a 0:0 character device) named `name` in the directory `dir`.
pub fn make_whiteout(dir: &impl std::os::fd::AsFd, name: &std::ffi::OsStr) -> nix::Result<()> {
    nix::sys::stat::mknodat(dir, name, SFlag::S_IFCHR, nix::sys::stat::Mode::empty(), 0)
}

/// Is this an overlayfs whiteout (a 0:0 character device)?
pub fn is_whiteout(st: &FileStat) -> bool {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFCHR && st.st_rdev == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_xattrs_are_told_apart() {
        assert!(is_overlay_xattr(b"trusted.overlay.opaque"));
        assert!(is_overlay_xattr(b"user.overlay.redirect"));
        assert!(!is_overlay_xattr(b"user.mime_type"));
        assert!(!is_overlay_xattr(b"security.capability"));
        assert_eq!(XattrNamespace::User.opaque(), "user.overlay.opaque");
        let d = tempfile::tempdir().unwrap();
        assert!(!is_opaque(d.path()));
    }
}
