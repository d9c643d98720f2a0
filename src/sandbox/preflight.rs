//! Before running: will the kernel run this platform's programs? Native programs run; foreign
//! ones need a binfmt_misc handler with the F flag (the emulator must be reachable from inside
//! the sandbox). Fails early with the `binfmtctl` command that fixes it, instead of a bare
//! "exec format error" later.

use std::path::Path;

use crate::arch::{Table, Target};
use crate::binfmt::{BinfmtFs, manage};
use crate::platform::Platform;

/// Why a platform cannot run here.
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    /// No target for the platform.
    #[error("no QEMU target runs {0} programs; check `--platform`")]
    UnknownPlatform(Platform),
    /// binfmt_misc is not mounted.
    #[error(
        "binfmt_misc is not mounted, so {platform} programs cannot run on this {host} host; run `binfmtctl install {target}` (it mounts binfmt_misc and registers the handler)"
    )]
    NotMounted {
        /// The platform.
        platform: Platform,
        /// The host's target.
        host: String,
        /// The target to install.
        target: String,
    },
    /// No handler.
    #[error(
        "no binfmt_misc handler runs {platform} programs on this {host} host; run `binfmtctl install {target}`"
    )]
    NoHandler {
        /// The platform.
        platform: Platform,
        /// The host's target.
        host: String,
        /// The target to install.
        target: String,
    },
    /// A handler without F.
    #[error(
        "the binfmt_misc handler `{handler}` for {platform} lacks the F flag, so its emulator `{interpreter}` cannot be found inside the sandbox; replace it: `binfmtctl install --replace {target}`"
    )]
    NotFixed {
        /// The platform.
        platform: Platform,
        /// The handler.
        handler: String,
        /// Its interpreter.
        interpreter: String,
        /// The target.
        target: String,
    },
    /// Disabled.
    #[error(
        "the binfmt_misc handler `{handler}` for {platform} is disabled; enable it with `echo 1 > {root}/{handler}` or run `binfmtctl install --replace {target}`"
    )]
    Disabled {
        /// The platform.
        platform: Platform,
        /// The handler.
        handler: String,
        /// The mount.
        root: String,
        /// The target.
        target: String,
    },
}

/// How a platform's programs will run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Runner {
    /// Natively.
    Native,
    /// Through this binfmt_misc handler.
    Handler(String),
}

/// Does the host run this target's programs without emulation?
pub fn is_native(target: &Target) -> bool {
    match Table::get().host() {
        Some(h) if h.name == target.name => true,
        // x86_64 kernels run i386 programs.
        Some(h) if h.name == "x86_64" && target.name == "i386" => true,
        _ => false,
    }
}

/// Checks that `platform`'s programs can run (binfmt_misc mounted at `root`). `sample` is the
/// start of one of the image's programs, when there is one to read; otherwise the target's own
/// magic stands for its programs.
pub fn check(
    platform: &Platform,
    root: &Path,
    sample: Option<&[u8]>,
) -> Result<Runner, Box<PreflightError>> {
    let target = Table::get()
        .for_platform(platform)
        .ok_or_else(|| Box::new(PreflightError::UnknownPlatform(platform.clone())))?;
    if is_native(target) {
        return Ok(Runner::Native);
    }
    let host = Table::get()
        .host()
        .map_or("unknown".to_string(), |h| h.name.clone());
    let fs = BinfmtFs::new(root);
    if !fs.is_mounted() {
        return Err(Box::new(PreflightError::NotMounted {
            platform: platform.clone(),
            host,
            target: target.name.clone(),
        }));
    }
    let mut header = match sample {
        Some(b)
            if Table::get()
                .for_header(b)
                .is_some_and(|t| t.name == target.name) =>
        {
            b.to_vec()
        }
        _ => target.magic.clone(),
    };
    header.resize(crate::binfmt::entry::MAX_MAGIC_END, 0);
    match manage::handler_for(&fs, &header, None) {
        Some(e) if !e.flags.fix_binary => Err(Box::new(PreflightError::NotFixed {
            platform: platform.clone(),
            handler: e.name,
            interpreter: e.interpreter,
            target: target.name.clone(),
        })),
        Some(e) => Ok(Runner::Handler(e.name)),
        None => {
            // A matching entry that is disabled deserves its own message.
            let disabled = fs
                .entries()
                .unwrap_or_default()
                .into_iter()
                .find(|e| !e.enabled && e.matcher.matches(&header, None));
            match disabled {
                Some(e) => Err(Box::new(PreflightError::Disabled {
                    platform: platform.clone(),
                    handler: e.name,
                    root: root.display().to_string(),
                    target: target.name.clone(),
                })),
                None => Err(Box::new(PreflightError::NoHandler {
                    platform: platform.clone(),
                    host,
                    target: target.name.clone(),
                })),
            }
        }
    }
}
