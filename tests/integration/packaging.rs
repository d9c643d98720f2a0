//! The container image, run as a privileged container would run it, and the packaging:
//! `emubuild copy`, `packaging/container/build`, tonistiigi/binfmt's flags, `install --keep`,
//! `restore`, the systemd unit, the Kubernetes manifests, completions, man pages, the .deb.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::case;
use crate::harness::Need;
use crate::util::*;

/// Copying into arm64 trees and running the result.
const COPY: &[Need] = &[
    Need::Root,
    Need::HostBinfmt,
    Need::Emulator("aarch64"),
    Need::Busybox("arm64"),
    Need::DebianImage,
];
/// The container image used as a privileged container: root, the host's binfmt_misc, the
/// peer tools that unpack and read it, every busybox fixture, and a mirror for the emulators
/// the image's build fetches.
const IMAGE_AS_CONTAINER: &[Need] = &[
    Need::Root,
    Need::HostBinfmt,
    Need::Tool("umoci"),
    Need::Tool("skopeo"),
    Need::Tool("setpriv"),
    Need::Busybox("arm64"),
    Need::Busybox("armhf"),
    Need::Busybox("s390x"),
    Need::Busybox("ppc64el"),
    Need::Mirror,
];
/// The container image run by Docker.
const IMAGE_IN_DOCKER: &[Need] = &[
    Need::Root,
    Need::HostBinfmt,
    Need::Docker,
    Need::Busybox("arm64"),
    Need::Mirror,
];

fn sh(script: &str) -> Run {
    Run::from_output(Command::new("sh").args(["-ec", script]).output().unwrap())
}

fn copy_into_scratch_and_into_a_debian_tree() {
    let _emu = Emulation::ensure(&["aarch64"]);
    let store = tempfile::tempdir().unwrap();
    let host = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(host.path().join("tree/sub")).unwrap();
    std::fs::write(host.path().join("tree/a.txt"), "a").unwrap();
    std::fs::write(host.path().join("tree/sub/b.txt"), "b").unwrap();
    std::os::unix::fs::symlink("a.txt", host.path().join("tree/link")).unwrap();
    let bb = busybox("arm64").unwrap();
    emubuild(
        store.path(),
        &["from", "--platform", "linux/arm64", "scratch"],
    )
    .success();
    emubuild(
        store.path(),
        &[
            "copy",
            "--chmod",
            "0755",
            bb.to_str().unwrap(),
            "/bin/busybox",
        ],
    )
    .success();
    emubuild(
        store.path(),
        &[
            "copy",
            "--chown",
            "1000:1000",
            &host.path().join("tree").display().to_string(),
            "/opt/tree",
        ],
    )
    .success();
    emubuild(
        store.path(),
        &[
            "copy",
            &host.path().join("tree/a.txt").display().to_string(),
            &host.path().join("tree/sub/b.txt").display().to_string(),
            "/etc/",
        ],
    )
    .success();
    let script = "stat -c '%a %u:%g' /bin/busybox; stat -c '%u:%g' /opt/tree/sub/b.txt; readlink /opt/tree/link; cat /etc/a.txt /etc/b.txt";
    let r = emubuild(
        store.path(),
        &["run", "--", "/bin/busybox", "sh", "-c", script],
    )
    .success();
    assert_eq!(r.stdout, "755 0:0\n1000:1000\na.txt\nab", "{}", r.stdout);
    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            store
                .path()
                .join("containers/default/linux-arm64/state.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert!(
        state["steps"][0]["created_by"]
            .as_str()
            .unwrap()
            .starts_with("emubuild copy")
    );

    // Into a merged-/usr Debian tree: /bin is a symlink to usr/bin and must stay one.
    {
        let deb = image("debian-arm64.tar").unwrap();
        let from = format!("rootfs:{}", deb.display());
        emubuild(store.path(), &["from", "--name", "deb", &from]).success();
        emubuild(
            store.path(),
            &[
                "copy",
                "--name",
                "deb",
                "--chown",
                "nobody",
                &host.path().join("tree/a.txt").display().to_string(),
                "/bin/a-tool",
            ],
        )
        .success();
        let r = emubuild(store.path(), &["run", "--name", "deb", "--", "sh", "-c", "readlink /bin; cat /usr/bin/a-tool; echo; stat -c %U /usr/bin/a-tool; ls /bin/ls >/dev/null && echo ls-still-there"]).success();
        assert_eq!(
            r.stdout, "usr/bin\na\nnobody\nls-still-there\n",
            "{}",
            r.stdout
        );
    }
    // Bad input: a relative destination, a missing source.
    assert_ne!(
        emubuild(
            store.path(),
            &["copy", bb.to_str().unwrap(), "relative/path"]
        )
        .code,
        Some(0)
    );
    let r = emubuild(store.path(), &["copy", "/no/such/file", "/x"]);
    assert!(r.stderr.contains("does not exist"), "{}", r.stderr);
}
case! { copy_into_scratch_and_into_a_debian_tree, needs = COPY, serial = HostBinfmt }

