//! Working containers: made from an image for one or more platforms (`create`), changed one
//! step at a time by commands run under emulation (`step`) or by files copied from the host
//! (`copy`). Each step's changes are kept as a directory in overlay upper form and stacked as
//! a lower directory for the next step; `commit` turns them into layers.

mod copy;
mod create;
mod step;

use std::path::{Path, PathBuf};

pub use copy::{CopyOptions, copy_step};
pub use create::{Created, create, detect_platform, scratch_state};
pub use step::{RunOptions, StepResult, run_step};

use crate::binfmt::BinfmtFs;
use crate::oci::image::SelectError;
use crate::oci::source::SourceError;
use crate::oci::write::WriteError;
use crate::platform::Platform;
use crate::rootfs::overlay::XattrNamespace;
use crate::sandbox::{self, SetupError, preflight};
use crate::snapshotter::Driver;
use crate::store::{ContainerDir, PlatformState, Store, StoreError};

/// The PATH a command gets when the image sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Errors of working-container operations.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// The store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Opening the image.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// Choosing the image.
    #[error(transparent)]
    Select(#[from] SelectError),
    /// Emulation is missing.
    #[error(transparent)]
    Preflight(#[from] Box<preflight::PreflightError>),
    /// The sandbox could not start.
    #[error(transparent)]
    Sandbox(#[from] sandbox::SandboxError),
    /// The sandbox's init could not build the root or start the command.
    #[error(transparent)]
    Setup(SetupError),
    /// Writing the destination layout.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// Talking to a registry.
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
    /// A file operation.
    #[error("cannot {action} `{path}`")]
    Io {
        /// What was being done.
        action: String,
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Not a valid working-container name.
    #[error(
        "`{0}` is not a valid container name (letters, digits, `.`, `_`, `-`; not starting with `.`)"
    )]
    InvalidName(String),
    /// A container of that name exists with another base or other platforms.
    #[error(
        "a working container `{name}` exists already (from {base}, for {platforms}); remove it with `emubuild rm {name}` or choose another `--name`"
    )]
    Exists {
        /// The name.
        name: String,
        /// Its base.
        base: String,
        /// Its platforms.
        platforms: String,
    },
    /// The working container lacks a platform asked for.
    #[error("working container `{name}` has no {wanted}; it has {have}")]
    NoSuchPlatform {
        /// The container.
        name: String,
        /// What was asked for.
        wanted: Platform,
        /// What it has.
        have: String,
    },
    /// The image's manifest and config disagree.
    #[error(
        "image {manifest} lists {layers} layers but its config has {diff_ids} diff_ids; the image is malformed"
    )]
    LayerCount {
        /// The manifest digest.
        manifest: String,
        /// Layers in the manifest.
        layers: usize,
        /// diff_ids in the config.
        diff_ids: usize,
    },
    /// `--platform` and a root file system's programs disagree.
    #[error(
        "`--platform {asked}` disagrees with the root file system `{}`, whose programs are for {found}",
        .file.display()
    )]
    RootfsPlatform {
        /// What was asked for.
        asked: String,
        /// The tarball.
        file: PathBuf,
        /// What its programs are for.
        found: String,
    },
    /// A root file system whose platform cannot be told.
    #[error(
        "cannot tell the platform of `{}` (no ELF programs found); pass `--platform`",
        .0.display()
    )]
    UnknownRootfsPlatform(PathBuf),
    /// A path argument that cannot be used (`copy`'s destination, a source that is missing).
    #[error("{0}")]
    Path(String),
    /// `--chown` names no user of the image.
    #[error("{0}")]
    User(String),
    /// A layer the state names is gone from the store.
    #[error(
        "layer {digest} of {platform} is missing from the store; recreate the working container"
    )]
    MissingLayer {
        /// The layer.
        digest: String,
        /// The platform.
        platform: Platform,
    },
    /// One platform of a commit failed: nothing was written.
    #[error("{platform}: nothing was written")]
    CommitPlatform {
        /// The platform.
        platform: Platform,
        /// What failed.
        #[source]
        source: Box<ContainerError>,
    },
    /// A step's layer could not be made.
    #[error("cannot snapshot step `{step}`")]
    Snapshot {
        /// The step's command.
        step: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl ContainerError {
    /// A failed file operation.
    pub fn io(action: impl Into<String>, path: &Path) -> impl FnOnce(std::io::Error) -> Self + '_ {
        let action = action.into();
        move |source| ContainerError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Everything container operations need, resolved once by the front end.
#[derive(Debug, Clone)]
pub struct Context {
    /// The store.
    pub store: Store,
    /// The kernel: the binfmt_misc mount the preflight reads, and what runs natively.
    pub kernel: BinfmtFs,
    /// Not real root (user namespace).
    pub rootless: bool,
    /// Which snapshotter runs steps.
    pub driver: Driver,
    /// `SOURCE_DATE_EPOCH`: the time recorded in history and configs, and the clamp on layer
    /// times (reproducible builds).
    pub epoch: Option<i64>,
    /// How registries are talked to.
    pub registry: crate::registry::Options,
}

impl Context {
    /// The xattr namespace overlay markers use here.
    pub fn xattrs(&self) -> XattrNamespace {
        if self.rootless {
            XattrNamespace::User
        } else {
            XattrNamespace::Trusted
        }
    }

    /// A container's files.
    pub fn container(&self, name: &str) -> ContainerDir {
        ContainerDir::new(self.store.container_dir(name))
    }

    /// Now, in Unix seconds, or `SOURCE_DATE_EPOCH` when set.
    pub fn now(&self) -> i64 {
        self.epoch.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0)
        })
    }

    /// A registry session (its transfer threads end when it is dropped).
    pub fn session(&self) -> Result<crate::registry::Session, ContainerError> {
        Ok(crate::registry::Session::new(self.registry.clone())?)
    }

    /// [`Context::now`] as RFC 3339.
    pub fn now_rfc3339(&self) -> String {
        crate::util::rfc3339(self.now())
    }
}

