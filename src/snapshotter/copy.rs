//! The copying snapshotter, for where overlayfs cannot hold a step: `copy/` keeps the whole
//! stack materialised, `copy.key` names the stack it shows (removed while a step runs in it,
//! so a failed or killed step makes the next one copy afresh). After the command the tree is
//! diffed against an index taken before it (`rootfs::walkdiff`) into overlay upper form, so
//! both snapshotters make the same layers.

use std::path::{Path, PathBuf};

use super::Snapshotter;
use crate::container::ContainerError;
use crate::rootfs::overlay::XattrNamespace;
use crate::rootfs::walkdiff;
use crate::sandbox::{RootFs, RunSpec};
use crate::warning::Warning;

/// The copying snapshotter of one platform of a working container.
#[derive(Debug)]
pub struct Copying {
    dir: PathBuf,
    key_file: PathBuf,
    /// The stack this step runs on (without the mount-point layer).
    stack: Vec<PathBuf>,
    xattrs: XattrNamespace,
    before: std::cell::RefCell<Option<walkdiff::Index>>,
}

impl Copying {
    /// For the platform directory `pdir`, a step on `stack`.
    pub fn new(pdir: &Path, stack: &[PathBuf], xattrs: XattrNamespace) -> Copying {
        Copying {
            dir: pdir.join("copy"),
            key_file: pdir.join("copy.key"),
            stack: stack.to_vec(),
            xattrs,
            before: std::cell::RefCell::new(None),
        }
    }

    fn key_of(stack: &[PathBuf]) -> String {
        let joined: Vec<String> = stack.iter().map(|p| p.display().to_string()).collect();
        crate::digest::sha256_hex(joined.join("\n").as_bytes())
    }

    fn fail(&self, what: &str) -> impl FnOnce(std::io::Error) -> ContainerError + '_ {
        ContainerError::io(format!("{what} (copying snapshotter)"), &self.dir)
    }
}

impl Snapshotter for Copying {
    fn name(&self) -> &'static str {
        "copy"
    }

    fn prepare(
        &self,
        spec: &mut RunSpec,
        mnt: Option<&Path>,
        warnings: &mut Vec<Warning>,
    ) -> Result<(), ContainerError> {
        let key = Copying::key_of(&self.stack);
        let current = std::fs::read_to_string(&self.key_file).is_ok_and(|k| k == key);
        let _ = std::fs::remove_file(&self.key_file);
        if !current {
            tracing::info!(copy = %self.dir.display(), layers = self.stack.len(), "materialising the stack");
            if self.dir.exists() {
                std::fs::remove_dir_all(&self.dir).map_err(self.fail("clear"))?;
            }
            std::fs::create_dir_all(&self.dir).map_err(self.fail("create"))?;
            warnings.extend(
                walkdiff::materialize(&self.stack, &self.dir)
                    .map_err(self.fail("copy the stack into"))?,
            );
        }
        if let Some(m) = mnt {
            walkdiff::apply_layer(m, &self.dir, warnings)
                .map_err(self.fail("add the mount points to"))?;
        }
        *self.before.borrow_mut() =
            Some(walkdiff::Index::of(&self.dir).map_err(self.fail("record the tree of"))?);
        spec.rootfs = RootFs::Copy;
        spec.merged = self.dir.clone();
        Ok(())
    }

    fn diff(&self, spec: &RunSpec, warnings: &mut Vec<Warning>) -> Result<(), ContainerError> {
        let before = self.before.borrow();
        let Some(before) = before.as_ref() else {
            return Ok(());
        };
        let (_, w) = walkdiff::diff(&self.dir, before, &spec.upper, self.xattrs)
            .map_err(self.fail("find the changes in"))?;
        warnings.extend(w);
        Ok(())
    }

    fn commit(&self, stack: &[PathBuf]) {
        let _ = crate::util::replace_file(&self.key_file, Copying::key_of(stack).as_bytes(), 0o644);
    }

    fn discard(&self, spec: &RunSpec) {
        // The copy holds the failed command's changes: the key stays removed, so the next
        // step copies afresh.
        let _ = std::fs::remove_dir_all(&spec.upper);
    }
}
