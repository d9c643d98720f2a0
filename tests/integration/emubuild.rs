//! `emubuild from` / `run` / `ls` / `rm`: real foreign programs (Debian's busybox-static for
//! arm64, armhf and s390x, a Debian arm64 tree) in the sandbox, images written by umoci and
//! buildah, layer safety, options, signals, multi-platform runs.

use std::path::Path;

use crate::case;
use crate::harness::{Need, SANDBOX, installed_emulator};
use crate::util::*;

const TARGETS: &[&str] = &["aarch64", "arm", "s390x"];

/// [`SANDBOX`] with the Debian tree instead of the busybox images, and the archive its apt
/// installs from.
const DEBIAN: &[Need] = &[
    Need::Root,
    Need::HostBinfmt,
    Need::Emulator("aarch64"),
    Need::Emulator("arm"),
    Need::Emulator("s390x"),
    Need::DebianImage,
    Need::Archive,
];

/// Handlers for [`TARGETS`] for the test's duration, and an empty store.
fn setup() -> (Emulation, tempfile::TempDir) {
    let emu = Emulation::ensure(TARGETS);
    let store = tempfile::tempdir().unwrap();
    (emu, store)
}

fn img(name: &str) -> String {
    image(name).unwrap().display().to_string()
}

fn rootfs_tarballs_run_foreign_programs_with_status_passed_through() {
    let (_emu, store) = setup();
    // The handlers as `binfmtctl install` makes them with no flags: P and F.
    for t in TARGETS {
        let text = std::fs::read_to_string(format!("/proc/sys/fs/binfmt_misc/qemu-{t}")).unwrap();
        assert!(text.contains("flags: PF\n"), "{t}: {text}");
    }
    for (file, uname, platform) in [
        ("rootfs-busybox-arm64.tar", "aarch64", "linux/arm64"),
        ("rootfs-busybox-arm64.tar.gz", "aarch64", "linux/arm64"),
        ("rootfs-busybox-arm64.tar.xz", "aarch64", "linux/arm64"),
        ("rootfs-busybox-arm64.tar.zst", "aarch64", "linux/arm64"),
        ("rootfs-busybox-armhf.tar", "armv7l", "linux/arm/v7"),
        ("rootfs-busybox-s390x.tar", "s390x", "linux/s390x"),
    ] {
        let name = file.replace('.', "-");
        let from = format!("rootfs:{}", img(file));
        let r = emubuild(
            store.path(),
            &[
                "run",
                "--name",
                &name,
                "--from",
                &from,
                "--",
                "sh",
                "-c",
                // Busybox runs its applets (cat, ls, a nested sh) by re-executing itself,
                // which works only under handlers with P, as `binfmtctl install` makes them.
                "uname -m; echo $TARGETPLATFORM; cat /etc/base-marker; ls /etc | grep -c passwd; sh -c 'uname -m'",
            ],
        )
        .success();
        let lines: Vec<&str> = r.stdout.lines().collect();
        assert_eq!(lines[0], uname, "{file}: {}", r.stdout);
        assert_eq!(lines[1], platform, "{file}");
        assert!(
            lines[2].starts_with("base-"),
            "{file}: cat: {}\n{}",
            r.stdout,
            r.stderr
        );
        assert_eq!(lines[3], "1", "{file}: ls: {}", r.stdout);
        assert_eq!(lines[4], uname, "{file}: sh -c: {}", r.stdout);
        let ls = emubuild(store.path(), &["ls", "--json"]).success().json();
        assert!(
            ls.as_array()
                .unwrap()
                .iter()
                .any(|c| c["name"] == name.as_str() && c["platforms"][0] == platform)
        );
    }
    // Exit status passes through; a signal becomes 128+N.
    let name = "rootfs-busybox-arm64-tar";
    emubuild(
        store.path(),
        &["run", "--name", name, "--", "sh", "-c", "exit 7"],
    )
    .code_is(7);
    emubuild(
        store.path(),
        &["run", "--name", name, "--", "sh", "-c", "kill -TERM $$"],
    )
    .code_is(143);
    let r = emubuild(
        store.path(),
        &["run", "--name", name, "--", "no-such-command"],
    )
    .code_is(127);
    assert!(r.stderr.contains("command not found"), "{}", r.stderr);
    // A platform that disagrees with the tree's programs is refused.
    let r = emubuild(
        store.path(),
        &[
            "from",
            "--name",
            "bad",
            "--platform",
            "linux/s390x",
            &format!("rootfs:{}", img("rootfs-busybox-arm64.tar")),
        ],
    );
    assert_ne!(r.code, Some(0));
    assert!(r.stderr.contains("disagrees"), "{}", r.stderr);
}
case! { rootfs_tarballs_run_foreign_programs_with_status_passed_through, needs = SANDBOX, serial = HostBinfmt }

