//! `binfmtctl fetch`: a real fetch from the Debian archive, a verified offline cache hit, and
//! tampering (the .deb, Packages.xz, InRelease) against a mirror served on 127.0.0.1, which
//! must all be refused with nothing cached.

use std::path::Path;

use crate::case;
use crate::util::*;

fn fetch_env<'a>(cache: &'a Path, mirror: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("BINFMTCTL_CACHE_DIR", cache.to_str().unwrap()),
        ("BINFMTCTL_MIRROR", mirror),
    ]
}

/// Files in the cache's emulator directory (none after a refused fetch).
fn cached_files(cache: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(suites) = std::fs::read_dir(cache.join("emulators")) {
        for s in suites.filter_map(Result::ok) {
            for f in std::fs::read_dir(s.path()).unwrap().filter_map(Result::ok) {
                out.push(f.file_name().to_string_lossy().into_owned());
            }
        }
    }
    if let Ok(tmp) = std::fs::read_dir(cache.join("tmp")) {
        for f in tmp.filter_map(Result::ok) {
            out.push(format!("tmp/{}", f.file_name().to_string_lossy()));
        }
    }
    out
}

/// A refused fetch: every expected phrase in its error, and nothing in the cache.
fn assert_refused(what: &str, r: &Run, expect: &[&str], cache: &Path) {
    for e in expect {
        assert!(
            r.stderr.contains(e),
            "{what}: expected {e:?} in\n{}",
            r.stderr
        );
    }
    assert!(
        cached_files(cache).is_empty(),
        "{what}: cached {:?}",
        cached_files(cache)
    );
}

fn real_fetch_then_offline_cache_hit() {
    let mirror = system_mirror();
    let state = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let dest = tempfile::tempdir().unwrap();
    let mirror = mirror.expect("checked by Need::Mirror");
    let env = fetch_env(cache.path(), &mirror);
    let r = binfmtctl_env(
        state.path(),
        &[
            "fetch",
            "aarch64",
            "riscv64",
            "--json",
            "--dest",
            dest.path().to_str().unwrap(),
        ],
        &env,
    );
    let v = r.success().json();
    for (i, t) in ["aarch64", "riscv64"].iter().enumerate() {
        let rec = &v[i]["record"];
        assert_eq!(rec["suite"], "trixie");
        assert_eq!(rec["package"], "qemu-user");
        let path = v[i]["emulator"]["path"].as_str().unwrap();
        let (sha, size) = emukit::digest::sha256_file(Path::new(path)).unwrap();
        assert_eq!(rec["sha256"], sha.as_str());
        assert_eq!(rec["size"], size);
        // A static program for this host.
        let info = emukit::elf::inspect(Path::new(path)).unwrap();
        assert!(info.is_static, "{t} is not static");
        assert_eq!(
            info.target.as_deref(),
            emukit::arch::Table::get().host().map(|h| h.name.as_str())
        );
        let copied = dest.path().join(format!("qemu-{t}"));
        assert_eq!(emukit::digest::sha256_file(&copied).unwrap().0, sha);
    }
    // The emulator really emulates: run a probe through it directly.
    let emu = dest.path().join("qemu-aarch64");
    let probe = emukit::binfmt::exec::write_executable(
        "aarch64",
        emukit::binfmt::probe::program("aarch64").unwrap(),
    )
    .unwrap();
    let out = std::process::Command::new(&emu)
        .arg(probe.path())
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("binfmtctl-probe aarch64\n{}\n", probe.path().display())
    );

    // The older suites: another package (bookworm: qemu-user-static, `qemu-*-static` files)
    // and the backports suite, both from data; each gives a working emulator.
    for (suite, package) in [
        ("bookworm", "qemu-user-static"),
        ("bookworm-backports", "qemu-user"),
    ] {
        let v = binfmtctl_env(
            state.path(),
            &["fetch", "--suite", suite, "aarch64", "--json"],
            &env,
        )
        .success()
        .json();
        assert_eq!(v[0]["record"]["suite"], suite);
        assert_eq!(v[0]["record"]["package"], package);
        let out = std::process::Command::new(v[0]["emulator"]["path"].as_str().unwrap())
            .arg(probe.path())
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("binfmtctl-probe aarch64\n{}\n", probe.path().display()),
            "{suite}"
        );
    }

    // Offline: an unreachable mirror still serves cached emulators (the hash is re-checked).
    let offline = fetch_env(cache.path(), "http://127.0.0.1:9/debian");
    let r = binfmtctl_env(state.path(), &["fetch", "aarch64", "--json"], &offline).success();
    assert_eq!(r.json()[0]["emulator"]["origin"], "cache");
    // Status shows the record.
    let st = binfmtctl_env(state.path(), &["status", "--json"], &offline)
        .success()
        .json();
    assert!(
        st["cache"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["target"] == "aarch64" && r["suite"] == "trixie")
    );

    // A cached file changed on disk is not a hit: with no network the fetch now fails, saying why.
    let cached = cache.path().join("emulators/trixie/qemu-aarch64");
    let mut bytes = std::fs::read(&cached).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&cached, bytes).unwrap();
    let r = binfmtctl_env(state.path(), &["fetch", "aarch64"], &offline).code_is(1);
    assert!(r.stderr.contains("changed on disk"), "{}", r.stderr);
    assert!(r.stderr.contains("127.0.0.1:9"), "{}", r.stderr);
}
case! { real_fetch_then_offline_cache_hit, needs = [Mirror, Archive] }

