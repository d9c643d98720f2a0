//! The operations of `binfmtctl`: install, uninstall, verify and status, as library calls that
//! return reports (the CLI only prints them). Each target is handled on its own: one failing
//! target never hides the others, and any failure makes the report fail.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::entry::{Entry, Flags, Registration};
use super::fs::{BinfmtFs, FsError, Instance};
use super::owner::Owners;
use super::persist;
use super::probe::{self, ProbeResult};
use crate::arch::{Table, Target};
use crate::emulator::Emulator;

/// What `install` did with one target.
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
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
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

/// Options of `install`.
#[derive(Debug, Clone)]
pub struct InstallOptions {
    /// Flags to register with (F by default).
    pub flags: Flags,
    /// Replace a different existing entry of the same name.
    pub replace: bool,
    /// Register again an identical entry binfmtctl owns (a new emulator file at the same path).
    pub refresh: bool,
    /// Print only; write nothing.
    pub dry_run: bool,
    /// Also write `binfmt.d` files into this directory.
    pub persist_dir: Option<PathBuf>,
    /// Run the probe after registering.
    pub verify: bool,
    /// Where ownership records live.
    pub state_dir: PathBuf,
}

/// Registers handlers for `targets`; `find` supplies each target's emulator.
pub fn install(
    fs: &BinfmtFs,
    targets: &[&Target],
    opts: &InstallOptions,
    find: &dyn Fn(&Target) -> Result<Emulator, String>,
) -> Result<Report, FsError> {
    let mounted_now = if opts.dry_run {
        false
    } else {
        fs.ensure_mounted()?
    };
    // A private instance at binfmt_misc's usual place (a rootless container engine) would hide
    // the handlers from the host; one at a mount named on purpose (`--root`) is used as asked.
    if !opts.dry_run
        && fs.root() == Path::new(super::fs::DEFAULT_ROOT)
        && fs.instance() == Instance::Private
    {
        return Err(FsError::PrivateInstance {
            root: fs.root().to_path_buf(),
        });
    }
    let owners = Owners::new(&opts.state_dir, fs.root());
    let mut reports = Vec::new();
    for &target in targets {
        let mut r = TargetReport::new(target);
        if let Err(e) = install_one(fs, &owners, target, opts, find, &mut r) {
            r.error = Some(e);
        }
        reports.push(r);
    }
    if opts.verify && !opts.dry_run {
        let to_verify: Vec<&mut TargetReport> =
            reports.iter_mut().filter(|r| r.error.is_none()).collect();
        run_probes(to_verify);
    }
    Ok(Report {
        root: fs.root().to_path_buf(),
        mounted_now,
        targets: reports,
    })
}

fn install_one(
    fs: &BinfmtFs,
    owners: &Owners,
    target: &Target,
    opts: &InstallOptions,
    find: &dyn Fn(&Target) -> Result<Emulator, String>,
    r: &mut TargetReport,
) -> Result<(), String> {
    let emulator = find(target)?;
    let interpreter = emulator
        .path
        .to_str()
        .ok_or("emulator path is not UTF-8")?
        .to_string();
    r.emulator = Some(emulator);
    let reg = Registration::for_target(target, &interpreter, opts.flags);
    let line = reg.encode().map_err(|e| e.to_string())?;
    r.line = Some(line.clone());
    if opts.dry_run {
        r.action = Some(Action::DryRun);
        return Ok(());
    }
    let existing = fs.entry(&reg.name).map_err(|e| format!("{e:#}"))?;
    let action = match existing {
        Some(e) if reg.same_as(&e) && opts.refresh && owners.owns(&e) => {
            fs.remove(&e.name).map_err(|e| e.to_string())?;
            fs.register(&reg).map_err(|e| e.to_string())?;
            Action::Refreshed
        }
        Some(e) if reg.same_as(&e) => {
            if e.enabled {
                Action::Unchanged
            } else {
                fs.set_enabled(&reg.name, true).map_err(|e| e.to_string())?;
                Action::Enabled
            }
        }
        Some(e) if opts.replace => {
            fs.remove(&e.name).map_err(|e| e.to_string())?;
            owners.forget(&e.name);
            fs.register(&reg).map_err(|e| e.to_string())?;
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
            fs.register(&reg).map_err(|e| e.to_string())?;
            Action::Registered
        }
    };
    r.action = Some(action);
    if matches!(
        action,
        Action::Registered | Action::Replaced | Action::Refreshed
    ) && let Err(e) = owners.record(&reg)
    {
        r.warnings.push(format!(
            "registered, but could not record ownership ({e}); `binfmtctl uninstall` will need `--force` for it"
        ));
    }
    if let Some(dir) = &opts.persist_dir {
        let p = persist::write(dir, &reg).map_err(|e| format!("cannot persist: {e}"))?;
        r.persisted = Some(p);
    }
    // A newer overlapping entry would run these programs instead of ours.
    if let Ok(entries) = fs.entries() {
        for e in entries.iter().take_while(|e| e.name != reg.name) {
            if e.enabled && e.matcher.overlaps(&reg.matcher) {
                r.warnings.push(format!(
                    "entry `{}` (interpreter {}) also matches {} programs and was registered later, so the kernel uses it instead",
                    e.name, e.interpreter, target.name
                ));
            }
        }
    }
    Ok(())
}