fn oci_layouts_from_other_tools_and_platform_selection() {
    let (_emu, store) = setup();
    let umoci = img("oci-umoci");
    let cases = [
        ("multi", "linux/arm64", "aarch64"),
        ("multi", "arm64/v8", "aarch64"),
        ("multi", "linux/arm/v7", "armv7l"),
        ("multi", "linux/arm", "armv7l"),
        ("multi", "linux/s390x", "s390x"),
        ("nested", "linux/arm/v7", "armv7l"),
        ("armhf", "linux/arm/v7", "armv7l"),
    ];
    for (i, (tag, platform, uname)) in cases.iter().enumerate() {
        let name = format!("c{i}");
        let from = format!("oci:{umoci}:{tag}");
        let r = emubuild(
            store.path(),
            &[
                "run",
                "--name",
                &name,
                "--platform",
                platform,
                "--from",
                &from,
                "--",
                "uname",
                "-m",
            ],
        )
        .success();
        assert_eq!(r.stdout.trim(), *uname, "{tag} {platform}");
    }
    // The same base again costs no unpacking: its layer directories are reused as they are,
    // and with no staging directory to unpack into it still works.
    let layers_before: Vec<_> = std::fs::read_dir(store.path().join("layers"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| (e.file_name(), e.metadata().unwrap().modified().unwrap()))
        .collect();
    let tmp = store.path().join("tmp");
    let chattr = |flag: &str| {
        std::process::Command::new("chattr")
            .args([flag, tmp.to_str().unwrap()])
            .status()
            .is_ok_and(|s| s.success())
    };
    // Immutable: not even root can create a staging directory in it.
    assert!(chattr("+i"), "chattr +i {} failed", tmp.display());
    let again = emubuild(
        store.path(),
        &[
            "from",
            "--name",
            "again",
            "--platform",
            "linux/arm64",
            &format!("oci:{umoci}:multi"),
        ],
    );
    chattr("-i");
    again.success();
    let layers_after: Vec<_> = std::fs::read_dir(store.path().join("layers"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| (e.file_name(), e.metadata().unwrap().modified().unwrap()))
        .collect();
    assert_eq!(layers_before.len(), layers_after.len());
    for l in &layers_after {
        assert!(
            layers_before.contains(l),
            "layer {:?} was unpacked again",
            l.0
        );
    }
    // The image's own config: its Env reaches the command.
    let r = emubuild(
        store.path(),
        &["run", "--name", "c0", "--", "sh", "-c", "echo $PATH"],
    )
    .success();
    assert_eq!(r.stdout.trim(), "/usr/sbin:/usr/bin:/sbin:/bin");
    // A platform the index does not have.
    let r = emubuild(
        store.path(),
        &[
            "from",
            "--name",
            "none",
            "--platform",
            "linux/riscv64",
            &format!("oci:{umoci}:multi"),
        ],
    );
    assert_ne!(r.code, Some(0));
    assert!(
        r.stderr.contains("no image for linux/riscv64") && r.stderr.contains("linux/arm64"),
        "{}",
        r.stderr
    );
    // A missing tag lists the tags.
    let r = emubuild(
        store.path(),
        &["from", "--name", "none", &format!("oci:{umoci}:nope")],
    );
    assert!(
        r.stderr.contains("no tag `nope`") && r.stderr.contains("multi"),
        "{}",
        r.stderr
    );
    // buildah's output, and an oci-archive.
    let r = emubuild(
        store.path(),
        &[
            "run",
            "--name",
            "b",
            "--from",
            &format!("oci:{}:arm64", img("oci-buildah")),
            "--",
            "cat",
            "/etc/base-marker",
        ],
    )
    .success();
    assert_eq!(r.stdout.trim(), "base-arm64");
    let r = emubuild(
        store.path(),
        &[
            "run",
            "--name",
            "a",
            "--from",
            &format!("oci-archive:{}:arm64", img("oci-archive-arm64.tar")),
            "--",
            "uname",
            "-m",
        ],
    )
    .success();
    assert_eq!(r.stdout.trim(), "aarch64");
}
case! { oci_layouts_from_other_tools_and_platform_selection, needs = SANDBOX + [ImmutableFiles], serial = HostBinfmt }

fn layers_apply_whiteouts_opaque_dirs_links_modes_and_owners() {
    let (_emu, store) = setup();
    let from = format!("oci:{}:arm64", img("oci-layers"));
    let script = r#"
        test ! -e /data/remove-me.txt && echo whiteout-ok
        ls /opt/replaced | tr '\n' ' '; echo
        test "$(stat -c %i /data/hl1)" = "$(stat -c %i /data/hl2)" && echo hardlink-ok
        readlink /data/link
        stat -c '%a %u' /usr/bin/suid-file
        stat -c '%u:%g' /home/builder/owned.txt
        cat /data/added.txt
    "#;
    let r = emubuild(
        store.path(),
        &["run", "--from", &from, "--", "sh", "-c", script],
    )
    .success();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines[0], "whiteout-ok", "{}", r.stdout);
    assert_eq!(lines[1].trim(), "c", "{}", r.stdout);
    assert_eq!(lines[2], "hardlink-ok", "{}", r.stdout);
    assert_eq!(lines[3], "keep.txt");
    assert_eq!(lines[4], "4755 0");
    assert_eq!(lines[5], "1000:1000");
    assert_eq!(lines[6], "added", "{}", r.stdout);
    // The xattr umoci recorded is on the unpacked file.
    let with_xattr = std::fs::read_dir(store.path().join("layers"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|l| l.path().join("data/xattr.txt"))
        .find(|p| p.exists())
        .expect("no layer holds data/xattr.txt");
    assert_eq!(
        xattr::get(&with_xattr, "user.fixture").unwrap().as_deref(),
        Some(&b"yes"[..])
    );
    // A docker-style opaque directory (`.wh..wh..opq`) hides everything below it.
    let from = format!("oci:{}:arm64-opaque", img("oci-layers"));
    let r = emubuild(
        store.path(),
        &[
            "run",
            "--name",
            "opaque",
            "--from",
            &from,
            "--",
            "ls",
            "-a",
            "/opt/replaced",
        ],
    )
    .success();
    let names: Vec<&str> = r.stdout.split_whitespace().collect();
    assert_eq!(names, [".", "..", "c"], "{}", r.stdout);
}
case! { layers_apply_whiteouts_opaque_dirs_links_modes_and_owners, needs = SANDBOX, serial = HostBinfmt }

fn malicious_layers_never_write_outside() {
    let (_emu, store) = setup();
    let evil = fixtures().join("images/evil");
    let probe_paths = [
        "/tmp/escape-absolute",
        "/tmp/escape-symlink",
        "/tmp/escape-relative",
        "/tmp/escape-chain",
        "/etc/evil.conf",
    ];
    for p in probe_paths {
        let _ = std::fs::remove_file(p);
    }
    let passwd_before = std::fs::read("/etc/passwd").unwrap();
    for entry in std::fs::read_dir(&evil).unwrap().filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let r = emubuild(
            store.path(),
            &[
                "from",
                "--name",
                &name.replace('.', "-"),
                "--platform",
                "linux/arm64",
                &format!("rootfs:{}", entry.path().display()),
            ],
        );
        // Either refused with a reason, or accepted with everything kept inside.
        if r.code != Some(0) {
            assert!(
                r.stderr.contains("unsafe")
                    || r.stderr.contains("refusing")
                    || r.stderr.contains("layer"),
                "{name}: {}",
                r.stderr
            );
        }
    }
    for p in probe_paths {
        assert!(!Path::new(p).exists(), "{p} was written outside the root");
    }
    assert!(
        !store
            .path()
            .parent()
            .unwrap()
            .join("escape-dotdot")
            .exists()
    );
    assert_eq!(std::fs::read("/etc/passwd").unwrap(), passwd_before);
    // A device node is kept as the layer made it (the sandbox mounts the tree nodev).
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let node = std::fs::read_dir(store.path().join("layers"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|l| l.path().join("dev/evil-null"))
        .find(|p| p.symlink_metadata().is_ok())
        .expect("the device layer was not unpacked");
    let m = node.symlink_metadata().unwrap();
    assert!(m.file_type().is_char_device(), "{m:?}");
    assert_eq!(m.rdev(), nix::sys::stat::makedev(1, 3));
    // Overlay xattrs from a layer never reach the unpacked tree.
    for layer in std::fs::read_dir(store.path().join("layers"))
        .unwrap()
        .filter_map(Result::ok)
    {
        for e in walk(&layer.path()) {
            for a in xattr_names(&e) {
                assert!(!a.contains("overlay"), "{} carries {a}", e.display());
            }
        }
    }
}
case! { malicious_layers_never_write_outside, needs = SANDBOX + [Tool("getfattr")], serial = HostBinfmt }

fn walk(p: &Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![p.to_path_buf()];
    if p.is_dir() && !p.is_symlink() {
        for e in std::fs::read_dir(p).unwrap().filter_map(Result::ok) {
            out.extend(walk(&e.path()));
        }
    }
    out
}

/// The xattrs on `p` (not followed), as getfattr lists them.
fn xattr_names(p: &Path) -> Vec<String> {
    let o = std::process::Command::new("getfattr")
        .args(["-h", "-d", "-m", "-"])
        .arg(p)
        .output()
        .unwrap_or_else(|e| panic!("getfattr: {e}"));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.to_string())
        .collect()
}

fn steps_persist_failed_steps_are_discarded_and_mounts_stay_out() {
    let (_emu, store) = setup();
    let from = format!("rootfs:{}", img("rootfs-busybox-armhf.tar"));
    emubuild(
        store.path(),
        &[
            "run",
            "--from",
            &from,
            "--",
            "sh",
            "-c",
            "echo one > /data/new.txt; rm /data/keep.txt",
        ],
    )
    .success();
    emubuild(
        store.path(),
        &[
            "run",
            "--",
            "sh",
            "-c",
            "echo junk > /data/junk.txt; exit 1",
        ],
    )
    .code_is(1);
    let r = emubuild(
        store.path(),
        &["run", "--", "sh", "-c", "cat /data/new.txt; ls /data"],
    )
    .success();
    assert!(r.stdout.starts_with("one\n"), "{}", r.stdout);
    assert!(
        !r.stdout.contains("keep.txt") && !r.stdout.contains("junk.txt"),
        "{}",
        r.stdout
    );
    // The host's resolv.conf is visible, read-only, and never part of a step.
    let r = emubuild(
        store.path(),
        &[
            "run",
            "--",
            "sh",
            "-c",
            "test -s /etc/resolv.conf && echo visible; echo x >> /etc/resolv.conf || echo readonly",
        ],
    )
    .success();
    assert!(
        r.stdout.contains("visible") && r.stdout.contains("readonly"),
        "{}",
        r.stdout
    );
    let steps = store.path().join("containers/default/linux-arm-v7/steps");
    for step in std::fs::read_dir(&steps).unwrap().filter_map(Result::ok) {
        for e in walk(&step.path()) {
            let rel = e
                .strip_prefix(step.path())
                .unwrap()
                .to_string_lossy()
                .into_owned();
            for banned in ["etc/resolv.conf", "etc/hosts", "proc", "sys", "dev"] {
                assert_ne!(rel, banned, "step {} holds {banned}", step.path().display());
            }
        }
    }
    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            store
                .path()
                .join("containers/default/linux-arm-v7/state.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let steps = state["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 3, "the failed step was recorded: {steps:?}");
    assert!(
        steps[0]["created_by"]
            .as_str()
            .unwrap()
            .contains("echo one")
    );
    assert!(
        steps[2].get("dir").is_none(),
        "a read-only step made a layer: {:?}",
        steps[2]
    );
    // ls and rm.
    let ls = emubuild(store.path(), &["ls"]).success();
    assert!(
        ls.stdout.contains("default") && ls.stdout.contains("linux/arm/v7"),
        "{}",
        ls.stdout
    );
    emubuild(store.path(), &["rm", "default"]).success();
    // With no working container, run starts one from the default base, and says so (here
    // one that cannot be reached: emubuild could not run the command, 125).
    let r = emubuild_with(
        store.path(),
        &["run", "--", "true"],
        None,
        &[("EMUBUILD_BASE", "127.0.0.1:5/x:1")],
    );
    assert_eq!(r.code, Some(125), "{}", r.stderr);
    assert!(
        r.stderr.contains("making one from 127.0.0.1:5/x:1") && r.stderr.contains("--from"),
        "{}",
        r.stderr
    );
}
case! { steps_persist_failed_steps_are_discarded_and_mounts_stay_out, needs = SANDBOX, serial = HostBinfmt }

/// [`setup`], and a container from the arm64 busybox tree.
fn arm64_container() -> (Emulation, tempfile::TempDir) {
    let (emu, store) = setup();
    let from = format!("rootfs:{}", img("rootfs-busybox-arm64.tar"));
    emubuild(store.path(), &["from", &from]).success();
    (emu, store)
}

fn run_env_sets_variables() {
    let (_emu, store) = arm64_container();
    let r = emubuild(
        store.path(),
        &[
            "run",
            "-e",
            "GREETING=hello world",
            "--",
            "sh",
            "-c",
            "echo $GREETING",
        ],
    )
    .success();
    assert_eq!(r.stdout, "hello world\n");
}
case! { run_env_sets_variables, needs = SANDBOX, serial = HostBinfmt }

fn run_workdir_is_created() {
    let (_emu, store) = arm64_container();
    let r = emubuild(
        store.path(),
        &["run", "-w", "/work/dir", "--", "sh", "-c", "pwd"],
    )
    .success();
    assert_eq!(r.stdout, "/work/dir\n");
}
case! { run_workdir_is_created, needs = SANDBOX, serial = HostBinfmt }

fn run_user_by_name_gets_its_uid_groups_and_home() {
    let (_emu, store) = arm64_container();
    let r = emubuild(
        store.path(),
        &[
            "run",
            "--user",
            "builder",
            "--",
            "sh",
            "-c",
            "id -u; id -G; echo $HOME",
        ],
    )
    .success();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines[0], "1000");
    assert!(lines[1].split(' ').any(|g| g == "10"), "{}", r.stdout);
    assert_eq!(lines[2], "/home/builder");
}
case! { run_user_by_name_gets_its_uid_groups_and_home, needs = SANDBOX, serial = HostBinfmt }

