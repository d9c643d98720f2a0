//! The operations of `binfmtctl`: install, uninstall, verify, restore and keep, as library
//! calls on a [`Kernel`] that return reports (the CLI only prints them). Each target is handled
//! on its own: one failing target never hides the others, and any failure makes the report fail.
//!
//! Install decides the P flag by running the emulator: the target's probe is executed under a
//! P handler in a scratch instance, and P is kept only when the program saw its own argv[0].
//! Where no scratch instance can be made, the handler is registered with P and the verify probe
//! decides, falling back to F alone when argv[0] was lost.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use super::entry::{Flags, Registration};
use super::fs::{DEFAULT_ROOT, FsError, Instance};
use super::kernel::Kernel;
use super::owner::Owners;
use super::persist;
use super::probe::{self, ProbeResult};
use crate::arch::{Table, Target};
use crate::emulator::Emulator;
use crate::warning::Warning;

/// What was done with one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// A new entry was registered.
    Registered,
    /// An identical entry was there already.
    Unchanged,
    /// An identical but disabled entry was enabled.
    Enabled,
    /// A different entry was removed and ours registered (`--replace`).
    Replaced,
    /// Our identical entry was registered again (`--refresh`): the emulator file now at its
    /// path is the one the kernel holds.
    Refreshed,
    /// The entry was removed (`uninstall`).
    Removed,
    /// `--dry-run`: nothing was written.
    DryRun,
}

/// The outcome for one target.
#[derive(Debug, Clone, Serialize)]
pub struct TargetReport {
    /// The QEMU target.
    pub target: String,
    /// The handler name.
    pub handler: String,
    /// The emulator registered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub emulator: Option<Emulator>,
    /// The register line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<String>,
    /// What was done.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// The `binfmt.d` file written or removed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub persisted: Option<PathBuf>,
    /// The verification.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify: Option<ProbeResult>,
    /// Things the user should know that did not fail the operation.
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        serialize_with = "crate::warning::as_text"
    )]
    pub warnings: Vec<Warning>,
    /// Why this target failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl TargetReport {
    fn new(target: &Target) -> Self {
        TargetReport {
            target: target.name.clone(),
            handler: target.handler_name(),
            emulator: None,
            line: None,
            action: None,
            persisted: None,
            verify: None,
            warnings: Vec::new(),
            error: None,
        }
    }

    /// Did this target succeed (no error, and verification passed when it ran)?
    pub fn ok(&self) -> bool {
        self.error.is_none() && self.verify.as_ref().is_none_or(ProbeResult::ok)
    }

    /// The registration it holds, if its line parses.
    pub fn registration(&self) -> Option<Registration> {
        Registration::parse_line(self.line.as_deref()?).ok()
    }
}

/// The outcome of an operation over several targets.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The binfmt_misc mount used.
    pub root: PathBuf,
    /// True when this run mounted binfmt_misc.
    pub mounted_now: bool,
    /// Per target.
    pub targets: Vec<TargetReport>,
}

impl Report {
    /// Did every target succeed?
    pub fn ok(&self) -> bool {
        self.targets.iter().all(TargetReport::ok)
    }
}

/// Whether handlers get the P flag (preserve argv[0]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Argv0 {
    /// P when the emulator honours it, found by running it (the default).
    #[default]
    Auto,
    /// Always P (`--preserve-argv0`), untested.
    Always,
    /// Never P (`--no-preserve-argv0`).
    Never,
}

/// Options of `install`.
#[derive(Debug, Clone)]
pub struct InstallOptions {
    /// Flags besides P (F, and O and C with `--credential`).
    pub flags: Flags,
    /// The P flag.
    pub argv0: Argv0,
    /// Replace a different existing entry of the same name.
    pub replace: bool,
    /// Register again an identical entry binfmtctl owns (a new emulator file at the same path).
    pub refresh: bool,
    /// Print only; write nothing.
    pub dry_run: bool,
    /// Also write `binfmt.d` files into this directory.
    pub persist_dir: Option<PathBuf>,
    /// Probe each target after registering it.
    pub verify: bool,
    /// Where ownership records live.
    pub state_dir: PathBuf,
}

