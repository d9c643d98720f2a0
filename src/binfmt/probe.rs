//! Probe programs: one tiny static program per QEMU target (`probes/`, built from assembly with
//! Debian's cross binutils), embedded in the binary. Each prints `binfmtctl-probe <target>` and
//! then its own argv[0]. `verify` executes one through the kernel, so the registered handler,
//! not QEMU called by hand, runs it; started with a chosen argv[0] under a P handler in a
//! scratch instance, it also tells whether the emulator honours P.

use serde::Serialize;

use super::entry::Registration;
use super::exec::{ExecError, ExecOutput};
use super::kernel::Kernel;

include!(concat!(env!("OUT_DIR"), "/probes.rs"));

/// The argv[0] a probe is started with: under a handler with P it sees exactly this, without
/// P (or under an emulator that ignores P) it sees its own path.
pub const ARGV0: &str = "binfmtctl-argv0-check";

/// The probe program for a target, if one ships.
pub fn program(target: &str) -> Option<&'static [u8]> {
    PROBES.iter().find(|(n, _)| *n == target).map(|(_, p)| *p)
}

/// The first line a probe prints when it runs correctly (the second is its argv[0]).
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
    /// Whether the program saw the argv[0] it was started with (P honoured), when it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub argv0_preserved: Option<bool>,
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

/// The file name a probe is written under.
fn file_name(target: &str) -> String {
    format!("probe-{target}")
}

/// What a probe's output says: (ran correctly, the argv[0] it saw if it printed one).
fn read_output(target: &str, out: &ExecOutput) -> (bool, Option<String>) {
    let mut lines = out.stdout.split_inclusive('\n');
    let first_ok = lines.next() == Some(expected_output(target).as_str());
    let argv0 = lines
        .next()
        .and_then(|l| l.strip_suffix('\n'))
        .map(str::to_string);
    let rest_empty = lines.next().is_none();
    (out.status == Some(0) && first_ok && rest_empty, argv0)
}

/// Runs the target's probe through the kernel (exec of a foreign ELF file), as any program
/// of that architecture would run here.
pub fn run(kernel: &dyn Kernel, target: &str) -> ProbeResult {
    let result = |outcome: Outcome, detail: String, argv0_preserved: Option<bool>| ProbeResult {
        target: target.to_string(),
        outcome,
        detail,
        argv0_preserved,
    };
    let Some(bytes) = program(target) else {
        return result(
            Outcome::NoProbe,
            format!("not run: no probe program ships for {target} (see probes/README.md)"),
            None,
        );
    };
    match kernel.exec(&file_name(target), bytes, ARGV0) {
        Ok(out) => {
            let (ok, argv0) = read_output(target, &out);
            let preserved = argv0.as_deref().map(|a| a == ARGV0);
            if ok {
                let want = expected_output(target);
                result(
                    Outcome::Passed,
                    format!("printed `{}`", want.trim_end()),
                    preserved,
                )
            } else {
                let status = out
                    .status
                    .map_or("was killed".to_string(), |c| format!("exited {c}"));
                let mut detail = format!("{status}, printed {:?}", out.stdout);
                if !out.stderr.trim().is_empty() {
                    detail.push_str(&format!(", stderr {:?}", out.stderr.trim()));
                }
                result(Outcome::Failed, detail, None)
            }
        }
        Err(e) => result(
            Outcome::Failed,
            exec_failure(kernel, target, bytes, &e),
            None,
        ),
    }
}

/// Why exec failed, in terms of the handler the kernel chose.
fn exec_failure(kernel: &dyn Kernel, target: &str, program: &[u8], e: &ExecError) -> String {
    // The error and its cause, as one line (the detail is all a report keeps).
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    match e.errno() {
        Some(libc::ENOEXEC) => {
            format!("exec format error: no enabled handler runs {target} programs")
        }
        // The probe was written a moment ago: ENOENT is the handler's interpreter.
        Some(libc::ENOENT) => match kernel.handler_for(program, Some(&file_name(target))) {
            Some(h) if !h.flags.fix_binary => format!(
                "{text}: the handler `{}` names the interpreter `{}`, which does not exist in this mount namespace (a chroot or container), and it lacks the F flag that would have opened it at registration; `binfmtctl install --replace {target}` registers it with F, or make `{}` visible here",
                h.name, h.interpreter, h.interpreter
            ),
            Some(h) => format!(
                "{text}: the handler `{}` (interpreter `{}`) could not start it",
                h.name, h.interpreter
            ),
            None if !kernel.is_mounted() => format!(
                "{text}: the program exists, so the interpreter of the handler that took it is missing in this mount namespace (a chroot or container); binfmt_misc is not visible at `{}` to say which: handlers used in chroots and containers need the F flag (`binfmtctl install --replace {target}`, run where the emulator exists), or mount binfmt_misc here to see them",
                kernel.root().display()
            ),
            None => text,
        },
        _ => text,
    }
}

/// Does `reg`'s emulator honour the P flag? Runs the target's probe through a scratch
/// instance holding `reg` with P set (no other process sees it) and reads back the argv[0]
/// the program saw. Err says why it could not be told (no scratch instance here, no probe).
pub fn preserves_argv0(
    kernel: &dyn Kernel,
    target: &str,
    reg: &Registration,
) -> Result<bool, String> {
    let bytes = program(target).ok_or_else(|| format!("no probe program ships for {target}"))?;
    let mut with_p = reg.clone();
    with_p.flags.preserve_argv0 = true;
    let out = kernel
        .exec_in_scratch(&with_p, &file_name(target), bytes, ARGV0)
        .map_err(|e| e.to_string())?;
    match read_output(target, &out) {
        (true, Some(argv0)) => Ok(argv0 == ARGV0),
        (true, None) => Err("the probe program does not report its argv[0]".into()),
        (false, _) => Err(format!(
            "the probe failed under the emulator (exit {:?}, printed {:?})",
            out.status, out.stdout
        )),
    }
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
            let info = crate::elf::inspect_bytes(std::path::Path::new(name), bytes).unwrap();
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
        let r = run(&crate::binfmt::BinfmtFs::new("/nonexistent"), &host.name);
        assert!(r.passed(), "{r:?}");
    }

    #[test]
    fn output_is_read_line_by_line() {
        let out = |s: &str, status| ExecOutput {
            status: Some(status),
            stdout: s.into(),
            stderr: String::new(),
        };
        assert_eq!(
            read_output("arm", &out("binfmtctl-probe arm\nx\n", 0)),
            (true, Some("x".into()))
        );
        assert_eq!(
            read_output("arm", &out("binfmtctl-probe arm\n", 0)),
            (true, None)
        );
        assert!(!read_output("arm", &out("binfmtctl-probe arm\nx\n", 1)).0);
        assert!(!read_output("arm", &out("binfmtctl-probe s390x\nx\n", 0)).0);
        assert!(!read_output("arm", &out("binfmtctl-probe arm\nx\ny\n", 0)).0);
    }
}
