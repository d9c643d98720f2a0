//! emubuild against real registries (Debian's `docker-registry`, in the three modes of
//! `registry`): pulls with platform choice and a cache that moves no layer twice, pushes by
//! tag and by digest, login and logout, refusals that name the fix, hostile blobs, retries
//! and resumes, and Docker running what we pushed.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::case;
use crate::harness::Need;
use crate::registry::{Creds, Mode, Registry, USER};
use crate::util::*;

/// A pull into a working container: root (the store), the registry and skopeo (which
/// pushes the fixtures), and the fixtures.
pub(crate) const PULL: &[Need] = &[
    Need::Root,
    Need::Tool("docker-registry"),
    Need::Tool("skopeo"),
    Need::Images,
];
/// [`PULL`] over HTTPS with the test CA, and htpasswd.
const PULL_TLS: &[Need] = &[
    Need::Root,
    Need::Tool("docker-registry"),
    Need::Tool("skopeo"),
    Need::Images,
    Need::Tool("openssl"),
    Need::Tool("htpasswd"),
];
/// [`PULL`], the sandbox (handlers for arm64, arm and s390x) and Docker, the judge.
pub(crate) const BUILD_AND_RUN: &[Need] = &[
    Need::Root,
    Need::Tool("docker-registry"),
    Need::Tool("skopeo"),
    Need::Images,
    Need::HostBinfmt,
    Need::Emulator("aarch64"),
    Need::Emulator("arm"),
    Need::Emulator("s390x"),
    Need::Docker,
];

pub(crate) const BASE: &str = "emukit/base";

/// emubuild with a store of its own and no credentials from the host: the auth files it
/// would read (`$REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json`,
/// `$DOCKER_CONFIG/config.json`) all live in `home`.
pub(crate) struct Client {
    pub(crate) store: tempfile::TempDir,
    pub(crate) home: tempfile::TempDir,
    global: Vec<String>,
}

impl Client {
    /// A client for `reg`: trusting its CA (`--cert-dir`) when it serves TLS.
    pub(crate) fn new(reg: &Registry) -> Client {
        let mut c = Client::untrusting();
        if reg.mode().tls() {
            c.global
                .push(format!("--cert-dir={}", reg.cert_dir().display()));
        }
        c
    }

    /// A client that trusts no test CA.
    pub(crate) fn untrusting() -> Client {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(home.path().join("run")).unwrap();
        Client {
            store: tempfile::tempdir().unwrap(),
            home,
            global: Vec::new(),
        }
    }

    pub(crate) fn authfile(&self) -> PathBuf {
        self.home.path().join("auth.json")
    }

    pub(crate) fn run_with(
        &self,
        args: &[&str],
        stdin: Option<&[u8]>,
        env: &[(&str, &str)],
    ) -> Run {
        let mut all: Vec<&str> = self.global.iter().map(String::as_str).collect();
        all.extend(args);
        let authfile = self.authfile();
        let run = self.home.path().join("run");
        let docker = self.home.path().join("docker");
        let mut e = vec![
            ("REGISTRY_AUTH_FILE", authfile.to_str().unwrap()),
            ("XDG_RUNTIME_DIR", run.to_str().unwrap()),
            ("DOCKER_CONFIG", docker.to_str().unwrap()),
        ];
        e.extend(env);
        emubuild_with(self.store.path(), &all, stdin, &e)
    }

    pub(crate) fn run(&self, args: &[&str]) -> Run {
        self.run_with(args, None, &[])
    }

    /// Files anywhere in the store named `name` (a blob's or a layer's hex), but for the
    /// records of where blobs came from.
    pub(crate) fn stored(&self, name: &str) -> Vec<PathBuf> {
        fn walk(dir: &Path, name: &str, found: &mut Vec<PathBuf>) {
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let p = e.path();
                if e.file_name() == "origins" {
                    continue;
                }
                if e.file_name() == name {
                    found.push(p.clone());
                }
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    walk(&p, name, found);
                }
            }
        }
        let mut found = Vec::new();
        walk(self.store.path(), name, &mut found);
        found
    }

    /// The working containers and their platforms (`ls --json`).
    pub(crate) fn containers(&self) -> Vec<(String, Vec<String>)> {
        let v = self.run(&["ls", "--json"]).success().json();
        v.as_array()
            .unwrap()
            .iter()
            .map(|c| {
                let platforms = c["platforms"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p.as_str().unwrap().to_string())
                    .collect();
                (c["name"].as_str().unwrap().to_string(), platforms)
            })
            .collect()
    }
}

/// Every blob of a layout: digest and size (from its file).
pub(crate) fn layout_blobs(layout: &Path) -> Vec<(String, u64)> {
    std::fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                format!("sha256:{}", e.file_name().to_str().unwrap()),
                e.metadata().unwrap().len(),
            )
        })
        .collect()
}

pub(crate) fn hex(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap()
}

