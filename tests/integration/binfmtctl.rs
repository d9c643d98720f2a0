//! `binfmtctl` end to end: against the host's binfmt_misc (serial, restored afterwards) and
//! against private instances in user namespaces.

use std::process::Command;

use crate::case;
use crate::harness::{Need, installed_emulator};
use crate::util::*;

/// The foreign programs the tests run: (Debian arch, QEMU target, expected `uname -m`).
const FOREIGN: &[(&str, &str, &str)] = &[
    ("arm64", "aarch64", "aarch64"),
    ("armhf", "arm", "armv7l"),
    ("s390x", "s390x", "s390x"),
    ("ppc64el", "ppc64le", "ppc64le"),
];

/// The host's binfmt_misc, as root.
const HOST: &[Need] = &[Need::Root, Need::HostBinfmt];
/// The busybox fixtures for every architecture in [`FOREIGN`].
const BUSYBOXES: &[Need] = &[
    Need::Busybox("arm64"),
    Need::Busybox("armhf"),
    Need::Busybox("s390x"),
    Need::Busybox("ppc64el"),
];
/// [`HOST`] and [`BUSYBOXES`].
const HOST_FOREIGN: &[Need] = &[
    Need::Root,
    Need::HostBinfmt,
    Need::Busybox("arm64"),
    Need::Busybox("armhf"),
    Need::Busybox("s390x"),
    Need::Busybox("ppc64el"),
];
/// [`HOST`], an ARM program, and the system's ARM emulator (a hand-written entry names it).
const HOST_ARM: &[Need] = &[
    Need::Root,
    Need::HostBinfmt,
    Need::Busybox("armhf"),
    Need::Emulator("arm"),
];

fn run_foreign(bb: &std::path::Path, args: &[&str]) -> Run {
    Run::from_output(
        Command::new(bb)
            .args(args)
            .output()
            .expect("exec foreign busybox"),
    )
}

