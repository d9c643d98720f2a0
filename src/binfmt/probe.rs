//! Probe programs: one tiny static program per QEMU target (`probes/`, built from assembly with
//! Debian's cross binutils), embedded in the binary. `verify` writes one to a temporary file and
//! executes it through the kernel, so the registered handler, not QEMU called by hand, runs it.

use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

include!(concat!(env!("OUT_DIR"), "/probes.rs"));

/// How long a probe may take before it counts as hung (QEMU starts in ~20 ms).
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(20);

/// The probe program for a target, if one ships.
pub fn program(target: &str) -> Option<&'static [u8]> {
    PROBES.iter().find(|(n, _)| *n == target).map(|(_, p)| *p)
}

/// What a probe prints when it runs correctly.
pub fn expected_output(target: &str) -> String {
    format!("binfmtctl-probe {target}\n")
}

/// The outcome of running a probe.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeResult {
    /// The target probed.
    pub target: String,
    /// Passed, failed, or could not be run because no probe program ships for the target.
    pub outcome: Outcome,
    /// A one-line explanation (what it printed, the exit status, or why it could not run).
    pub detail: String,
}

/// How a probe went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// It printed the expected line and exited 0.
    Passed,
    /// It ran wrongly or not at all.
    Failed,
    /// No probe program exists for the target; the handler was not exercised, which counts as
    /// a failure (nothing proved it works).
    NoProbe,
}

impl ProbeResult {
    /// Proved to work (a probe that did not run proves nothing).
    pub fn ok(&self) -> bool {
        self.outcome == Outcome::Passed
    }

    /// Passed for real.
    pub fn passed(&self) -> bool {
        self.outcome == Outcome::Passed
    }
}

/// Runs the target's probe through the kernel (exec of a foreign ELF file).
pub fn run(target: &str) -> ProbeResult {
    let result = |passed: bool, detail: String| ProbeResult {
        target: target.to_string(),
        outcome: if passed {
            Outcome::Passed
        } else {
            Outcome::Failed
        },
        detail,
    };
    let Some(bytes) = program(target) else {
        return ProbeResult {
            target: target.to_string(),
            outcome: Outcome::NoProbe,
            detail: format!("not run: no probe program ships for {target} (see probes/README.md)"),
        };
    };
    let file = match write_executable(target, bytes) {
        Ok(f) => f,
        Err(e) => return result(false, format!("cannot write the probe program: {e}")),
    };
    match run_with_timeout(file.path(), PROBE_TIMEOUT) {
        Ok((status, stdout, stderr)) => {
            let want = expected_output(target);
            if status == Some(0) && stdout == want {
                result(true, format!("printed `{}`", want.trim_end()))
            } else {
                let status = status.map_or("was killed".to_string(), |c| format!("exited {c}"));
                let mut detail = format!("{status}, printed {:?}", stdout);
                if !stderr.trim().is_empty() {
                    detail.push_str(&format!(", stderr {:?}", stderr.trim()));
                }
                result(false, detail)
            }
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOEXEC) => result(
            false,
            format!("exec format error: no enabled handler runs {target} programs"),
        ),
        Err(e) if e.kind() == io::ErrorKind::TimedOut => result(
            false,
            format!("did not finish within {} s", PROBE_TIMEOUT.as_secs()),
        ),
        Err(e) => result(false, format!("could not execute: {e}")),
    }
}

/// A temporary executable file that is removed on drop.
pub struct TempExecutable {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl TempExecutable {
    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Writes `bytes` as an executable file in a directory that allows exec: `$TMPDIR`, else
/// `/dev/shm`, else `/run`, else `/var/tmp` (the first whose mount is not `noexec`).
pub fn write_executable(name: &str, bytes: &[u8]) -> io::Result<TempExecutable> {
    let mut candidates: Vec<PathBuf> = vec![std::env::temp_dir()];
    candidates.extend(["/dev/shm", "/run", "/var/tmp"].map(PathBuf::from));
    let mut last = io::Error::other("no writable directory allows executing files");
    for base in candidates {
        if is_noexec(&base) {
            continue;
        }
        let dir = match tempfile::Builder::new()
            .prefix("binfmtctl-")
            .tempdir_in(&base)
        {
            Ok(d) => d,
            Err(e) => {
                last = e;
                continue;
            }
        };
        let path = dir.path().join(format!("probe-{name}"));
        std::fs::write(&path, bytes)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        return Ok(TempExecutable { _dir: dir, path });
    }
    Err(last)
}

fn is_noexec(dir: &Path) -> bool {
    nix::sys::statvfs::statvfs(dir)
        .map(|s| s.flags().contains(nix::sys::statvfs::FsFlags::ST_NOEXEC))
        .unwrap_or(true)
}

/// Runs a program with no arguments, collecting its output, killing it after `timeout`.
/// Retries briefly on ETXTBSY (another thread may still hold the freshly written file open).
pub fn run_with_timeout(
    program: &Path,
    timeout: Duration,
) -> io::Result<(Option<i32>, String, String)> {
    let mut attempts = 0;
    let mut child = loop {
        match Command::new(program)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(c) => break c,
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && attempts < 50 => {
                attempts += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e),
        }
    };
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let out_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.by_ref().take(64 * 1024).read_to_end(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.by_ref().take(64 * 1024).read_to_end(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::new(io::ErrorKind::TimedOut, "timed out"));
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let stdout = String::from_utf8_lossy(&out_reader.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned();
    Ok((status.code(), stdout, stderr))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::Table;

    #[test]
    fn every_probe_is_a_static_program_of_its_target() {
        assert!(!PROBES.is_empty(), "no probe programs were embedded");
        for (name, bytes) in PROBES {
            let target = Table::get()
                .by_name(name)
                .unwrap_or_else(|| panic!("probe {name} has no target"));
            assert!(
                target.matches_header(bytes),
                "probe {name} does not match its target's magic"
            );
            let info = crate::elf::inspect_bytes(Path::new(name), bytes).unwrap();
            assert!(info.is_static, "probe {name} is dynamic");
            assert_eq!(info.target.as_deref(), Some(*name));
            assert!(bytes.len() < 4096, "probe {name} is {} bytes", bytes.len());
        }
    }

    #[test]
    fn every_target_has_a_probe() {
        for t in Table::get().targets() {
            assert!(program(&t.name).is_some(), "no probe for {}", t.name);
        }
    }

    #[test]
    fn host_probe_runs_natively() {
        let host = Table::get().host().unwrap();
        let r = run(&host.name);
        assert!(r.passed(), "{r:?}");
    }
}