/// A pull fetches the blobs of the chosen platforms only, with either spelling of a
/// reference; platforms chosen by variant fallback; a second pull (and a pull of the same
/// image from another repository) fetches no blob and reads only the root's digest; a
/// single-platform image for another platform and a missing tag are refused by name.
fn pull_chooses_platforms_and_never_moves_a_blob_twice() {
    let reg = Registry::start(Mode::Plain);
    let base = reg.push_multi(&format!("{BASE}:multi"));
    let arm64 = base.image("linux/arm64");
    let s390x = base.image("linux/s390x");
    let c = Client::new(&reg);
    let image = reg.reference(&format!("{BASE}:multi"));

    let r = c
        .run(&["from", "--name", "a", "--platform", "linux/arm64", &image])
        .success();
    assert_eq!(r.stdout.trim(), "a");
    let gets = |d: &str| reg.count("GET", &format!("/v2/{BASE}/blobs/{d}"));
    assert_eq!(gets(&arm64.config), 1, "{:#?}", reg.requests());
    for l in &arm64.layers {
        assert_eq!(gets(l), 1, "layer {l}");
        assert_eq!(c.stored(hex(l)).len(), 1, "layer blob {l} stored once");
    }
    assert_eq!(
        reg.blob_gets(BASE),
        1 + arm64.layers.len(),
        "only arm64's blobs"
    );
    assert_eq!(gets(&s390x.config), 0);

    // docker:// too; arm64/v8 matches the index's arm64/v8, and only s390x is new.
    let before = reg.blob_gets(BASE);
    c.run(&[
        "from",
        "--name",
        "b",
        "--platform",
        "linux/arm64/v8,linux/s390x",
        &format!("docker://{image}"),
    ])
    .success();
    assert_eq!(
        reg.blob_gets(BASE) - before,
        1 + s390x.layers.len(),
        "only s390x's blobs were new: {:#?}",
        reg.requests()
    );
    let containers = c.containers();
    assert_eq!(
        containers[0],
        ("a".to_string(), vec!["linux/arm64".to_string()])
    );
    assert_eq!(containers[1].0, "b");
    assert_eq!(containers[1].1.len(), 2, "{containers:?}");

    // The same pull again: no blob, no manifest body; one HEAD for the tag's digest.
    let blobs = reg.blob_gets(BASE);
    let manifest_gets = reg.count("GET", &format!("/v2/{BASE}/manifests/"));
    let heads = reg.count("HEAD", &format!("/v2/{BASE}/manifests/multi"));
    c.run(&[
        "from",
        "--name",
        "c",
        "--platform",
        "linux/arm64,linux/s390x",
        &image,
    ])
    .success();
    assert_eq!(reg.blob_gets(BASE), blobs, "a cached pull fetched a blob");
    assert_eq!(
        reg.count("GET", &format!("/v2/{BASE}/manifests/")),
        manifest_gets,
        "a cached pull fetched a manifest body: {:#?}",
        reg.requests()
    );
    assert_eq!(
        reg.count("HEAD", &format!("/v2/{BASE}/manifests/multi")),
        heads + 1
    );

    // The same image in another repository (skopeo copies it, digests kept): its manifests
    // are read (the digest is new to this repository's name) but no blob moves.
    reg.push_multi("emukit/copy:v1");
    c.run(&[
        "from",
        "--name",
        "d",
        "--platform",
        "linux/arm64",
        &reg.reference("emukit/copy:v1"),
    ])
    .success();
    assert_eq!(reg.blob_gets("emukit/copy"), 0, "{:#?}", reg.requests());

    // A single-platform image: the other platform is refused with both named.
    reg.push("oci-buildah:arm64", "emukit/single:v1");
    let r = c
        .run(&[
            "from",
            "--name",
            "e",
            "--platform",
            "linux/s390x",
            &reg.reference("emukit/single:v1"),
        ])
        .code_is(1);
    assert!(
        r.stderr.contains("linux/arm64") && r.stderr.contains("linux/s390x"),
        "{}",
        r.stderr
    );
    // Without --platform, a single image brings its own.
    c.run(&["from", "--name", "f", &reg.reference("emukit/single:v1")])
        .success();

    // A missing tag and a missing repository are named.
    let r = c
        .run(&[
            "from",
            "--name",
            "g",
            &reg.reference(&format!("{BASE}:nope")),
        ])
        .code_is(1);
    assert!(r.stderr.contains(&format!("{BASE}:nope")), "{}", r.stderr);
    let r = c
        .run(&["from", "--name", "g", &reg.reference("emukit/nothing:v1")])
        .code_is(1);
    assert!(r.stderr.contains("emukit/nothing"), "{}", r.stderr);
    assert!(!c.containers().iter().any(|(n, _)| n == "e" || n == "g"));

    // inspect reads the registry too.
    let v = c.run(&["inspect", "--json", &image]).success().json();
    assert_eq!(
        v[0]["descriptor"]["digest"].as_str(),
        Some(base.digest.as_str()),
        "{v}"
    );
    assert_eq!(v[0]["images"].as_array().map(Vec::len), Some(3), "{v}");
}
case! { pull_chooses_platforms_and_never_moves_a_blob_twice, needs = PULL }