fn run_user_by_numeric_ids_can_write_dev_null() {
    let (_emu, store) = arm64_container();
    let r = emubuild(
        store.path(),
        &[
            "run",
            "--user",
            "1234:5678",
            "--",
            "sh",
            "-c",
            "id -u; id -g; echo x > /dev/null && echo null-writable",
        ],
    )
    .success();
    assert_eq!(r.stdout, "1234\n5678\nnull-writable\n");
}
case! { run_user_by_numeric_ids_can_write_dev_null, needs = SANDBOX, serial = HostBinfmt }

fn run_volume_is_read_write() {
    let (_emu, store) = arm64_container();
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("in.txt"), "from host").unwrap();
    let rw = format!("{}:/mnt/build", host.path().display());
    let r = emubuild(
        store.path(),
        &[
            "run",
            "-v",
            &rw,
            "--",
            "sh",
            "-c",
            "cat /mnt/build/in.txt; echo built > /mnt/build/out.txt",
        ],
    )
    .success();
    assert_eq!(r.stdout, "from host");
    assert_eq!(
        std::fs::read_to_string(host.path().join("out.txt")).unwrap(),
        "built\n"
    );
}
case! { run_volume_is_read_write, needs = SANDBOX, serial = HostBinfmt }

fn run_volume_ro_is_read_only() {
    let (_emu, store) = arm64_container();
    let host = tempfile::tempdir().unwrap();
    let ro = format!("{}:/mnt/ro:ro", host.path().display());
    let r = emubuild(
        store.path(),
        &[
            "run",
            "-v",
            &ro,
            "--",
            "sh",
            "-c",
            "touch /mnt/ro/x 2>/dev/null || echo denied",
        ],
    )
    .success();
    assert_eq!(r.stdout.trim(), "denied");
}
case! { run_volume_ro_is_read_only, needs = SANDBOX, serial = HostBinfmt }

