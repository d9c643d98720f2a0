//! Which binfmt_misc entries binfmtctl owns. The kernel keeps no owner, so binfmtctl records the
//! exact line of every entry it registers (under a runtime directory, keyed by mount), and also
//! treats as its own any entry whose interpreter lives in a `binfmtctl` directory (its cache, or
//! the emulator directory of its container image), and any entry whose line is that of a
//! `binfmt.d` file it wrote (`install --persist`): the runtime records do not survive a reboot,
//! the persisted files do. `uninstall` only removes owned entries.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

use super::entry::{Entry, Registration};

/// The default directory for runtime state: `/run/binfmtctl` as root, else
/// `$XDG_RUNTIME_DIR/binfmtctl`, else a per-user directory in `/tmp` (`--state-dir`, or
/// `$BINFMTCTL_STATE_DIR`, chooses another).
pub fn state_dir(dirs: &crate::dirs::BaseDirs) -> PathBuf {
    dirs.runtime("/run/binfmtctl", "binfmtctl")
}

/// The ownership records of one binfmt_misc mount.
#[derive(Debug, Clone)]
pub struct Owners {
    dir: PathBuf,
    persisted: Option<PathBuf>,
}

impl Owners {
    /// The records for the mount at `root`, stored under `state`.
    pub fn new(state: &Path, root: &Path) -> Owners {
        let dev = fs::metadata(root).map(|m| m.dev()).unwrap_or(0);
        let canonical = fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
        let mut h = Sha256::new();
        h.update(canonical.as_os_str().as_encoded_bytes());
        h.update(dev.to_le_bytes());
        let key = hex::encode(h.finalize());
        Owners {
            dir: state.join("owned").join(&key[..16]),
            persisted: None,
        }
    }

    /// Also owns entries whose line is that of a `binfmt.d` file binfmtctl wrote in `dir`.
    pub fn with_persisted(mut self, dir: &Path) -> Owners {
        self.persisted = Some(dir.to_path_buf());
        self
    }

    fn record_path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Records that we registered this line.
    pub fn record(&self, reg: &Registration) -> io::Result<()> {
        let line = reg
            .encode()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        crate::util::write_atomic(&self.record_path(&reg.name), line.as_bytes(), 0o644)
    }

    /// Forgets an entry (after removing it).
    pub fn forget(&self, name: &str) {
        let _ = fs::remove_file(self.record_path(name));
    }

    /// Do we own this live entry?
    pub fn owns(&self, entry: &Entry) -> bool {
        if interpreter_is_ours(&entry.interpreter) {
            return true;
        }
        if let Some(dir) = &self.persisted
            && super::persist::read_ours(dir, &entry.name).is_some_and(|reg| reg.same_as(entry))
        {
            return true;
        }
        fs::read_to_string(self.record_path(&entry.name))
            .ok()
            .and_then(|line| Registration::parse_line(&line).ok())
            .is_some_and(|reg| reg.same_as(entry))
    }
}

/// Is the interpreter inside a directory named `binfmtctl` (our cache or our image's emulators)?
pub fn interpreter_is_ours(interpreter: &str) -> bool {
    Path::new(interpreter)
        .parent()
        .into_iter()
        .flat_map(|p| p.components())
        .any(|c| c == Component::Normal("binfmtctl".as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::Table;
    use crate::binfmt::entry::Flags;

    fn live(reg: &Registration) -> Entry {
        Entry::registered(reg)
    }

    #[test]
    fn records_and_recognises() {
        let state = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        let owners = Owners::new(state.path(), root.path());
        let t = Table::get().by_name("s390x").unwrap();
        let reg = Registration::for_target(t, "/usr/bin/qemu-s390x-static", Flags::fix_binary());
        let entry = live(&reg);
        assert!(!owners.owns(&entry));
        owners.record(&reg).unwrap();
        assert!(owners.owns(&entry));
        let mut other = entry.clone();
        other.interpreter = "/usr/libexec/qemu-binfmt/s390x-binfmt-P".into();
        assert!(
            !owners.owns(&other),
            "a different line under our name is not ours"
        );
        owners.forget(&reg.name);
        assert!(!owners.owns(&entry));
        // A different mount has its own records.
        let root2 = tempfile::tempdir().unwrap();
        owners.record(&reg).unwrap();
        assert!(!Owners::new(state.path(), root2.path()).owns(&entry));
    }

    #[test]
    fn persisted_lines_are_ours_after_a_reboot() {
        // No runtime record (a reboot cleared /run), but our binfmt.d file holds the line.
        let state = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        let etc = tempfile::tempdir().unwrap();
        let t = Table::get().by_name("riscv64").unwrap();
        let reg = Registration::for_target(t, "/usr/bin/qemu-riscv64-static", Flags::fix_binary());
        let entry = live(&reg);
        let owners = Owners::new(state.path(), root.path()).with_persisted(etc.path());
        assert!(!owners.owns(&entry));
        super::super::persist::write(etc.path(), &reg).unwrap();
        assert!(owners.owns(&entry));
        // Another line under the same name is not ours, nor is an unmarked file's.
        let mut other = entry.clone();
        other.interpreter = "/usr/bin/qemu-riscv64".into();
        assert!(!owners.owns(&other));
        std::fs::write(
            etc.path().join("qemu-riscv64.conf"),
            format!("{}\n", reg.encode().unwrap()),
        )
        .unwrap();
        assert!(!owners.owns(&entry));
    }

    #[test]
    fn cache_paths_are_ours() {
        assert!(interpreter_is_ours(
            "/var/cache/binfmtctl/emulators/qemu-arm"
        ));
        assert!(interpreter_is_ours("/usr/libexec/binfmtctl/qemu-arm"));
        assert!(!interpreter_is_ours("/usr/bin/qemu-arm-static"));
        assert!(!interpreter_is_ours("/opt/binfmtctl"));
    }
}