/// A registry that serves other bytes under a blob's digest (a layer, a config) or a
/// manifest's: refused with the digest named, nothing stored, no container made.
fn a_blob_with_the_wrong_digest_is_refused_and_nothing_is_stored() {
    let reg = Registry::start(Mode::Plain);
    let base = reg.push_multi(&format!("{BASE}:multi"));
    let image = reg.reference(&format!("{BASE}:multi"));
    let c = Client::new(&reg);
    let arm64 = base.image("linux/arm64");
    let layer = arm64.layers[0].clone();
    reg.corrupt_blob(&layer);
    let r = c
        .run(&["from", "--platform", "linux/arm64", &image])
        .code_is(1);
    assert!(r.stderr.contains(&layer), "{}", r.stderr);
    assert!(
        r.stderr.contains("digest") || r.stderr.contains("hashes"),
        "{}",
        r.stderr
    );
    assert!(c.stored(hex(&layer)).is_empty(), "the bad layer was kept");
    assert!(c.containers().is_empty());

    let s390x = base.image("linux/s390x");
    reg.corrupt_blob(&s390x.config);
    let r = c
        .run(&["from", "--platform", "linux/s390x", &image])
        .code_is(1);
    assert!(r.stderr.contains(&s390x.config), "{}", r.stderr);
    assert!(c.stored(hex(&s390x.config)).is_empty());

    let armv7 = base.image("linux/arm/v7");
    reg.corrupt_blob(&armv7.manifest);
    let r = c
        .run(&["from", "--platform", "linux/arm/v7", &image])
        .code_is(1);
    assert!(r.stderr.contains(&armv7.manifest), "{}", r.stderr);
    assert!(c.stored(hex(&armv7.manifest)).is_empty());
    assert!(c.containers().is_empty());
}
case! { a_blob_with_the_wrong_digest_is_refused_and_nothing_is_stored, needs = PULL }