/// Supplies each target's emulator.
pub type Find<'a> = dyn Fn(&Target) -> Result<Emulator, String> + Sync + 'a;

/// The registration decided for one target before anything is written.
struct Planned {
    reg: Registration,
    /// P is set but was not proved (no scratch instance): the verify probe decides.
    p_untested: bool,
}

/// Finds the emulator and decides the flags of one target (runs its probe in a scratch
/// instance when the P flag is to be decided).
fn plan(
    kernel: &dyn Kernel,
    target: &Target,
    opts: &InstallOptions,
    find: &Find,
    r: &mut TargetReport,
) -> Result<Planned, String> {
    let emulator = find(target)?;
    let interpreter = emulator
        .path
        .to_str()
        .ok_or("emulator path is not UTF-8")?
        .to_string();
    r.emulator = Some(emulator);
    let mut reg = Registration::for_target(target, &interpreter, opts.flags);
    let mut p_untested = false;
    match opts.argv0 {
        Argv0::Never => {}
        Argv0::Always => reg.flags.preserve_argv0 = true,
        Argv0::Auto => match probe::preserves_argv0(kernel, &target.name, &reg) {
            Ok(true) => reg.flags.preserve_argv0 = true,
            Ok(false) => r.warnings.push(Warning::IgnoresPreserveArgv0 {
                interpreter: interpreter.clone(),
                target: target.name.clone(),
            }),
            Err(why) => {
                tracing::debug!(target = %target.name, %why, "P flag not tried in a scratch instance; the verify probe decides");
                reg.flags.preserve_argv0 = true;
                p_untested = true;
            }
        },
    }
    tracing::info!(target = %target.name, interpreter = %interpreter, flags = %reg.flags, "handler planned");
    Ok(Planned { reg, p_untested })
}

/// Registers handlers for `targets`; `find` supplies each target's emulator.
pub fn install(
    kernel: &dyn Kernel,
    targets: &[&Target],
    opts: &InstallOptions,
    find: &Find,
) -> Result<Report, FsError> {
    let mounted_now = if opts.dry_run {
        false
    } else {
        kernel.ensure_mounted()?
    };
    // A private instance at binfmt_misc's usual place (a rootless container engine) would hide
    // the handlers from the host; one at a mount named on purpose (`--root`) is used as asked.
    if !opts.dry_run
        && kernel.root() == Path::new(DEFAULT_ROOT)
        && kernel.instance() == Instance::Private
    {
        return Err(FsError::PrivateInstance {
            root: kernel.root().to_path_buf(),
        });
    }
    let owners = Owners::new(&opts.state_dir, kernel.root());
    let mut reports: Vec<TargetReport> = targets.iter().map(|t| TargetReport::new(t)).collect();
    // Emulators and flags first, in parallel (each P decision runs a short emulator process).
    let mut plans: Vec<Option<Planned>> = Vec::new();
    plans.resize_with(targets.len(), || None);
    parallel(
        reports.iter_mut().zip(plans.iter_mut()).zip(targets),
        |((r, slot), t)| match plan(kernel, t, opts, find, r) {
            Ok(p) => *slot = Some(p),
            Err(e) => r.error = Some(e),
        },
    );
    for (r, planned) in reports.iter_mut().zip(&plans) {
        let Some(planned) = planned else { continue };
        if let Err(e) = register_one(kernel, &owners, &planned.reg, opts, r) {
            r.error = Some(e);
        }
    }
    if !opts.dry_run && opts.verify {
        let to_verify: Vec<&mut TargetReport> =
            reports.iter_mut().filter(|r| r.error.is_none()).collect();
        run_probes(kernel, to_verify);
        // P set untested and the probe lost argv[0]: F alone, verified again.
        for (r, planned) in reports.iter_mut().zip(&plans) {
            let lost = r.verify.as_ref().and_then(|v| v.argv0_preserved) == Some(false);
            if let Some(p) = planned
                && p.p_untested
                && lost
            {
                downgrade(kernel, &owners, &p.reg, opts, r);
            }
        }
    }
    Ok(Report {
        root: kernel.root().to_path_buf(),
        mounted_now,
        targets: reports,
    })
}

