//! Rootless emulation, as an unprivileged user created by the test: a user namespace, a private
//! binfmt_misc, builds and commits that keep root's files root's, and the host's handlers
//! unchanged (none registered for the targets used).

use std::path::Path;
use std::process::Command;

use crate::case;
use crate::harness::Need;
use crate::util::*;

/// An unprivileged user's emulation: root to create the user, a private binfmt_misc, the
/// images, the tools that give the user subordinate IDs; the host's binfmt_misc is watched.
const ROOTLESS: &[Need] = &[
    Need::Root,
    Need::HostBinfmt,
    Need::PrivateBinfmt,
    Need::Images,
    Need::Busybox("s390x"),
    Need::Tool("newuidmap"),
    Need::Tool("useradd"),
];
/// A user whose user namespaces are taken away (in one of its own).
const NO_USERNS: &[Need] = &[
    Need::Root,
    Need::UserNs,
    Need::Images,
    Need::Tool("useradd"),
];

/// A throwaway user; removed (with its home and subordinate IDs) on drop.
struct TestUser {
    name: String,
    home: std::path::PathBuf,
}

impl TestUser {
    fn create(subids: bool) -> Option<TestUser> {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let name = format!(
            "emukit{}{n}{}",
            std::process::id() % 100000,
            if subids { "s" } else { "n" }
        );
        let mut c = Command::new("useradd");
        c.args(["-m", "-s", "/bin/sh"]);
        if !subids {
            c.args(["-K", "SUB_UID_COUNT=0", "-K", "SUB_GID_COUNT=0"]);
        }
        let ok = c.arg(&name).status().ok()?.success();
        if !ok {
            return None;
        }
        let home = Path::new("/home").join(&name);
        Some(TestUser { name, home })
    }

    /// Runs a shell script as this user (a login-less `su`), with `$EMUBUILD` and `$BINFMTCTL`.
    fn run(&self, script: &str) -> Run {
        let full = format!(
            "export EMUBUILD={} BINFMTCTL={} EMUBUILD_STORE={}/store XDG_CACHE_HOME={}/cache; cd {}; {script}",
            emubuild_bin().display(),
            binfmtctl_bin().display(),
            self.home.display(),
            self.home.display(),
            self.home.display()
        );
        Run::from_output(
            Command::new("su")
                .args([&self.name, "-s", "/bin/sh", "-c", &full])
                .output()
                .unwrap(),
        )
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel")
            .args(["-r", "-f", &self.name])
            .output();
    }
}

fn entries() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/proc/sys/fs/binfmt_misc")
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    let body = std::fs::read_to_string(e.path()).unwrap_or_default();
                    format!("{n}\n{body}")
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn layer_owners(layout: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for b in std::fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .filter_map(Result::ok)
    {
        let o = Command::new("tar")
            .arg("tvzf")
            .arg(b.path())
            .output()
            .unwrap();
        if o.status.success() {
            out.extend(
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .map(str::to_string),
            );
        }
    }
    out
}