fn run_network_none_has_only_lo() {
    let (_emu, store) = arm64_container();
    let r = emubuild(
        store.path(),
        &[
            "run",
            "--network",
            "none",
            "--",
            "sh",
            "-c",
            "cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '",
        ],
    )
    .success();
    assert_eq!(r.stdout.trim(), "lo");
}
case! { run_network_none_has_only_lo, needs = SANDBOX, serial = HostBinfmt }

fn run_stdin_reaches_the_command_with_i() {
    let (_emu, store) = arm64_container();
    let r = emubuild_with(
        store.path(),
        &["run", "-i", "--", "sh", "-c", "read line; echo got $line"],
        Some(b"abc\n"),
        &[],
    )
    .success();
    assert_eq!(r.stdout.trim(), "got abc");
}
case! { run_stdin_reaches_the_command_with_i, needs = SANDBOX, serial = HostBinfmt }

fn run_stdin_does_not_reach_the_command_without_i() {
    let (_emu, store) = arm64_container();
    let r = emubuild_with(
        store.path(),
        &["run", "--", "sh", "-c", "cat"],
        Some(b"ignored\n"),
        &[],
    )
    .success();
    assert_eq!(r.stdout, "", "stdin leaked without -i");
}
case! { run_stdin_does_not_reach_the_command_without_i, needs = SANDBOX, serial = HostBinfmt }

fn run_tty_gives_a_terminal_with_t() {
    let (_emu, store) = arm64_container();
    let r = emubuild(store.path(), &["run", "-t", "--", "busybox", "tty"]).success();
    assert!(r.stdout.trim().starts_with("/dev/pts/"), "{:?}", r.stdout);
}
case! { run_tty_gives_a_terminal_with_t, needs = SANDBOX, serial = HostBinfmt }

fn run_usage_errors_exit_2() {
    let (_emu, store) = arm64_container();
    emubuild(
        store.path(),
        &["run", "-v", "/nonexistent-host-path:/x", "--", "true"],
    )
    .code_is(2);
    emubuild(
        store.path(),
        &["run", "--platform", "linux/s390x", "--", "true"],
    )
    .code_is(2);
}
case! { run_usage_errors_exit_2, needs = SANDBOX, serial = HostBinfmt }

/// [`setup`], and a container `box` from the s390x busybox tree.
fn sandbox() -> (Emulation, tempfile::TempDir) {
    let (emu, store) = setup();
    let from = format!("rootfs:{}", img("rootfs-busybox-s390x.tar"));
    emubuild(store.path(), &["from", "--name", "box", &from]).success();
    (emu, store)
}

/// Runs a shell script in `box` with `run` options `opts`; its output.
fn in_box(store: &Path, opts: &[&str], script: &str) -> String {
    let mut args = vec!["run", "--name", "box"];
    args.extend(opts);
    args.extend(["--", "sh", "-c", script]);
    emubuild(store, &args).success().stdout
}

/// Runs a shell script in `box`, started from a shell that holds descriptor 7 open; its output.
fn in_box_with_fd_7(store: &Path, script: &str) -> String {
    Run::from_output(
        std::process::Command::new("sh")
            .args(["-c", "exec 7</dev/null; exec \"$@\"", "sh"])
            .arg(emubuild_bin())
            .args(["run", "--name", "box", "--", "sh", "-c", script])
            .env("EMUBUILD_STORE", store)
            .output()
            .unwrap(),
    )
    .success()
    .stdout
}

fn sandbox_has_its_own_ipc_and_uts_namespaces() {
    let (_emu, store) = sandbox();
    let out = in_box(
        store.path(),
        &[],
        "echo ipc=$(readlink /proc/self/ns/ipc) uts=$(readlink /proc/self/ns/uts)",
    );
    for ns in ["ipc", "uts"] {
        let host = std::fs::read_link(format!("/proc/self/ns/{ns}")).unwrap();
        assert!(
            out.contains(&format!("{ns}=")) && !out.contains(&format!("{ns}={}", host.display())),
            "{ns} namespace shared with the host: {out}"
        );
    }
}
case! { sandbox_has_its_own_ipc_and_uts_namespaces, needs = SANDBOX, serial = HostBinfmt }

