//! Executing a program through the kernel: written to a directory that allows exec, started
//! with a chosen argv[0], output collected, killed after a timeout. `verify`'s probes run this
//! way, through the host's binfmt_misc or through a private scratch instance in a user
//! namespace of their own (`in_scratch`), where a registration can be tried without touching
//! anyone's handlers.

use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long a program may take before it counts as hung (QEMU starts in ~20 ms).
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// What a program did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// Its exit status (None: killed by a signal).
    pub status: Option<i32>,
    /// Its standard output (at most 64 KiB).
    pub stdout: String,
    /// Its standard error (at most 64 KiB).
    pub stderr: String,
}

/// Why a program could not be run.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// No directory could hold an executable file.
    #[error(
        "no writable directory that allows executing files: {}; mount one (`mount -t tmpfs -o exec tmpfs /tmp`) or point TMPDIR at a writable directory on a file system mounted without noexec",
        describe_tried(.tried)
    )]
    NoExecDir {
        /// Each directory tried and why it was refused.
        tried: Vec<(PathBuf, String)>,
    },
    /// exec(2) refused the program.
    #[error("cannot execute `{path}`")]
    Spawn {
        /// The program's path.
        path: PathBuf,
        /// What the kernel said.
        #[source]
        source: io::Error,
    },
    /// It ran past the timeout and was killed.
    #[error("`{path}` did not finish within {} s", TIMEOUT.as_secs())]
    TimedOut {
        /// The program's path.
        path: PathBuf,
    },
    /// No private binfmt_misc instance can be made here (Linux 6.7+ and user namespaces).
    #[error("no private binfmt_misc instance can be made here: {0}")]
    NoScratch(String),
}

impl ExecError {
    /// The errno exec(2) failed with, if that is what happened.
    pub fn errno(&self) -> Option<i32> {
        match self {
            ExecError::Spawn { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

fn describe_tried(tried: &[(PathBuf, String)]) -> String {
    tried
        .iter()
        .map(|(p, why)| format!("`{}` ({why})", p.display()))
        .collect::<Vec<_>>()
        .join(", ")
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

/// The directories tried for executable files: `$TMPDIR` (else `/tmp`), `/dev/shm`, `/run`,
/// `/var/tmp`.
fn candidates() -> Vec<PathBuf> {
    let mut c = vec![std::env::temp_dir()];
    for d in ["/dev/shm", "/run", "/var/tmp"] {
        if !c.iter().any(|x| x == Path::new(d)) {
            c.push(PathBuf::from(d));
        }
    }
    c
}

/// Writes `bytes` as an executable file named `name` in the first candidate directory that
/// exists, is writable and is not mounted `noexec`.
pub fn write_executable(name: &str, bytes: &[u8]) -> Result<TempExecutable, ExecError> {
    let mut tried = Vec::new();
    for base in candidates() {
        match nix::sys::statvfs::statvfs(&base) {
            Err(e) => {
                tried.push((base, e.desc().to_string()));
                continue;
            }
            Ok(s) if s.flags().contains(nix::sys::statvfs::FsFlags::ST_NOEXEC) => {
                tried.push((base, "mounted noexec".into()));
                continue;
            }
            Ok(_) => {}
        }
        let written = tempfile::Builder::new()
            .prefix("binfmtctl-")
            .tempdir_in(&base)
            .and_then(|dir| {
                let path = dir.path().join(name);
                std::fs::write(&path, bytes)?;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
                Ok(TempExecutable { _dir: dir, path })
            });
        match written {
            Ok(t) => return Ok(t),
            Err(e) => tried.push((base, e.to_string())),
        }
    }
    Err(ExecError::NoExecDir { tried })
}

/// Runs `program` with no arguments and argv[0] `argv0` through this process's binfmt_misc.
pub fn run(program: &Path, argv0: &str) -> Result<ExecOutput, ExecError> {
    let mut cmd = Command::new(program);
    cmd.arg0(argv0);
    run_command(cmd, program)
}

/// Runs `program` (argv[0] `argv0`) in a user and mount namespace of its own, where a private
/// binfmt_misc instance holds only `register_line`: what a handler would do, tried without
/// registering it anywhere that matters. Needs Linux 6.7+ and user namespaces.
pub fn in_scratch(
    program: &Path,
    argv0: &str,
    register_line: &str,
) -> Result<ExecOutput, ExecError> {
    let mut cmd = Command::new(program);
    cmd.arg0(argv0);
    crate::sys::in_private_binfmt(&mut cmd, register_line)
        .map_err(|e| ExecError::NoScratch(e.to_string()))?;
    match run_command(cmd, program) {
        // The hook's own failures (no user namespace, no private mount, the line refused)
        // surface as a failed spawn: nothing ran, so this says nothing about the handler.
        Err(ExecError::Spawn { source, .. }) => Err(ExecError::NoScratch(source.to_string())),
        other => other,
    }
}

/// Starts `cmd`, collecting its output, killing it after [`TIMEOUT`]. Retries briefly on
/// ETXTBSY (another thread may still hold the freshly written file open).
fn run_command(mut cmd: Command, program: &Path) -> Result<ExecOutput, ExecError> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut attempts = 0;
    let mut child = loop {
        match cmd.spawn() {
            Ok(c) => break c,
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && attempts < 50 => {
                attempts += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(source) => {
                return Err(ExecError::Spawn {
                    path: program.to_path_buf(),
                    source,
                });
            }
        }
    };
    let reader = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut s = Vec::new();
            if let Some(mut r) = r {
                let _ = r.by_ref().take(64 * 1024).read_to_end(&mut s);
            }
            String::from_utf8_lossy(&s).into_owned()
        })
    };
    let out = reader(
        child
            .stdout
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    );
    let err = reader(
        child
            .stderr
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    );
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) => {}
            Err(source) => {
                return Err(ExecError::Spawn {
                    path: program.to_path_buf(),
                    source,
                });
            }
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(ExecError::TimedOut {
                path: program.to_path_buf(),
            });
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    Ok(ExecOutput {
        status: status.code(),
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}
