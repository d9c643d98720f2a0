//! `manage` on the fake kernel: flags decided by running the emulator, the kernel's clash
//! rules, ownership, `all` per host, uninstall, verify, restore and keep.

use super::*;
use crate::binfmt::fake::FakeKernel;
use crate::emulator::Origin;

fn emulator_path(t: &str) -> String {
    format!("/q/qemu-{t}")
}

/// A fake host with an emulator for every target; `honours_p` for all of them.
fn kernel(host: &str, honours_p: bool) -> FakeKernel {
    let k = FakeKernel::new(host);
    for t in Table::get().targets() {
        k.emulator(&emulator_path(&t.name), &t.name, honours_p);
    }
    k
}

fn find(t: &Target) -> Result<Emulator, String> {
    Ok(Emulator {
        target: t.name.clone(),
        path: emulator_path(&t.name).into(),
        origin: Origin::System,
    })
}

struct Setup {
    state: tempfile::TempDir,
    opts: InstallOptions,
}

fn setup() -> Setup {
    let state = tempfile::tempdir().unwrap();
    let opts = InstallOptions {
        flags: Flags::fix_binary(),
        argv0: Argv0::Auto,
        replace: false,
        refresh: false,
        dry_run: false,
        persist_dir: None,
        verify: true,
        state_dir: state.path().to_path_buf(),
    };
    Setup { state, opts }
}

fn targets(names: &[&str]) -> Vec<&'static Target> {
    names
        .iter()
        .map(|n| Table::get().by_name(n).unwrap())
        .collect()
}

fn flags_of(k: &FakeKernel, handler: &str) -> String {
    k.entry(handler).unwrap().unwrap().flags.to_string()
}

#[test]
fn p_is_set_when_the_emulator_honours_it() {
    let k = kernel("x86_64", true);
    let s = setup();
    let r = install(&k, &targets(&["aarch64", "arm"]), &s.opts, &find).unwrap();
    assert!(r.ok(), "{r:#?}");
    for t in &r.targets {
        assert_eq!(t.action, Some(Action::Registered));
        assert!(t.line.as_deref().unwrap().ends_with(":PF"), "{t:?}");
        assert!(t.verify.as_ref().unwrap().passed());
        assert_eq!(t.verify.as_ref().unwrap().argv0_preserved, Some(true));
        assert!(t.warnings.is_empty(), "{:?}", t.warnings);
    }
    assert_eq!(flags_of(&k, "qemu-aarch64"), "PF");
}

#[test]
fn an_emulator_that_ignores_p_gets_f_alone_and_a_warning() {
    let k = kernel("x86_64", false);
    let s = setup();
    let r = install(&k, &targets(&["s390x"]), &s.opts, &find).unwrap();
    assert!(r.ok(), "{r:#?}");
    assert_eq!(flags_of(&k, "qemu-s390x"), "F");
    assert!(matches!(
        r.targets[0].warnings[0],
        Warning::IgnoresPreserveArgv0 { .. }
    ));
    // Decided before registering: the host never saw a P line.
    assert_eq!(k.log(), ["register qemu-s390x F"]);
}

#[test]
fn without_a_scratch_instance_the_verify_probe_decides() {
    let honours = kernel("x86_64", true).without_scratch();
    let s = setup();
    install(&honours, &targets(&["riscv64"]), &s.opts, &find).unwrap();
    assert_eq!(flags_of(&honours, "qemu-riscv64"), "PF");

    let ignores = kernel("x86_64", false).without_scratch();
    let r = install(&ignores, &targets(&["riscv64"]), &s.opts, &find).unwrap();
    assert!(r.ok(), "{r:#?}");
    assert_eq!(flags_of(&ignores, "qemu-riscv64"), "F");
    assert_eq!(r.targets[0].action, Some(Action::Registered));
    assert!(r.targets[0].line.as_deref().unwrap().ends_with(":F"));
    assert!(r.targets[0].verify.as_ref().unwrap().passed());
    assert_eq!(
        ignores.log(),
        [
            "register qemu-riscv64 PF",
            "remove qemu-riscv64",
            "register qemu-riscv64 F"
        ]
    );
    // Ours all along: uninstall removes it.
    let u = uninstall(&ignores, &targets(&["riscv64"]), &uninstall_opts(&s)).unwrap();
    assert_eq!(u.targets[0].action, Some(Action::Removed));
}