fn sandbox_has_its_own_pid_namespace() {
    let (_emu, store) = sandbox();
    // A /proc of its own PID namespace: init, the shell and the few programs it runs.
    let out = in_box(
        store.path(),
        &[],
        "echo pid=$$; echo procs=$(ls -d /proc/[0-9]* | wc -l)",
    );
    let procs: usize = out
        .lines()
        .find_map(|l| l.strip_prefix("procs="))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(usize::MAX);
    assert!(procs <= 6, "/proc shows {procs} processes: {out}");
    assert!(
        out.contains("pid=2") || out.contains("pid=3"),
        "not in a new PID namespace: {out}"
    );
}
case! { sandbox_has_its_own_pid_namespace, needs = SANDBOX, serial = HostBinfmt }

fn sandbox_hostname_is_the_container_name() {
    let (_emu, store) = sandbox();
    let out = in_box(store.path(), &[], "hostname");
    assert!(out.lines().any(|l| l == "box"), "{out}");
}
case! { sandbox_hostname_is_the_container_name, needs = SANDBOX, serial = HostBinfmt }

fn sandbox_sees_the_hosts_etc_hosts() {
    let (_emu, store) = sandbox();
    let out = in_box(store.path(), &[], "head -n 1 /etc/hosts");
    let hosts_first = std::fs::read_to_string("/etc/hosts")
        .unwrap()
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    assert!(out.lines().any(|l| l == hosts_first), "{out}");
}
case! { sandbox_sees_the_hosts_etc_hosts, needs = SANDBOX, serial = HostBinfmt }

fn sandbox_sees_nothing_of_the_host_tree() {
    let (_emu, store) = sandbox();
    // After pivot_root the store it runs from is not there.
    let store_env = format!("STORE={}", store.path().display());
    let out = in_box(
        store.path(),
        &["-e", &store_env],
        r#"test -e "$STORE" && echo host-root-visible || echo host-root-gone"#,
    );
    assert!(out.contains("host-root-gone"), "{out}");
}
case! { sandbox_sees_nothing_of_the_host_tree, needs = SANDBOX, serial = HostBinfmt }

fn sandbox_has_dockers_default_capabilities() {
    let (_emu, store) = sandbox();
    let out = in_box(store.path(), &[], "grep CapBnd /proc/self/status");
    assert!(out.contains("CapBnd:\t00000000a80425fb"), "{out}");
    // With its own network namespace, the same set.
    let out = in_box(
        store.path(),
        &["--network", "none"],
        "grep CapBnd /proc/self/status",
    );
    assert_eq!(out.trim(), "CapBnd:\t00000000a80425fb");
}
case! { sandbox_has_dockers_default_capabilities, needs = SANDBOX, serial = HostBinfmt }

fn sandbox_dev_has_the_usual_nodes() {
    let (_emu, store) = sandbox();
    let out = in_box(store.path(), &[], "ls /dev | tr '\\n' ' '; echo");
    for d in [
        "null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "ptmx",
    ] {
        assert!(
            out.split_whitespace().any(|w| w == d),
            "/dev/{d} missing: {out}"
        );
    }
}
case! { sandbox_dev_has_the_usual_nodes, needs = SANDBOX, serial = HostBinfmt }

fn sandbox_sys_is_read_only() {
    let (_emu, store) = sandbox();
    let out = in_box(
        store.path(),
        &[],
        "touch /sys/x 2>/dev/null && echo sys-writable || echo sys-readonly",
    );
    assert!(out.contains("sys-readonly"), "{out}");
}
case! { sandbox_sys_is_read_only, needs = SANDBOX, serial = HostBinfmt }

fn sandbox_hides_the_host_binary_behind_proc_1_exe() {
    let (_emu, store) = sandbox();
    let out = in_box(
        store.path(),
        &[],
        "ls /proc/1/exe >/dev/null 2>&1; readlink /proc/1/exe >/dev/null 2>&1 && echo exe-visible || echo exe-hidden",
    );
    assert!(
        out.contains("exe-hidden"),
        "the host binary is reachable through /proc/1/exe: {out}"
    );
}
case! { sandbox_hides_the_host_binary_behind_proc_1_exe, needs = SANDBOX, serial = HostBinfmt }

fn sandbox_has_its_own_session() {
    let (_emu, store) = sandbox();
    // A session of its own: no TIOCSTI into the caller's terminal.
    let out = in_box_with_fd_7(
        store.path(),
        "echo sid=$(cut -d' ' -f6 /proc/$$/stat) pid=$$",
    );
    let (sid, pid) = out.trim().split_once(' ').unwrap();
    assert_eq!(
        sid.trim_start_matches("sid="),
        pid.trim_start_matches("pid="),
        "{out}"
    );
}
case! { sandbox_has_its_own_session, needs = SANDBOX, serial = HostBinfmt }

fn sandbox_inherits_no_descriptors() {
    let (_emu, store) = sandbox();
    let out = in_box_with_fd_7(store.path(), "ls /proc/self/fd | tr '\\n' ' '; echo");
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["0", "1", "2", "3"],
        "inherited descriptors leaked: {out}"
    );
}
case! { sandbox_inherits_no_descriptors, needs = SANDBOX, serial = HostBinfmt }

fn sandbox_device_nodes_made_inside_are_inert() {
    let (_emu, store) = sandbox();
    let out = in_box_with_fd_7(
        store.path(),
        "mknod /tmp/nullx c 1 3 && (echo data > /tmp/nullx 2>/dev/null && echo device-usable || echo device-inert)",
    );
    assert_eq!(out.trim(), "device-inert", "{out}");
}
case! { sandbox_device_nodes_made_inside_are_inert, needs = SANDBOX, serial = HostBinfmt }

fn sandbox_store_is_private_to_its_owner() {
    let (_emu, store) = sandbox();
    in_box(store.path(), &[], "true");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(store.path())
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
}
case! { sandbox_store_is_private_to_its_owner, needs = SANDBOX, serial = HostBinfmt }