/// Builds the container image once per test run (cargo and the emulator cache keep it cheap).
/// Our own build script failing fails the test that needs the image.
fn container_image() -> PathBuf {
    static BUILT: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let out = fixtures().join("binfmtctl-image");
            let archive = fixtures().join("binfmtctl-image.tar");
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/container/build");
            let o = Command::new(&script)
                .arg(&out)
                .args(["--debug", "--archive"])
                .arg(&archive)
                .output()
                .map_err(|e| format!("{}: {e}", script.display()))?;
            if !o.status.success() {
                return Err(format!(
                    "packaging/container/build failed ({}):\n{}",
                    o.status,
                    String::from_utf8_lossy(&o.stderr)
                ));
            }
            Ok(out)
        })
        .clone()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The image's environment, as a container runtime would set it.
fn image_env(layout: &Path) -> Vec<String> {
    let cfg = image_config(layout);
    cfg["config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

/// The image's config, as skopeo reads it.
fn image_config(layout: &Path) -> serde_json::Value {
    Run::from_output(
        Command::new("skopeo")
            .args([
                "inspect",
                "--config",
                &format!("oci:{}:latest", layout.display()),
            ])
            .output()
            .unwrap(),
    )
    .success()
    .json()
}

fn the_image_sets_up_the_host_as_a_privileged_container() {
    let layout = container_image();
    let bundle = tempfile::tempdir().unwrap();
    sh(&format!(
        "umoci unpack --image {}:latest {}/b",
        layout.display(),
        bundle.path().display()
    ))
    .success();
    let rootfs = bundle.path().join("b/rootfs");
    // Static: nothing to load; the emulators exist only inside the image.
    let ldd = sh(&format!(
        "ldd {}/usr/bin/binfmtctl 2>&1 || true",
        rootfs.display()
    ));
    assert!(ldd.stdout.contains("statically linked"), "{}", ldd.stdout);
    // What `docker run --privileged --rm IMAGE` runs: entrypoint binfmtctl, `install all`.
    let cfg = image_config(&layout);
    assert_eq!(
        cfg["config"]["Entrypoint"],
        serde_json::json!(["/usr/bin/binfmtctl"])
    );
    assert_eq!(cfg["config"]["Cmd"], serde_json::json!(["install", "all"]));
    let default_command: Vec<String> = ["Entrypoint", "Cmd"]
        .iter()
        .flat_map(|k| cfg["config"][k].as_array().unwrap().clone())
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert!(rootfs.join("usr/libexec/binfmtctl/qemu-aarch64").exists());
    assert!(
        !Path::new("/usr/libexec/binfmtctl").exists(),
        "the host has the image's emulator directory"
    );

    let host = HostBinfmt::save();
    let all: Vec<String> = emukit::arch::Table::get()
        .targets()
        .iter()
        .map(|t| t.handler_name())
        .collect();
    host.take(&all.iter().map(String::as_str).collect::<Vec<_>>());
    let env = image_env(&layout).join(" ");
    // Fresh mount and PID namespaces, chrooted into the image, binfmt_misc not mounted inside;
    // /proc and a minimal /dev as any container runtime provides them.
    let prepare = format!(
        "mkdir -p {r}/proc {r}/dev; mount -t proc proc {r}/proc; mount -t tmpfs tmpfs {r}/dev; mknod -m 666 {r}/dev/null c 1 3; test ! -e {r}/proc/sys/fs/binfmt_misc/register",
        r = rootfs.display()
    );
    let run_in = |args: &str| {
        sh(&format!(
            "unshare --mount --pid --fork sh -ec '{prepare}; exec env -i {env} chroot {r} /usr/bin/binfmtctl {args}'",
            r = rootfs.display()
        ))
    };
    // Exactly the image's default command.
    let r = sh(&format!(
        "unshare --mount --pid --fork sh -ec '{prepare}; exec env -i {env} chroot {r} {cmd}'",
        r = rootfs.display(),
        cmd = default_command.join(" ")
    ))
    .success();
    let status: serde_json::Value =
        serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", r.stdout));
    assert_eq!(status["mounted"], true);
    let entries = status["entries"].as_array().unwrap();
    assert!(entries.len() >= 20, "{entries:?}");
    assert!(
        entries
            .iter()
            .all(|e| e["managed"] == true && e["flags"]["fix_binary"] == true)
    );
    // From the host: foreign programs run, although the emulators exist only in the image.
    for (arch, uname) in [
        ("arm64", "aarch64"),
        ("armhf", "armv7l"),
        ("s390x", "s390x"),
        ("ppc64el", "ppc64le"),
    ] {
        let bb = busybox(arch).expect("checked by Need::Busybox");
        let out = Command::new(bb).args(["uname", "-m"]).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), uname);
    }
    let text = std::fs::read_to_string("/proc/sys/fs/binfmt_misc/qemu-aarch64").unwrap();
    assert!(
        text.contains("interpreter /usr/libexec/binfmtctl/qemu-aarch64"),
        "{text}"
    );
    // The host's binfmtctl recognises them as its own and removes them.
    let state = tempfile::tempdir().unwrap();
    binfmtctl(state.path(), &["uninstall", "all"]).success();
    assert!(!Path::new("/proc/sys/fs/binfmt_misc/qemu-aarch64").exists());

    // tonistiigi/binfmt's flags.
    let r = run_in("--install arm64,riscv64").success();
    let st: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let supported: Vec<&str> = st["supported"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        supported.contains(&"linux/arm64") && supported.contains(&"linux/riscv64"),
        "{supported:?}"
    );
    assert!(r.stderr.contains("installing: aarch64 OK"), "{}", r.stderr);
    let r = run_in("--uninstall \"qemu-*\"").success();
    assert!(
        r.stderr.contains("uninstalling: qemu-aarch64 OK"),
        "{}",
        r.stderr
    );
    assert!(!Path::new("/proc/sys/fs/binfmt_misc/qemu-riscv64").exists());

    // Not privileged (no CAP_SYS_ADMIN): a clear error and a failing status.
    let r = sh(&format!(
        "unshare --mount --pid --fork sh -ec '{prepare}; exec env -i {env} setpriv --bounding-set -sys_admin --inh-caps -sys_admin chroot {r} /usr/bin/binfmtctl install arm64'",
        r = rootfs.display()
    ));
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(r.stderr.contains("--privileged"), "{}", r.stderr);
    drop(host);
}
case! { the_image_sets_up_the_host_as_a_privileged_container, needs = IMAGE_AS_CONTAINER, serial = HostBinfmt }