fn install_runs_foreign_programs_then_uninstall_removes_only_ours() {
    let names = [
        "qemu-aarch64",
        "qemu-arm",
        "qemu-s390x",
        "qemu-ppc64le",
        "qemu-riscv64",
    ];
    let host = HostBinfmt::save();
    host.take(&names);
    let state = tempfile::tempdir().unwrap();

    // Before: the kernel cannot run them.
    let bb = busybox("arm64").unwrap();
    let err = Command::new(&bb).arg("true").output().unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOEXEC), "{err}");

    let r = binfmtctl(
        state.path(),
        &["install", "arm", "aarch64", "s390x", "ppc64el"],
    )
    .success();
    for t in ["arm", "aarch64", "s390x", "ppc64le"] {
        assert!(
            r.stdout
                .lines()
                .any(|l| l.starts_with(t) && l.contains("registered") && l.ends_with("ok")),
            "{}",
            r.stdout
        );
    }
    // Real foreign programs now run through the handlers.
    for (arch, _, uname) in FOREIGN {
        let out = run_foreign(&busybox(arch).unwrap(), &["uname", "-m"]).success();
        assert_eq!(out.stdout.trim(), *uname, "{arch}");
        let echo = run_foreign(
            &busybox(arch).unwrap(),
            &["sh", "-c", "echo hello from $(uname -m); exit 3"],
        )
        .code_is(3);
        assert_eq!(echo.stdout.trim(), format!("hello from {uname}"));
    }
    // Entries carry P and F (the emulators honour P, as running them showed), never C.
    for t in ["arm", "aarch64", "s390x", "ppc64le"] {
        let text = std::fs::read_to_string(format!("/proc/sys/fs/binfmt_misc/qemu-{t}")).unwrap();
        assert!(text.contains("flags: PF\n"), "{text}");
    }
    // Status: ours, parsed, JSON.
    let st = binfmtctl(state.path(), &["status", "--json"])
        .success()
        .json();
    assert_eq!(st["mounted"], true);
    assert_eq!(st["instance"], "host");
    let arm = st["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "qemu-arm")
        .unwrap();
    assert_eq!(arm["managed"], true);
    assert_eq!(arm["target"], "arm");
    assert_eq!(arm["enabled"], true);
    assert_eq!(arm["flags"]["fix_binary"], true);
    assert_eq!(arm["mask"], "ffffffffffffff00fffffffffffffffffeffffff");

    // Same again: nothing changes, still success.
    let again = binfmtctl(state.path(), &["install", "arm64"]).success();
    assert!(
        again.stdout.contains("already installed"),
        "{}",
        again.stdout
    );

    // A different line under the same name: refused with both lines, unless --replace.
    let clash = binfmtctl(state.path(), &["install", "--no-preserve-argv0", "arm64"]).code_is(1);
    assert!(
        clash.stderr.contains("existing: ") && clash.stderr.contains("wanted: "),
        "{}",
        clash.stderr
    );
    assert!(
        clash.stderr.contains(":F\n") || clash.stderr.contains(":F "),
        "{}",
        clash.stderr
    );
    assert!(clash.stderr.contains(":PF"), "{}", clash.stderr);
    binfmtctl(
        state.path(),
        &["install", "--no-preserve-argv0", "--replace", "arm64"],
    )
    .success();
    let text = std::fs::read_to_string("/proc/sys/fs/binfmt_misc/qemu-aarch64").unwrap();
    assert!(text.contains("flags: F\n"), "{text}");
    run_foreign(&bb, &["true"]).success();

    // Someone else's entries: a qemu-riscv64 line we did not write and an unrelated one.
    let fs = host.fs();
    let theirs = ":qemu-riscv64:M::\\x7fELF\\x02\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02\\x00\\xf3\\x00:\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\x00\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xfe\\xff\\xff\\xff:/bin/true:";
    std::fs::write(fs.root().join("register"), theirs).unwrap();
    std::fs::write(
        fs.root().join("register"),
        ":emukit-test-other:E::emukittest::/bin/true:",
    )
    .unwrap();

    let r = binfmtctl(state.path(), &["uninstall", "all"]).success();
    assert!(
        r.stderr
            .contains("qemu-riscv64` was not registered by binfmtctl"),
        "{}",
        r.stderr
    );
    for n in ["qemu-aarch64", "qemu-arm", "qemu-s390x", "qemu-ppc64le"] {
        assert!(!fs.root().join(n).exists(), "{n} left behind");
    }
    assert!(
        fs.root().join("qemu-riscv64").exists(),
        "removed an entry it did not own"
    );
    assert!(
        fs.root().join("emukit-test-other").exists(),
        "removed a non-qemu entry"
    );
    // Naming it explicitly is an error without --force...
    let r = binfmtctl(state.path(), &["uninstall", "riscv64"]).code_is(1);
    assert!(r.stderr.contains("--force"), "{}", r.stderr);
    assert!(fs.root().join("qemu-riscv64").exists());
    // ...and removes it with --force; never the non-qemu entry.
    binfmtctl(state.path(), &["uninstall", "--force", "riscv64"]).success();
    assert!(!fs.root().join("qemu-riscv64").exists());
    assert!(fs.root().join("emukit-test-other").exists());
    drop(host);
    assert!(!std::path::Path::new("/proc/sys/fs/binfmt_misc/emukit-test-other").exists());
}
case! { install_runs_foreign_programs_then_uninstall_removes_only_ours, needs = HOST_FOREIGN, serial = HostBinfmt }

