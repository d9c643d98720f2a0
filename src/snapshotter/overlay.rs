//! The overlayfs snapshotter: the stack as lower directories, the step's upper directory is
//! its diff as it stands.

use std::path::{Path, PathBuf};

use super::Snapshotter;
use crate::container::ContainerError;
use crate::sandbox::{RootFs, RunSpec};
use crate::warning::Warning;

/// overlayfs.
#[derive(Debug, Default)]
pub struct Overlay;

impl Snapshotter for Overlay {
    fn name(&self) -> &'static str {
        "overlayfs"
    }

    fn prepare(
        &self,
        spec: &mut RunSpec,
        _mnt: Option<&Path>,
        _warnings: &mut Vec<Warning>,
    ) -> Result<(), ContainerError> {
        // The mount-point layer is one of `spec.lowers` already.
        spec.rootfs = RootFs::Overlay;
        Ok(())
    }

    fn diff(&self, _spec: &RunSpec, _warnings: &mut Vec<Warning>) -> Result<(), ContainerError> {
        Ok(())
    }

    fn commit(&self, _stack: &[PathBuf]) {}

    fn discard(&self, spec: &RunSpec) {
        let _ = std::fs::remove_dir_all(&spec.upper);
    }
}
