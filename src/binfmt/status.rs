//! `binfmtctl status`: every entry of a mount, whose it is, whether a `binfmt.d` file of ours
//! restores it, and which entries overlap or shadow others (the newest enabled match wins).

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::entry::Entry;
use super::fs::{FsError, Instance};
use super::kernel::Kernel;
use super::owner::Owners;
use super::persist;

/// One entry as `status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct EntryStatus {
    /// The parsed entry.
    #[serde(flatten)]
    pub entry: Entry,
    /// The QEMU target its magic matches.
    pub target: Option<String>,
    /// Registered by binfmtctl.
    pub managed: bool,
    /// A `binfmt.d` file of ours restores it at boot.
    pub persisted: bool,
    /// Other entries matching some of the same programs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub overlaps: Vec<String>,
    /// The newer enabled entry that runs the programs instead of this one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadowed_by: Option<String>,
}

/// The state of a binfmt_misc mount.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// The mount point.
    pub root: PathBuf,
    /// Is binfmt_misc mounted there?
    pub mounted: bool,
    /// Whose instance is it?
    pub instance: Option<Instance>,
    /// Is the facility enabled as a whole?
    pub enabled: Option<bool>,
    /// The host's QEMU target.
    pub host: Option<String>,
    /// Entries, newest (highest precedence) first.
    pub entries: Vec<EntryStatus>,
}

/// Reads the whole state of a mount.
pub fn status(
    kernel: &dyn Kernel,
    state_dir: &Path,
    persist_dir: &Path,
) -> Result<Status, FsError> {
    let host = Some(kernel.host().target().name.clone());
    if !kernel.is_mounted() {
        return Ok(Status {
            root: kernel.root().to_path_buf(),
            mounted: false,
            instance: None,
            enabled: None,
            host,
            entries: Vec::new(),
        });
    }
    let owners = Owners::new(state_dir, kernel.root()).with_persisted(persist_dir);
    let entries = kernel.entries()?;
    let mut out = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let overlaps: Vec<String> = entries
            .iter()
            .filter(|o| o.name != e.name && o.matcher.overlaps(&e.matcher))
            .map(|o| o.name.clone())
            .collect();
        let shadowed_by = if e.enabled {
            entries[..i]
                .iter()
                .find(|o| o.enabled && o.matcher.overlaps(&e.matcher))
                .map(|o| o.name.clone())
        } else {
            None
        };
        let persisted = persist::read_ours(persist_dir, &e.name).is_some_and(|r| r.same_as(e));
        out.push(EntryStatus {
            target: e.target().map(|t| t.name.clone()),
            managed: owners.owns(e),
            persisted,
            overlaps,
            shadowed_by,
            entry: e.clone(),
        });
    }
    Ok(Status {
        root: kernel.root().to_path_buf(),
        mounted: true,
        instance: Some(kernel.instance()),
        enabled: Some(kernel.enabled()?),
        host,
        entries: out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::Table;
    use crate::binfmt::fake::FakeKernel;
    use crate::binfmt::{Flags, Registration};

    #[test]
    fn newer_overlapping_entries_shadow_older_ones() {
        let k = FakeKernel::new("x86_64");
        k.emulator("/q/arm", "arm", true);
        let t = Table::get().by_name("arm").unwrap();
        let ours = Registration::for_target(t, "/q/arm", Flags::fix_binary());
        k.register(&ours).unwrap();
        let mut theirs = ours.clone();
        theirs.name = "arm-other".into();
        k.register(&theirs).unwrap();
        let state = tempfile::tempdir().unwrap();
        let owners = Owners::new(state.path(), k.root());
        owners.record(&ours).unwrap();
        let st = status(&k, state.path(), state.path()).unwrap();
        assert!(st.mounted);
        assert_eq!(st.host.as_deref(), Some("x86_64"));
        let arm = st
            .entries
            .iter()
            .find(|e| e.entry.name == "qemu-arm")
            .unwrap();
        assert!(arm.managed);
        assert_eq!(arm.shadowed_by.as_deref(), Some("arm-other"));
        assert_eq!(arm.target.as_deref(), Some("arm"));
        let other = st
            .entries
            .iter()
            .find(|e| e.entry.name == "arm-other")
            .unwrap();
        assert!(!other.managed && other.shadowed_by.is_none());
        assert_eq!(other.overlaps, ["qemu-arm"]);
        let unmounted = FakeKernel::new("x86_64").unmounted();
        assert!(
            !status(&unmounted, state.path(), state.path())
                .unwrap()
                .mounted
        );
    }
}