fn docker_runs_the_image() {
    container_image();
    let archive = fixtures().join("binfmtctl-image.tar");
    let host = HostBinfmt::save();
    let all: Vec<String> = emukit::arch::Table::get()
        .targets()
        .iter()
        .map(|t| t.handler_name())
        .collect();
    host.take(&all.iter().map(String::as_str).collect::<Vec<_>>());
    let load = sh(&format!("docker load -i {}", archive.display())).success();
    let tag = load
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("Loaded image: "))
        .unwrap()
        .trim()
        .to_string();
    // `--privileged` grants every capability; where the engine cannot (this machine's root
    // lacks CAP_SYS_RESOURCE), CAP_SYS_ADMIN is what binfmtctl needs.
    let mut r = sh(&format!(
        "docker run --privileged --rm {tag} install arm64 s390x 2>&1"
    ));
    if r.code != Some(0) && r.stdout.contains("unable to apply caps") {
        r = sh(&format!(
            "docker run --cap-add SYS_ADMIN --rm {tag} install arm64 s390x 2>&1"
        ));
    }
    let r = r.success();
    assert!(r.stdout.contains("\"entries\""), "{}", r.stdout);
    let out = Command::new(busybox("arm64").unwrap())
        .args(["uname", "-m"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "aarch64",
        "the handler did not outlive the container"
    );
    // Without privileges: a clear error, a failing status.
    let r = sh(&format!(
        "docker run --rm {tag} install arm64 2>&1 || echo exit=$?"
    ));
    assert!(
        r.stdout.contains("--privileged") && r.stdout.contains("exit=1"),
        "{}",
        r.stdout
    );
    // Removed by the same image with tonistiigi's flag.
    let mut r = sh(&format!(
        "docker run --privileged --rm {tag} --uninstall 'qemu-*' 2>&1"
    ));
    if r.code != Some(0) && r.stdout.contains("unable to apply caps") {
        r = sh(&format!(
            "docker run --cap-add SYS_ADMIN --rm {tag} --uninstall 'qemu-*' 2>&1"
        ));
    }
    r.success();
    assert!(!Path::new("/proc/sys/fs/binfmt_misc/qemu-aarch64").exists());
    let _ = sh(&format!("docker rmi -f {tag}"));
    drop(host);
}
case! { docker_runs_the_image, needs = IMAGE_IN_DOCKER, serial = HostBinfmt }

