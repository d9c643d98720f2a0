//! An in-memory [`Kernel`] for unit tests, keeping binfmt_misc's rules: entries newest first
//! and the newest enabled match wins, EEXIST for a taken name, F opening the interpreter at
//! registration (ENOENT when it is missing), disabled entries and a disabled facility, and
//! exec that runs a probe natively, through the matching handler's emulator, or fails with
//! ENOEXEC. Emulators are declared with what they run and whether they honour P.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::entry::{Entry, Registration};
use super::exec::{ExecError, ExecOutput};
use super::fs::{FsError, Instance, register_error};
use super::kernel::Kernel;
use crate::arch::Table;
use crate::host::Host;

/// An emulator file the fake knows.
#[derive(Debug, Clone)]
pub struct FakeEmulator {
    /// The QEMU target it runs.
    pub target: String,
    /// Does it read the P flag (AT_FLAGS_PRESERVE_ARGV0)?
    pub honours_p: bool,
}

#[derive(Debug, Default)]
struct State {
    mounted: bool,
    disabled: bool,
    /// Newest first.
    entries: Vec<Entry>,
    emulators: HashMap<String, FakeEmulator>,
    /// Every change, in order (`register qemu-arm`, `remove qemu-arm`, ...).
    log: Vec<String>,
}

/// The fake kernel.
#[derive(Debug)]
pub struct FakeKernel {
    root: tempfile::TempDir,
    host: Host,
    instance: Instance,
    scratch: bool,
    state: Mutex<State>,
}

fn os_err(errno: i32) -> io::Error {
    io::Error::from_raw_os_error(errno)
}

impl FakeKernel {
    /// A host of `host` (its compat targets running natively), binfmt_misc mounted, with
    /// scratch instances.
    pub fn new(host: &str) -> FakeKernel {
        FakeKernel {
            root: tempfile::tempdir().expect("temp dir"),
            host: Host::named(host, true).expect("a target"),
            instance: Instance::Host,
            scratch: true,
            state: Mutex::new(State {
                mounted: true,
                ..State::default()
            }),
        }
    }

    /// This host's kernel does not run its compat targets (arm64 without AArch32).
    pub fn without_compat(mut self) -> Self {
        self.host = Host::new(self.host.target(), false);
        self
    }

    /// No private instance can be made (older kernel, no user namespaces).
    pub fn without_scratch(mut self) -> Self {
        self.scratch = false;
        self
    }

    /// binfmt_misc starts unmounted.
    pub fn unmounted(self) -> Self {
        self.state.lock().unwrap().mounted = false;
        self
    }

    /// The mount is this instance.
    pub fn instance_is(mut self, instance: Instance) -> Self {
        self.instance = instance;
        self
    }

    /// Declares an emulator file at `path`.
    pub fn emulator(&self, path: &str, target: &str, honours_p: bool) -> &Self {
        self.state.lock().unwrap().emulators.insert(
            path.to_string(),
            FakeEmulator {
                target: target.into(),
                honours_p,
            },
        );
        self
    }

    /// Disables the facility (`echo 0 > status`).
    pub fn disable_all(&self) {
        self.state.lock().unwrap().disabled = true;
    }

    /// The changes made so far.
    pub fn log(&self) -> Vec<String> {
        self.state.lock().unwrap().log.clone()
    }

    fn mounted(&self, st: &State) -> Result<(), FsError> {
        if st.mounted {
            Ok(())
        } else {
            Err(FsError::NotMounted {
                root: self.root.path().to_path_buf(),
            })
        }
    }

    fn missing(&self, name: &str) -> FsError {
        FsError::Io {
            action: "write",
            path: self.root.path().join(name),
            hint: String::new(),
            source: os_err(libc::ENOENT),
        }
    }

    /// Runs `program` as the kernel would with `entries` (newest first).
    fn run(
        &self,
        st: &State,
        entries: &[Entry],
        name: &str,
        program: &[u8],
        argv0: &str,
    ) -> Result<ExecOutput, ExecError> {
        let path = PathBuf::from(format!("/fake/{name}"));
        let spawn = |errno| ExecError::Spawn {
            path: path.clone(),
            source: os_err(errno),
        };
        let target = Table::get()
            .for_header(program)
            .ok_or_else(|| spawn(libc::ENOEXEC))?;
        let printed = |seen: &str| ExecOutput {
            status: Some(0),
            stdout: format!("binfmtctl-probe {}\n{seen}\n", target.name),
            stderr: String::new(),
        };
        if self.host.runs_natively(target) {
            return Ok(printed(argv0));
        }
        let entry = entries
            .iter()
            .find(|e| e.enabled && e.matcher.matches(program, Some(name)))
            .ok_or_else(|| spawn(libc::ENOEXEC))?;
        let emulator = st
            .emulators
            .get(&entry.interpreter)
            .ok_or_else(|| spawn(libc::ENOENT))?;
        if emulator.target != target.name {
            return Ok(ExecOutput {
                status: Some(1),
                stdout: String::new(),
                stderr: "qemu: Invalid ELF image for this architecture".into(),
            });
        }
        let seen = if entry.flags.preserve_argv0 && emulator.honours_p {
            argv0.to_string()
        } else {
            path.display().to_string()
        };
        Ok(printed(&seen))
    }
}