/// Registers `reg` as the entry of its name, as `opts` allow. Returns whether the entry changed.
fn register_one(
    kernel: &dyn Kernel,
    owners: &Owners,
    reg: &Registration,
    opts: &InstallOptions,
    r: &mut TargetReport,
) -> Result<bool, String> {
    let line = reg.encode().map_err(|e| e.to_string())?;
    r.line = Some(line.clone());
    if opts.dry_run {
        r.action = Some(Action::DryRun);
        return Ok(false);
    }
    let err = |e: FsError| format!("{e:#}");
    let existing = kernel.entry(&reg.name).map_err(err)?;
    let action = match existing {
        Some(e) if reg.same_as(&e) && opts.refresh && owners.owns(&e) => {
            kernel.remove(&e.name).map_err(err)?;
            kernel.register(reg).map_err(err)?;
            Action::Refreshed
        }
        Some(e) if reg.same_as(&e) => {
            if e.enabled {
                Action::Unchanged
            } else {
                kernel.set_enabled(&reg.name, true).map_err(err)?;
                Action::Enabled
            }
        }
        Some(e) if opts.replace => {
            kernel.remove(&e.name).map_err(err)?;
            owners.forget(&e.name);
            kernel.register(reg).map_err(err)?;
            Action::Replaced
        }
        Some(e) => {
            let theirs = e
                .to_registration()
                .encode()
                .unwrap_or_else(|_| format!("{e:?}"));
            let state = if e.enabled { "" } else { " (disabled)" };
            return Err(format!(
                "an entry `{}` exists with a different line{state}:\n    existing: {theirs}\n    wanted:   {line}\n  rerun with `--replace` to replace it, or remove it with the tool that added it",
                e.name
            ));
        }
        None => {
            kernel.register(reg).map_err(err)?;
            Action::Registered
        }
    };
    r.action = Some(action);
    tracing::info!(handler = %reg.name, ?action, "handler");
    if matches!(
        action,
        Action::Registered | Action::Replaced | Action::Refreshed
    ) && let Err(e) = owners.record(reg)
    {
        r.warnings.push(Warning::OwnershipNotRecorded {
            reason: e.to_string(),
        });
    }
    if let Some(dir) = &opts.persist_dir {
        let p = persist::write(dir, reg).map_err(|e| format!("cannot persist: {e}"))?;
        r.persisted = Some(p);
    }
    // A newer overlapping entry would run these programs instead of ours.
    if let Ok(entries) = kernel.entries() {
        for e in entries.iter().take_while(|e| e.name != reg.name) {
            if e.enabled && e.matcher.overlaps(&reg.matcher) {
                r.warnings.push(Warning::Shadowed {
                    entry: e.name.clone(),
                    interpreter: e.interpreter.clone(),
                    target: r.target.clone(),
                });
            }
        }
    }
    Ok(action != Action::Unchanged)
}

/// The P flag was set untested and the probe lost argv[0]: registers F alone instead.
fn downgrade(
    kernel: &dyn Kernel,
    owners: &Owners,
    reg: &Registration,
    opts: &InstallOptions,
    r: &mut TargetReport,
) {
    let mut without = reg.clone();
    without.flags.preserve_argv0 = false;
    let replace = InstallOptions {
        replace: true,
        ..opts.clone()
    };
    let action = r.action;
    match register_one(kernel, owners, &without, &replace, r) {
        Ok(_) => {
            r.action = action;
            r.warnings.push(Warning::IgnoresPreserveArgv0 {
                interpreter: reg.interpreter.clone(),
                target: r.target.clone(),
            });
            r.verify = Some(probe::run(kernel, &r.target));
        }
        Err(e) => r.error = Some(e),
    }
}