fn keep_registers_again_what_a_flush_removed() {
    let state = tempfile::tempdir().unwrap();
    let script = r#"
        export BINFMTCTL_ROOT="$BINFMTCTL_STATE_DIR/bm"
        mkdir "$BINFMTCTL_ROOT"
        "$BINFMTCTL" install s390x --keep --interval 1 2>"$BINFMTCTL_STATE_DIR/keep.log" &
        k=$!
        i=0; while [ ! -e "$BINFMTCTL_ROOT/qemu-s390x" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
        test -e "$BINFMTCTL_ROOT/qemu-s390x"
        echo -1 > "$BINFMTCTL_ROOT/status"            # what systemd-binfmt does when it starts
        test ! -e "$BINFMTCTL_ROOT/qemu-s390x"
        i=0; while [ ! -e "$BINFMTCTL_ROOT/qemu-s390x" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
        test -e "$BINFMTCTL_ROOT/qemu-s390x" && echo back
        kill -TERM $k; wait $k; echo keeper-exit=$?
    "#;
    let r = in_userns(script, state.path()).success();
    assert!(r.stdout.contains("back"), "{}", r.stdout);
    assert!(r.stdout.contains("keeper-exit=0"), "{}", r.stdout);
    let log = std::fs::read_to_string(state.path().join("keep.log")).unwrap();
    assert!(log.contains("registered it again"), "{log}");

    // A keeper whose first install fails exits 1 at once (a pod must not sit there with
    // handlers missing). `--refresh` (implied by --keep) registers our identical entry again,
    // so a newer emulator file at the same path takes over; someone else's is left alone.
    let script = r#"
        export BINFMTCTL_ROOT="$BINFMTCTL_STATE_DIR/bm2"
        mkdir "$BINFMTCTL_ROOT" "$BINFMTCTL_STATE_DIR/bad"
        cp /bin/ls "$BINFMTCTL_STATE_DIR/bad/qemu-s390x"
        timeout 20 "$BINFMTCTL" install --emulator-dir "$BINFMTCTL_STATE_DIR/bad" s390x ppc64le --keep --interval 1 >/dev/null 2>&1 || echo keep-fail=$?
        "$BINFMTCTL" install s390x >/dev/null
        "$BINFMTCTL" install --refresh --json s390x | grep -o '"action": *"[a-z]*"'
        "$BINFMTCTL" install --dry-run s390x > "$BINFMTCTL_STATE_DIR/line"
        echo -1 > "$BINFMTCTL_ROOT/qemu-s390x"
        cat "$BINFMTCTL_STATE_DIR/line" > "$BINFMTCTL_ROOT/register"
        rm -rf "$BINFMTCTL_STATE_DIR/owned"
        "$BINFMTCTL" install --refresh --json s390x | grep -o '"action": *"[a-z]*"'
    "#;
    let r = in_userns(script, state.path()).success();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines[0], "keep-fail=1", "{}\n{}", r.stdout, r.stderr);
    assert!(lines[1].contains("refreshed"), "{}", r.stdout);
    assert!(lines[2].contains("unchanged"), "{}", r.stdout);
}
case! { keep_registers_again_what_a_flush_removed, needs = [PrivateBinfmt] }

fn restore_brings_back_persisted_handlers() {
    let state = tempfile::tempdir().unwrap();
    let script = r#"
        export BINFMTCTL_ROOT="$BINFMTCTL_STATE_DIR/bm" BINFMTCTL_PERSIST_DIR="$BINFMTCTL_STATE_DIR/binfmt.d"
        mkdir "$BINFMTCTL_ROOT" "$BINFMTCTL_PERSIST_DIR"
        "$BINFMTCTL" install --persist s390x ppc64le >/dev/null
        echo ':someone-else:E::zzz::/bin/true:' > "$BINFMTCTL_PERSIST_DIR/other.conf"
        echo -1 > "$BINFMTCTL_ROOT/status"
        "$BINFMTCTL" restore --json
    "#;
    let r = in_userns(script, state.path()).success();
    let v = r.json();
    let targets: Vec<&str> = v["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["target"].as_str().unwrap())
        .collect();
    assert_eq!(targets, ["ppc64le", "s390x"], "{}", r.stdout);
    assert!(
        v["targets"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["action"] == "registered" && t["verify"]["outcome"] == "passed"),
        "{}",
        r.stdout
    );
}
case! { restore_brings_back_persisted_handlers, needs = [PrivateBinfmt] }

fn packaging_files_are_valid() {
    // The systemd unit, as systemd reads it (with our binary in place of /usr/bin/binfmtctl).
    {
        let d = tempfile::tempdir().unwrap();
        let unit = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/systemd/binfmtctl.service"),
        )
        .unwrap();
        assert!(
            unit.contains("After=systemd-binfmt.service")
                && unit.contains("PartOf=systemd-binfmt.service")
        );
        let unit = unit.replace("/usr/bin/binfmtctl", &binfmtctl_bin().display().to_string());
        let p = d.path().join("binfmtctl.service");
        std::fs::write(&p, unit).unwrap();
        let r = Run::from_output(
            Command::new("systemd-analyze")
                .args(["verify", "--man=no"])
                .arg(&p)
                .output()
                .unwrap(),
        );
        let problems: Vec<&str> = r
            .stderr
            .lines()
            .filter(|l| l.contains("binfmtctl.service"))
            .collect();
        assert!(problems.is_empty() && r.code == Some(0), "{}", r.stderr);
    }
    // The Kubernetes manifests.
    let check = r#"
import sys, yaml
d = yaml.safe_load(open(sys.argv[1]))
assert d["kind"] == "DaemonSet", d["kind"]
spec = d["spec"]["template"]["spec"]
assert {"operator": "Exists"} in spec["tolerations"]
c = spec["containers"][0]
assert c["securityContext"]["privileged"] is True
assert c["resources"]["limits"]["memory"] and c["resources"]["limits"]["cpu"]
assert c["args"][:2] == ["install", "all"] and "--keep" in c["args"], c["args"]
u = yaml.safe_load(open(sys.argv[2]))
assert u["spec"]["template"]["spec"]["initContainers"][0]["args"] == ["uninstall", "all"]
print("ok")
"#;
    let k = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/kubernetes");
    let r = Run::from_output(
        Command::new("python3")
            .arg("-c")
            .arg(check)
            .arg(k.join("daemonset.yaml"))
            .arg(k.join("uninstall-daemonset.yaml"))
            .output()
            .unwrap(),
    );
    assert_eq!(r.stdout.trim(), "ok", "{}", r.stderr);
    // Completions and man pages come from the clap definitions.
    for bin in [binfmtctl_bin(), emubuild_bin()] {
        let name = bin.file_name().unwrap().to_string_lossy().into_owned();
        let bash = Run::from_output(
            Command::new(&bin)
                .args(["completions", "bash"])
                .output()
                .unwrap(),
        )
        .success();
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), &bash.stdout).unwrap();
        sh(&format!("bash -n {}", f.path().display())).success();
        assert!(bash.stdout.contains(&name));
        let man = Run::from_output(Command::new(&bin).arg("man").output().unwrap()).success();
        assert!(
            man.stdout.contains(&format!(".TH {name} 1")),
            "{}",
            &man.stdout[..200.min(man.stdout.len())]
        );
    }
}
case! { packaging_files_are_valid, needs = [Tool("systemd-analyze"), PythonModule("yaml")] }