#[test]
fn p_can_be_refused_or_forced() {
    let k = kernel("x86_64", false);
    let mut s = setup();
    s.opts.argv0 = Argv0::Never;
    install(&k, &targets(&["arm"]), &s.opts, &find).unwrap();
    assert_eq!(flags_of(&k, "qemu-arm"), "F");
    s.opts.argv0 = Argv0::Always;
    s.opts.replace = true;
    install(&k, &targets(&["arm"]), &s.opts, &find).unwrap();
    assert_eq!(flags_of(&k, "qemu-arm"), "PF");
    // C implies O and stays opt-in.
    s.opts.flags.credentials = true;
    s.opts.flags.open_binary = true;
    install(&k, &targets(&["arm"]), &s.opts, &find).unwrap();
    assert_eq!(flags_of(&k, "qemu-arm"), "POCF");
}

#[test]
fn existing_entries_follow_the_kernels_rules() {
    let k = kernel("x86_64", true);
    let mut s = setup();
    let arm = targets(&["arm"]);
    install(&k, &arm, &s.opts, &find).unwrap();
    // The same line: unchanged; disabled: enabled again.
    let r = install(&k, &arm, &s.opts, &find).unwrap();
    assert_eq!(r.targets[0].action, Some(Action::Unchanged));
    k.set_enabled("qemu-arm", false).unwrap();
    let r = install(&k, &arm, &s.opts, &find).unwrap();
    assert_eq!(r.targets[0].action, Some(Action::Enabled));
    // A different line: refused with both lines, unless --replace.
    s.opts.argv0 = Argv0::Never;
    let r = install(&k, &arm, &s.opts, &find).unwrap();
    let e = r.targets[0].error.as_deref().unwrap();
    assert!(
        e.contains("existing: ") && e.contains(":PF") && e.contains(":F"),
        "{e}"
    );
    assert!(!r.ok());
    s.opts.replace = true;
    let r = install(&k, &arm, &s.opts, &find).unwrap();
    assert_eq!(r.targets[0].action, Some(Action::Replaced));
    // --refresh registers our own identical entry again; never someone else's.
    s.opts.replace = false;
    s.opts.refresh = true;
    let r = install(&k, &arm, &s.opts, &find).unwrap();
    assert_eq!(r.targets[0].action, Some(Action::Refreshed));
    let other_state = tempfile::tempdir().unwrap();
    s.opts.state_dir = other_state.path().to_path_buf();
    let r = install(&k, &arm, &s.opts, &find).unwrap();
    assert_eq!(r.targets[0].action, Some(Action::Unchanged));
}

#[test]
fn a_newer_overlapping_entry_is_named() {
    let k = kernel("x86_64", true);
    let s = setup();
    let t = targets(&["arm"]);
    let mut theirs = Registration::for_target(t[0], "/q/qemu-arm", Flags::fix_binary());
    theirs.name = "arm-theirs".into();
    k.register(&theirs).unwrap();
    // Registered after ours would be newer; registered before, ours wins and nothing is said.
    let r = install(&k, &t, &s.opts, &find).unwrap();
    assert!(
        r.targets[0].warnings.is_empty(),
        "{:?}",
        r.targets[0].warnings
    );
    k.remove("qemu-arm").unwrap();
    k.remove("arm-theirs").unwrap();
    install(&k, &t, &s.opts, &find).unwrap();
    k.register(&theirs).unwrap();
    k.remove("qemu-arm").unwrap();
    let again = install(&k, &t, &s.opts, &find).unwrap();
    assert!(again.targets[0].warnings.is_empty());
    // Ours older than theirs: warned.
    k.remove("arm-theirs").unwrap();
    k.register(&theirs).unwrap();
    let r = install(&k, &t, &s.opts, &find).unwrap();
    assert!(
        matches!(&r.targets[0].warnings[0], Warning::Shadowed { entry, .. } if entry == "arm-theirs"),
        "{:?}",
        r.targets[0].warnings
    );
}