/// Runs `f` over `items`, eight at a time in threads (each is a short-lived emulator process).
fn parallel<I, T>(items: I, f: impl Fn(T) + Sync)
where
    I: IntoIterator<Item = T>,
    T: Send,
{
    const PARALLEL: usize = 8;
    let mut items = items.into_iter().peekable();
    while items.peek().is_some() {
        let chunk: Vec<T> = items.by_ref().take(PARALLEL).collect();
        std::thread::scope(|s| {
            for item in chunk {
                let f = &f;
                s.spawn(move || f(item));
            }
        });
    }
}

/// Runs the probes of several targets at once.
fn run_probes(kernel: &dyn Kernel, reports: Vec<&mut TargetReport>) {
    parallel(reports, |r| r.verify = Some(probe::run(kernel, &r.target)));
}

/// Registers again every handler binfmtctl persisted in `persist_dir` that is missing (the
/// systemd unit runs this after systemd-binfmt, which flushes every entry), then verifies them.
pub fn restore(
    kernel: &dyn Kernel,
    persist_dir: &Path,
    state_dir: &Path,
) -> Result<Report, FsError> {
    let mounted_now = kernel.ensure_mounted()?;
    let owners = Owners::new(state_dir, kernel.root());
    let mut reports = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(persist_dir)
        .map(|rd| rd.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    for f in files {
        let Some(name) = f
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".conf"))
        else {
            continue;
        };
        let Some(reg) = persist::read_ours(persist_dir, name) else {
            continue;
        };
        let Some(target) = Table::get()
            .resolve(name)
            .ok()
            .filter(|t| t.handler_name() == name)
        else {
            continue;
        };
        let mut r = TargetReport::new(target);
        r.line = reg.encode().ok();
        r.persisted = Some(f.clone());
        match kernel.entry(&reg.name) {
            Ok(Some(e)) if reg.same_as(&e) => {
                // systemd-binfmt registered it at boot from our file: it is ours.
                let _ = owners.record(&reg);
                r.action = Some(Action::Unchanged);
            }
            Ok(Some(e)) => {
                r.error = Some(format!(
                    "`{}` is registered with another line (interpreter {}); `binfmtctl install --replace {}` restores ours",
                    e.name, e.interpreter, target.name
                ))
            }
            Ok(None) => match kernel.register(&reg) {
                Ok(()) => {
                    let _ = owners.record(&reg);
                    r.action = Some(Action::Registered);
                }
                Err(e) => r.error = Some(e.to_string()),
            },
            Err(e) => r.error = Some(e.to_string()),
        }
        reports.push(r);
    }
    let to_verify: Vec<&mut TargetReport> =
        reports.iter_mut().filter(|r| r.error.is_none()).collect();
    run_probes(kernel, to_verify);
    Ok(Report {
        root: kernel.root().to_path_buf(),
        mounted_now,
        targets: reports,
    })
}

/// Options of `uninstall`.
#[derive(Debug, Clone)]
pub struct UninstallOptions {
    /// Remove `qemu-<target>` entries even when binfmtctl did not register them.
    pub force: bool,
    /// Whether targets were chosen with `all` (entries we do not own are then skipped, not errors).
    pub all: bool,
    /// Also remove our `binfmt.d` files from this directory.
    pub persist_dir: Option<PathBuf>,
    /// Where ownership records live.
    pub state_dir: PathBuf,
}