/// `push` of a layout and of an archive: by tag (the exact bytes, the tag written after
/// every child manifest, the digest in `--digestfile`), again (nothing uploaded), and by
/// digest (no tag; blobs mounted from the repository that holds them).
fn push_by_tag_and_by_digest() {
    let reg = Registry::start(Mode::Plain);
    let c = Client::new(&reg);
    let layout = image("oci-umoci").unwrap();
    let src = format!("oci:{}:multi", layout.display());
    let digestfile = c.home.path().join("digest");
    let r = c
        .run(&[
            "push",
            "--json",
            "--digestfile",
            digestfile.to_str().unwrap(),
            &src,
            &reg.reference("emukit/pushed:v1"),
        ])
        .success();
    let v = r.json();
    let digest = v["digest"].as_str().unwrap().to_string();
    assert_eq!(std::fs::read_to_string(&digestfile).unwrap().trim(), digest);
    assert_eq!(v["uploaded"], 6, "{v}");
    // The bytes of the layout, as they were.
    let stored = std::fs::read_to_string(layout.join("blobs/sha256").join(hex(&digest))).unwrap();
    let raw = reg
        .skopeo_inspect_raw("emukit/pushed:v1", Creds::Anonymous)
        .success();
    assert_eq!(raw.stdout.trim_end(), stored.trim_end());
    // The tag last: every child manifest was PUT by digest before it.
    let puts: Vec<String> = reg
        .requests()
        .into_iter()
        .filter(|r| r.method == "PUT" && r.uri.contains("/manifests/"))
        .map(|r| r.uri)
        .collect();
    assert_eq!(puts.len(), 4, "{puts:?}");
    assert!(puts[3].ends_with("/manifests/v1"), "{puts:?}");
    assert!(puts[..3].iter().all(|u| u.contains("/manifests/sha256:")));
    // skopeo reads every platform.
    let out = tempfile::tempdir().unwrap();
    reg.skopeo_pull(
        "emukit/pushed:v1",
        &format!("oci:{}:v1", out.path().join("l").display()),
        Creds::Anonymous,
    )
    .success();

    // Again: the tag names the index already, so nothing is uploaded, written or even asked
    // about below it.
    let uploads = reg.count("PUT", "/blobs/uploads/");
    let (manifest_puts, blob_heads) = (
        reg.count("PUT", "/manifests/"),
        reg.count("HEAD", "/blobs/"),
    );
    let v = c
        .run(&["push", "--json", &src, &reg.reference("emukit/pushed:v1")])
        .success()
        .json();
    assert_eq!(v["uploaded"].as_u64(), Some(0), "{v}");
    assert_eq!(reg.count("PUT", "/blobs/uploads/"), uploads);
    assert_eq!(reg.count("PUT", "/manifests/"), manifest_puts);
    assert_eq!(
        reg.count("HEAD", "/blobs/"),
        blob_heads,
        "{:#?}",
        reg.requests()
    );

    // By digest to another repository: no tag, every blob mounted from emukit/pushed.
    let r = c
        .run(&["push", "--json", &src, &reg.reference("emukit/bydigest")])
        .success();
    let v = r.json();
    assert_eq!(v["digest"].as_str(), Some(digest.as_str()));
    assert_eq!(v["mounted"], 6, "{v}: {:#?}", reg.requests());
    assert_eq!(reg.count("PUT", "/blobs/uploads/"), uploads);
    let tags = reg
        .client()
        .get(reg.url("/v2/emukit/bydigest/tags/list"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let tags: Value = serde_json::from_str(&tags).unwrap_or(Value::Null);
    assert!(
        tags["tags"].as_array().is_none_or(|t| t.is_empty()),
        "pushed by digest, yet tagged: {tags}"
    );
    reg.skopeo_inspect_raw(&format!("emukit/bydigest@{digest}"), Creds::Anonymous)
        .success();

    // A repository believed to hold the blobs that does not (they were deleted, say): the
    // registry declines each mount (202) and they are uploaded.
    let fresh = Client::new(&reg);
    let origins = fresh.store.path().join("origins");
    std::fs::create_dir_all(&origins).unwrap();
    for (d, _) in layout_blobs(&layout) {
        std::fs::write(
            origins.join(hex(&d)),
            format!("{}/emukit/nowhere\n", reg.host()),
        )
        .unwrap();
    }
    let v = fresh
        .run(&["push", "--json", &src, &reg.reference("emukit/third:v1")])
        .success()
        .json();
    assert_eq!(
        (v["mounted"].as_u64(), v["uploaded"].as_u64()),
        (Some(0), Some(6)),
        "{v}"
    );
    let declined = reg
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.uri.contains("mount=") && r.uri.contains("nowhere"))
        .filter(|r| r.status == 202)
        .count();
    assert_eq!(declined, 6, "{:#?}", reg.requests());

    // An archive of one image: its manifest goes alone (as `docker push` sends it), and the
    // digestfile names it; `--index` keeps the index of one.
    let archive = image("oci-archive-arm64.tar").unwrap();
    let archived = format!("oci-archive:{}", archive.display());
    let v = c
        .run(&[
            "push",
            "--json",
            &archived,
            &reg.reference("emukit/archived:v1"),
        ])
        .success()
        .json();
    let raw = reg
        .skopeo_inspect_raw("emukit/archived:v1", Creds::Anonymous)
        .success();
    let doc: Value = serde_json::from_str(&raw.stdout).unwrap();
    // An image manifest (skopeo wrote this one without a `mediaType` of its own).
    assert!(
        doc.get("config").is_some() && doc.get("manifests").is_none(),
        "{doc}"
    );
    assert_eq!(
        v["digest"].as_str().unwrap(),
        format!("sha256:{}", sha256_hex(raw.stdout.as_bytes()))
    );
    // A layout emubuild committed holds an index of one image: it too goes as the manifest,
    // unless `--index`.
    c.run(&[
        "from",
        "--platform",
        "linux/arm64",
        &format!("oci:{}:arm64", layout.display()),
    ])
    .success();
    let committed = format!("oci:{}:v1", out.path().join("committed").display());
    c.run(&["commit", &committed]).success();
    for (flag, dest, manifests) in [
        (None, "emukit/committed:v1", None),
        (Some("--index"), "emukit/committed:v2", Some(1)),
    ] {
        let mut args = vec!["push"];
        args.extend(flag);
        let dest_ref = reg.reference(dest);
        args.extend([committed.as_str(), dest_ref.as_str()]);
        c.run(&args).success();
        let raw = reg.skopeo_inspect_raw(dest, Creds::Anonymous).success();
        let doc: Value = serde_json::from_str(&raw.stdout).unwrap();
        assert_eq!(
            doc["manifests"].as_array().map(Vec::len),
            manifests,
            "{doc}"
        );
    }

    // A destination that is not a registry, and a tag the layout lacks.
    let r = c
        .run(&[
            "push",
            &src,
            &format!("oci:{}", out.path().join("x").display()),
        ])
        .code_is(2);
    assert!(r.stderr.contains("registry"), "{}", r.stderr);
    let r = c
        .run(&[
            "push",
            &format!("oci:{}:nope", layout.display()),
            &reg.reference("emukit/pushed:v2"),
        ])
        .code_is(2);
    assert!(r.stderr.contains("nope"), "{}", r.stderr);
}
case! { push_by_tag_and_by_digest, needs = PULL }

/// HTTPS with the test CA and htpasswd: a client that does not trust the CA is told about
/// `--cert-dir` (and trusts `/etc/containers/certs.d/HOST:PORT/`); no credentials and a
/// wrong password are told to log in; `login` checks before it saves (0600), a wrong
/// password exits 1 and saves nothing; `logout` removes them.
fn tls_basic_login_logout_and_refusals() {
    let reg = Registry::start(Mode::TlsBasic);
    reg.push_multi(&format!("{BASE}:multi"));
    let image = reg.reference(&format!("{BASE}:multi"));
    let host = reg.host();
    let pw = reg.password().unwrap().to_string();
    let creds = format!("{USER}:{pw}");

    // An unknown CA.
    let stranger = Client::untrusting();
    let r = stranger
        .run(&[
            "--creds",
            &creds,
            "from",
            "--platform",
            "linux/s390x",
            &image,
        ])
        .code_is(1);
    assert!(r.stderr.contains("--cert-dir"), "{}", r.stderr);
    assert!(r.stderr.contains("certificate"), "{}", r.stderr);
    // ... which certs.d can vouch for.
    let certs_d = PathBuf::from("/etc/containers/certs.d").join(&host);
    let _cleanup = RemoveOnDrop(certs_d.clone());
    std::fs::create_dir_all(&certs_d).unwrap();
    std::fs::copy(reg.ca_cert().unwrap(), certs_d.join("ca.crt")).unwrap();
    stranger
        .run(&[
            "--creds",
            &creds,
            "from",
            "--platform",
            "linux/s390x",
            &image,
        ])
        .success();
    drop(_cleanup);
    // --tls-verify=false takes any certificate.
    stranger
        .run(&[
            "--tls-verify=false",
            "--creds",
            &creds,
            "from",
            "--replace",
            "--platform",
            "linux/s390x",
            &image,
        ])
        .success();
    // A system with no CAs of its own still trusts the one given.
    let cert_dir = format!("--cert-dir={}", reg.cert_dir().display());
    stranger
        .run_with(
            &[
                &cert_dir,
                "--creds",
                &creds,
                "from",
                "--replace",
                "--platform",
                "linux/s390x",
                &image,
            ],
            None,
            &[
                ("SSL_CERT_FILE", "/nonexistent"),
                ("SSL_CERT_DIR", "/nonexistent"),
            ],
        )
        .success();

    let c = Client::new(&reg);
    // No credentials, a wrong password.
    let r = c
        .run(&["from", "--platform", "linux/s390x", &image])
        .code_is(1);
    assert!(
        r.stderr.contains(&format!("emubuild login {host}")),
        "{}",
        r.stderr
    );
    let r = c
        .run(&[
            "--creds",
            &format!("{USER}:wrong"),
            "from",
            "--platform",
            "linux/s390x",
            &image,
        ])
        .code_is(1);
    assert!(r.stderr.contains("emubuild login"), "{}", r.stderr);

    // login with a wrong password: exit 1, nothing saved.
    let r = c
        .run_with(
            &["login", "-u", USER, "--password-stdin", &host],
            Some(b"wrong\n"),
            &[],
        )
        .code_is(1);
    assert!(!c.authfile().exists(), "{}", r.stderr);
    // The right one: saved, 0600, and used.
    c.run_with(
        &["login", "-u", USER, "--password-stdin", &host],
        Some(format!("{pw}\n").as_bytes()),
        &[],
    )
    .success();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(c.authfile())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let auth: Value = serde_json::from_slice(&std::fs::read(c.authfile()).unwrap()).unwrap();
    use base64::Engine;
    let expected = base64::engine::general_purpose::STANDARD.encode(&creds);
    assert_eq!(
        auth["auths"][&host]["auth"].as_str(),
        Some(expected.as_str())
    );
    // skopeo reads what we wrote.
    let r = skopeo_with_authfile(&reg, &c.authfile(), &format!("{BASE}:multi"));
    r.success();
    c.run(&["from", "--platform", "linux/s390x", &image])
        .success();
    // logout: gone; a second logout says there is nothing to remove.
    c.run(&["logout", &host]).success();
    let auth: Value = serde_json::from_slice(&std::fs::read(c.authfile()).unwrap()).unwrap();
    assert!(auth["auths"].get(&host).is_none(), "{auth}");
    c.run(&["logout", &host]).code_is(1);
    let r = c
        .run(&["from", "--replace", "--platform", "linux/s390x", &image])
        .code_is(1);
    assert!(r.stderr.contains("emubuild login"), "{}", r.stderr);

    // Docker's config.json, as `docker login` writes it, is read too.
    let docker = c.home.path().join("docker");
    std::fs::create_dir_all(&docker).unwrap();
    std::fs::write(
        docker.join("config.json"),
        serde_json::json!({"auths": {&host: {"auth": expected}}}).to_string(),
    )
    .unwrap();
    c.run(&["from", "--replace", "--platform", "linux/s390x", &image])
        .success();
}
case! { tls_basic_login_logout_and_refusals, needs = PULL_TLS }

fn skopeo_with_authfile(reg: &Registry, authfile: &Path, path: &str) -> Run {
    crate::registry::skopeo(&[
        "inspect".to_string(),
        "--raw".into(),
        format!("--cert-dir={}", reg.cert_dir().display()),
        format!("--authfile={}", authfile.display()),
        format!("docker://{}", reg.reference(path)),
    ])
}

/// Removes a directory when dropped (a test's files outside its temporary directories).
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Bearer tokens as Docker Hub hands them out: an anonymous pull gets a pull token; a push
/// without credentials is refused with the login hint; with them, a commit of a pulled
/// base asks one token for push to its repository and pull from the base's, and mounts
/// the base's layers instead of uploading them.
fn tls_token_pull_anonymously_push_with_mounts() {
    let reg = Registry::start(Mode::TlsToken);
    let base = reg.push_multi(&format!("{BASE}:multi"));
    let image = reg.reference(&format!("{BASE}:multi"));
    let host = reg.host();
    let pw = reg.password().unwrap().to_string();
    let c = Client::new(&reg);
    c.run(&["from", "--platform", "linux/arm64,linux/s390x", &image])
        .success();
    let tokens = reg.token_server().unwrap().requests();
    assert!(
        tokens.iter().any(|t| t.account.is_none()
            && t.status == 200
            && t.scopes == [format!("repository:{BASE}:pull")]),
        "{tokens:#?}"
    );
    // One token for the whole pull (cached until it expires).
    let asked = tokens.len();
    assert!(asked <= 2, "{tokens:#?}");

    // Push without credentials: refused, the login named.
    let dest = reg.reference("emukit/mine:v1");
    let r = c.run(&["commit", &dest]).code_is(1);
    assert!(
        r.stderr.contains(&format!("emubuild login {host}")),
        "{}",
        r.stderr
    );
    // With them: the layers are mounted from emukit/base.
    let r = c
        .run(&[
            "--creds",
            &format!("{USER}:{pw}"),
            "commit",
            "--json",
            &dest,
        ])
        .success();
    let v = r.json();
    let tokens = reg.token_server().unwrap().requests();
    assert!(
        tokens.iter().any(|t| t.account.as_deref() == Some(USER)
            && t.scopes
                .contains(&"repository:emukit/mine:pull,push".to_string())
            && t.scopes.contains(&format!("repository:{BASE}:pull"))),
        "{tokens:#?}"
    );
    let mounts: Vec<_> = reg
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.uri.contains("mount=") && r.status == 201)
        .collect();
    let layers = base.image("linux/arm64").layers.len() + base.image("linux/s390x").layers.len();
    assert_eq!(mounts.len(), layers, "{mounts:#?}\n{v}");
    let raw = reg
        .skopeo_inspect_raw("emukit/mine:v1", Creds::User)
        .success();
    let index: Value = serde_json::from_str(&raw.stdout).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2, "{index}");
    assert_eq!(
        v["index"].as_str().map(|d| d.to_string()),
        Some(format!("sha256:{}", sha256_hex(raw.stdout.as_bytes()))),
        "the tag names what commit printed"
    );
    // A wrong password gets no token.
    let r = c
        .run(&["--creds", &format!("{USER}:wrong"), "commit", &dest])
        .code_is(1);
    assert!(r.stderr.contains("emubuild login"), "{}", r.stderr);
}
case! { tls_token_pull_anonymously_push_with_mounts, needs = PULL + [Tool("openssl")] }

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    ::hex::encode(sha2::Sha256::digest(bytes))
}

