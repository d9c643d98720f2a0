//! `binfmtctl fetch`: a real fetch from the Debian archive, a verified offline cache hit, and
//! tampering (the .deb, Packages.xz, InRelease) against a mirror served on 127.0.0.1, which
//! must all be refused with nothing cached.

use std::path::Path;

use serial_test::serial;

use crate::require;
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

fn system_mirror() -> Option<String> {
    emukit::emulator::mirror::from_apt_sources(Path::new("/etc/apt"))
        .or_else(|| std::env::var("BINFMTCTL_MIRROR").ok())
}

#[test]
fn real_fetch_then_offline_cache_hit() {
    let mirror = system_mirror();
    require!(
        mirror.is_some(),
        "no Debian mirror in the apt sources and BINFMTCTL_MIRROR unset"
    );
    let state = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let dest = tempfile::tempdir().unwrap();
    let mirror = mirror.unwrap();
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
    require!(
        r.code == Some(0) || !r.stderr.contains("cannot download"),
        "the Debian archive is unreachable: {}",
        r.stderr
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
    let probe = emukit::binfmt::probe::write_executable(
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
        "binfmtctl-probe aarch64\n"
    );

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

#[test]
fn tampered_mirror_is_refused_and_nothing_is_cached() {
    let fixture = mirror_fixture("trixie");
    require!(
        fixture.is_some(),
        "cannot build the local mirror fixture (no reachable Debian mirror)"
    );
    let (root, deb_rel, index_rel) = fixture.unwrap();
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
        assert!(!r.stderr.contains('\r'), "{:?}", r.stderr);
    }

    let deb_len = std::fs::metadata(root.join(&deb_rel)).unwrap().len();
    let inrelease_rel = index_rel.replace("main/binary-amd64/Packages.xz", "InRelease");
    let inrelease = std::fs::read_to_string(root.join(&inrelease_rel)).unwrap();
    // A byte inside the signed text: the first hash listed under SHA256.
    let sha_at = inrelease.find("SHA256:").unwrap() + "SHA256:\n ".len() + 3;
    let cases: [(&str, &str, u64, &[&str]); 4] = [
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
        for e in expect {
            assert!(
                r.stderr.contains(e),
                "{what}: expected {e:?} in\n{}",
                r.stderr
            );
        }
        assert!(
            cached_files(cache.path()).is_empty(),
            "{what}: cached {:?}",
            cached_files(cache.path())
        );
    }
}

#[test]
#[serial(host_binfmt)]
fn tampered_download_registers_nothing() {
    require!(is_root(), "needs root to register handlers");
    let fixture = mirror_fixture("trixie");
    require!(
        fixture.is_some(),
        "cannot build the local mirror fixture (no reachable Debian mirror)"
    );
    let (root, deb_rel, _) = fixture.unwrap();
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

#[test]
fn concurrent_fetches_share_the_cache_safely() {
    let fixture = mirror_fixture("trixie");
    require!(
        fixture.is_some(),
        "cannot build the local mirror fixture (no reachable Debian mirror)"
    );
    let (root, _, _) = fixture.unwrap();
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

#[test]
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
