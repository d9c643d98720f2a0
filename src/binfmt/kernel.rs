//! The seam in front of the kernel, as youki's `Syscall` trait: everything `manage` and the
//! preflight need from binfmt_misc (list, read, register, enable, remove), from exec (run a
//! program through the handlers, or through a scratch instance) and from the host (what it
//! runs natively). [`super::BinfmtFs`] is the real one; tests use an in-memory fake that keeps
//! the kernel's rules (newest entry first, EEXIST, F opening the interpreter at registration,
//! disabled entries and a disabled facility).

use std::path::Path;

use super::entry::{Entry, Registration};
use super::exec::{ExecError, ExecOutput};
use super::fs::{FsError, Instance};
use crate::host::Host;

/// The kernel's binfmt_misc interface, exec, and host facts.
pub trait Kernel: Sync {
    /// The binfmt_misc mount point (ownership records are keyed by it).
    fn root(&self) -> &Path;
    /// What this machine runs natively.
    fn host(&self) -> &Host;
    /// Is binfmt_misc mounted?
    fn is_mounted(&self) -> bool;
    /// Mounts binfmt_misc unless it is mounted; true when this call mounted it.
    fn ensure_mounted(&self) -> Result<bool, FsError>;
    /// Whose instance the mount shows.
    fn instance(&self) -> Instance;
    /// Is the facility enabled as a whole (`status`)?
    fn enabled(&self) -> Result<bool, FsError>;
    /// Every entry, newest (highest precedence) first.
    fn entries(&self) -> Result<Vec<Entry>, FsError>;
    /// One entry; Ok(None) when there is none of that name.
    fn entry(&self, name: &str) -> Result<Option<Entry>, FsError>;
    /// Registers a line; EEXIST when the name is taken.
    fn register(&self, reg: &Registration) -> Result<(), FsError>;
    /// Removes an entry.
    fn remove(&self, name: &str) -> Result<(), FsError>;
    /// Enables or disables an entry.
    fn set_enabled(&self, name: &str, on: bool) -> Result<(), FsError>;
    /// Executes `program` (the bytes of a program file named `name`) with argv[0] `argv0`, the
    /// way any process here would: natively or through the newest matching enabled handler.
    fn exec(&self, name: &str, program: &[u8], argv0: &str) -> Result<ExecOutput, ExecError>;
    /// Executes `program` through `reg` alone, registered in a private scratch instance that
    /// no other process sees ([`ExecError::NoScratch`] where none can be made).
    fn exec_in_scratch(
        &self,
        reg: &Registration,
        name: &str,
        program: &[u8],
        argv0: &str,
    ) -> Result<ExecOutput, ExecError>;

    /// Fails with a helpful error when binfmt_misc is not mounted.
    fn require_mounted(&self) -> Result<(), FsError> {
        if self.is_mounted() {
            Ok(())
        } else {
            Err(FsError::NotMounted {
                root: self.root().to_path_buf(),
            })
        }
    }

    /// The handler the kernel would use for a file with this header and name: the newest
    /// enabled matching entry; None when none matches (or binfmt_misc is off).
    fn handler_for(&self, header: &[u8], file_name: Option<&str>) -> Option<Entry> {
        if !self.is_mounted() || !self.enabled().unwrap_or(false) {
            return None;
        }
        self.entries()
            .ok()?
            .into_iter()
            .find(|e| e.enabled && e.matcher.matches(header, file_name))
    }
}