/// The whole loop on a plain registry: `run` with no working container starts from
/// `$EMUBUILD_BASE` (and says so), steps run for two platforms, `commit REF` pushes both
/// and the index, and Docker pulls and runs the arm64 image through the host's handlers;
/// `commit REPO` pushes by digest only.
fn default_base_build_push_and_docker_runs_it() {
    let _emu = Emulation::ensure(&["aarch64", "arm", "s390x"]);
    let reg = Registry::start(Mode::Plain);
    reg.push_multi(&format!("{BASE}:multi"));
    let base = reg.reference(&format!("{BASE}:multi"));
    let c = Client::new(&reg);
    let r = c
        .run_with(
            &[
                "run",
                "--platform",
                "linux/arm64,linux/arm/v7",
                "--",
                "sh",
                "-c",
                "echo built-$(uname -m) > /built; uname -m",
            ],
            None,
            &[("EMUBUILD_BASE", &base)],
        )
        .success();
    assert!(
        r.stderr.contains(&base),
        "the base chosen is said: {}",
        r.stderr
    );
    assert!(
        r.stdout.contains("aarch64") && r.stdout.contains("armv7l"),
        "{}",
        r.stdout
    );

    let dest = reg.reference("emukit/built:v1");
    let index = c
        .run(&["commit", "--cmd", "cat /built", &dest])
        .success()
        .stdout
        .trim()
        .to_string();
    let raw = reg
        .skopeo_inspect_raw("emukit/built:v1", Creds::Anonymous)
        .success();
    assert_eq!(
        format!("sha256:{}", sha256_hex(raw.stdout.as_bytes())),
        index
    );
    let v: Value = serde_json::from_str(&raw.stdout).unwrap();
    let platforms: Vec<String> = v["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let p = &m["platform"];
            let mut s = format!(
                "{}/{}",
                p["os"].as_str().unwrap(),
                p["architecture"].as_str().unwrap()
            );
            if let Some(v) = p["variant"].as_str() {
                s = format!("{s}/{v}");
            }
            s
        })
        .collect();
    assert!(
        platforms.iter().any(|p| p.starts_with("linux/arm64")),
        "{platforms:?}"
    );
    assert!(
        platforms.contains(&"linux/arm/v7".to_string()),
        "{platforms:?}"
    );

    // Docker: manifest inspect, pull and run the arm64 image.
    let m = tool("docker", &["manifest", "inspect", "--insecure", &dest]).success();
    assert!(m.stdout.contains("arm64"), "{}", m.stdout);
    tool("docker", &["pull", "--platform", "linux/arm64", &dest]).success();
    let out = tool(
        "docker",
        &["run", "--rm", "--platform", "linux/arm64", &dest],
    );
    let _ = tool("docker", &["rmi", "-f", &dest]);
    assert_eq!(out.success().stdout.trim(), "built-aarch64");

    // By digest: no tag.
    let digest = c
        .run(&["commit", &reg.reference("emukit/untagged")])
        .success()
        .stdout
        .trim()
        .to_string();
    reg.skopeo_inspect_raw(&format!("emukit/untagged@{digest}"), Creds::Anonymous)
        .success();
    assert_eq!(reg.count("PUT", "/v2/emukit/untagged/manifests/sha256:"), 3);
    assert_eq!(
        reg.requests()
            .iter()
            .filter(|r| r.method == "PUT"
                && r.uri.starts_with("/v2/emukit/untagged/manifests/")
                && !r.uri.contains("sha256:"))
            .count(),
        0
    );
}
case! { default_base_build_push_and_docker_runs_it, needs = BUILD_AND_RUN, serial = HostBinfmt }