/// The environment a command sees: the image's, then TARGET*, then `-e`; PATH defaulted.
pub fn command_env(
    config: &crate::oci::document::ImageConfig,
    platform: Option<&Platform>,
    extra: &[(String, String)],
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |k: String, v: String| {
        if let Some(e) = env.iter_mut().find(|(ek, _)| *ek == k) {
            e.1 = v;
        } else {
            env.push((k, v));
        }
    };
    for e in config.env() {
        if let Some((k, v)) = e.split_once('=') {
            set(k.to_string(), v.to_string());
        }
    }
    for (k, v) in platform.map(Platform::target_env).unwrap_or_default() {
        set(k, v);
    }
    for (k, v) in extra {
        set(k.clone(), v.clone());
    }
    if !env.iter().any(|(k, _)| k == "PATH") {
        env.insert(0, ("PATH".into(), DEFAULT_PATH.into()));
    }
    env
}

/// A platform's layer directories, top first: its steps, newest first, then the base layers.
pub fn stack_of(
    store: &Store,
    state: &PlatformState,
    pdir: &Path,
) -> Result<Vec<PathBuf>, ContainerError> {
    let mut lowers: Vec<PathBuf> = state
        .steps
        .iter()
        .rev()
        .filter_map(|s| s.dir.as_ref().map(|d| pdir.join(d)))
        .collect();
    for l in state.base_layers.iter().rev() {
        lowers.push(store.layer_dir(&l.diff_id)?);
    }
    Ok(lowers)
}

/// Reads a working container, or says it does not exist.
pub fn read(ctx: &Context, name: &str) -> Result<crate::store::Container, ContainerError> {
    let cdir = ctx.container(name);
    if !cdir.exists() {
        return Err(StoreError::NoContainer(name.to_string()).into());
    }
    Ok(cdir.read()?)
}

/// Removes a working container and its steps (shared layers stay in the store).
pub fn remove(ctx: &Context, name: &str) -> Result<(), ContainerError> {
    let cdir = ctx.container(name);
    if !cdir.exists() {
        return Err(StoreError::NoContainer(name.to_string()).into());
    }
    let _lock = cdir.lock()?;
    std::fs::remove_dir_all(cdir.dir()).map_err(ContainerError::io("remove", cdir.dir()))?;
    let _ = std::fs::remove_file(cdir.dir().with_extension("lock"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment() {
        let mut config =
            crate::oci::document::ImageConfig::empty(&"linux/arm/v7".parse().unwrap(), "/bin");
        config.edit_exec(|e| {
            e.set_env(Some(vec!["PATH=/bin".into(), "A=1".into()]));
        });
        let env = command_env(
            &config,
            Some(&"linux/arm/v7".parse().unwrap()),
            &[("A".into(), "2".into())],
        );
        let bare = command_env(&config, None, &[]);
        assert!(
            !bare.iter().any(|(k, _)| k.starts_with("TARGET")),
            "{bare:?}"
        );
        assert!(env.contains(&("PATH".into(), "/bin".into())));
        assert!(env.contains(&("A".into(), "2".into())));
        for (k, v) in [
            ("TARGETPLATFORM", "linux/arm/v7"),
            ("TARGETOS", "linux"),
            ("TARGETARCH", "arm"),
            ("TARGETVARIANT", "v7"),
        ] {
            assert!(env.contains(&(k.into(), v.into())), "{k}: {env:?}");
        }
        config.edit_exec(|e| {
            e.set_env(None);
        });
        let env = command_env(&config, Some(&"linux/arm64".parse().unwrap()), &[]);
        assert_eq!(env[0], ("PATH".into(), DEFAULT_PATH.into()));
    }
}