fn tampered_mirror_is_refused_and_nothing_is_cached() {
    let fixture = mirror_fixture("trixie");
    let (root, deb_rel, index_rel) = fixture.expect("checked by Need::MirrorFixture");
    let state = tempfile::tempdir().unwrap();

    // The untampered local mirror works: the refusals below are about the tampering only.
    {
        let server = MirrorServer::start(&root, None);
        let cache = tempfile::tempdir().unwrap();
        let r = binfmtctl_env(
            state.path(),
            &["fetch", "s390x", "--json"],
            &fetch_env(cache.path(), &server.url),
        )
        .success();
        assert_eq!(r.json()[0]["emulator"]["origin"], "debian");
        // Not a terminal: no progress bar.
        assert!(!r.stderr.contains("qemu-user"), "{:?}", r.stderr);
        // On a terminal (a pseudo-terminal from `script`) the download draws one, naming the
        // package; `--quiet` hides it.
        for (quiet, want_bar) in [(false, true), (true, false)] {
            let cache = tempfile::tempdir().unwrap();
            let cmd = format!(
                "BINFMTCTL_STATE_DIR='{}' BINFMTCTL_CACHE_DIR='{}' BINFMTCTL_MIRROR='{}' '{}' fetch{} s390x",
                state.path().display(),
                cache.path().display(),
                server.url,
                binfmtctl_bin().display(),
                if quiet { " --quiet" } else { "" }
            );
            let o = std::process::Command::new("script")
                .args(["-qec", &cmd, "/dev/null"])
                .env("COLUMNS", "100")
                .env("LINES", "30")
                .output()
                .expect("script (util-linux)");
            let out = String::from_utf8_lossy(&o.stdout);
            assert!(o.status.success(), "{out}");
            assert_eq!(out.contains("iB/s"), want_bar, "quiet={quiet}: {out:?}");
        }
    }

    let deb_len = std::fs::metadata(root.join(&deb_rel)).unwrap().len();
    let inrelease_rel = index_rel.replace("main/binary-amd64/Packages.xz", "InRelease");
    let inrelease = std::fs::read_to_string(root.join(&inrelease_rel)).unwrap();
    // A byte inside the signed text: the first hash listed under SHA256.
    let sha_at = inrelease.find("SHA256:").unwrap() + "SHA256:\n ".len() + 3;
    let cases: [(&str, &str, u64, &[&str]); 6] = [
        (
            "flipped byte in the .deb",
            &deb_rel,
            deb_len / 2,
            &["SHA256", ".deb", "refusing it"],
        ),
        (
            "flipped last byte of the .deb",
            &deb_rel,
            deb_len - 1,
            &["SHA256", ".deb"],
        ),
        (
            "flipped byte in Packages.xz",
            &index_rel,
            100,
            &["Packages.xz", "SHA256", "refusing it"],
        ),
        (
            "a .deb one byte longer",
            &deb_rel,
            APPEND_BYTE,
            &[".deb", "size", &format!("says {deb_len}"), "more than"],
        ),
        (
            "a Packages.xz one byte longer",
            &index_rel,
            APPEND_BYTE,
            &["Packages.xz", "size", "more than"],
        ),
        (
            "edited InRelease",
            &inrelease_rel,
            sha_at as u64,
            &["InRelease", "signatures verifies"],
        ),
    ];
    for (what, path, offset, expect) in cases {
        let server = MirrorServer::start(&root, Some((path, offset)));
        let cache = tempfile::tempdir().unwrap();
        let r = binfmtctl_env(
            state.path(),
            &["fetch", "s390x", "arm"],
            &fetch_env(cache.path(), &server.url),
        )
        .code_is(1);
        assert_refused(what, &r, expect, cache.path());
    }
}
case! { tampered_mirror_is_refused_and_nothing_is_cached, needs = [MirrorFixture, Tool("script")] }

