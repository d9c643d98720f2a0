//! Before running: will the kernel run this platform's programs? Native programs (the host's
//! one rule, `host::Host`) run; foreign
//! ones need a binfmt_misc handler with the F flag (the emulator must be reachable from inside
//! the sandbox). Fails early with the `binfmtctl` command that fixes it, instead of a bare
//! "exec format error" later.

use crate::arch::Table;
use crate::binfmt::Kernel;
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

/// Checks that `platform`'s programs can run here. `sample` is the start of one of the image's
/// programs, when there is one to read; otherwise the target's own magic stands for its programs.
pub fn check(
    kernel: &dyn Kernel,
    platform: &Platform,
    sample: Option<&[u8]>,
) -> Result<Runner, Box<PreflightError>> {
    let target = Table::get()
        .for_platform(platform)
        .ok_or_else(|| Box::new(PreflightError::UnknownPlatform(platform.clone())))?;
    if kernel.host().runs_natively(target) {
        tracing::info!(%platform, "runs natively");
        return Ok(Runner::Native);
    }
    let host = kernel.host().target().name.clone();
    if !kernel.is_mounted() {
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
    match kernel.handler_for(&header, None) {
        Some(e) if !e.flags.fix_binary => Err(Box::new(PreflightError::NotFixed {
            platform: platform.clone(),
            handler: e.name,
            interpreter: e.interpreter,
            target: target.name.clone(),
        })),
        Some(e) => {
            tracing::info!(%platform, handler = %e.name, interpreter = %e.interpreter, flags = %e.flags, "runs through a binfmt_misc handler");
            Ok(Runner::Handler(e.name))
        }
        None => {
            // A matching entry that is disabled deserves its own message.
            let disabled = kernel
                .entries()
                .unwrap_or_default()
                .into_iter()
                .find(|e| !e.enabled && e.matcher.matches(&header, None));
            match disabled {
                Some(e) => Err(Box::new(PreflightError::Disabled {
                    platform: platform.clone(),
                    handler: e.name,
                    root: kernel.root().display().to_string(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binfmt::fake::FakeKernel;
    use crate::binfmt::{Flags, Registration};

    fn p(s: &str) -> Platform {
        s.parse().unwrap()
    }

    fn register(k: &FakeKernel, target: &str, flags: Flags) {
        let path = format!("/q/qemu-{target}");
        k.emulator(&path, target, true);
        let t = Table::get().by_name(target).unwrap();
        k.register(&Registration::for_target(t, &path, flags))
            .unwrap();
    }

    #[test]
    fn native_platforms_need_no_handler_on_each_host() {
        for (host, native, foreign) in [
            ("x86_64", &["linux/amd64", "linux/386"][..], "linux/arm64"),
            (
                "aarch64",
                &["linux/arm64", "linux/arm/v7"][..],
                "linux/amd64",
            ),
            ("ppc64le", &["linux/ppc64le"][..], "linux/s390x"),
            ("s390x", &["linux/s390x"][..], "linux/ppc64le"),
        ] {
            let k = FakeKernel::new(host).unmounted();
            for n in native {
                assert_eq!(
                    check(&k, &p(n), None).unwrap(),
                    Runner::Native,
                    "{host} {n}"
                );
            }
            let e = check(&k, &p(foreign), None).unwrap_err();
            assert!(
                matches!(*e, PreflightError::NotMounted { .. }),
                "{host}: {e}"
            );
        }
        // arm64 without AArch32: arm needs a handler, and the message names it.
        let k = FakeKernel::new("aarch64").without_compat();
        let e = check(&k, &p("linux/arm/v7"), None).unwrap_err();
        assert!(e.to_string().contains("binfmtctl install arm"), "{e}");
    }

    #[test]
    fn handlers_must_have_f_and_be_enabled() {
        let k = FakeKernel::new("x86_64");
        let arm64 = p("linux/arm64");
        let e = check(&k, &arm64, None).unwrap_err();
        assert!(e.to_string().contains("binfmtctl install aarch64"), "{e}");
        register(&k, "aarch64", Flags::default());
        let e = check(&k, &arm64, None).unwrap_err();
        assert!(matches!(*e, PreflightError::NotFixed { .. }), "{e}");
        k.remove("qemu-aarch64").unwrap();
        register(&k, "aarch64", Flags::fix_binary());
        assert_eq!(
            check(&k, &arm64, None).unwrap(),
            Runner::Handler("qemu-aarch64".into())
        );
        k.set_enabled("qemu-aarch64", false).unwrap();
        let e = check(&k, &arm64, None).unwrap_err();
        assert!(matches!(*e, PreflightError::Disabled { .. }), "{e}");
        // The image's own program decides, when it has one.
        k.set_enabled("qemu-aarch64", true).unwrap();
        let sample = crate::binfmt::probe::program("aarch64").unwrap();
        assert!(check(&k, &arm64, Some(sample)).is_ok());
    }
}
