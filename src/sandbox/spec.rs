//! What to run: the layer stack and step directories, the command, its environment, working
//! directory and user, bind mounts, network and terminal.

use std::path::PathBuf;

/// A bind mount from the host.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Bind {
    /// Host path.
    pub source: PathBuf,
    /// Path inside the sandbox.
    pub target: PathBuf,
    /// Read-only.
    pub readonly: bool,
}

impl Bind {
    /// Parses `-v HOST:CTR[:ro|rw]`; the host path is made absolute.
    pub fn parse(s: &str) -> Result<Bind, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let (src, dst, ro) = match parts.as_slice() {
            [src, dst] => (*src, *dst, false),
            [src, dst, "ro"] => (*src, *dst, true),
            [src, dst, "rw"] => (*src, *dst, false),
            _ => return Err(format!("`{s}` is not HOST:CONTAINER[:ro]")),
        };
        if !dst.starts_with('/') {
            return Err(format!(
                "`{dst}` in `-v {s}` must be an absolute path inside the container"
            ));
        }
        let source = std::path::absolute(src).map_err(|e| format!("`{src}`: {e}"))?;
        if !source.exists() {
            return Err(format!("`{}` does not exist on the host", source.display()));
        }
        Ok(Bind {
            source,
            target: PathBuf::from(dst),
            readonly: ro,
        })
    }
}

/// The network the command gets.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Network {
    /// The host's network.
    Host,
    /// A network namespace with only `lo`.
    None,
}

/// How the root is put together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootFs {
    /// An overlayfs of the lower directories with the step's upper directory.
    Overlay,
    /// `merged` is already a whole copy of the stack (the walk-based snapshotter): bound as
    /// it is.
    Copy,
}

/// Everything the sandbox needs.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// How the root is made.
    pub rootfs: RootFs,
    /// The directory overlay paths are relative to (the store root).
    pub base: PathBuf,
    /// Lower directories, top first.
    pub lowers: Vec<PathBuf>,
    /// The step's upper directory (becomes its diff).
    pub upper: PathBuf,
    /// overlayfs work directory.
    pub work: PathBuf,
    /// Mount point of the merged root.
    pub merged: PathBuf,
    /// Mount overlayfs with `userxattr` (in a user namespace).
    pub userxattr: bool,
    /// The command.
    pub argv: Vec<String>,
    /// Its environment.
    pub env: Vec<(String, String)>,
    /// Working directory.
    pub cwd: String,
    /// `user[:group]`, names or numbers, resolved in the image.
    pub user: Option<String>,
    /// Bind mounts.
    pub mounts: Vec<Bind>,
    /// Network.
    pub network: Network,
    /// Allocate a terminal.
    pub tty: bool,
    /// Keep stdin attached.
    pub stdin: bool,
    /// Host name inside.
    pub hostname: String,
}
