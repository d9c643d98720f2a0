//! What the sandbox's init tells the worker, as typed values over a pipe: mount points it had
//! to create, warnings, and the one setup error that stopped it. Each message is one line of
//! JSON, so a new kind of failure is a new variant both sides know, never a string to search.

use std::io::Write;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::warning::Warning;

/// Exit status when the sandbox itself could not be set up (as `docker run`).
pub const SETUP_FAILED: i32 = 125;
/// The command exists but cannot be executed.
pub const NOT_EXECUTABLE: i32 = 126;
/// The command was not found.
pub const NOT_FOUND: i32 = 127;

/// An errno carried across the pipe (printed as nix prints it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Errno(pub i32);

impl From<nix::Error> for Errno {
    fn from(e: nix::Error) -> Self {
        Errno(e as i32)
    }
}

impl From<&std::io::Error> for Errno {
    fn from(e: &std::io::Error) -> Self {
        Errno(e.raw_os_error().unwrap_or(libc::EIO))
    }
}

impl From<rustix::io::Errno> for Errno {
    fn from(e: rustix::io::Errno) -> Self {
        Errno(e.raw_os_error())
    }
}

impl From<std::io::Error> for Errno {
    fn from(e: std::io::Error) -> Self {
        Errno::from(&e)
    }
}

impl std::fmt::Display for Errno {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", nix::Error::from_raw(self.0))
    }
}

/// Why the command never ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum SetupError {
    /// overlayfs refused the mount (no overlayfs, or not in this user namespace): the copying
    /// snapshotter can run the step instead.
    #[error("cannot mount the overlay (options {options}): {errno}")]
    Overlay {
        /// The mount options.
        options: String,
        /// What the kernel said.
        errno: Errno,
    },
    /// The layer stack does not fit one overlay mount's options.
    #[error("{layers} layers are too many for one overlay mount")]
    TooManyLayers {
        /// How many lower directories.
        layers: usize,
    },
    /// A step of building the root failed.
    #[error("cannot {what}: {errno}")]
    Sys {
        /// What was being done (`mount /proc`, `bind /dev/null`...).
        what: String,
        /// What the kernel said.
        errno: Errno,
    },
    /// A request that cannot be met (a mount over `/`, a bad working directory...).
    #[error("{0}")]
    Invalid(String),
    /// `--user` names no user of the image, or the switch failed.
    #[error("cannot become user {user}: {reason}")]
    User {
        /// What was asked.
        user: String,
        /// Why.
        reason: String,
    },
    /// The command is not in the image.
    #[error("`{program}`: command not found in the image")]
    NotFound {
        /// The command.
        program: String,
    },
    /// The kernel has no handler for the command's format.
    #[error("`{program}`: exec format error: {}", exec_format_hint(.target.as_deref()))]
    ExecFormat {
        /// The command.
        program: String,
        /// The QEMU target of the program, when its header names one.
        target: Option<String>,
    },
    /// exec failed otherwise.
    #[error("`{program}`: cannot execute: {errno}")]
    NotExecutable {
        /// The command.
        program: String,
        /// What the kernel said.
        errno: Errno,
    },
}

fn exec_format_hint(target: Option<&str>) -> String {
    match target {
        Some(t) => format!(
            "it is a {t} program and no enabled binfmt_misc handler runs it; `binfmtctl install {t}` registers one"
        ),
        None => {
            "no binfmt_misc handler runs it (not a program this host or any handler knows)".into()
        }
    }
}

impl SetupError {
    /// The exit status a run that failed this way ends with (as `docker run`).
    pub fn code(&self) -> i32 {
        match self {
            SetupError::NotFound { .. } => NOT_FOUND,
            SetupError::ExecFormat { .. } | SetupError::NotExecutable { .. } => NOT_EXECUTABLE,
            _ => SETUP_FAILED,
        }
    }

    /// A failed system call while building the root.
    pub fn sys(what: impl Into<String>, errno: impl Into<Errno>) -> SetupError {
        SetupError::Sys {
            what: what.into(),
            errno: errno.into(),
        }
    }
}

/// One message from the init.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Message {
    /// A path (relative to the root) created only to mount on.
    Created(PathBuf),
    /// A note for the user.
    Warning(Warning),
    /// The setup error that stopped the run.
    Failed(SetupError),
}

/// Writes one message as a line (errors are ignored: the worker sees the exit status anyway).
pub fn send(out: &mut impl Write, m: &Message) {
    if let Ok(mut line) = serde_json::to_vec(m) {
        line.push(b'\n');
        let _ = out.write_all(&line);
    }
}

/// Reads every message the init sent; a line that does not parse is a warning of its own.
pub fn receive(text: &str) -> Vec<Message> {
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| {
                Message::Failed(SetupError::Invalid(format!(
                    "unreadable message from the sandbox ({e}): {l}"
                )))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let sent = vec![
            Message::Created("etc/resolv.conf".into()),
            Message::Warning(Warning::NotProvided {
                path: "etc/hosts".into(),
                reason: "a\nb".into(),
            }),
            Message::Failed(SetupError::Overlay {
                options: "lowerdir=a:b".into(),
                errno: Errno(libc::EINVAL),
            }),
            Message::Failed(SetupError::ExecFormat {
                program: "sh".into(),
                target: Some("s390x".into()),
            }),
        ];
        let mut buf = Vec::new();
        for m in &sent {
            send(&mut buf, m);
        }
        assert_eq!(receive(&String::from_utf8(buf).unwrap()), sent);
        assert!(
            matches!(&receive("garbage")[0], Message::Failed(SetupError::Invalid(w)) if w.contains("garbage"))
        );
    }

    #[test]
    fn codes_and_text() {
        let e = SetupError::ExecFormat {
            program: "sh".into(),
            target: Some("s390x".into()),
        };
        assert_eq!(e.code(), NOT_EXECUTABLE);
        assert!(e.to_string().contains("binfmtctl install s390x"), "{e}");
        assert_eq!(
            SetupError::NotFound {
                program: "x".into()
            }
            .code(),
            NOT_FOUND
        );
        assert_eq!(
            SetupError::sys("mount /proc", nix::Error::EPERM).to_string(),
            "cannot mount /proc: EPERM: Operation not permitted"
        );
    }
}