fn ctrl_c_stops_the_command() {
    let (_emu, store) = setup();
    let from = format!("rootfs:{}", img("rootfs-busybox-arm64.tar"));
    emubuild(store.path(), &["from", &from]).success();
    // SIGINT (what Ctrl-C sends) and SIGTERM (what `kill` and CI runners send) reach the
    // command; the status says which stopped it.
    for (sig, code) in [
        (nix::sys::signal::Signal::SIGINT, 130),
        (nix::sys::signal::Signal::SIGTERM, 143),
    ] {
        let mut child = std::process::Command::new(emubuild_bin())
            .args(["run", "--", "sleep", "60"])
            .env("EMUBUILD_STORE", store.path())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1500));
        let start = std::time::Instant::now();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig).unwrap();
        let status = child.wait().unwrap();
        assert!(
            start.elapsed().as_secs() < 10,
            "{sig} did not stop the command"
        );
        assert_eq!(status.code(), Some(code), "{sig}");
    }
}
case! { ctrl_c_stops_the_command, needs = SANDBOX, serial = HostBinfmt }

fn several_platforms_run_at_once_with_prefixed_output() {
    let (_emu, store) = setup();
    let from = format!("oci:{}:multi", img("oci-umoci"));
    let r = emubuild(
        store.path(),
        &[
            "run",
            "--platform",
            "linux/arm64,linux/arm/v7,linux/s390x",
            "--from",
            &from,
            "--",
            "sh",
            "-c",
            "uname -m; echo $TARGETARCH",
        ],
    )
    .success();
    for (p, u, a) in [
        ("linux/arm64", "aarch64", "arm64"),
        ("linux/arm/v7", "armv7l", "arm"),
        ("linux/s390x", "s390x", "s390x"),
    ] {
        assert!(
            r.stdout
                .lines()
                .any(|l| l.starts_with(&format!("[{p}")) && l.ends_with(&format!("] {u}"))),
            "{p}: {}",
            r.stdout
        );
        assert!(
            r.stdout
                .lines()
                .any(|l| l.starts_with(&format!("[{p}")) && l.ends_with(&format!("] {a}"))),
            "{p}: {}",
            r.stdout
        );
    }
    assert!(
        r.stderr.contains("summary") && r.stderr.contains("ok"),
        "{}",
        r.stderr
    );
    // One platform failing makes the whole run fail, and the summary says which.
    let r = emubuild(
        store.path(),
        &["run", "--", "sh", "-c", "test $(uname -m) != s390x"],
    );
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(
        r.stderr
            .lines()
            .any(|l| l.contains("linux/s390x") && l.contains("FAILED")),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .lines()
            .any(|l| l.contains("linux/arm64") && l.contains("ok")),
        "{}",
        r.stderr
    );

    // At the same time, for real: each waits until all three have started (run one after
    // another, the first would give up waiting).
    let shared = tempfile::tempdir().unwrap();
    let vol = format!("{}:/shared", shared.path().display());
    let wait_all = "touch /shared/$(uname -m); i=0; while [ $(ls /shared | wc -l) -lt 3 ]; do sleep 0.2; i=$((i+1)); [ $i -lt 300 ] || exit 9; done; echo together";
    let r = emubuild(
        store.path(),
        &["run", "-v", &vol, "--", "sh", "-c", wait_all],
    )
    .success();
    assert_eq!(r.stdout.matches("together").count(), 3, "{}", r.stdout);

    // SIGTERM to emubuild (not a terminal's Ctrl-C to the whole group) stops every platform's
    // command too; nothing is left running.
    let shared = tempfile::tempdir().unwrap();
    let vol = format!("{}:/shared", shared.path().display());
    let mut child = std::process::Command::new(emubuild_bin())
        .args([
            "run",
            "-v",
            &vol,
            "--",
            "sh",
            "-c",
            "touch /shared/$(uname -m); exec sleep 607",
        ])
        .env("EMUBUILD_STORE", store.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = (0..300).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        std::fs::read_dir(shared.path()).unwrap().count() == 3
    });
    assert!(started, "the three platforms did not start");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success());
    let left = (0..100).all(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        std::process::Command::new("pgrep")
            .args(["-f", "sleep 607"])
            .status()
            .unwrap()
            .success()
    });
    assert!(!left, "a platform's command outlived emubuild");
}
case! { several_platforms_run_at_once_with_prefixed_output, needs = SANDBOX + [Tool("pgrep")], serial = HostBinfmt }

fn missing_emulation_fails_before_running() {
    let host = HostBinfmt::save();
    host.take(&["qemu-s390x"]);
    let store = tempfile::tempdir().unwrap();
    let from = format!("rootfs:{}", img("rootfs-busybox-s390x.tar"));
    let r = emubuild(store.path(), &["run", "--from", &from, "--", "true"]);
    assert_eq!(r.code, Some(125), "{}", r.stderr);
    assert!(r.stderr.contains("binfmtctl install s390x"), "{}", r.stderr);
    assert!(!r.stderr.contains("exec format error"), "{}", r.stderr);

    // Handlers that exist but will not do: without F, disabled, or with a mask that takes the
    // target's magic but not this image's programs (busybox is marked GNU/Linux in EI_OSABI;
    // this handler wants exactly SYSV). Each fails before running, naming the fix.
    let t = emukit::arch::Table::get().by_name("s390x").unwrap();
    let emulator = installed_emulator("s390x").expect("checked by Need::Emulator");
    let register = |mask: &[u8], flags: &str| {
        let line = format!(
            ":qemu-s390x:M::{}:{}:{}:{flags}",
            emukit::arch::encode_escaped(&t.magic),
            emukit::arch::encode_escaped(mask),
            emulator.display()
        );
        std::fs::write(host.fs().root().join("register"), line).unwrap();
    };
    let entry = host.fs().root().join("qemu-s390x");
    register(&t.mask, "");
    let r = emubuild(store.path(), &["run", "--from", &from, "--", "true"]);
    assert_eq!(r.code, Some(125), "{}", r.stderr);
    assert!(r.stderr.contains("lacks the F flag"), "{}", r.stderr);
    std::fs::write(&entry, "-1").unwrap();
    register(&t.mask, "F");
    std::fs::write(&entry, "0").unwrap();
    let r = emubuild(store.path(), &["run", "--from", &from, "--", "true"]);
    assert_eq!(r.code, Some(125), "{}", r.stderr);
    assert!(r.stderr.contains("is disabled"), "{}", r.stderr);
    std::fs::write(&entry, "-1").unwrap();
    let mut strict = t.mask.clone();
    strict[7] = 0xff;
    register(&strict, "F");
    let r = emubuild(store.path(), &["run", "--from", &from, "--", "true"]);
    assert_eq!(r.code, Some(125), "{}", r.stderr);
    assert!(r.stderr.contains("binfmtctl install s390x"), "{}", r.stderr);
    std::fs::write(&entry, "-1").unwrap();
    drop(host);
}
case! { missing_emulation_fails_before_running, needs = [Root, HostBinfmt, Images, Emulator("s390x")], serial = HostBinfmt }