impl Kernel for FakeKernel {
    fn root(&self) -> &Path {
        self.root.path()
    }
    fn host(&self) -> &Host {
        &self.host
    }
    fn is_mounted(&self) -> bool {
        self.state.lock().unwrap().mounted
    }
    fn ensure_mounted(&self) -> Result<bool, FsError> {
        let mut st = self.state.lock().unwrap();
        let was = st.mounted;
        st.mounted = true;
        Ok(!was)
    }
    fn instance(&self) -> Instance {
        self.instance
    }
    fn enabled(&self) -> Result<bool, FsError> {
        let st = self.state.lock().unwrap();
        self.mounted(&st)?;
        Ok(!st.disabled)
    }
    fn entries(&self) -> Result<Vec<Entry>, FsError> {
        let st = self.state.lock().unwrap();
        self.mounted(&st)?;
        Ok(st.entries.clone())
    }
    fn entry(&self, name: &str) -> Result<Option<Entry>, FsError> {
        super::entry::validate_name(name)?;
        let st = self.state.lock().unwrap();
        self.mounted(&st)?;
        Ok(st.entries.iter().find(|e| e.name == name).cloned())
    }
    fn register(&self, reg: &Registration) -> Result<(), FsError> {
        let line = reg.encode()?;
        let mut st = self.state.lock().unwrap();
        self.mounted(&st)?;
        if st.entries.iter().any(|e| e.name == reg.name) {
            return Err(register_error(reg, &line, os_err(libc::EEXIST)));
        }
        if reg.flags.fix_binary && !st.emulators.contains_key(&reg.interpreter) {
            return Err(register_error(reg, &line, os_err(libc::ENOENT)));
        }
        st.entries.insert(0, Entry::registered(reg));
        st.log.push(format!("register {} {}", reg.name, reg.flags));
        Ok(())
    }
    fn remove(&self, name: &str) -> Result<(), FsError> {
        let mut st = self.state.lock().unwrap();
        self.mounted(&st)?;
        let before = st.entries.len();
        st.entries.retain(|e| e.name != name);
        if st.entries.len() == before {
            return Err(self.missing(name));
        }
        st.log.push(format!("remove {name}"));
        Ok(())
    }
    fn set_enabled(&self, name: &str, on: bool) -> Result<(), FsError> {
        let mut st = self.state.lock().unwrap();
        self.mounted(&st)?;
        let Some(e) = st.entries.iter_mut().find(|e| e.name == name) else {
            return Err(self.missing(name));
        };
        e.enabled = on;
        st.log
            .push(format!("{} {name}", if on { "enable" } else { "disable" }));
        Ok(())
    }
    fn exec(&self, name: &str, program: &[u8], argv0: &str) -> Result<ExecOutput, ExecError> {
        let st = self.state.lock().unwrap();
        let entries = if st.mounted && !st.disabled {
            st.entries.clone()
        } else {
            Vec::new()
        };
        self.run(&st, &entries, name, program, argv0)
    }
    fn exec_in_scratch(
        &self,
        reg: &Registration,
        name: &str,
        program: &[u8],
        argv0: &str,
    ) -> Result<ExecOutput, ExecError> {
        if !self.scratch {
            return Err(ExecError::NoScratch(
                "the fake kernel has no scratch instances".into(),
            ));
        }
        let st = self.state.lock().unwrap();
        if reg.flags.fix_binary && !st.emulators.contains_key(&reg.interpreter) {
            return Err(ExecError::NoScratch(format!(
                "`{}` does not exist",
                reg.interpreter
            )));
        }
        self.run(&st, &[Entry::registered(reg)], name, program, argv0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binfmt::Flags;

    fn reg(target: &str, interp: &str, flags: Flags) -> Registration {
        Registration::for_target(Table::get().by_name(target).unwrap(), interp, flags)
    }

    #[test]
    fn keeps_the_kernels_rules() {
        let k = FakeKernel::new("x86_64");
        k.emulator("/q/arm", "arm", true);
        let arm = reg("arm", "/q/arm", Flags::fix_binary());
        let probe = crate::binfmt::probe::program("arm").unwrap();
        assert_eq!(
            k.exec("p", probe, "x").unwrap_err().errno(),
            Some(libc::ENOEXEC)
        );
        k.register(&arm).unwrap();
        let e = k.register(&arm).unwrap_err();
        assert!(e.to_string().contains("exists already"), "{e}");
        assert!(
            k.register(&reg("aarch64", "/missing", Flags::fix_binary()))
                .unwrap_err()
                .to_string()
                .contains("does not exist")
        );
        let out = k.exec("p", probe, "x").unwrap();
        assert_eq!(out.stdout, "binfmtctl-probe arm\n/fake/p\n");
        // A newer overlapping entry wins.
        k.emulator("/q/other", "s390x", true);
        let mut other = reg("arm", "/q/other", Flags::fix_binary());
        other.name = "other".into();
        k.register(&other).unwrap();
        assert_eq!(k.entries().unwrap()[0].name, "other");
        assert_eq!(k.exec("p", probe, "x").unwrap().status, Some(1));
        k.set_enabled("other", false).unwrap();
        assert_eq!(k.exec("p", probe, "x").unwrap().status, Some(0));
        k.disable_all();
        assert!(k.exec("p", probe, "x").is_err());
        // Natively run targets need no handler.
        let native = crate::binfmt::probe::program("i386").unwrap();
        assert_eq!(k.exec("p", native, "x").unwrap().status, Some(0));
    }
}