// ---------------------------------------------------------------------------------------
// A registry in front of the real one that misbehaves as real ones do: rate limits, 5xx,
// transfers broken off halfway, Basic auth of its own, and blobs redirected to a "CDN" on
// another host (127.0.0.2).

/// What the proxy does to requests.
#[derive(Clone, Default)]
struct Faults {
    /// The first manifest request gets 429 with `Retry-After: 1` and Docker Hub's figures.
    rate_limit_once: bool,
    /// Every manifest request does (with `Retry-After: 0`).
    rate_limit_always: bool,
    /// The first request whose path contains this gets 503.
    fail_once: Option<String>,
    /// The first GET of this blob is broken off after half its body.
    cut_once: Option<String>,
    /// Basic credentials the proxy demands (a 401 with a Basic challenge without them).
    basic: Option<(String, String)>,
    /// Blob GETs are answered with a redirect to the other host.
    redirect_blobs: bool,
}

/// One request the proxy saw.
#[derive(Debug, Clone)]
struct Seen {
    /// On the CDN face (127.0.0.2)?
    cdn: bool,
    method: String,
    path: String,
    range: Option<String>,
    authorization: bool,
}

struct Proxy {
    registry: std::net::SocketAddr,
    seen: std::sync::Arc<std::sync::Mutex<Vec<Seen>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    faces: Vec<std::net::SocketAddr>,
}