fn tampered_download_registers_nothing() {
    let fixture = mirror_fixture("trixie");
    let (root, deb_rel, _) = fixture.expect("checked by Need::MirrorFixture");
    let host = HostBinfmt::save();
    host.take(&["qemu-s390x"]);
    let deb_len = std::fs::metadata(root.join(&deb_rel)).unwrap().len();
    let server = MirrorServer::start(&root, Some((&deb_rel, deb_len / 3)));
    let state = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let r = binfmtctl_env(
        state.path(),
        &["install", "--source", "debian", "s390x"],
        &fetch_env(cache.path(), &server.url),
    )
    .code_is(1);
    assert!(r.stderr.contains("integrity check"), "{}", r.stderr);
    assert!(
        !host.fs().root().join("qemu-s390x").exists(),
        "registered after a refused download"
    );
    drop(server);

    // And from the good mirror the same command installs a working handler from the cache path.
    let server = MirrorServer::start(&root, None);
    binfmtctl_env(
        state.path(),
        &["install", "--source", "debian", "s390x"],
        &fetch_env(cache.path(), &server.url),
    )
    .success();
    let text = std::fs::read_to_string(host.fs().root().join("qemu-s390x")).unwrap();
    assert!(
        text.contains(&format!(
            "interpreter {}",
            cache.path().join("emulators/trixie/qemu-s390x").display()
        )),
        "{text}"
    );
    binfmtctl(state.path(), &["uninstall", "s390x"]).success();
    drop(host);
}
case! { tampered_download_registers_nothing, needs = [Root, HostBinfmt, MirrorFixture], serial = HostBinfmt }

