//! `/etc/binfmt.d/qemu-<target>.conf` files (systemd-binfmt's format: one register line, `#`
//! comments), so handlers come back after a reboot. binfmtctl marks its files and only removes
//! files it marked.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::entry::Registration;

/// Where systemd-binfmt reads administrator configuration.
pub const DEFAULT_DIR: &str = "/etc/binfmt.d";

/// The first line of every file binfmtctl writes.
pub const MARKER: &str =
    "# Written by `binfmtctl install --persist`; `binfmtctl uninstall` removes it.";

/// The file for a handler.
pub fn path_for(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.conf"))
}

/// Writes (atomically) the file that restores `reg` at boot.
pub fn write(dir: &Path, reg: &Registration) -> io::Result<PathBuf> {
    let line = reg
        .encode()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let path = path_for(dir, &reg.name);
    if let Ok(existing) = fs::read_to_string(&path)
        && !existing.starts_with(MARKER)
    {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "`{}` exists and was not written by binfmtctl; move it away or remove it first",
                path.display()
            ),
        ));
    }
    let text = format!("{MARKER}\n{line}\n");
    crate::util::write_atomic(&path, text.as_bytes(), 0o644)?;
    Ok(path)
}

/// Removes the handler's file if binfmtctl wrote it. Ok(Some(path)) when removed, Ok(None) when
/// there was nothing of ours.
pub fn remove(dir: &Path, name: &str) -> io::Result<Option<PathBuf>> {
    let path = path_for(dir, name);
    match fs::read_to_string(&path) {
        Ok(text) if text.starts_with(MARKER) => {
            fs::remove_file(&path)?;
            Ok(Some(path))
        }
        Ok(_) => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Reads the registration a persisted file holds (the first non-comment line).
pub fn read(dir: &Path, name: &str) -> Option<Registration> {
    parse(&fs::read_to_string(path_for(dir, name)).ok()?)
}

/// The registration of a file binfmtctl wrote (marked), if there is one.
pub fn read_ours(dir: &Path, name: &str) -> Option<Registration> {
    let text = fs::read_to_string(path_for(dir, name)).ok()?;
    parse(&text).filter(|_| text.starts_with(MARKER))
}

fn parse(text: &str) -> Option<Registration> {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))?;
    Registration::parse_line(line).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::Table;
    use crate::binfmt::entry::Flags;

    #[test]
    fn write_read_remove() {
        let d = tempfile::tempdir().unwrap();
        let t = Table::get().by_name("riscv64").unwrap();
        let reg = Registration::for_target(t, "/usr/bin/qemu-riscv64-static", Flags::fix_binary());
        let p = write(d.path(), &reg).unwrap();
        assert_eq!(p, d.path().join("qemu-riscv64.conf"));
        assert_eq!(read(d.path(), "qemu-riscv64").unwrap(), reg);
        assert_eq!(remove(d.path(), "qemu-riscv64").unwrap(), Some(p.clone()));
        assert!(!p.exists());
        assert_eq!(remove(d.path(), "qemu-riscv64").unwrap(), None);
    }

    #[test]
    fn foreign_files_are_left_alone() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("qemu-arm.conf");
        fs::write(
            &p,
            ":qemu-arm:M::\\x7fELF:\\xff\\xff\\xff\\xff:/usr/bin/qemu-arm:F\n",
        )
        .unwrap();
        let t = Table::get().by_name("arm").unwrap();
        let reg = Registration::for_target(t, "/x", Flags::fix_binary());
        assert!(write(d.path(), &reg).is_err());
        assert_eq!(remove(d.path(), "qemu-arm").unwrap(), None);
        assert!(p.exists());
    }
}