impl Proxy {
    fn start(upstream: String, faults: Faults) -> Proxy {
        use std::sync::atomic::Ordering;
        use std::sync::{Arc, Mutex};
        let front = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let cdn = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
        let cdn_addr = cdn.local_addr().unwrap();
        let p = Proxy {
            registry: front.local_addr().unwrap(),
            seen: Arc::default(),
            stop: Arc::default(),
            faces: vec![front.local_addr().unwrap(), cdn_addr],
        };
        let once = Arc::new(Mutex::new((false, false, false)));
        for (listener, is_cdn) in [(front, false), (cdn, true)] {
            let (seen, stop, once) = (p.seen.clone(), p.stop.clone(), once.clone());
            let (upstream, faults) = (upstream.clone(), faults.clone());
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::builder()
                    .no_proxy()
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .unwrap();
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let ctx = (
                        client.clone(),
                        upstream.clone(),
                        faults.clone(),
                        seen.clone(),
                        once.clone(),
                    );
                    std::thread::spawn(move || {
                        let (client, upstream, faults, seen, once) = ctx;
                        let _ = proxy_one(
                            conn, is_cdn, cdn_addr, &client, &upstream, &faults, &seen, &once,
                        );
                    });
                }
            });
        }
        p
    }

    fn host(&self) -> String {
        self.registry.to_string()
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        for a in &self.faces {
            let _ = std::net::TcpStream::connect(a);
        }
    }
}

