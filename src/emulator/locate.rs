//! Finding an installed static emulator: `--emulator-dir` first, then the usual places
//! (`/usr/bin/qemu-<t>-static`, static `/usr/bin/qemu-<t>`, `/usr/libexec/qemu-binfmt/`,
//! `/usr/local/bin`). Dynamic ones and ones for another host are refused, with the reason.

use std::path::{Path, PathBuf};

use super::{Emulator, EmulatorError, Origin, check};
use crate::arch::Target;

/// The names an emulator for `target` may have inside a directory.
fn names_in_dir(target: &Target) -> Vec<String> {
    vec![
        format!("{}-static", target.emulator),
        target.emulator.clone(),
    ]
}

/// The system places, in order.
fn system_candidates(target: &Target) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in ["/usr/bin", "/usr/local/bin"] {
        for n in names_in_dir(target) {
            out.push(Path::new(dir).join(n));
        }
    }
    out.push(PathBuf::from(format!(
        "/usr/libexec/qemu-binfmt/{}-binfmt-P",
        target.name
    )));
    out
}

/// Finds an emulator: in `dirs` (an unusable file there is an error, since the user pointed at
/// it), then, when `system` is true, in the usual places (unusable ones are skipped).
pub fn locate(target: &Target, dirs: &[PathBuf], system: bool) -> Result<Emulator, EmulatorError> {
    for dir in dirs {
        for n in names_in_dir(target) {
            let p = dir.join(n);
            if p.exists() {
                let real = std::fs::canonicalize(&p).unwrap_or(p);
                check(&real, target)?;
                return Ok(Emulator {
                    target: target.name.clone(),
                    path: real,
                    origin: Origin::Dir,
                });
            }
        }
    }
    let mut refused = Vec::new();
    if system {
        for p in system_candidates(target) {
            if !p.exists() {
                continue;
            }
            // Resolve symlinks: Debian's `*-binfmt-P` names make QEMU expect the P flag.
            let real = std::fs::canonicalize(&p).unwrap_or(p.clone());
            match check(&real, target) {
                Ok(()) => {
                    return Ok(Emulator {
                        target: target.name.clone(),
                        path: real,
                        origin: Origin::System,
                    });
                }
                Err(e) => {
                    tracing::debug!(candidate = %p.display(), error = %e, "emulator refused");
                    refused.push(format!("{} ({e})", p.display()))
                }
            }
        }
    }
    let tried = if refused.is_empty() {
        String::new()
    } else {
        format!("; refused: {}", refused.join("; "))
    };
    Err(EmulatorError::NotFound {
        target: target.name.clone(),
        tried,
        hint: format!(
            "run `binfmtctl fetch {}` (or `apt-get install qemu-user-static`), or point `--emulator-dir` at a directory holding `{}-static`",
            target.name, target.emulator
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::Table;

    #[test]
    fn explicit_dir_with_dynamic_emulator_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        // Any dynamically linked host program stands in for a dynamic QEMU build.
        let dynamic = ["/bin/ls", "/usr/bin/ls"]
            .iter()
            .map(Path::new)
            .find(|p| {
                crate::elf::inspect(p)
                    .map(|i| !i.is_static)
                    .unwrap_or(false)
            })
            .expect("a dynamic /bin/ls");
        let t = Table::get().by_name("s390x").unwrap();
        std::fs::copy(dynamic, dir.path().join("qemu-s390x-static")).unwrap();
        let err = locate(t, &[dir.path().to_path_buf()], false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("dynamically linked"), "{err}");
    }

    #[test]
    fn foreign_program_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let t = Table::get().by_name("s390x").unwrap();
        // A probe for another architecture is a static program, but not for this host.
        let foreign = Table::get()
            .targets()
            .iter()
            .find(|x| Some(x.name.as_str()) != Table::get().host().map(|h| h.name.as_str()))
            .and_then(|x| crate::binfmt::probe::program(&x.name))
            .expect("a foreign probe");
        std::fs::write(dir.path().join("qemu-s390x"), foreign).unwrap();
        let err = locate(t, &[dir.path().to_path_buf()], false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("but this host is"), "{err}");
    }

    #[test]
    fn nothing_found_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let t = Table::get().by_name("hexagon").unwrap();
        let err = locate(t, &[dir.path().to_path_buf()], false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("binfmtctl fetch hexagon"), "{err}");
    }
}