fn persist_writes_and_uninstall_removes_binfmt_d_files() {
    let host = HostBinfmt::save();
    host.take(&["qemu-s390x"]);
    let state = tempfile::tempdir().unwrap();
    let etc = tempfile::tempdir().unwrap();
    let env = [("BINFMTCTL_PERSIST_DIR", etc.path().to_str().unwrap())];
    let r = binfmtctl_env(state.path(), &["install", "--persist", "s390x"], &env).success();
    assert!(r.stderr.contains("systemd-binfmt"), "{}", r.stderr);
    let conf = std::fs::read_to_string(etc.path().join("qemu-s390x.conf")).unwrap();
    let line = conf.lines().find(|l| l.starts_with(':')).unwrap();
    // The file holds exactly the line the kernel got, in systemd-binfmt's format.
    let dry = binfmtctl(state.path(), &["install", "--dry-run", "s390x"]).success();
    assert_eq!(dry.stdout.trim(), line);
    assert!(conf.starts_with('#'));
    let st = binfmtctl_env(state.path(), &["status", "--json"], &env)
        .success()
        .json();
    let e = st["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "qemu-s390x")
        .unwrap()
        .clone();
    assert_eq!(e["persisted"], true);
    // A reboot clears the runtime ownership records; the persisted file still says it is ours.
    assert!(
        !e["interpreter"].as_str().unwrap().contains("binfmtctl"),
        "the test needs an emulator outside binfmtctl's directories: {e}"
    );
    std::fs::remove_dir_all(state.path().join("owned")).unwrap();
    let st = binfmtctl_env(state.path(), &["status", "--json"], &env)
        .success()
        .json();
    let managed = st["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "qemu-s390x")
        .map(|e| e["managed"].clone());
    assert_eq!(managed, Some(serde_json::Value::Bool(true)));
    binfmtctl_env(state.path(), &["uninstall", "s390x"], &env).success();
    assert!(!etc.path().join("qemu-s390x.conf").exists());
    assert!(!host.fs().root().join("qemu-s390x").exists());
    drop(host);
}
case! { persist_writes_and_uninstall_removes_binfmt_d_files, needs = [Root, HostBinfmt, Emulator("s390x")], serial = HostBinfmt }

fn dry_run_changes_nothing_and_credential_is_opt_in() {
    let host = HostBinfmt::save();
    host.take(&["qemu-riscv64", "qemu-sh4"]);
    let state = tempfile::tempdir().unwrap();
    let before = host.fs().names().unwrap();
    let r = binfmtctl(state.path(), &["install", "--dry-run", "riscv64", "sh4"]).success();
    assert_eq!(r.stdout.lines().count(), 2);
    assert!(
        r.stdout
            .lines()
            .all(|l| l.starts_with(":qemu-") && l.ends_with(":PF")),
        "{}",
        r.stdout
    );
    assert_eq!(host.fs().names().unwrap(), before);
    // P is the default where the emulator honours it; `--no-preserve-argv0` leaves F alone.
    let r = binfmtctl(
        state.path(),
        &["install", "--dry-run", "--no-preserve-argv0", "riscv64"],
    )
    .success();
    assert!(r.stdout.trim().ends_with(":F"), "{}", r.stdout);
    // Nor does it download: an emulator that would be fetched is shown at its cache path.
    let cache = tempfile::tempdir().unwrap();
    let env = [
        ("BINFMTCTL_CACHE_DIR", cache.path().to_str().unwrap()),
        ("BINFMTCTL_MIRROR", "http://127.0.0.1:9/debian"),
    ];
    let r = binfmtctl_env(
        state.path(),
        &["install", "--dry-run", "--source", "debian", "riscv64"],
        &env,
    )
    .success();
    assert!(r.stderr.contains("a real run fetches it"), "{}", r.stderr);
    assert!(
        r.stdout.trim().starts_with(":qemu-riscv64:")
            && r.stdout.contains(cache.path().to_str().unwrap()),
        "{}",
        r.stdout
    );
    assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 0);
    assert_eq!(host.fs().names().unwrap(), before);

    let r = binfmtctl(state.path(), &["install", "--credential", "riscv64"]).success();
    assert!(r.stderr.contains("setuid programs"), "{}", r.stderr);
    let text = std::fs::read_to_string("/proc/sys/fs/binfmt_misc/qemu-riscv64").unwrap();
    assert!(text.contains("flags: POCF\n"), "{text}");
    binfmtctl(state.path(), &["uninstall", "riscv64"]).success();
    drop(host);
}
case! { dry_run_changes_nothing_and_credential_is_opt_in, needs = HOST, serial = HostBinfmt }

fn failures_exit_nonzero_and_register_nothing() {
    let host = HostBinfmt::save();
    host.take(&["qemu-s390x", "qemu-sh4"]);
    let state = tempfile::tempdir().unwrap();
    // A dynamically linked "emulator" is refused before anything is registered, but the other
    // target still installs: the run as a whole fails.
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy("/bin/ls", dir.path().join("qemu-s390x-static")).unwrap();
    let r = binfmtctl(
        state.path(),
        &[
            "install",
            "--emulator-dir",
            dir.path().to_str().unwrap(),
            "s390x",
            "sh4",
        ],
    )
    .code_is(1);
    assert!(r.stderr.contains("dynamically linked"), "{}", r.stderr);
    assert!(!host.fs().root().join("qemu-s390x").exists());
    assert!(host.fs().root().join("qemu-sh4").exists());

    // A handler that does not work fails verification (exit 1).
    binfmtctl(state.path(), &["uninstall", "sh4"]).success();
    let sh4 = emukit::arch::Table::get().by_name("sh4").unwrap();
    let broken = emukit::binfmt::Registration::for_target(
        sh4,
        "/bin/false",
        emukit::binfmt::Flags::fix_binary(),
    );
    host.fs().register(&broken).unwrap();
    let r = binfmtctl(state.path(), &["verify", "sh4"]).code_is(1);
    assert!(r.stdout.contains("FAILED"), "{}", r.stdout);
    // An unregistered target fails too, with exec format error.
    let r = binfmtctl(state.path(), &["verify", "s390x"]).code_is(1);
    assert!(r.stdout.contains("exec format error"), "{}", r.stdout);
    drop(host);
}
case! { failures_exit_nonzero_and_register_nothing, needs = HOST, serial = HostBinfmt }

fn status_and_inspect_show_which_overlapping_entry_wins() {
    let host = HostBinfmt::save();
    host.take(&["qemu-arm"]);
    let state = tempfile::tempdir().unwrap();
    binfmtctl(state.path(), &["install", "arm"]).success();
    // A later entry with a looser magic that also matches ARM programs.
    let emulator = installed_emulator("arm").expect("checked by Need::Emulator");
    std::fs::write(
        host.fs().root().join("register"),
        format!(
            ":emukit-test-loose:M::\\x7fELF\\x01\\x01\\x01::{}:F",
            emulator.display()
        ),
    )
    .unwrap();
    let st = binfmtctl(state.path(), &["status", "--json"])
        .success()
        .json();
    let arm = st["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "qemu-arm")
        .unwrap()
        .clone();
    assert_eq!(arm["shadowed_by"], "emukit-test-loose");
    assert!(
        arm["overlaps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o == "emukit-test-loose")
    );
    let human = binfmtctl(state.path(), &["status"]).success();
    assert!(
        human
            .stdout
            .contains("emukit-test-loose was registered later and wins"),
        "{}",
        human.stdout
    );

    let bb = busybox("armhf").unwrap();
    let i = binfmtctl(state.path(), &["inspect", "--json", bb.to_str().unwrap()])
        .success()
        .json();
    assert!(
        i[0]["runs_with"]
            .as_str()
            .unwrap()
            .starts_with("emukit-test-loose"),
        "{i}"
    );
    host.fs().remove("emukit-test-loose").unwrap();
    let i = binfmtctl(state.path(), &["inspect", "--json", bb.to_str().unwrap()])
        .success()
        .json();
    assert!(
        i[0]["runs_with"].as_str().unwrap().starts_with("qemu-arm "),
        "{i}"
    );
    binfmtctl(state.path(), &["uninstall", "arm"]).success();
    drop(host);
}
case! { status_and_inspect_show_which_overlapping_entry_wins, needs = HOST_ARM, serial = HostBinfmt }

fn inspect_reports_foreign_programs() {
    let state = tempfile::tempdir().unwrap();
    let paths: Vec<String> = FOREIGN
        .iter()
        .map(|(a, _, _)| busybox(a).unwrap().display().to_string())
        .collect();
    let mut args = vec!["inspect", "--json"];
    args.extend(paths.iter().map(String::as_str));
    let v = binfmtctl(state.path(), &args).success().json();
    let want = [
        ("aarch64", "linux/arm64", 64, "little"),
        ("arm", "linux/arm/v7", 32, "little"),
        ("s390x", "linux/s390x", 64, "big"),
        ("ppc64le", "linux/ppc64le", 64, "little"),
    ];
    for (i, (target, platform, class, endian)) in want.iter().enumerate() {
        assert_eq!(v[i]["target"], *target);
        assert_eq!(v[i]["platform"], *platform);
        assert_eq!(v[i]["class"], *class);
        assert_eq!(v[i]["endian"], *endian);
        assert_eq!(v[i]["is_static"], true);
    }
    // A dynamic host program: its interpreter is reported, and it runs natively.
    let v = binfmtctl(state.path(), &["inspect", "--json", "/bin/ls"])
        .success()
        .json();
    assert_eq!(v[0]["is_static"], false);
    assert!(v[0]["interpreter"].as_str().unwrap().contains("ld-linux"));
    assert_eq!(v[0]["runs_with"], "native", "{}", v[0]);
    // Not an ELF file: an error, exit 1.
    let r = binfmtctl(state.path(), &["inspect", "/etc/hostname"]).code_is(1);
    assert!(r.stderr.contains("not an ELF program"), "{}", r.stderr);
}
case! { inspect_reports_foreign_programs, needs = BUSYBOXES }

fn usage_errors_exit_2() {
    let state = tempfile::tempdir().unwrap();
    let r = binfmtctl(state.path(), &["install", "vax"]).code_is(2);
    assert!(r.stderr.contains("unknown target `vax`"), "{}", r.stderr);
    binfmtctl(state.path(), &["install"]).code_is(2);
    binfmtctl(state.path(), &["frobnicate"]).code_is(2);
    let r = binfmtctl(state.path(), &["--install", "arm64", "status"]).code_is(2);
    assert!(r.stderr.contains("cannot be combined"), "{}", r.stderr);
}
case! { usage_errors_exit_2 }

fn private_instance_in_a_user_namespace() {
    let state = tempfile::tempdir().unwrap();
    let bb = busybox("s390x").unwrap();
    // binfmt_misc is not mounted at the --root given: install mounts it there (a private
    // instance, since we are in a user namespace), registers and verifies.
    let script = format!(
        r#"
        export BINFMTCTL_ROOT="$BINFMTCTL_STATE_DIR/binfmt_misc"
        mkdir "$BINFMTCTL_ROOT"
        "$BINFMTCTL" status | grep -q 'not mounted'
        "$BINFMTCTL" install s390x
        "$BINFMTCTL" status --json > "$BINFMTCTL_STATE_DIR/status.json"
        {bb} uname -m
        "$BINFMTCTL" uninstall s390x
        test ! -e "$BINFMTCTL_ROOT/qemu-s390x"
        "#,
        bb = bb.display()
    );
    let host_entry = std::path::Path::new("/proc/sys/fs/binfmt_misc/qemu-s390x");
    let host_had_it = host_entry.exists();
    let r = in_userns(&script, state.path()).success();
    assert!(r.stdout.contains("s390x"), "{}", r.stdout);
    let st: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(state.path().join("status.json")).unwrap())
            .unwrap();
    assert_eq!(st["instance"], "private");
    // And the host saw none of it.
    assert_eq!(
        host_entry.exists(),
        host_had_it,
        "the private entry leaked to the host"
    );

    // A private instance at the usual place (a rootless container engine): refused unless the
    // mount was named on purpose, since the host would never see the handlers.
    let script = r#"
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
        "$BINFMTCTL" install s390x || echo exit=$?
    "#;
    let r = in_userns(script, state.path());
    assert!(r.stdout.contains("exit=1"), "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("private instance"), "{}", r.stderr);

    // With nothing registered, `verify` proves nothing: exit 1. A `--root` that is a directory
    // with files in it is never mounted over.
    let script = r#"
        export BINFMTCTL_ROOT="$BINFMTCTL_STATE_DIR/empty-mount"
        mkdir "$BINFMTCTL_ROOT"
        mount -t binfmt_misc binfmt_misc "$BINFMTCTL_ROOT"
        "$BINFMTCTL" verify || echo verify=$?
        mkdir "$BINFMTCTL_STATE_DIR/full"; touch "$BINFMTCTL_STATE_DIR/full/keep"
        "$BINFMTCTL" --root "$BINFMTCTL_STATE_DIR/full" install s390x || echo full=$?
        test -e "$BINFMTCTL_STATE_DIR/full/keep" && echo kept
    "#;
    let r = in_userns(script, state.path());
    assert!(r.stdout.contains("verify=1"), "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("nothing to verify"), "{}", r.stderr);
    assert!(r.stdout.contains("full=1"), "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("not empty"), "{}", r.stderr);
    assert!(r.stdout.contains("kept"), "{}", r.stdout);
}
case! { private_instance_in_a_user_namespace, needs = [UserNs, PrivateBinfmt, Busybox("s390x")], serial = HostBinfmt }

/// A chroot holding only binfmtctl and its libraries.
fn bare_chroot() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let bin = binfmtctl_bin();
    std::fs::copy(&bin, root.path().join("binfmtctl")).unwrap();
    let ldd = tool("ldd", &[bin.to_str().unwrap()]).success();
    for lib in ldd.stdout.split_whitespace().filter(|w| w.starts_with('/')) {
        let dest = root.path().join(lib.trim_start_matches('/'));
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(lib, dest).unwrap();
    }
    root
}

/// `verify` in a bare chroot says which path failed and what to mount: no directory to write
/// the probe to, then (with one) a handler without F whose emulator the chroot lacks.
fn verify_in_a_bare_chroot_says_what_is_missing() {
    let host = HostBinfmt::save();
    host.take(&["qemu-aarch64"]);
    let root = bare_chroot();
    let verify = || {
        Run::from_output(
            Command::new("chroot")
                .arg(root.path())
                .args(["/binfmtctl", "verify", "aarch64"])
                .env_remove("TMPDIR")
                .output()
                .unwrap(),
        )
    };
    let r = verify().code_is(1);
    for want in [
        "`/tmp` (No such file or directory)",
        "`/dev/shm`",
        "mount -t tmpfs",
    ] {
        assert!(r.stdout.contains(want), "no `{want}` in:\n{}", r.stdout);
    }
    // With a /tmp, a handler without F: its emulator is not in the chroot.
    let tmp = root.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let emulator = installed_emulator("aarch64").unwrap();
    let t = emukit::arch::Table::get().by_name("aarch64").unwrap();
    let no_f = emukit::binfmt::Registration::for_target(
        t,
        emulator.to_str().unwrap(),
        emukit::binfmt::Flags::default(),
    );
    host.fs().register(&no_f).unwrap();
    let r = verify().code_is(1);
    for want in [
        "No such file or directory",
        "chroot or container",
        "F flag",
        "binfmtctl install --replace aarch64",
    ] {
        assert!(r.stdout.contains(want), "no `{want}` in:\n{}", r.stdout);
    }
    // Outside the chroot the same handler works: the message was about the chroot.
    binfmtctl(tempfile::tempdir().unwrap().path(), &["verify", "aarch64"]).success();
}
case! { verify_in_a_bare_chroot_says_what_is_missing, needs = [Root, HostBinfmt, Emulator("aarch64"), Tool("chroot"), Tool("ldd")], serial = HostBinfmt }