fn concurrent_fetches_share_the_cache_safely() {
    let fixture = mirror_fixture("trixie");
    let (root, _, _) = fixture.expect("checked by Need::MirrorFixture");
    let server = MirrorServer::start(&root, None);
    let state = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let env = fetch_env(cache.path(), &server.url);
    let runs: Vec<_> = (0..3)
        .map(|_| {
            let mut c = std::process::Command::new(binfmtctl_bin());
            c.args(["fetch", "ppc64le", "mips64el", "--json"])
                .env("BINFMTCTL_STATE_DIR", state.path());
            for (k, v) in &env {
                c.env(k, v);
            }
            c.stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut origins = Vec::new();
    for child in runs {
        let r = Run::from_output(child.wait_with_output().unwrap()).success();
        origins.push(
            r.json()[0]["emulator"]["origin"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    // One downloaded, the others waited for the lock and found a verified cache entry.
    assert_eq!(
        origins.iter().filter(|o| *o == "debian").count(),
        1,
        "{origins:?}"
    );
    for t in ["ppc64le", "mips64el"] {
        let rec: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(cache.path().join(format!("emulators/trixie/qemu-{t}.json")))
                .unwrap(),
        )
        .unwrap();
        let (sha, _) =
            emukit::digest::sha256_file(&cache.path().join(format!("emulators/trixie/qemu-{t}")))
                .unwrap();
        assert_eq!(rec["sha256"], sha.as_str());
    }
}
case! { concurrent_fetches_share_the_cache_safely, needs = [MirrorFixture] }

fn no_mirror_known_is_a_clear_error() {
    let state = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let apt = tempfile::tempdir().unwrap();
    let mut c = std::process::Command::new(binfmtctl_bin());
    c.args(["fetch", "arm", "--apt-dir", apt.path().to_str().unwrap()])
        .env("BINFMTCTL_STATE_DIR", state.path())
        .env("BINFMTCTL_CACHE_DIR", cache.path())
        .env_remove("BINFMTCTL_MIRROR");
    let r = Run::from_output(c.output().unwrap()).code_is(1);
    assert!(
        r.stderr.contains("no Debian mirror is known") && r.stderr.contains("--mirror"),
        "{}",
        r.stderr
    );
    let bad = binfmtctl_env(state.path(), &["fetch", "arm", "--suite", "potato"], &[]).code_is(2);
    assert!(bad.stderr.contains("unknown suite"), "{}", bad.stderr);
}
case! { no_mirror_known_is_a_clear_error }

/// A Debian archive of our own, signed by a key made for the test: `dists/trixie/InRelease`
/// (clearsigned), its amd64 `Packages.xz`, and a `qemu-user` package holding `files` (archive
/// path, source file). Returns the keyring file that verifies it.
fn self_signed_archive(dir: &Path, files: &[(&str, &Path)]) -> std::path::PathBuf {
    let pkg = dir.join("pkg");
    for (inside, src) in files {
        let dest = pkg.join(inside);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(src, &dest).unwrap();
    }
    let script = r#"
        set -eu
        cd "$1"
        mkdir -p pkg/DEBIAN debian/pool/main/q/qemu debian/dists/trixie/main/binary-amd64 gnupg
        chmod 700 gnupg
        printf 'Package: qemu-user\nVersion: 1:99.0-1\nArchitecture: amd64\nMaintainer: test <test@example.invalid>\nDescription: test\n' > pkg/DEBIAN/control
        dpkg-deb -Zxz --root-owner-group --build pkg debian/pool/main/q/qemu/qemu-user_99.0-1_amd64.deb >/dev/null
        deb=pool/main/q/qemu/qemu-user_99.0-1_amd64.deb
        printf 'Package: qemu-user\nVersion: 1:99.0-1\nArchitecture: amd64\nFilename: %s\nSize: %s\nSHA256: %s\n\n' \
          "$deb" "$(stat -c %s debian/$deb)" "$(sha256sum debian/$deb | cut -d' ' -f1)" \
          | xz > debian/dists/trixie/main/binary-amd64/Packages.xz
        idx=debian/dists/trixie/main/binary-amd64/Packages.xz
        { printf 'Origin: test\nSuite: stable\nCodename: trixie\nDate: %s\nSHA256:\n' "$(LC_ALL=C date -u '+%a, %d %b %Y %H:%M:%S UTC')"
          printf ' %s %s main/binary-amd64/Packages.xz\n' "$(sha256sum $idx | cut -d' ' -f1)" "$(stat -c %s $idx)"
        } > Release
        export GNUPGHOME="$PWD/gnupg"
        gpg -q --batch --passphrase '' --quick-gen-key 'binfmtctl test <test@example.invalid>' rsa3072 sign never 2>/dev/null
        gpg -q --batch --clearsign --digest-algo SHA256 -o debian/dists/trixie/InRelease Release
        gpg -q --batch --export > keyring.gpg
    "#;
    let o = std::process::Command::new("sh")
        .args(["-c", script, "sh"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "building the test archive failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    dir.join("keyring.gpg")
}

fn foreign_or_dynamic_emulators_and_unknown_signers_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    // "qemu-s390x" that is an s390x program (not one for this host), "qemu-arm" that is this
    // host's dynamically linked /bin/ls.
    let keyring = self_signed_archive(
        dir.path(),
        &[
            ("usr/bin/qemu-s390x", &busybox("s390x").unwrap()),
            ("usr/bin/qemu-arm", Path::new("/bin/ls")),
        ],
    );
    let server = MirrorServer::start(dir.path(), None);
    let state = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let env = fetch_env(cache.path(), &server.url);
    let keyring = keyring.to_str().unwrap();
    let r = binfmtctl_env(
        state.path(),
        &["fetch", "--keyring", keyring, "s390x", "arm"],
        &env,
    )
    .code_is(1);
    assert_refused(
        "foreign and dynamic emulators",
        &r,
        &[
            "usr/bin/qemu-s390x",
            "it is a program for s390x",
            "usr/bin/qemu-arm",
            "dynamically linked",
            "nothing was cached",
        ],
        cache.path(),
    );
    // The same mirror going back in time (a genuinely signed but older InRelease, as a replay
    // would serve): refused, since a newer one was accepted from it.
    let resign = r#"
        set -eu
        cd "$1"
        export GNUPGHOME="$PWD/gnupg"
        sed -i "s/^Date: .*/Date: $(LC_ALL=C date -u -d '2 days ago' '+%a, %d %b %Y %H:%M:%S UTC')/" Release
        rm debian/dists/trixie/InRelease
        gpg -q --batch --clearsign --digest-algo SHA256 -o debian/dists/trixie/InRelease Release
    "#;
    let o = std::process::Command::new("sh")
        .args(["-c", resign, "sh"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r = binfmtctl_env(
        state.path(),
        &["fetch", "--keyring", keyring, "s390x"],
        &env,
    )
    .code_is(1);
    assert!(r.stderr.contains("replaying"), "{}", r.stderr);
    // The same archive against Debian's keyring: its signer is unknown, nothing is read past
    // InRelease.
    let r = binfmtctl_env(state.path(), &["fetch", "s390x"], &env).code_is(1);
    assert!(r.stderr.contains("InRelease"), "{}", r.stderr);
    assert!(cached_files(cache.path()).is_empty());
}
case! { foreign_or_dynamic_emulators_and_unknown_signers_are_refused, needs = [Busybox("s390x"), Tool("gpg"), Tool("dpkg-deb")] }

fn auto_source_falls_back_to_the_cache_then_the_archive() {
    let fixture = mirror_fixture("trixie");
    let (root, _, _) = fixture.expect("checked by Need::MirrorFixture");
    let host = HostBinfmt::save();
    host.take(&["qemu-s390x"]);
    let server = MirrorServer::start(&root, None);
    let state = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let url = server.url.clone();
    // In a mount namespace whose installed s390x emulators are hidden (/dev/null over each),
    // as on a machine with no QEMU installed.
    let run = |args: &str| {
        let script = format!(
            r#"
            for f in /usr/bin/qemu-s390x /usr/bin/qemu-s390x-static /usr/local/bin/qemu-s390x \
                     /usr/local/bin/qemu-s390x-static; do
              [ -e "$f" ] && mount --bind /dev/null "$f"
            done
            exec "$BINFMTCTL" {args}
            "#
        );
        let o = std::process::Command::new("unshare")
            .args(["-m", "sh", "-c", &script])
            .env("BINFMTCTL", binfmtctl_bin())
            .env("BINFMTCTL_STATE_DIR", state.path())
            .env("BINFMTCTL_CACHE_DIR", cache.path())
            .env("BINFMTCTL_MIRROR", &url)
            .env_remove("BINFMTCTL_ROOT")
            .output()
            .unwrap();
        Run::from_output(o)
    };
    let cached = cache.path().join("emulators/trixie/qemu-s390x");
    // Nothing installed, nothing cached: `auto` fetches, registers the cached file, verifies.
    let r = run("install --json s390x").success();
    let v = r.json();
    assert_eq!(v["targets"][0]["emulator"]["origin"], "debian", "{v}");
    assert_eq!(v["targets"][0]["verify"]["outcome"], "passed", "{v}");
    let text = std::fs::read_to_string(host.fs().root().join("qemu-s390x")).unwrap();
    assert!(
        text.contains(&format!("interpreter {}", cached.display())),
        "{text}"
    );
    run("uninstall s390x").success();
    // Now cached: the next install uses the cache, with no network at all.
    drop(server);
    let r = run("install --json s390x").success();
    assert_eq!(r.json()["targets"][0]["emulator"]["origin"], "cache");
    run("uninstall s390x").success();
    drop(host);
}
case! { auto_source_falls_back_to_the_cache_then_the_archive, needs = [Root, HostBinfmt, MountNs, MirrorFixture], serial = HostBinfmt }

fn network_failures_are_retried_then_name_the_url() {
    let fixture = mirror_fixture("trixie");
    let (root, deb_rel, _) = fixture.expect("checked by Need::MirrorFixture");
    let state = tempfile::tempdir().unwrap();
    // The .deb breaks off halfway twice: the third attempt gets it, verified.
    let server = MirrorServer::flaky(&root, &deb_rel, 2);
    let cache = tempfile::tempdir().unwrap();
    let r = binfmtctl_env(
        state.path(),
        &["fetch", "s390x", "--json"],
        &fetch_env(cache.path(), &server.url),
    )
    .success();
    assert_eq!(r.json()[0]["emulator"]["origin"], "debian");
    drop(server);
    // Always breaking off: after the retries, an error naming the URL and the attempts, and
    // nothing cached.
    let server = MirrorServer::flaky(&root, &deb_rel, usize::MAX);
    let cache = tempfile::tempdir().unwrap();
    let r = binfmtctl_env(
        state.path(),
        &["fetch", "s390x"],
        &fetch_env(cache.path(), &server.url),
    )
    .code_is(1);
    assert!(
        r.stderr.contains("tried 3 times") && r.stderr.contains(&deb_rel.replace("debian/", "")),
        "{}",
        r.stderr
    );
    assert!(
        cached_files(cache.path()).is_empty(),
        "{:?}",
        cached_files(cache.path())
    );
}
case! { network_failures_are_retried_then_name_the_url, needs = [MirrorFixture] }
