//! Snapshotters: how a step's root is made and its changes found. One trait, two kinds:
//! overlayfs (`overlay`: the layers as lower directories, the step's upper directory is its
//! diff) and copying (`copy`: a kept copy of the whole stack, diffed after the command by a
//! tree walk, for kernels without overlayfs, stacks deeper than it takes, or old kernels in a
//! user namespace). Which one runs is decided once per step from the kernel's facts
//! ([`choose`]); `EMUBUILD_DRIVER` (or `--driver`) forces one.

mod copy;
mod overlay;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub use copy::Copying;
pub use overlay::Overlay;

use crate::container::ContainerError;
use crate::sandbox::RunSpec;
use crate::warning::Warning;

/// Which snapshotter runs steps.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Driver {
    /// overlayfs, and the copying snapshotter where overlayfs cannot hold a step.
    #[default]
    Auto,
    /// overlayfs always.
    Overlay,
    /// The copying snapshotter always.
    Copy,
}

/// What the choice depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelFacts {
    /// `uname -r`.
    pub release: String,
    /// overlayfs is built in, loaded, or can be loaded.
    pub overlayfs: bool,
}

impl KernelFacts {
    /// This kernel's (read once).
    pub fn detect() -> &'static KernelFacts {
        static FACTS: OnceLock<KernelFacts> = OnceLock::new();
        FACTS.get_or_init(|| {
            let release = crate::rootless::kernel_release();
            let listed = std::fs::read_to_string("/proc/filesystems").is_ok_and(|fs| {
                fs.lines()
                    .any(|l| l.split_whitespace().last() == Some("overlay"))
            });
            // Not loaded: it may still load on first use (modules load on mount), so only a
            // kernel with no overlay module at all is counted out.
            let loadable = Path::new("/sys/module/overlay").exists()
                || Path::new("/lib/modules")
                    .join(&release)
                    .join("kernel/fs/overlayfs")
                    .exists();
            KernelFacts {
                overlayfs: listed || loadable,
                release,
            }
        })
    }
}

/// The most lower directories one overlay mount stacks.
pub const MAX_STACK: usize = 500;

/// A snapshotter kind, and why it was chosen when that needs saying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// overlayfs.
    Overlay,
    /// Copying, for this reason (None: forced by the driver).
    Copy(Option<String>),
}

/// Chooses the snapshotter of a step over `lowers` layers.
pub fn choose(driver: Driver, facts: &KernelFacts, lowers: usize, rootless: bool) -> Choice {
    match driver {
        Driver::Overlay => return Choice::Overlay,
        Driver::Copy => return Choice::Copy(None),
        Driver::Auto => {}
    }
    if lowers > MAX_STACK {
        return Choice::Copy(Some(format!(
            "the step stacks {lowers} layers and overlayfs takes at most {MAX_STACK}"
        )));
    }
    if !facts.overlayfs {
        return Choice::Copy(Some("this kernel has no overlayfs".into()));
    }
    if rootless && crate::rootless::kernel_older_than(&facts.release, (5, 11)) {
        return Choice::Copy(Some(format!(
            "this kernel ({}) cannot mount overlayfs in a user namespace (Linux 5.11+)",
            facts.release
        )));
    }
    Choice::Overlay
}

/// Makes a step's root and finds its changes.
pub trait Snapshotter {
    /// Its name, for logs.
    fn name(&self) -> &'static str;
    /// Makes the root `spec` runs in (its `rootfs` and `merged`), on the stack it was made for
    /// plus the mount-point layer `mnt`.
    fn prepare(
        &self,
        spec: &mut RunSpec,
        mnt: Option<&Path>,
        warnings: &mut Vec<Warning>,
    ) -> Result<(), ContainerError>;
    /// After a command that succeeded: its changes, in overlay upper form, in `spec.upper`.
    fn diff(&self, spec: &RunSpec, warnings: &mut Vec<Warning>) -> Result<(), ContainerError>;
    /// The step was kept: the root now stands for `stack`.
    fn commit(&self, stack: &[PathBuf]);
    /// The step's changes are dropped.
    fn discard(&self, spec: &RunSpec);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(overlayfs: bool, release: &str) -> KernelFacts {
        KernelFacts {
            release: release.into(),
            overlayfs,
        }
    }

    #[test]
    fn chosen_from_the_kernels_facts() {
        let new = facts(true, "6.18.0");
        assert_eq!(choose(Driver::Auto, &new, 3, true), Choice::Overlay);
        assert!(
            matches!(choose(Driver::Auto, &new, 501, false), Choice::Copy(Some(r)) if r.contains("500"))
        );
        assert!(matches!(
            choose(Driver::Auto, &facts(false, "6.18"), 1, false),
            Choice::Copy(Some(_))
        ));
        let old = facts(true, "5.10.0");
        assert!(
            matches!(choose(Driver::Auto, &old, 1, true), Choice::Copy(Some(r)) if r.contains("5.11"))
        );
        assert_eq!(choose(Driver::Auto, &old, 1, false), Choice::Overlay);
        assert_eq!(choose(Driver::Copy, &new, 1, false), Choice::Copy(None));
        assert_eq!(
            choose(Driver::Overlay, &facts(false, "x"), 900, true),
            Choice::Overlay
        );
    }
}