fn debian_tree_runs_its_package_manager() {
    let _emu = Emulation::ensure(TARGETS);
    let store = tempfile::tempdir().unwrap();
    let from = format!("rootfs:{}", img("debian-arm64.tar"));
    let r = emubuild(
        store.path(),
        &[
            "run",
            "--from",
            &from,
            "--",
            "sh",
            "-c",
            "dpkg --print-architecture && apt-get --version | head -1",
        ],
    )
    .success();
    assert!(r.stdout.starts_with("arm64\n"), "{}", r.stdout);
    // A real package installation from the Debian archive (host network, host resolv.conf):
    // apt downloads, dpkg unpacks and runs maintainer scripts, all under emulation.
    let r = emubuild(
        store.path(),
        &["run", "--", "sh", "-c", "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends hello >/dev/null && hello && dpkg -s hello | grep '^Architecture'"],
    )
    .success();
    assert!(r.stdout.contains("Hello, world!"), "{}", r.stdout);
    assert!(r.stdout.contains("Architecture: arm64"), "{}", r.stdout);
    // The next step sees the installed package.
    let r = emubuild(store.path(), &["run", "--", "hello", "-g", "again"]).success();
    assert_eq!(r.stdout.trim(), "again");
}
case! { debian_tree_runs_its_package_manager, needs = DEBIAN, serial = HostBinfmt }

fn deep_stacks_run_in_one_overlay_then_in_a_copy() {
    let (_emu, store) = setup();
    let from = format!("rootfs:{}", img("rootfs-busybox-arm64.tar"));
    emubuild(store.path(), &["from", "--platform", "linux/arm64", &from]).success();
    let host = tempfile::tempdir().unwrap();
    // One step per file, copied in (no emulation needed).
    let add_steps = |range: std::ops::Range<usize>| {
        for i in range {
            let f = host.path().join(format!("f{i}"));
            std::fs::write(&f, format!("{i}\n")).unwrap();
            emubuild(
                store.path(),
                &["copy", f.to_str().unwrap(), &format!("/steps/f{i}")],
            )
            .success();
        }
    };
    add_steps(0..100);
    // 101 layers: more than one overlay mount's options can name directly.
    let r = emubuild(
        store.path(),
        &[
            "run",
            "--",
            "sh",
            "-c",
            "ls /steps | wc -l; cat /steps/f0 /steps/f99",
        ],
    )
    .success();
    let lines: Vec<&str> = r.stdout.split_whitespace().collect();
    assert_eq!(lines, ["100", "0", "99"], "{}", r.stdout);
    assert!(!r.stderr.contains("copying snapshotter"), "{}", r.stderr);
    // Past overlayfs's limit of 500 lower layers the mount fails: the step runs all the same,
    // in a copy of the stack, and says so.
    add_steps(100..510);
    let r = emubuild(
        store.path(),
        &[
            "run",
            "--",
            "sh",
            "-c",
            "ls /steps | wc -l; echo made > /made",
        ],
    )
    .success();
    assert_eq!(r.stdout.trim(), "510", "{}", r.stdout);
    assert!(
        r.stderr.contains("using the copying snapshotter"),
        "{}",
        r.stderr
    );
    let r = emubuild(store.path(), &["run", "--", "cat", "/made"]).success();
    assert_eq!(r.stdout.trim(), "made");
}
case! { deep_stacks_run_in_one_overlay_then_in_a_copy, needs = SANDBOX, serial = HostBinfmt }

fn the_copying_snapshotter_makes_the_same_layers_as_overlayfs() {
    let (_emu, _) = setup();
    let from = format!("oci:{}:arm64", img("oci-layers"));
    let steps = [
        // Additions, a deletion of a base file, a replaced directory, links, modes, owners.
        "echo new > /new.txt; rm /data/keep.txt; rm -rf /opt/replaced && mkdir /opt/replaced && echo z > /opt/replaced/z; \
         echo h > /h1 && ln /h1 /h2; ln -s /new.txt /sym; chmod 600 /etc/base-marker-layers; chown 1000:1000 /new.txt; \
         mkdir -p /deep/er/still && echo d > /deep/er/still/f",
        // Changes to the previous step's files, and a deletion of one.
        "echo changed > /new.txt; rm /h2; rm -rf /deep/er",
    ];
    let mut results = Vec::new();
    for driver in ["overlay", "copy"] {
        let store = tempfile::tempdir().unwrap();
        let env = [
            ("EMUBUILD_DRIVER", driver),
            ("SOURCE_DATE_EPOCH", "1700000000"),
        ];
        emubuild_with(
            store.path(),
            &["from", "--platform", "linux/arm64", &from],
            None,
            &env,
        )
        .success();
        for s in steps {
            emubuild_with(store.path(), &["run", "--", "sh", "-c", s], None, &env).success();
        }
        // A failed step leaves nothing, and the next one still sees the right tree.
        let r = emubuild_with(
            store.path(),
            &["run", "--", "sh", "-c", "touch /failed; exit 3"],
            None,
            &env,
        );
        assert_eq!(r.code, Some(3), "{driver}: {}", r.stderr);
        let r = emubuild_with(
            store.path(),
            &[
                "run", "--", "sh", "-c",
                "test ! -e /failed && test ! -e /h2 && test ! -e /data/keep.txt && cat /new.txt /opt/replaced/z && ls /opt/replaced && ls /deep",
            ],
            None,
            &env,
        )
        .success();
        assert_eq!(
            r.stdout.split_whitespace().collect::<Vec<_>>(),
            ["changed", "z", "z"],
            "{driver}: {}",
            r.stdout
        );
        let out = tempfile::tempdir().unwrap();
        let dest = format!("oci:{}:x", out.path().display());
        emubuild_with(store.path(), &["commit", &dest], None, &env).success();
        let cfg = tool(
            "skopeo",
            &["--override-arch", "arm64", "inspect", "--config", &dest],
        )
        .success()
        .json();
        results.push((driver, cfg["rootfs"]["diff_ids"].clone()));
    }
    assert_eq!(
        results[0].1, results[1].1,
        "the two snapshotters made different layers: {results:?}"
    );
}
case! { the_copying_snapshotter_makes_the_same_layers_as_overlayfs, needs = SANDBOX + [Tool("skopeo")], serial = HostBinfmt }

