//! Static QEMU user-mode emulators: finding installed ones (`locate`), fetching verified ones
//! from the Debian archive (`mirror`, `suites`, `release`, `download`, `deb`, `debian`) into a
//! cache (`cache`), and checking that a file is a static emulator for this host (`check`).

pub mod cache;
pub mod deb;
pub mod debian;
pub mod download;
pub mod locate;
pub mod mirror;
pub mod release;
pub mod resolve;
pub mod suites;

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::arch::{Table, Target};

/// Errors about an emulator file.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    /// The file is not usable as an F-flag emulator.
    #[error("`{path}` cannot serve as the {target} emulator: {reason}")]
    Unusable {
        /// The file.
        path: PathBuf,
        /// The target it was meant for.
        target: String,
        /// Why.
        reason: String,
    },
    /// No usable emulator was found.
    #[error("no static emulator for {target} found{tried}; {hint}")]
    NotFound {
        /// The target.
        target: String,
        /// What was looked at and why each was refused (begins with a separator, may be empty).
        tried: String,
        /// What to do.
        hint: String,
    },
}

/// Where an emulator came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// A directory given with `--emulator-dir`.
    Dir,
    /// Installed on the system (`/usr/bin`, `/usr/libexec/qemu-binfmt`).
    System,
    /// binfmtctl's cache of fetched emulators.
    Cache,
    /// Fetched from the Debian archive just now.
    Debian,
}

/// A usable emulator.
#[derive(Debug, Clone, Serialize)]
pub struct Emulator {
    /// The QEMU target it emulates.
    pub target: String,
    /// Its path, symlinks resolved (what the handler registers).
    pub path: PathBuf,
    /// Where it came from.
    pub origin: Origin,
}

/// Checks that `path` is a static ELF program for this host (the F flag keeps the file open for
/// every container; a dynamic one would need the host's libraries inside each of them).
pub fn check(path: &Path, target: &Target) -> Result<(), EmulatorError> {
    let unusable = |reason: String| EmulatorError::Unusable {
        path: path.to_path_buf(),
        target: target.name.clone(),
        reason,
    };
    let info = crate::elf::read_headers(path).map_err(|e| unusable(e.to_string()))?;
    let host = Table::get()
        .host()
        .ok_or_else(|| unusable("this host's architecture is not in the arch table".into()))?;
    if info.target.as_deref() != Some(host.name.as_str()) {
        let machine = goblin::elf::header::machine_to_str(info.machine);
        return Err(unusable(format!(
            "it is a program for {}, but this host is {}",
            info.target.as_deref().unwrap_or(machine),
            host.name
        )));
    }
    if let Some(interp) = &info.interpreter {
        return Err(unusable(format!(
            "it is dynamically linked (interpreter {interp}); with the F flag it must run inside containers that lack the host's libraries, so a static build is needed (Debian: qemu-user-static, or `binfmtctl fetch {}`)",
            target.name
        )));
    }
    Ok(())
}