fn an_unprivileged_user_builds_and_commits_without_touching_the_host() {
    let host = HostBinfmt::save();
    host.take(&["qemu-aarch64", "qemu-s390x"]);
    let before = entries();
    let rootfs = image("rootfs-busybox-arm64.tar").unwrap();

    // With subordinate IDs (useradd gives them on Debian): other owners work too.
    let user = TestUser::create(true).expect("useradd");
    let r = user.run(&format!(
        r#"set -e
        "$EMUBUILD" run --from rootfs:{rootfs} -- sh -c 'uname -m; id -u; echo made > /made.txt; touch /etc/passwd; chown 1000:1000 /home/builder/.; touch /home/builder/file'
        "$EMUBUILD" run --user builder -- sh -c 'id -u; echo mine > /home/builder/mine.txt'
        EMUBUILD_DRIVER=copy "$EMUBUILD" run -- sh -c 'echo c > /copied.txt; rm /home/builder/file'
        "$EMUBUILD" commit oci:$HOME/out:v1 >/dev/null
        "$EMUBUILD" run -- sh -c 'echo sys-rw=$(grep " /sys" /proc/self/mounts | grep -vc " ro,")'
        "$BINFMTCTL" status --json | grep -o '"instance": "[a-z-]*"' || true
        "$BINFMTCTL" run --platform linux/s390x -- {s390x} uname -m
        "$BINFMTCTL" run --platform linux/s390x -- "$BINFMTCTL" status --json | grep -o '"instance": "[a-z-]*"'
        "#,
        rootfs = rootfs.display(),
        s390x = busybox("s390x").unwrap().display(),
    ));
    let r = r.success();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines[..3], ["aarch64", "0", "1000"], "{}", r.stdout);
    assert!(lines.contains(&"\"instance\": \"host\""), "{}", r.stdout);
    assert!(lines.contains(&"s390x"), "{}", r.stdout);
    assert!(lines.contains(&"\"instance\": \"private\""), "{}", r.stdout);
    assert!(!r.stderr.contains("no subordinate IDs"), "{}", r.stderr);
    let owners = layer_owners(&user.home.join("out"));
    let find = |name: &str| {
        owners
            .iter()
            .find(|l| l.ends_with(name))
            .unwrap_or_else(|| panic!("{name} not in a layer: {owners:?}"))
            .clone()
    };
    assert!(
        find("made.txt").contains(" 0/0 "),
        "root's file is not root's in the layer: {}",
        find("made.txt")
    );
    // A root-owned file of the base image, changed by the step, is still root's.
    let passwd: Vec<&String> = owners
        .iter()
        .filter(|l| l.ends_with("etc/passwd"))
        .collect();
    assert!(
        !passwd.is_empty() && passwd.iter().all(|l| l.contains(" 0/0 ")),
        "{passwd:?}"
    );
    // The copying snapshotter works rootless too: root's file, and a whiteout.
    assert!(
        find("copied.txt").contains(" 0/0 "),
        "{}",
        find("copied.txt")
    );
    assert!(
        owners.iter().any(|l| l.ends_with("home/builder/.wh.file")),
        "{owners:?}"
    );
    // /sys and every mount below it are read-only in the sandbox.
    assert!(lines.contains(&"sys-rw=0"), "{}", r.stdout);
    assert!(
        find("home/builder/mine.txt").contains(" 1000/1000 "),
        "{}",
        find("home/builder/mine.txt")
    );
    // The host's binfmt_misc is exactly as it was.
    assert_eq!(entries(), before, "the host's entries changed");
    drop(user);

    // Without subordinate IDs: works as root inside, says what that limits.
    let user = TestUser::create(false).expect("useradd");
    let r = user.run(&format!(
        r#""$EMUBUILD" run --from rootfs:{} -- sh -c 'uname -m; echo made > /made.txt' && "$EMUBUILD" commit oci:$HOME/out:v1 >/dev/null && "$EMUBUILD" run --user builder -- id -u; echo "user-exit=$?""#,
        rootfs.display()
    ));
    assert!(
        r.stdout.starts_with("aarch64\n"),
        "{}\n{}",
        r.stdout,
        r.stderr
    );
    assert!(r.stderr.contains("no subordinate IDs"), "{}", r.stderr);
    assert!(
        r.stdout.contains("user-exit=125"),
        "--user builder should fail without subordinate IDs: {}\n{}",
        r.stdout,
        r.stderr
    );
    let owners = layer_owners(&user.home.join("out"));
    assert!(
        owners
            .iter()
            .any(|l| l.ends_with("made.txt") && l.contains(" 0/0 ")),
        "{owners:?}"
    );
    assert_eq!(entries(), before, "the host's entries changed");
    drop(user);
    drop(host);
}
case! { an_unprivileged_user_builds_and_commits_without_touching_the_host, needs = ROOTLESS, serial = HostBinfmt }

fn without_user_namespaces_a_clear_error_and_nothing_left() {
    let user = TestUser::create(true).expect("useradd");
    // A user namespace whose limit for nested namespaces is 0: creating one fails as on a
    // system where they are disabled.
    let r = user.run(&format!(
        r#"unshare -Urm sh -c 'echo 0 > /proc/sys/user/max_user_namespaces; "$EMUBUILD" run --from rootfs:{} -- true; echo emubuild-exit=$?; "$BINFMTCTL" run --platform arm64 -- true; echo binfmtctl-exit=$?'; ls $HOME/store 2>&1"#,
        image("rootfs-busybox-arm64.tar").unwrap().display()
    ));
    assert!(
        r.stdout.contains("emubuild-exit=125"),
        "{}\n{}",
        r.stdout,
        r.stderr
    );
    assert!(
        r.stdout.contains("binfmtctl-exit=1"),
        "{}\n{}",
        r.stdout,
        r.stderr
    );
    assert!(
        r.stderr.contains("cannot create a user namespace")
            && r.stderr.contains("user.max_user_namespaces"),
        "{}",
        r.stderr
    );
    assert!(
        r.stdout.contains("No such file or directory"),
        "the store was created: {}",
        r.stdout
    );
    drop(user);

    // A kernel that refuses the private binfmt_misc (as one before 6.7 does; here the mount
    // point is made unusable): a clear error, and the working container `--from` made is gone.
    let user = TestUser::create(true).expect("useradd");
    let r = user.run(&format!(
        r#""$EMUBUILD" --binfmt-root /nonexistent/binfmt_misc run --name gone --from rootfs:{} -- true; echo exit=$?; "$EMUBUILD" ls"#,
        image("rootfs-busybox-arm64.tar").unwrap().display()
    ));
    assert!(r.stdout.contains("exit=125"), "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .contains("did not give the user namespace its own binfmt_misc"),
        "{}",
        r.stderr
    );
    assert!(!r.stdout.contains("gone"), "left behind: {}", r.stdout);
}
case! { without_user_namespaces_a_clear_error_and_nothing_left, needs = NO_USERNS }