#[test]
fn install_all_registers_what_each_host_does_not_run() {
    for (host, compat, native) in [
        ("x86_64", true, &["x86_64", "i386"][..]),
        ("aarch64", true, &["aarch64", "arm"][..]),
        ("aarch64", false, &["aarch64"][..]),
        ("ppc64le", true, &["ppc64le"][..]),
        ("s390x", true, &["s390x"][..]),
    ] {
        let mut k = kernel(host, true);
        if !compat {
            k = k.without_compat();
        }
        let s = setup();
        let all = k.host().foreign();
        let r = install(&k, &all, &s.opts, &find).unwrap();
        assert!(r.ok(), "{host}: {r:#?}");
        let registered: Vec<String> = k.entries().unwrap().into_iter().map(|e| e.name).collect();
        assert_eq!(
            registered.len(),
            Table::get().targets().len() - native.len(),
            "{host}"
        );
        for n in native {
            assert!(
                !registered.contains(&format!("qemu-{n}")),
                "{host} registered {n}"
            );
            // And what it runs natively passes verification with no handler at all.
            let v = verify(&k, &targets(&[n])).unwrap();
            assert!(v[0].passed(), "{host} {n}: {v:?}");
        }
    }
}

fn uninstall_opts(s: &Setup) -> UninstallOptions {
    UninstallOptions {
        force: false,
        all: false,
        persist_dir: None,
        state_dir: s.state.path().to_path_buf(),
    }
}

#[test]
fn uninstall_removes_only_what_is_ours() {
    let k = kernel("x86_64", true);
    let s = setup();
    install(&k, &targets(&["arm", "s390x"]), &s.opts, &find).unwrap();
    let riscv = targets(&["riscv64"]);
    k.register(&Registration::for_target(
        riscv[0],
        "/q/qemu-riscv64",
        Flags::fix_binary(),
    ))
    .unwrap();
    let mut o = uninstall_opts(&s);
    o.all = true;
    let all: Vec<&Target> = Table::get().targets().iter().collect();
    let r = uninstall(&k, &all, &o).unwrap();
    assert!(r.ok());
    let removed: Vec<&str> = r
        .targets
        .iter()
        .filter(|t| t.action == Some(Action::Removed))
        .map(|t| t.target.as_str())
        .collect();
    assert_eq!(removed, ["arm", "s390x"]);
    assert_eq!(
        serde_json::to_value(r.targets.iter().find(|t| t.target == "arm").unwrap().action).unwrap(),
        "removed"
    );
    let skipped = r.targets.iter().find(|t| t.target == "riscv64").unwrap();
    assert!(skipped.warnings[0].to_string().contains("--force"));
    assert!(k.entry("qemu-riscv64").unwrap().is_some());
    // Named without `all`: an error; with --force: removed.
    o.all = false;
    assert!(!uninstall(&k, &riscv, &o).unwrap().ok());
    o.force = true;
    let r = uninstall(&k, &riscv, &o).unwrap();
    assert_eq!(r.targets[0].action, Some(Action::Removed));
    assert!(k.entries().unwrap().is_empty());
}

#[test]
fn verify_reports_each_handler() {
    let k = kernel("x86_64", true);
    let s = setup();
    assert!(verify(&k, &[]).unwrap().is_empty());
    install(&k, &targets(&["arm", "mips64el"]), &s.opts, &find).unwrap();
    let v = verify(&k, &[]).unwrap();
    assert_eq!(v.len(), 2);
    assert!(v.iter().all(ProbeResult::passed), "{v:?}");
    // A disabled handler, or a disabled facility, fails with the reason.
    k.set_enabled("qemu-arm", false).unwrap();
    let v = verify(&k, &targets(&["arm"])).unwrap();
    assert!(
        !v[0].ok() && v[0].detail.contains("exec format error"),
        "{v:?}"
    );
    k.disable_all();
    assert!(!verify(&k, &targets(&["mips64el"])).unwrap()[0].ok());
    // Unmounted: a clear error for "every handler".
    let e = verify(&FakeKernel::new("x86_64").unmounted(), &[]).unwrap_err();
    assert!(e.to_string().contains("not mounted"), "{e}");
}