/// `emubuild -v run` logs the layer stack, the snapshotter it chose, the mounts and the
/// handler; without `-v` none of that.
fn verbose_runs_log_mounts_and_the_snapshotter() {
    let (_emu, store) = setup();
    let from = format!("rootfs:{}", img("rootfs-busybox-arm64.tar"));
    let host = tempfile::tempdir().unwrap();
    let bind = format!("{}:/hostdir:ro", host.path().display());
    let r = emubuild(
        store.path(),
        &["-v", "run", "--from", &from, "-v", &bind, "--", "true"],
    )
    .success();
    for want in [
        "layer stack",
        "snapshotter chosen",
        "mounted overlay",
        "lowerdir=",
        "mounted proc on /proc",
        "target=/hostdir",
        "runs through a binfmt_misc handler",
        "handler=qemu-aarch64",
    ] {
        assert!(r.stderr.contains(want), "no `{want}` in:\n{}", r.stderr);
    }
    let quiet = emubuild(store.path(), &["run", "--", "true"]).success();
    assert!(
        !quiet.stderr.contains("mounted overlay"),
        "{}",
        quiet.stderr
    );
    // EMUBUILD_DRIVER chooses the copying snapshotter, and the log says so.
    let r = emubuild_with(
        store.path(),
        &["-v", "run", "--", "true"],
        None,
        &[("EMUBUILD_DRIVER", "copy")],
    )
    .success();
    assert!(r.stderr.contains("Copy"), "{}", r.stderr);
    assert!(r.stderr.contains("bound the copied root"), "{}", r.stderr);
}
case! { verbose_runs_log_mounts_and_the_snapshotter, needs = SANDBOX, serial = HostBinfmt }

/// Exit statuses: 1 when `ls`, `commit` or `inspect` fail, 2 on bad usage, and 125 only for
/// `run` when emubuild could not run the command.
fn failures_exit_1_and_only_run_uses_125() {
    let (_emu, store) = setup();
    // `commit` of a working container that does not exist.
    let out = tempfile::tempdir().unwrap();
    let dest = format!("oci:{}:x", out.path().join("o").display());
    let r = emubuild(store.path(), &["commit", "--name", "nothing", &dest]).code_is(1);
    assert!(
        r.stderr.contains("no working container `nothing`"),
        "{}",
        r.stderr
    );
    // `inspect` of a directory that is no layout.
    let r = emubuild(
        store.path(),
        &["inspect", &format!("oci:{}", out.path().display())],
    )
    .code_is(1);
    assert!(r.stderr.contains("not an OCI image layout"), "{}", r.stderr);
    // A registry that cannot be reached is named.
    let r = emubuild(store.path(), &["inspect", "docker://127.0.0.1:5/x:1"]).code_is(1);
    assert!(
        r.stderr.contains("cannot reach `https://127.0.0.1:5/v2/`"),
        "{}",
        r.stderr
    );
    // A local path without a transport is bad usage.
    let r = emubuild(store.path(), &["inspect", "./some/dir"]).code_is(2);
    assert!(r.stderr.contains("oci:"), "{}", r.stderr);
    // `ls` with a store that cannot be opened (a file where the store should be).
    let file = out.path().join("file");
    std::fs::write(&file, b"").unwrap();
    let r = emubuild(&file, &["ls"]).code_is(1);
    assert!(r.stderr.contains("cannot open the store"), "{}", r.stderr);
    // `run`: a state file that does not parse is named; emubuild could not run: 125.
    let from = format!("rootfs:{}", img("rootfs-busybox-arm64.tar"));
    emubuild(store.path(), &["run", "--from", &from, "--", "true"]).success();
    let state = store
        .path()
        .join("containers/default/linux-arm64/state.json");
    std::fs::write(&state, b"{\"schema_version\": 1}").unwrap();
    let r = emubuild(store.path(), &["run", "--", "true"]).code_is(125);
    assert!(
        r.stderr.contains(&state.display().to_string()),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("emubuild rm"), "{}", r.stderr);
    // ...and `ls` says so about that container without failing the others.
    emubuild(store.path(), &["ls"]).success();
}
case! { failures_exit_1_and_only_run_uses_125, needs = SANDBOX, serial = HostBinfmt }

/// Every run option reaches every platform of a multi-platform run (each gets one serialised
/// request): env, workdir, user, volumes, network, and `-v` logging.
fn every_option_reaches_every_platform() {
    let (_emu, store) = setup();
    let from = format!("oci:{}:multi", img("oci-umoci"));
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("note"), b"from the host\n").unwrap();
    let bind = format!("{}:/hostdir:ro", host.path().display());
    let r = emubuild(
        store.path(),
        &[
            "-v", "run", "--platform", "linux/arm64,linux/s390x", "--from", &from,
            "-e", "GREETING=hi", "-w", "/work/here", "--user", "1000:1000", "-v", &bind,
            "--network", "none", "--", "sh", "-c",
            "echo $GREETING $(pwd) $(id -u):$(id -g) $(cat /hostdir/note) $(ls /sys/class/net | tr '\\n' ,)",
        ],
    )
    .success();
    for p in ["linux/arm64", "linux/s390x"] {
        let line = r
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("[{p}")))
            .unwrap_or_else(|| panic!("{p}: {}", r.stdout));
        assert!(
            line.ends_with("hi /work/here 1000:1000 from the host lo,"),
            "{p}: {line}"
        );
        // The children log as their parent asked.
        assert!(
            r.stderr
                .lines()
                .any(|l| l.starts_with(&format!("[{p}")) && l.contains("mounted overlay")),
            "{p}: {}",
            r.stderr
        );
    }
}
case! { every_option_reaches_every_platform, needs = SANDBOX, serial = HostBinfmt }