fn debian_package_holds_commands_unit_completions_and_man_pages() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let r = Run::from_output(
        Command::new(root.join("packaging/deb/build"))
            .arg("--debug")
            .output()
            .unwrap(),
    )
    .success();
    let deb = r
        .stdout
        .lines()
        .chain(r.stderr.lines())
        .map(str::trim)
        .find(|l| l.ends_with(".deb"))
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("no .deb named in\n{}\n{}", r.stdout, r.stderr));
    let list = sh(&format!("dpkg-deb -c {}", deb.display()))
        .success()
        .stdout;
    for f in [
        "./usr/bin/binfmtctl",
        "./usr/bin/emubuild",
        "./usr/lib/systemd/system/binfmtctl.service",
        "./usr/share/bash-completion/completions/binfmtctl",
        "./usr/share/zsh/vendor-completions/_emubuild",
        "./usr/share/fish/vendor_completions.d/binfmtctl.fish",
        "./usr/share/man/man1/binfmtctl.1",
        "./usr/share/man/man1/emubuild.1",
    ] {
        assert!(
            list.lines()
                .any(|l| l.ends_with(f) || l.contains(&format!("{f}.gz"))),
            "{f} missing from\n{list}"
        );
    }
    let info = sh(&format!("dpkg-deb -f {} Package Depends", deb.display()))
        .success()
        .stdout;
    assert!(
        info.contains("Package: emukit") && info.contains("libc6"),
        "{info}"
    );
}
case! { debian_package_holds_commands_unit_completions_and_man_pages, needs = [Tool("cargo-deb")] }