/// Runs the probes of several targets at once (each is a short-lived emulator process).
fn run_probes(reports: Vec<&mut TargetReport>) {
    const PARALLEL: usize = 8;
    let mut reports = reports;
    for chunk in reports.chunks_mut(PARALLEL) {
        std::thread::scope(|s| {
            for r in chunk.iter_mut() {
                s.spawn(move || r.verify = Some(probe::run(&r.target)));
            }
        });
    }
}

/// Registers again every handler binfmtctl persisted in `persist_dir` that is missing (the
/// systemd unit runs this after systemd-binfmt, which flushes every entry), then verifies them.
pub fn restore(fs: &BinfmtFs, persist_dir: &Path, state_dir: &Path) -> Result<Report, FsError> {
    let mounted_now = fs.ensure_mounted()?;
    let owners = Owners::new(state_dir, fs.root());
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
        match fs.entry(&reg.name) {
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
            Ok(None) => match fs.register(&reg) {
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
    run_probes(to_verify);
    Ok(Report {
        root: fs.root().to_path_buf(),
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
    fs: &BinfmtFs,
    targets: &[&Target],
    opts: &UninstallOptions,
) -> Result<Report, FsError> {
    // In a fresh container binfmt_misc is not mounted yet: its entries are there all the same.
    // (Mounted first: the ownership records are keyed by the mount.)
    let mounted_now = fs.ensure_mounted()?;
    let mut owners = Owners::new(&opts.state_dir, fs.root());
    if let Some(dir) = &opts.persist_dir {
        owners = owners.with_persisted(dir);
    }
    let mounted = true;
    let mut reports = Vec::new();
    for &target in targets {
        let mut r = TargetReport::new(target);
        let name = target.handler_name();
        let entry = if mounted {
            match fs.entry(&name) {
                Ok(e) => e,
                Err(e) => {
                    r.error = Some(e.to_string());
                    reports.push(r);
                    continue;
                }
            }
        } else {
            None
        };
        match entry {
            Some(e) if opts.force || owners.owns(&e) => match fs.remove(&name) {
                Ok(()) => {
                    owners.forget(&name);
                    r.line = e.to_registration().encode().ok();
                    r.action = Some(Action::Registered);
                }
                Err(err) => r.error = Some(err.to_string()),
            },
            Some(e) => {
                let msg = format!(
                    "`{name}` was not registered by binfmtctl (interpreter {}); left in place. Remove it with the tool that added it, or rerun with `--force`",
                    e.interpreter
                );
                if opts.all {
                    r.warnings.push(msg);
                } else {
                    r.error = Some(msg);
                }
            }
            None => {}
        }
        if let Some(dir) = &opts.persist_dir {
            match persist::remove(dir, &name) {
                Ok(p) => r.persisted = p,
                Err(e) => r.error = Some(format!("cannot remove the binfmt.d file: {e}")),
            }
        }
        reports.push(r);
    }
    Ok(Report {
        root: fs.root().to_path_buf(),
        mounted_now,
        targets: reports,
    })
}

/// Runs the probe of each target through the kernel. With no targets: every known target with
/// an enabled `qemu-*` entry.
pub fn verify(fs: &BinfmtFs, targets: &[&Target]) -> Result<Vec<ProbeResult>, FsError> {
    let chosen: Vec<&Target> = if targets.is_empty() {
        fs.require_mounted()?;
        let entries = fs.entries()?;
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
    std::thread::scope(|s| {
        for (slot, t) in results.iter_mut().zip(&chosen) {
            s.spawn(move || *slot = Some(probe::run(&t.name)));
        }
    });
    Ok(results.into_iter().flatten().collect())
}

/// One entry as `status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct EntryStatus {
    /// The parsed entry.
    #[serde(flatten)]
    pub entry: Entry,
    /// The QEMU target its magic matches.
    pub target: Option<String>,
    /// Registered by binfmtctl.
    pub managed: bool,
    /// A `binfmt.d` file of ours restores it at boot.
    pub persisted: bool,
    /// Other entries matching some of the same programs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub overlaps: Vec<String>,
    /// The newer enabled entry that runs the programs instead of this one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadowed_by: Option<String>,
}

/// The state of a binfmt_misc mount.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// The mount point.
    pub root: PathBuf,
    /// Is binfmt_misc mounted there?
    pub mounted: bool,
    /// Whose instance is it?
    pub instance: Option<Instance>,
    /// Is the facility enabled as a whole?
    pub enabled: Option<bool>,
    /// The host's QEMU target.
    pub host: Option<String>,
    /// Entries, newest (highest precedence) first.
    pub entries: Vec<EntryStatus>,
}

/// Reads the whole state of a mount.
pub fn status(fs: &BinfmtFs, state_dir: &Path, persist_dir: &Path) -> Result<Status, FsError> {
    let host = Table::get().host().map(|t| t.name.clone());
    if !fs.is_mounted() {
        return Ok(Status {
            root: fs.root().to_path_buf(),
            mounted: false,
            instance: None,
            enabled: None,
            host,
            entries: Vec::new(),
        });
    }
    let owners = Owners::new(state_dir, fs.root()).with_persisted(persist_dir);
    let entries = fs.entries()?;
    let mut out = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let overlaps: Vec<String> = entries
            .iter()
            .filter(|o| o.name != e.name && o.matcher.overlaps(&e.matcher))
            .map(|o| o.name.clone())
            .collect();
        let shadowed_by = if e.enabled {
            entries[..i]
                .iter()
                .find(|o| o.enabled && o.matcher.overlaps(&e.matcher))
                .map(|o| o.name.clone())
        } else {
            None
        };
        let persisted = persist::read_ours(persist_dir, &e.name).is_some_and(|r| r.same_as(e));
        out.push(EntryStatus {
            target: e.target().map(|t| t.name.clone()),
            managed: owners.owns(e),
            persisted,
            overlaps,
            shadowed_by,
            entry: e.clone(),
        });
    }
    Ok(Status {
        root: fs.root().to_path_buf(),
        mounted: true,
        instance: Some(fs.instance()),
        enabled: Some(fs.enabled()?),
        host,
        entries: out,
    })
}

/// Which handler the kernel would use for a file with this header and name: the newest enabled
/// matching entry; None when no entry matches (the program then runs natively or not at all).
pub fn handler_for(fs: &BinfmtFs, header: &[u8], file_name: Option<&str>) -> Option<Entry> {
    if !fs.is_mounted() || !fs.enabled().unwrap_or(false) {
        return None;
    }
    fs.entries()
        .ok()?
        .into_iter()
        .find(|e| e.enabled && e.matcher.matches(header, file_name))
}
