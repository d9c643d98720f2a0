//! The one rule for "does this host run T's programs natively": its own target, and the
//! compat targets the arch table lists for it (i386 on x86_64, arm on aarch64, ...) when this
//! kernel really runs them. `binfmtctl install all` registers everything else, `binfmtctl
//! inspect` says "native" by it, and emubuild's preflight needs no handler for it.

use std::sync::OnceLock;

use serde::Serialize;

use crate::arch::{Table, Target};

/// What this machine runs without emulation.
#[derive(Debug, Clone)]
pub struct Host {
    target: &'static Target,
    compat: Vec<&'static Target>,
}

impl Serialize for Host {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Host", 2)?;
        st.serialize_field("target", &self.target.name)?;
        let compat: Vec<&str> = self.compat.iter().map(|t| t.name.as_str()).collect();
        st.serialize_field("compat", &compat)?;
        st.end()
    }
}

impl Host {
    /// This machine: its target from this program's own ELF header, and the compat targets
    /// its kernel runs (checked on arm64, where CPUs without AArch32 exist).
    pub fn detect() -> &'static Host {
        static HOST: OnceLock<Host> = OnceLock::new();
        HOST.get_or_init(|| {
            let target = Table::get()
                .host()
                .or_else(|| Table::get().by_name("x86_64"))
                .expect("the arch table has x86_64");
            let host = Host::new(target, kernel_runs_compat(target));
            tracing::debug!(
                host = %target.name,
                compat = ?host.compat.iter().map(|t| &t.name).collect::<Vec<_>>(),
                "host targets run natively"
            );
            host
        })
    }

    /// A host of `target`, whose kernel runs its table compat targets when `compat` is true.
    pub fn new(target: &'static Target, compat: bool) -> Host {
        let compat = if compat {
            target
                .compat
                .iter()
                .filter_map(|n| Table::get().by_name(n))
                .collect()
        } else {
            Vec::new()
        };
        Host { target, compat }
    }

    /// A host named by its QEMU target (tests, `--host` in other tools).
    pub fn named(target: &str, compat: bool) -> Option<Host> {
        Table::get().by_name(target).map(|t| Host::new(t, compat))
    }

    /// The host's own target.
    pub fn target(&self) -> &'static Target {
        self.target
    }

    /// Does this host run `t`'s programs without emulation?
    pub fn runs_natively(&self, t: &Target) -> bool {
        t.name == self.target.name || self.compat.iter().any(|c| c.name == t.name)
    }

    /// Every target this host needs emulation for: what `install all` registers.
    pub fn foreign(&self) -> Vec<&'static Target> {
        Table::get()
            .targets()
            .iter()
            .filter(|t| !self.runs_natively(t))
            .collect()
    }
}

/// Does this kernel run the compat targets of `target`? On arm64 the CPU may lack AArch32 at
/// EL0 (and the kernel then refuses the 32-bit personality); elsewhere the compat ABIs of the
/// table are part of every distribution kernel.
fn kernel_runs_compat(target: &Target) -> bool {
    if target.name != "aarch64" {
        return !target.compat.is_empty();
    }
    use nix::sys::personality::{self, Persona};
    const PER_LINUX32: i32 = 0x0008;
    let Ok(before) = personality::get() else {
        return false;
    };
    let ok = personality::set(Persona::from_bits_retain(PER_LINUX32)).is_ok();
    let _ = personality::set(before);
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(ts: &[&Target]) -> Vec<String> {
        ts.iter().map(|t| t.name.clone()).collect()
    }

    #[test]
    fn x86_64_runs_i386() {
        let h = Host::named("x86_64", true).unwrap();
        let t = Table::get();
        assert!(h.runs_natively(t.by_name("x86_64").unwrap()));
        assert!(h.runs_natively(t.by_name("i386").unwrap()));
        assert!(!h.runs_natively(t.by_name("aarch64").unwrap()));
        let f = names(&h.foreign());
        assert!(!f.contains(&"i386".into()) && !f.contains(&"x86_64".into()));
        assert!(f.contains(&"arm".into()) && f.contains(&"aarch64".into()));
    }

    #[test]
    fn aarch64_runs_arm_only_with_aarch32() {
        let t = Table::get();
        let arm = t.by_name("arm").unwrap();
        let with = Host::named("aarch64", true).unwrap();
        assert!(with.runs_natively(arm));
        assert!(!names(&with.foreign()).contains(&"arm".into()));
        assert!(!with.runs_natively(t.by_name("armeb").unwrap()));
        let without = Host::named("aarch64", false).unwrap();
        assert!(!without.runs_natively(arm));
        assert!(names(&without.foreign()).contains(&"arm".into()));
        assert!(names(&without.foreign()).contains(&"x86_64".into()));
    }

    #[test]
    fn ppc64le_and_s390x_run_only_themselves() {
        for name in ["ppc64le", "s390x"] {
            let h = Host::named(name, true).unwrap();
            let f = names(&h.foreign());
            assert_eq!(f.len(), Table::get().targets().len() - 1, "{name}: {f:?}");
            assert!(!f.contains(&name.to_string()));
            assert!(f.contains(&"ppc64".into()) || name == "ppc64");
        }
    }

    #[test]
    fn this_host_is_detected() {
        let h = Host::detect();
        assert!(h.runs_natively(Table::get().host().unwrap()));
    }
}