#[test]
fn a_handler_without_f_whose_interpreter_is_missing_is_explained() {
    let k = kernel("x86_64", true);
    let t = targets(&["arm"]);
    let no_f = Registration::for_target(t[0], "/gone/qemu-arm", Flags::default());
    k.register(&no_f).unwrap();
    let v = verify(&k, &t).unwrap();
    assert!(
        v[0].detail.contains("/gone/qemu-arm") && v[0].detail.contains("F flag"),
        "{}",
        v[0].detail
    );
}

#[test]
fn restore_registers_persisted_handlers_again() {
    let k = kernel("x86_64", true);
    let mut s = setup();
    let etc = tempfile::tempdir().unwrap();
    s.opts.persist_dir = Some(etc.path().to_path_buf());
    install(&k, &targets(&["arm", "s390x"]), &s.opts, &find).unwrap();
    // systemd-binfmt flushed everything.
    k.remove("qemu-arm").unwrap();
    k.remove("qemu-s390x").unwrap();
    let r = restore(&k, etc.path(), s.state.path()).unwrap();
    assert!(r.ok(), "{r:#?}");
    assert!(
        r.targets
            .iter()
            .all(|t| t.action == Some(Action::Registered))
    );
    assert_eq!(flags_of(&k, "qemu-arm"), "PF");
    let again = restore(&k, etc.path(), s.state.path()).unwrap();
    assert!(
        again
            .targets
            .iter()
            .all(|t| t.action == Some(Action::Unchanged))
    );
}

#[test]
fn keep_registers_again_what_vanished_and_records_it() {
    let k = kernel("x86_64", true);
    let s = setup();
    let t = targets(&["arm", "aarch64"]);
    let installed = install(&k, &t, &s.opts, &find).unwrap();
    let mut rounds = 0;
    let mut reports = Vec::new();
    keep(
        &k,
        &installed,
        &s.opts,
        Duration::from_secs(30),
        &mut |interval| {
            assert_eq!(interval, Duration::from_secs(30));
            rounds += 1;
            if rounds == 1 {
                k.remove("qemu-arm").unwrap();
            }
            rounds > 2
        },
        &mut |r| reports.push(r.unwrap()),
    );
    assert_eq!(reports.len(), 2);
    let first = &reports[0];
    let arm = first.targets.iter().find(|t| t.target == "arm").unwrap();
    assert_eq!(arm.action, Some(Action::Registered));
    assert!(arm.verify.as_ref().unwrap().passed());
    assert!(
        arm.line.as_deref().unwrap().ends_with(":PF"),
        "the same line again"
    );
    let aarch64 = first
        .targets
        .iter()
        .find(|t| t.target == "aarch64")
        .unwrap();
    assert_eq!(aarch64.action, Some(Action::Unchanged));
    assert!(
        aarch64.verify.is_none(),
        "unchanged entries are not probed each round"
    );
    assert!(
        reports[1]
            .targets
            .iter()
            .all(|t| t.action == Some(Action::Unchanged))
    );
    // Recorded as ours: uninstall takes it.
    let u = uninstall(&k, &targets(&["arm"]), &uninstall_opts(&s)).unwrap();
    assert_eq!(u.targets[0].action, Some(Action::Removed));
}

#[test]
fn dry_runs_write_nothing() {
    let k = kernel("x86_64", true).unmounted();
    let mut s = setup();
    s.opts.dry_run = true;
    let r = install(&k, &targets(&["arm"]), &s.opts, &find).unwrap();
    assert_eq!(r.targets[0].action, Some(Action::DryRun));
    assert!(r.targets[0].line.as_deref().unwrap().ends_with(":PF"));
    assert!(!k.is_mounted());
    assert!(k.log().is_empty());
}