/// Answers one request (then closes the connection).
#[allow(clippy::too_many_arguments)]
fn proxy_one(
    mut conn: std::net::TcpStream,
    is_cdn: bool,
    cdn: std::net::SocketAddr,
    client: &reqwest::blocking::Client,
    upstream: &str,
    faults: &Faults,
    seen: &std::sync::Mutex<Vec<Seen>>,
    once: &std::sync::Mutex<(bool, bool, bool)>,
) -> std::io::Result<()> {
    use std::io::{BufRead, BufReader, Read, Write};
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut words = line.split_whitespace();
    let method = words.next().unwrap_or("").to_string();
    let path = words.next().unwrap_or("/").to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.trim_end().split_once(':') {
            headers.push((k.to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let header = |k: &str| headers.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let authorization = header("authorization");
    seen.lock().unwrap().push(Seen {
        cdn: is_cdn,
        method: method.clone(),
        path: path.clone(),
        range: header("range"),
        authorization: authorization.is_some(),
    });
    let reply = |conn: &mut std::net::TcpStream, status: &str, extra: &str| {
        write!(
            conn,
            "HTTP/1.1 {status}\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n"
        )
    };
    if !is_cdn {
        if let Some((u, p)) = &faults.basic {
            use base64::Engine;
            let want = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            );
            if authorization.as_deref() != Some(want.as_str()) {
                return reply(
                    &mut conn,
                    "401 Unauthorized",
                    "WWW-Authenticate: Basic realm=\"proxy\"\r\n",
                );
            }
        }
        let mut o = once.lock().unwrap();
        if (faults.rate_limit_always || faults.rate_limit_once && !o.0)
            && path.contains("/manifests/")
        {
            o.0 = true;
            let after = if faults.rate_limit_always { 0 } else { 1 };
            return reply(
                &mut conn,
                "429 Too Many Requests",
                &format!(
                    "Retry-After: {after}\r\nratelimit-limit: 100;w=21600\r\nratelimit-remaining: 0;w=21600\r\n"
                ),
            );
        }
        if let Some(f) = &faults.fail_once
            && !o.1
            && path.contains(f.as_str())
        {
            o.1 = true;
            return reply(&mut conn, "503 Service Unavailable", "");
        }
        drop(o);
        if faults.redirect_blobs && method == "GET" && path.contains("/blobs/sha256:") {
            return reply(
                &mut conn,
                "307 Temporary Redirect",
                &format!("Location: http://{cdn}{path}\r\n"),
            );
        }
    }
    let mut req = client.request(method.parse().unwrap(), format!("{upstream}{path}"));
    for k in ["accept", "range"] {
        if let Some(v) = header(k) {
            req = req.header(k, v);
        }
    }
    let mut resp = req.send().map_err(std::io::Error::other)?;
    let mut head = format!(
        "HTTP/1.1 {} {}\r\n",
        resp.status().as_u16(),
        resp.status().canonical_reason().unwrap_or("")
    );
    for k in [
        "content-type",
        "content-length",
        "content-range",
        "docker-content-digest",
        "accept-ranges",
    ] {
        if let Some(v) = resp.headers().get(k) {
            head.push_str(&format!("{k}: {}\r\n", v.to_str().unwrap()));
        }
    }
    head.push_str("Connection: close\r\n\r\n");
    conn.write_all(head.as_bytes())?;
    if method == "HEAD" {
        return Ok(());
    }
    let mut body = Vec::new();
    resp.read_to_end(&mut body)?;
    let cut = method == "GET"
        && faults
            .cut_once
            .as_ref()
            .is_some_and(|d| path.ends_with(d.as_str()))
        && {
            let mut o = once.lock().unwrap();
            !std::mem::replace(&mut o.2, true)
        };
    if cut {
        conn.write_all(&body[..body.len() / 2])?;
        conn.flush()?;
        return Ok(());
    }
    conn.write_all(&body)
}

/// A registry that rate-limits (429 with figures and `Retry-After`), fails with 503, and
/// breaks a layer off halfway: the pull waits as told and prints the figures, retries, and
/// resumes the layer with a Range request from where it broke, verifying the whole.
fn pull_retries_waits_out_rate_limits_and_resumes_broken_layers() {
    let reg = Registry::start(Mode::Plain);
    let base = reg.push_multi(&format!("{BASE}:multi"));
    let arm64 = base.image("linux/arm64");
    let layer = arm64.layers[0].clone();
    let proxy = Proxy::start(
        reg.base_url(),
        Faults {
            rate_limit_once: true,
            fail_once: Some(arm64.config.clone()),
            cut_once: Some(layer.clone()),
            ..Faults::default()
        },
    );
    let c = Client::new(&reg);
    let started = std::time::Instant::now();
    let r = c
        .run(&[
            "from",
            "--platform",
            "linux/arm64",
            &format!("{}/{BASE}:multi", proxy.host()),
        ])
        .success();
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(1),
        "Retry-After was not honoured"
    );
    assert!(
        r.stderr.contains("0 of 100 pulls left per 6 h"),
        "the figures: {}",
        r.stderr
    );
    let seen = proxy.seen();
    let gets: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.method == "GET" && s.path.ends_with(&layer))
        .collect();
    assert_eq!(gets.len(), 2, "{seen:#?}");
    assert_eq!(gets[0].range, None);
    let range = gets[1].range.as_deref().expect("the second GET resumes");
    let from: u64 = range
        .strip_prefix("bytes=")
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{range}"));
    assert!(from > 0, "{range}");
    assert_eq!(
        seen.iter()
            .filter(|s| s.path.ends_with(&arm64.config))
            .count(),
        2,
        "the 503 was retried: {seen:#?}"
    );
    assert_eq!(c.stored(hex(&layer)).len(), 1);
    assert_eq!(c.containers().len(), 1);

    // A limit that does not lift: refused with the figures and what to do.
    let proxy = Proxy::start(
        reg.base_url(),
        Faults {
            rate_limit_always: true,
            ..Faults::default()
        },
    );
    let r = c
        .run(&[
            "from",
            "--name",
            "limited",
            &format!("{}/{BASE}:multi", proxy.host()),
        ])
        .code_is(1);
    assert!(
        r.stderr
            .contains("rate limit is reached (0 of 100 pulls left per 6 h)")
            && r.stderr.contains("emubuild login"),
        "{}",
        r.stderr
    );
}
case! { pull_retries_waits_out_rate_limits_and_resumes_broken_layers, needs = PULL }

/// Basic auth where the registry asks for it, and blobs redirected to another host: the
/// credentials go to the registry only, never to the CDN; without them the pull is refused
/// with the login named.
fn credentials_go_to_the_registry_and_never_to_a_redirect() {
    let reg = Registry::start(Mode::Plain);
    reg.push_multi(&format!("{BASE}:multi"));
    let proxy = Proxy::start(
        reg.base_url(),
        Faults {
            basic: Some(("someone".into(), "sesame".into())),
            redirect_blobs: true,
            ..Faults::default()
        },
    );
    let c = Client::new(&reg);
    let image = format!("{}/{BASE}:multi", proxy.host());
    let r = c
        .run(&["from", "--platform", "linux/s390x", &image])
        .code_is(1);
    assert!(
        r.stderr
            .contains(&format!("emubuild login {}", proxy.host())),
        "{}",
        r.stderr
    );
    let before = proxy.seen().len();
    c.run(&[
        "--creds",
        "someone:sesame",
        "from",
        "--platform",
        "linux/s390x",
        &image,
    ])
    .success();
    let seen = proxy.seen()[before..].to_vec();
    let cdn: Vec<&Seen> = seen.iter().filter(|s| s.cdn).collect();
    assert!(cdn.len() >= 2, "config and layer from the CDN: {seen:#?}");
    assert!(
        cdn.iter().all(|s| !s.authorization),
        "credentials went to the CDN: {seen:#?}"
    );
    assert!(
        seen.iter()
            .filter(|s| !s.cdn && s.path.contains("/manifests/"))
            .all(|s| s.authorization),
        "{seen:#?}"
    );
}
case! { credentials_go_to_the_registry_and_never_to_a_redirect, needs = PULL }