/// Removes `qemu-<target>` handlers that binfmtctl owns; never any other entry.
pub fn uninstall(
    kernel: &dyn Kernel,
    targets: &[&Target],
    opts: &UninstallOptions,
) -> Result<Report, FsError> {
    // In a fresh container binfmt_misc is not mounted yet: its entries are there all the same.
    // (Mounted first: the ownership records are keyed by the mount.)
    let mounted_now = kernel.ensure_mounted()?;
    let mut owners = Owners::new(&opts.state_dir, kernel.root());
    if let Some(dir) = &opts.persist_dir {
        owners = owners.with_persisted(dir);
    }
    let mut reports = Vec::new();
    for &target in targets {
        let mut r = TargetReport::new(target);
        let name = target.handler_name();
        match kernel.entry(&name) {
            Err(e) => r.error = Some(e.to_string()),
            Ok(Some(e)) if opts.force || owners.owns(&e) => match kernel.remove(&name) {
                Ok(()) => {
                    owners.forget(&name);
                    r.line = e.to_registration().encode().ok();
                    r.action = Some(Action::Removed);
                }
                Err(err) => r.error = Some(err.to_string()),
            },
            Ok(Some(e)) => {
                let w = Warning::NotOurs {
                    name: name.clone(),
                    interpreter: e.interpreter.clone(),
                };
                if opts.all {
                    r.warnings.push(w);
                } else {
                    r.error = Some(w.to_string());
                }
            }
            Ok(None) => {}
        }
        if r.error.is_none()
            && let Some(dir) = &opts.persist_dir
        {
            match persist::remove(dir, &name) {
                Ok(p) => r.persisted = p,
                Err(e) => r.error = Some(format!("cannot remove the binfmt.d file: {e}")),
            }
        }
        reports.push(r);
    }
    Ok(Report {
        root: kernel.root().to_path_buf(),
        mounted_now,
        targets: reports,
    })
}

/// Runs the probe of each target through the kernel. With no targets: every known target with
/// an enabled `qemu-*` entry.
pub fn verify(kernel: &dyn Kernel, targets: &[&Target]) -> Result<Vec<ProbeResult>, FsError> {
    let chosen: Vec<&Target> = if targets.is_empty() {
        kernel.require_mounted()?;
        let entries = kernel.entries()?;
        Table::get()
            .targets()
            .iter()
            .filter(|t| {
                entries
                    .iter()
                    .any(|e| e.enabled && e.name == t.handler_name())
            })
            .collect()
    } else {
        targets.to_vec()
    };
    let mut results: Vec<Option<ProbeResult>> = vec![None; chosen.len()];
    parallel(results.iter_mut().zip(&chosen), |(slot, t)| {
        *slot = Some(probe::run(kernel, &t.name))
    });
    Ok(results.into_iter().flatten().collect())
}

/// `install --keep`: every `interval`, mounts binfmt_misc again if it went and registers again,
/// with the same lines, what `installed` registered and has vanished since (recorded as ours,
/// persisted and verified, as install does); what is there is left alone. Each round's report
/// goes to `on_round`. Stops when `wait` (given the interval) returns true: a signal asked to.
pub fn keep(
    kernel: &dyn Kernel,
    installed: &Report,
    opts: &InstallOptions,
    interval: Duration,
    wait: &mut dyn FnMut(Duration) -> bool,
    on_round: &mut dyn FnMut(Result<Report, FsError>),
) {
    let round = InstallOptions {
        refresh: false,
        replace: false,
        dry_run: false,
        ..opts.clone()
    };
    let kept: Vec<(&Target, Registration)> = installed
        .targets
        .iter()
        .filter(|t| t.error.is_none())
        .filter_map(|t| Some((Table::get().by_name(&t.target)?, t.registration()?)))
        .collect();
    let owners = Owners::new(&opts.state_dir, kernel.root());
    while !wait(interval) {
        let mounted_now = match kernel.ensure_mounted() {
            Ok(m) => m,
            Err(e) => {
                on_round(Err(e));
                continue;
            }
        };
        let mut reports = Vec::new();
        for (target, reg) in &kept {
            let mut r = TargetReport::new(target);
            r.emulator = installed
                .targets
                .iter()
                .find(|t| t.target == target.name)
                .and_then(|t| t.emulator.clone());
            match register_one(kernel, &owners, reg, &round, &mut r) {
                Ok(true) => r.verify = Some(probe::run(kernel, &target.name)),
                Ok(false) => {}
                Err(e) => r.error = Some(e),
            }
            reports.push(r);
        }
        on_round(Ok(Report {
            root: kernel.root().to_path_buf(),
            mounted_now,
            targets: reports,
        }));
    }
}

#[cfg(test)]
mod tests;
