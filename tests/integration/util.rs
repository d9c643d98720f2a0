//! Shared test helpers: running our binaries, fixtures, prerequisites, and a guard that restores
//! the host's binfmt_misc entries.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use emukit::binfmt::{BinfmtFs, Entry};

/// Skips (or, in strict mode, fails) a test whose prerequisite is missing.
#[macro_export]
macro_rules! require {
    ($cond:expr, $($why:tt)+) => {
        if !$cond {
            let why = format!($($why)+);
            if std::env::var_os("EMUKIT_TEST_STRICT").is_some() {
                panic!("cannot run this test: {why}");
            }
            eprintln!("SKIPPED: {why} (EMUKIT_TEST_STRICT=1 makes this a failure)");
            return;
        }
    };
}

/// The `binfmtctl` binary under test.
pub fn binfmtctl_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_binfmtctl"))
}

/// The `emubuild` binary under test.
pub fn emubuild_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_emubuild"))
}

/// A command's outcome with convenient accessors.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from_output(o: Output) -> Run {
        Run {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    #[track_caller]
    pub fn success(self) -> Run {
        assert_eq!(
            self.code,
            Some(0),
            "expected success\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    #[track_caller]
    pub fn code_is(self, code: i32) -> Run {
        assert_eq!(
            self.code,
            Some(code),
            "expected exit {code}\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", self.stdout))
    }
}

/// Runs `binfmtctl` with a private state directory for ownership records.
pub fn binfmtctl(state: &Path, args: &[&str]) -> Run {
    binfmtctl_env(state, args, &[])
}

/// Runs `binfmtctl` with extra environment variables.
pub fn binfmtctl_env(state: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut c = Command::new(binfmtctl_bin());
    c.args(args)
        .env("BINFMTCTL_STATE_DIR", state)
        .env_remove("BINFMTCTL_ROOT");
    for (k, v) in env {
        c.env(k, v);
    }
    Run::from_output(c.output().expect("run binfmtctl"))
}

/// Where `tests/run.sh` puts fixtures.
pub fn fixtures() -> PathBuf {
    std::env::var_os("EMUKIT_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-fixtures"))
}

/// Debian's static busybox for a Debian architecture (arm64, armhf, s390x, ppc64el).
pub fn busybox(debian_arch: &str) -> Option<PathBuf> {
    let p = fixtures().join("busybox").join(debian_arch).join("busybox");
    p.exists().then_some(p)
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Can this process use user namespaces (`unshare -Urm`)?
pub fn userns_works() -> bool {
    Command::new("unshare")
        .args(["-Urm", "true"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Can a user namespace mount its own binfmt_misc (Linux 6.7+)?
pub fn private_binfmt_works() -> bool {
    Command::new("unshare")
        .args([
            "-Urm",
            "sh",
            "-c",
            "mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc && test -e /proc/sys/fs/binfmt_misc/register",
        ])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Runs a shell script inside a new user and mount namespace (a private binfmt_misc can be
/// mounted there); `$BINFMTCTL` names the binary.
pub fn in_userns(script: &str, state: &Path) -> Run {
    let o = Command::new("unshare")
        .args(["-Urm", "sh", "-ec", script])
        .env("BINFMTCTL", binfmtctl_bin())
        .env("BINFMTCTL_STATE_DIR", state)
        .env_remove("BINFMTCTL_ROOT")
        .output()
        .expect("unshare");
    Run::from_output(o)
}

/// Saves the host's binfmt_misc state and restores it on drop: entries the test added are
/// removed, entries it removed (or that `take` set aside) are registered again in their
/// original order, enabled states come back, and a mount made by the test is undone.
pub struct HostBinfmt {
    fs: BinfmtFs,
    was_mounted: bool,
    before: Vec<Entry>,
}

impl HostBinfmt {
    /// Saves the state; mounts binfmt_misc if needed (and remembers to unmount).
    pub fn save() -> HostBinfmt {
        let fs = BinfmtFs::new("/proc/sys/fs/binfmt_misc");
        let was_mounted = fs.is_mounted();
        fs.ensure_mounted().expect("mount binfmt_misc");
        let before = fs.entries().expect("list entries");
        HostBinfmt {
            fs,
            was_mounted,
            before,
        }
    }

    pub fn fs(&self) -> &BinfmtFs {
        &self.fs
    }

    /// Sets aside existing entries with these names for the test's duration.
    pub fn take(&self, names: &[&str]) {
        for n in names {
            if self.before.iter().any(|e| e.name == *n) {
                self.fs.remove(n).expect("set aside an entry");
            }
        }
    }
}

impl Drop for HostBinfmt {
    fn drop(&mut self) {
        let now = self.fs.entries().unwrap_or_default();
        for e in &now {
            match self.before.iter().find(|b| b.name == e.name) {
                Some(b) if b == e => {}
                _ => {
                    let _ = self.fs.remove(&e.name);
                }
            }
        }
        // `before` is newest first; re-register oldest first to restore precedence.
        let present: Vec<String> = self.fs.names().unwrap_or_default();
        for b in self.before.iter().rev() {
            if !present.contains(&b.name) {
                if let Err(e) = self.fs.register(&b.to_registration()) {
                    eprintln!("could not restore binfmt entry {}: {e}", b.name);
                }
                if !b.enabled {
                    let _ = self.fs.set_enabled(&b.name, false);
                }
            }
        }
        if !self.was_mounted {
            let _ = nix::mount::umount(self.fs.root());
        }
    }
}
