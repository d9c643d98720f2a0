//! Registries for the tests: Debian's `docker-registry` (distribution 2.8) as a child process
//! on 127.0.0.1, in three modes, with what a registry test needs around it (a test CA, users,
//! a token server, skopeo set up for it, the registry's request log, a blob made hostile),
//! and self-tests that prove these helpers with skopeo and Docker as the clients.
//!
//! ```ignore
//! let reg = Registry::start(Mode::TlsToken);
//! let base = reg.push_multi("emukit/base:multi");      // linux/arm64, linux/arm/v7, linux/s390x
//! // ... run emubuild against reg.host(), trusting reg.cert_dir(), with reg.user()/password()
//! assert_eq!(reg.blob_gets("emukit/base"), 0, "a cached pull fetched no blob");
//! ```
//!
//! * [`Mode::Plain`]: HTTP, no auth. The Docker engine pulls from it (127.0.0.0/8 is insecure
//!   to it by default); skopeo needs `--tls-verify=false` (what [`Registry::skopeo_flags`]
//!   passes).
//! * [`Mode::TlsBasic`]: HTTPS with a certificate for `IP:127.0.0.1` signed by a throw-away
//!   test CA ([`Registry::ca_cert`]), and htpasswd auth (bcrypt, `htpasswd -Bbn -C 5`) with
//!   one user ([`Registry::user`], [`Registry::password`]).
//! * [`Mode::TlsToken`]: HTTPS, `auth: token`. The token server is a thread of this process
//!   ([`TokenServer`]) serving **HTTPS with the same test CA** (its certificate is the
//!   registry's, for `IP:127.0.0.1`) at `https://127.0.0.1:PORT/token`, so a client must
//!   trust the CA for the realm too, as with a real registry. It signs RS256 JWTs with a
//!   self-signed RSA certificate, carried in the header's `x5c` and given to the registry as
//!   its `rootcertbundle`. Policy like Docker Hub: anonymous callers get `pull`, the user
//!   (Basic credentials on the token request, or a refresh token it issued) gets
//!   `pull,push`, a wrong password gets 401.
//!
//! One registry belongs to one test and lives on that test's thread: it is killed when the
//! [`Registry`] drops (and, through `setpriv --pdeathsig KILL`, when the thread that started
//! it ends, so a killed test run leaves no registry behind); everything it wrote is in one
//! temporary directory, removed on drop. Never keep one in a `static`.
//!
//! skopeo runs through [`skopeo`], with a private blob-info cache, auth file and policy, so
//! nothing is read from or left in the host's `/var/lib/containers` or the user's config.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

use crate::case;
use crate::harness::Need;
use crate::util::{Run, image, tool};

/// What [`Registry::start`] in [`Mode::Plain`] and [`Registry::push`] need: the registry,
/// skopeo and the image fixtures.
pub const PLAIN: &[Need] = &[
    Need::Tool("docker-registry"),
    Need::Tool("skopeo"),
    Need::Images,
];
/// [`PLAIN`] plus `openssl` (the test CA) and `htpasswd` (apache2-utils).
pub const TLS_BASIC: &[Need] = &[
    Need::Tool("docker-registry"),
    Need::Tool("skopeo"),
    Need::Images,
    Need::Tool("openssl"),
    Need::Tool("htpasswd"),
];
/// [`PLAIN`] plus `openssl` (the test CA and the token signer's certificate).
pub const TLS_TOKEN: &[Need] = &[
    Need::Tool("docker-registry"),
    Need::Tool("skopeo"),
    Need::Images,
    Need::Tool("openssl"),
];

/// The token service's name (`auth.token.service`, the JWT's `aud`).
pub const TOKEN_SERVICE: &str = "emukit-test-registry";
/// The token issuer (`auth.token.issuer`, the JWT's `iss`).
pub const TOKEN_ISSUER: &str = "emukit-test-token-issuer";
/// The user of [`Mode::TlsBasic`] and [`Mode::TlsToken`] (the password is made per registry).
pub const USER: &str = "emukit";

/// How the registry is served and who may do what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// HTTP, no auth.
    Plain,
    /// HTTPS (test CA), htpasswd with one user.
    TlsBasic,
    /// HTTPS (test CA), bearer tokens from a [`TokenServer`] of this process.
    TlsToken,
}

impl Mode {
    pub fn tls(self) -> bool {
        self != Mode::Plain
    }
}

/// Which credentials a client helper presents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Creds<'a> {
    /// None at all.
    Anonymous,
    /// The registry's user and password (in [`Mode::Plain`], which has no user, a made-up
    /// pair the registry ignores).
    User,
    /// The registry's user with a wrong password.
    WrongPassword,
    /// These.
    Given(&'a str, &'a str),
}

/// One request from the registry's log (`msg="response completed"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    pub method: String,
    /// The request URI as sent, with its query (`/v2/emukit/base/blobs/sha256:…`).
    pub uri: String,
    pub status: u16,
}

/// A running `docker-registry serve` and everything around it; killed and removed on drop.
pub struct Registry {
    mode: Mode,
    port: u16,
    child: Child,
    token: Option<TokenServer>,
    password: Option<String>,
    log: PathBuf,
    marks: AtomicUsize,
    dir: tempfile::TempDir,
}

impl Registry {
    /// Starts a registry in `mode` on a free port of 127.0.0.1 with its own storage, config
    /// (and for TLS: CA, certificate, htpasswd or token server), and waits until `GET /v2/`
    /// answers (200, or 401 with auth). Panics with the registry's log when it does not start.
    pub fn start(mode: Mode) -> Registry {
        let dir = tempfile::Builder::new()
            .prefix("emukit-registry-")
            .tempdir()
            .expect("temporary directory");
        let root = dir.path();
        for d in ["storage", "tls", "certs.d", "docker"] {
            std::fs::create_dir(root.join(d)).unwrap();
        }
        if mode.tls() {
            make_tls(&root.join("tls"));
        }
        let password = mode.tls().then(|| format!("pw-{:016x}", random_u64()));
        let mut auth = String::new();
        let mut token = None;
        match mode {
            Mode::Plain => {}
            Mode::TlsBasic => {
                let r = tool(
                    "htpasswd",
                    &["-Bbn", "-C", "5", USER, password.as_deref().unwrap()],
                )
                .success();
                std::fs::write(
                    root.join("htpasswd"),
                    r.stdout.trim_end().to_string() + "\n",
                )
                .unwrap();
                auth = format!(
                    "auth:\n  htpasswd:\n    realm: emukit-test\n    path: \"{}\"\n",
                    root.join("htpasswd").display()
                );
            }
            Mode::TlsToken => {
                let t = TokenServer::start(
                    &root.join("tls"),
                    USER,
                    password.as_deref().unwrap(),
                    TOKEN_SERVICE,
                    TOKEN_ISSUER,
                );
                auth = format!(
                    "auth:\n  token:\n    realm: \"{}\"\n    service: {TOKEN_SERVICE}\n    issuer: {TOKEN_ISSUER}\n    rootcertbundle: \"{}\"\n",
                    t.realm(),
                    root.join("tls/token.crt").display()
                );
                token = Some(t);
            }
        }
        let tls = if mode.tls() {
            format!(
                "  tls:\n    certificate: \"{}\"\n    key: \"{}\"\n",
                root.join("tls/server.crt").display(),
                root.join("tls/server.key").display()
            )
        } else {
            String::new()
        };
        let log = root.join("registry.log");
        let mut last_log = String::new();
        // A port found free may be taken before the registry binds it: then try another.
        for _attempt in 0..5 {
            let port = free_port();
            let config = format!(
                "version: 0.1\n\
                 log:\n  level: info\n  formatter: json\n  accesslog:\n    disabled: true\n\
                 storage:\n  filesystem:\n    rootdirectory: \"{storage}\"\n  delete:\n    enabled: true\n  \
                 maintenance:\n    uploadpurging:\n      enabled: false\n\
                 http:\n  addr: 127.0.0.1:{port}\n  secret: \"{secret:016x}\"\n{tls}\
                 {auth}",
                storage = root.join("storage").display(),
                secret = random_u64(),
            );
            std::fs::write(root.join("config.yml"), &config).unwrap();
            let out = std::fs::File::create(&log).unwrap();
            let mut cmd = if crate::util::have("setpriv") {
                let mut c = Command::new("setpriv");
                c.args(["--pdeathsig", "KILL", "--", "docker-registry"]);
                c
            } else {
                Command::new("docker-registry")
            };
            cmd.arg("serve")
                .arg(root.join("config.yml"))
                .current_dir(root)
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out);
            // Its configuration is ours alone: distribution reads REGISTRY_* overrides.
            for (k, _) in std::env::vars_os() {
                if k.to_string_lossy().starts_with("REGISTRY_") {
                    cmd.env_remove(k);
                }
            }
            let mut child = cmd.spawn().expect("start docker-registry");
            let scheme = if mode.tls() { "https" } else { "http" };
            let ca = mode.tls().then(|| root.join("tls/ca.crt"));
            let url = format!("{scheme}://127.0.0.1:{port}/v2/");
            match wait_ready(&mut child, &client_for(ca.as_deref()), &url) {
                Ok(()) => {
                    let reg = Registry {
                        mode,
                        port,
                        child,
                        token,
                        password,
                        log,
                        marks: AtomicUsize::new(0),
                        dir,
                    };
                    let certs = reg.cert_dir();
                    std::fs::create_dir_all(&certs).unwrap();
                    if let Some(ca) = reg.ca_cert() {
                        std::fs::copy(ca, certs.join("ca.crt")).unwrap();
                    }
                    return reg;
                }
                Err(why) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    last_log = std::fs::read_to_string(&log).unwrap_or_default();
                    if !last_log.contains("address already in use") {
                        panic!("docker-registry did not start: {why}\nlog:\n{last_log}");
                    }
                }
            }
        }
        panic!("docker-registry found no free port in 5 attempts\nlog:\n{last_log}");
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// `127.0.0.1:PORT`: the registry part of an image reference.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT` or `https://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        let scheme = if self.mode.tls() { "https" } else { "http" };
        format!("{scheme}://{}", self.host())
    }

    /// The base URL plus `path` (`/v2/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url())
    }

    /// `HOST/REPO[:TAG|@DIGEST]` for a repository path (`emukit/base:multi`).
    pub fn reference(&self, path: &str) -> String {
        format!("{}/{path}", self.host())
    }

    /// The test CA's certificate (PEM); None in [`Mode::Plain`].
    pub fn ca_cert(&self) -> Option<PathBuf> {
        self.mode.tls().then(|| self.dir.path().join("tls/ca.crt"))
    }

    /// A certs.d root (`/etc/docker/certs.d`, `/etc/containers/certs.d` style): it holds
    /// [`Self::cert_dir`], `<host:port>/ca.crt`.
    pub fn certs_d(&self) -> PathBuf {
        self.dir.path().join("certs.d")
    }

    /// `certs.d/127.0.0.1:PORT/`, holding only `ca.crt` (empty in [`Mode::Plain`]): what
    /// skopeo's `--cert-dir` takes.
    pub fn cert_dir(&self) -> PathBuf {
        self.certs_d().join(self.host())
    }

    /// The user, in the modes with auth.
    pub fn user(&self) -> Option<&'static str> {
        self.mode.tls().then_some(USER)
    }

    /// The user's password, in the modes with auth.
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// A Docker config directory (for `DOCKER_CONFIG`) whose `config.json` holds the user's
    /// credentials for [`Self::host`] (`auths.<host>.auth`, mode 0600); the same file serves
    /// as `REGISTRY_AUTH_FILE`. With no user, `{"auths":{}}`.
    pub fn docker_config(&self) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let dir = self.dir.path().join("docker");
        let auths = match self.password() {
            Some(pw) => json!({ self.host(): { "auth": STANDARD.encode(format!("{USER}:{pw}")) } }),
            None => json!({}),
        };
        let file = dir.join("config.json");
        std::fs::write(&file, json!({ "auths": auths }).to_string()).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        dir
    }

    /// The registry's storage root (`storage.filesystem.rootdirectory`).
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// The token server, in [`Mode::TlsToken`].
    pub fn token_server(&self) -> Option<&TokenServer> {
        self.token.as_ref()
    }

    /// A blocking HTTP client that trusts the test CA (and nothing else) and uses no proxy.
    pub fn client(&self) -> reqwest::blocking::Client {
        client_for(self.ca_cert().as_deref())
    }

    /// The registry's own output (stdout and stderr) so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `n` lines of [`Self::log`].
    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Every request the registry has answered, in order. First makes sure requests answered
    /// before this call are in the log: a marker request, waited for.
    pub fn requests(&self) -> Vec<Logged> {
        let n = self.marks.fetch_add(1, Ordering::SeqCst);
        let mark = format!("/v2/?emukit-log-mark={}-{n}", std::process::id());
        let _ = self.client().get(self.url(&mark)).send();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let all = parse_log(&self.log());
            if all.iter().any(|r| r.uri == mark) {
                return all
                    .into_iter()
                    .filter(|r| !r.uri.starts_with("/v2/?emukit-log-mark="))
                    .collect();
            }
            assert!(
                Instant::now() < deadline,
                "the registry never logged {mark}\nits log ends:\n{}",
                self.log_tail(30)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// How many requests with this method (`GET`, `HEAD`, ...) had a URI containing
    /// `uri_substring`.
    pub fn count(&self, method: &str, uri_substring: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.method == method && r.uri.contains(uri_substring))
            .count()
    }

    /// Blob downloads from a repository: `GET /v2/<repo>/blobs/` (any status).
    pub fn blob_gets(&self, repo: &str) -> usize {
        self.count("GET", &format!("/v2/{repo}/blobs/"))
    }

    /// Where the registry keeps a blob's bytes
    /// (`docker/registry/v2/blobs/sha256/<2>/<hex>/data`).
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest
            .strip_prefix("sha256:")
            .unwrap_or_else(|| panic!("not a sha256 digest: {digest}"));
        self.storage()
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// Makes a stored blob hostile: one byte in its middle flipped, same size, so its bytes
    /// no longer match its digest and only a client that verifies notices.
    pub fn corrupt_blob(&self, digest: &str) {
        let path = self.blob_path(digest);
        let mut bytes = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("blob {digest} not stored ({}): {e}", path.display()));
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x01;
        std::fs::write(&path, bytes).unwrap();
    }

    /// Replaces a stored blob's bytes with others (any size): the registry serves them under
    /// the old digest.
    pub fn replace_blob(&self, digest: &str, bytes: &[u8]) {
        let path = self.blob_path(digest);
        assert!(
            path.exists(),
            "blob {digest} not stored ({})",
            path.display()
        );
        std::fs::write(&path, bytes).unwrap();
    }

    /// skopeo's options for this registry: TLS (`--tls-verify=false` for HTTP, else
    /// `--cert-dir`) and credentials, with `prefix` `""` (inspect, delete...), `"src-"` or
    /// `"dest-"` (copy).
    pub fn skopeo_flags(&self, prefix: &str, creds: Creds) -> Vec<String> {
        let mut f = Vec::new();
        if self.mode.tls() {
            f.push(format!("--{prefix}tls-verify=true"));
            f.push(format!("--{prefix}cert-dir={}", self.cert_dir().display()));
        } else {
            f.push(format!("--{prefix}tls-verify=false"));
        }
        match self.creds(creds) {
            Some((u, p)) => f.push(format!("--{prefix}creds={u}:{p}")),
            None => f.push(format!("--{prefix}no-creds")),
        }
        f
    }

    /// The user and password `creds` stands for (None: anonymous).
    pub fn creds(&self, creds: Creds) -> Option<(String, String)> {
        match creds {
            Creds::Anonymous => None,
            Creds::User => Some((
                USER.to_string(),
                self.password().unwrap_or("no-password").to_string(),
            )),
            Creds::WrongPassword => Some((USER.to_string(), "wrong-password".to_string())),
            Creds::Given(u, p) => Some((u.to_string(), p.to_string())),
        }
    }

    /// `skopeo copy --all --preserve-digests SRC docker://HOST/DEST`, with `creds`; the
    /// outcome is the caller's to judge.
    pub fn skopeo_push(&self, src: &str, dest: &str, creds: Creds) -> Run {
        let mut args = vec![
            "copy".to_string(),
            "--all".into(),
            "--preserve-digests".into(),
        ];
        args.extend(self.skopeo_flags("dest-", creds));
        args.push(src.to_string());
        args.push(format!("docker://{}", self.reference(dest)));
        skopeo(&args)
    }

    /// `skopeo copy --all --preserve-digests docker://HOST/SRC DEST` (`oci:DIR:TAG`), with
    /// `creds`; the outcome is the caller's to judge.
    pub fn skopeo_pull(&self, src: &str, dest: &str, creds: Creds) -> Run {
        let mut args = vec![
            "copy".to_string(),
            "--all".into(),
            "--preserve-digests".into(),
        ];
        args.extend(self.skopeo_flags("src-", creds));
        args.push(format!("docker://{}", self.reference(src)));
        args.push(dest.to_string());
        skopeo(&args)
    }

    /// `skopeo inspect --raw docker://HOST/PATH`, with `creds`.
    pub fn skopeo_inspect_raw(&self, path: &str, creds: Creds) -> Run {
        let mut args = vec!["inspect".to_string(), "--raw".into()];
        args.extend(self.skopeo_flags("", creds));
        args.push(format!("docker://{}", self.reference(path)));
        skopeo(&args)
    }

    /// Pushes a tag of a fixture layout (`"oci-umoci:multi"`, `"oci-buildah:arm64"`) to
    /// `dest` (`"emukit/base:multi"`) as the user (anonymously in [`Mode::Plain`]), digests
    /// preserved, and tells what was pushed. Panics when skopeo fails.
    pub fn push(&self, fixture: &str, dest: &str) -> Pushed {
        let (layout_name, tag) = fixture
            .split_once(':')
            .unwrap_or_else(|| panic!("not LAYOUT:TAG: {fixture}"));
        let layout = image(layout_name)
            .unwrap_or_else(|| panic!("image fixture {layout_name} is missing; run tests/run.sh"));
        let creds = if self.mode.tls() {
            Creds::User
        } else {
            Creds::Anonymous
        };
        self.skopeo_push(&format!("oci:{}:{tag}", layout.display()), dest, creds)
            .success();
        let (repo, dest_tag) = dest
            .rsplit_once(':')
            .filter(|(_, t)| !t.contains('/'))
            .unwrap_or_else(|| panic!("not REPO:TAG: {dest}"));
        let mut pushed = read_layout(&layout, tag);
        pushed.repo = repo.to_string();
        pushed.tag = dest_tag.to_string();
        pushed.reference = self.reference(dest);
        pushed
    }

    /// The multi-platform base image (`oci-umoci:multi`: linux/arm64/v8, linux/arm/v7,
    /// linux/s390x) pushed to `dest` (`"emukit/base:multi"`).
    pub fn push_multi(&self, dest: &str) -> Pushed {
        self.push("oci-umoci:multi", dest)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The token server stops as its field drops; the directory goes last.
    }
}

/// Polls `url` (`GET /v2/`) until any HTTP answer: Err if the registry exits or 30 s pass.
fn wait_ready(
    child: &mut Child,
    client: &reqwest::blocking::Client,
    url: &str,
) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().expect("wait for docker-registry") {
            return Err(format!("it exited ({status})"));
        }
        match client.get(url).send() {
            Ok(r) if [200, 401].contains(&r.status().as_u16()) => return Ok(()),
            Ok(r) => return Err(format!("GET /v2/ answered {}", r.status())),
            Err(e) if Instant::now() > deadline => {
                return Err(format!("GET /v2/ failed for 30 s: {e:#}"));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// A blocking HTTP client that trusts only `ca` (when given) and uses no proxy.
fn client_for(ca: Option<&Path>) -> reqwest::blocking::Client {
    let mut b = reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30));
    if let Some(ca) = ca {
        let pem = std::fs::read(ca).unwrap();
        b = b.tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()]);
    }
    b.build().expect("HTTP client")
}

/// The requests of a distribution log (JSON formatter): each answered request's last line,
/// `response completed` (`… with error` for 4xx/5xx), or `error authorizing context` for a
/// request refused for want of (sufficient) credentials, which the registry answers with 401
/// and logs no other way.
fn parse_log(log: &str) -> Vec<Logged> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| {
            let msg = v["msg"].as_str().unwrap_or_default();
            let status = if msg.starts_with("response completed") {
                v["http.response.status"].as_u64().unwrap_or(0) as u16
            } else if msg.starts_with("error authorizing context") {
                401
            } else {
                return None;
            };
            Some(Logged {
                method: v["http.request.method"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                uri: v["http.request.uri"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                status,
            })
        })
        .collect()
}

/// What [`Registry::push`] pushed, read from the fixture layout (digests are preserved).
#[derive(Debug, Clone)]
pub struct Pushed {
    /// `HOST/REPO:TAG`.
    pub reference: String,
    /// `emukit/base`.
    pub repo: String,
    pub tag: String,
    /// The digest the tag points at (the index, or the manifest of a single image).
    pub digest: String,
    /// The top manifest's media type.
    pub media_type: String,
    /// The images, in the index's order (one for a single image).
    pub images: Vec<PushedImage>,
}

/// One platform's image of a [`Pushed`].
#[derive(Debug, Clone)]
pub struct PushedImage {
    /// `linux/arm64/v8`, `linux/arm/v7`, `linux/s390x`.
    pub platform: String,
    pub manifest: String,
    pub config: String,
    pub layers: Vec<String>,
}

impl Pushed {
    /// The image for a platform (`linux/arm64` matches `linux/arm64/v8`).
    pub fn image(&self, platform: &str) -> &PushedImage {
        self.images
            .iter()
            .find(|i| i.platform == platform || i.platform.starts_with(&format!("{platform}/")))
            .unwrap_or_else(|| panic!("no {platform} image in {:?}", self.images))
    }

    /// Every config and layer digest, once each.
    pub fn blobs(&self) -> Vec<String> {
        let mut all: Vec<String> = self
            .images
            .iter()
            .flat_map(|i| std::iter::once(i.config.clone()).chain(i.layers.iter().cloned()))
            .collect();
        all.sort();
        all.dedup();
        all
    }
}

/// The tag's index or manifest in an OCI layout, with its images.
fn read_layout(layout: &Path, tag: &str) -> Pushed {
    let read = |digest: &str| -> Value {
        let hex = digest.strip_prefix("sha256:").unwrap();
        let bytes = std::fs::read(layout.join("blobs/sha256").join(hex)).unwrap();
        serde_json::from_slice(&bytes).unwrap()
    };
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let desc = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap_or_else(|| panic!("no tag {tag} in {}", layout.display()))
        .clone();
    let str_of = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let image = |digest: &str, platform: Option<&Value>| -> PushedImage {
        let m = read(digest);
        let config = str_of(&m["config"]["digest"]);
        let p = match platform {
            Some(p) => p.clone(),
            None => read(&config),
        };
        let mut platform = format!("{}/{}", str_of(&p["os"]), str_of(&p["architecture"]));
        if let Some(v) = p["variant"].as_str().filter(|v| !v.is_empty()) {
            platform = format!("{platform}/{v}");
        }
        PushedImage {
            platform,
            manifest: digest.to_string(),
            config,
            layers: m["layers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| str_of(&l["digest"]))
                .collect(),
        }
    };
    let digest = str_of(&desc["digest"]);
    let media_type = str_of(&desc["mediaType"]);
    let images = if media_type.contains("index") || media_type.contains("list") {
        read(&digest)["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| image(&str_of(&d["digest"]), Some(&d["platform"])))
            .collect()
    } else {
        vec![image(&digest, None)]
    };
    Pushed {
        reference: String::new(),
        repo: String::new(),
        tag: tag.to_string(),
        digest,
        media_type,
        images,
    }
}

/// Runs skopeo with a private blob-info cache, auth file, registries.d and an accept-anything
/// policy, all in a temporary directory removed afterwards: nothing of the host's is read or
/// left behind (containers/image keeps its cache in `$XDG_DATA_HOME` for a "rootless" UID).
pub fn skopeo<S: AsRef<str>>(args: &[S]) -> Run {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    for d in ["data", "config", "run", "registries.d"] {
        std::fs::create_dir(t.join(d)).unwrap();
    }
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(t.join("run"), std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    std::fs::write(
        t.join("policy.json"),
        r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
    )
    .unwrap();
    let o = Command::new("skopeo")
        .arg(format!("--policy={}", t.join("policy.json").display()))
        .arg(format!(
            "--registries.d={}",
            t.join("registries.d").display()
        ))
        .args(args.iter().map(AsRef::as_ref))
        .env("_CONTAINERS_ROOTLESS_UID", "1000")
        .env("XDG_DATA_HOME", t.join("data"))
        .env("XDG_CONFIG_HOME", t.join("config"))
        .env("XDG_RUNTIME_DIR", t.join("run"))
        .env("REGISTRY_AUTH_FILE", t.join("auth.json"))
        .env("HOME", t)
        .stdin(Stdio::null())
        .output()
        .expect("run skopeo");
    Run::from_output(o)
}

/// A port of 127.0.0.1 that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Random enough for passwords and secrets of a test.
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.finish()
}

/// Runs openssl in `dir`; panics with its output when it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let o = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run openssl");
    assert!(
        o.status.success(),
        "openssl {args:?} failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The test PKI in `dir`: a throw-away CA (`ca.crt`, `ca.key`, P-256), the server's
/// certificate for `IP:127.0.0.1` signed by it (`server.crt`, `server.key`), and a
/// self-signed RSA certificate that signs tokens (`token.crt`, `token.key`).
fn make_tls(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut a = vec!["req", "-x509"];
    a.extend(ec);
    a.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "7",
        "-subj",
        "/CN=emukit test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(dir, &a);
    let mut a = vec!["req"];
    a.extend(ec);
    a.extend([
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    openssl(dir, &a);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n\
         keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let serial = format!("0x{:016x}", random_u64() >> 1);
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-set_serial",
            &serial,
            "-days",
            "7",
            "-extfile",
            "server.ext",
            "-out",
            "server.crt",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "token.key",
            "-out",
            "token.crt",
            "-days",
            "7",
            "-subj",
            "/CN=emukit test token signer",
        ],
    );
}

/// One request the token server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// `GET` (the usual), or `POST` (OAuth2: `grant_type=password|refresh_token`).
    pub method: String,
    /// The `service` asked for.
    pub service: String,
    /// The scopes asked for (`repository:emukit/base:pull,push`).
    pub scopes: Vec<String>,
    /// Who the caller proved to be (None: anonymous, or refused).
    pub account: Option<String>,
    /// The scopes granted, each `repository:NAME:ACTIONS` (empty when refused).
    pub granted: Vec<String>,
    /// 200, or 401 for wrong credentials, 400 for a bad request.
    pub status: u16,
}

/// Docker Hub's token endpoint in miniature: HTTPS (the registry's certificate) on a port of
/// 127.0.0.1, a thread per connection, one request per connection. Stops on drop.
///
/// * `GET /token?service=S&scope=repository:N:pull,push[&scope=…][&offline_token=true]`, with
///   or without `Authorization: Basic`.
/// * `POST /token` with a form: `grant_type=password` (`username`, `password`) or
///   `grant_type=refresh_token` (`refresh_token`), `service`, `scope` (space-separated).
///
/// The answer is `{"token","access_token","expires_in":300,"issued_at"}`, plus a
/// `refresh_token` (an identity token) for the user on a POST or with `offline_token=true`.
/// The JWT (RS256, `x5c` = the signer's certificate) carries `iss`, `sub` (the user, or
/// empty), `aud` (the service asked for), `exp` (+300 s), `nbf`, `iat`, `jti` and `access`.
/// Anonymous callers get `pull`, the user `pull` and `push`; other actions, other scope
/// types and a service other than [`TOKEN_SERVICE`] get nothing. Wrong credentials get 401
/// with `WWW-Authenticate: Basic`.
pub struct TokenServer {
    addr: SocketAddr,
    policy: Arc<Policy>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

struct Policy {
    user: String,
    password: String,
    service: String,
    issuer: String,
    refresh_token: String,
    x5c: String,
    signer: Box<dyn rustls::sign::Signer>,
    requests: Mutex<Vec<TokenRequest>>,
}

impl TokenServer {
    /// Serves with `tls/server.{crt,key}` and signs with `tls/token.{crt,key}` of `tls`.
    pub fn start(tls: &Path, user: &str, password: &str, service: &str, issuer: &str) -> Self {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(tls.join("server.crt"))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
        let key = PrivateKeyDer::from_pem_file(tls.join("server.key")).unwrap();
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .expect("token server TLS config"),
        );
        let token_cert = CertificateDer::from_pem_file(tls.join("token.crt")).unwrap();
        let token_key = PrivateKeyDer::from_pem_file(tls.join("token.key")).unwrap();
        let signer = rustls::crypto::aws_lc_rs::sign::any_supported_type(&token_key)
            .unwrap()
            .choose_scheme(&[rustls::SignatureScheme::RSA_PKCS1_SHA256])
            .expect("an RS256 signer");
        let policy = Arc::new(Policy {
            user: user.to_string(),
            password: password.to_string(),
            service: service.to_string(),
            issuer: issuer.to_string(),
            refresh_token: format!("refresh-{:016x}", random_u64()),
            x5c: STANDARD.encode(token_cert.as_ref()),
            signer,
            requests: Mutex::new(Vec::new()),
        });
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the token server");
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (stop2, policy2) = (stop.clone(), policy.clone());
        let handle = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (config, policy) = (config.clone(), policy2.clone());
                std::thread::spawn(move || {
                    let _ = serve_token(config, conn, &policy);
                });
            }
        });
        TokenServer {
            addr,
            policy,
            stop,
            handle: Some(handle),
        }
    }

    /// `https://127.0.0.1:PORT/token`.
    pub fn realm(&self) -> String {
        format!("https://{}/token", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The identity token (OAuth2 refresh token) the user gets; what `identitytoken` in a
    /// Docker config holds.
    pub fn refresh_token(&self) -> &str {
        &self.policy.refresh_token
    }

    /// Every token request so far, in order.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.policy
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// One HTTPS connection of the token server: one request, one answer, close.
fn serve_token(
    config: Arc<rustls::ServerConfig>,
    tcp: TcpStream,
    policy: &Policy,
) -> std::io::Result<()> {
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    tcp.set_write_timeout(Some(Duration::from_secs(10)))?;
    let conn = rustls::ServerConnection::new(config).map_err(std::io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let (method, target, headers, body) = {
        let mut r = BufReader::new(&mut tls);
        let mut line = String::new();
        r.read_line(&mut line)?;
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_string();
        let target = parts.next().unwrap_or_default().to_string();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if r.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let len: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len.min(1 << 16)];
        r.read_exact(&mut body)?;
        (method, target, headers, body)
    };
    let (status, extra, body) = policy.answer(&method, &target, &headers, &body);
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        _ => "Error",
    };
    write!(
        tls,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n",
        body.len()
    )?;
    tls.write_all(body.as_bytes())?;
    tls.conn.send_close_notify();
    tls.flush()
}

impl Policy {
    /// (status, extra header lines, JSON body) for one request.
    fn answer(
        &self,
        method: &str,
        target: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> (u16, String, String) {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        if path != "/token" {
            return (404, String::new(), r#"{"details":"not found"}"#.into());
        }
        let mut params = form(query);
        if method == "POST" {
            params.extend(form(&String::from_utf8_lossy(body)));
        }
        let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let mut scopes: Vec<String> = params
            .iter()
            .filter(|(n, _)| n == "scope")
            .flat_map(|(_, v)| v.split(' ').map(str::to_string).collect::<Vec<_>>())
            .filter(|s| !s.is_empty())
            .collect();
        scopes.dedup();
        let service = param("service").unwrap_or_default();
        let basic = headers
            .iter()
            .find(|(k, _)| k == "authorization")
            .and_then(|(_, v)| v.strip_prefix("Basic ").map(str::trim))
            .map(|b| {
                let decoded = STANDARD.decode(b).unwrap_or_default();
                let s = String::from_utf8_lossy(&decoded).into_owned();
                let (u, p) = s.split_once(':').unwrap_or((&s, ""));
                (u.to_string(), p.to_string())
            });
        // Who is asking: Ok(None) anonymous, Ok(Some(user)), Err(status) refused.
        let who: Result<Option<String>, u16> = match (method, param("grant_type").as_deref()) {
            ("GET", _) => match basic {
                None => Ok(None),
                Some((u, p)) if u == self.user && p == self.password => Ok(Some(u)),
                Some(_) => Err(401),
            },
            ("POST", Some("password")) => match (param("username"), param("password")) {
                (Some(u), Some(p)) if u == self.user && p == self.password => Ok(Some(u)),
                _ => Err(401),
            },
            ("POST", Some("refresh_token")) => match param("refresh_token") {
                Some(t) if t == self.refresh_token => Ok(Some(self.user.clone())),
                _ => Err(401),
            },
            _ => Err(400),
        };
        let mut record = TokenRequest {
            method: method.to_string(),
            service: service.clone(),
            scopes: scopes.clone(),
            account: None,
            granted: Vec::new(),
            status: 200,
        };
        let answer = match who {
            Err(status) => {
                record.status = status;
                let (extra, msg) = if status == 401 {
                    (
                        "WWW-Authenticate: Basic realm=\"emukit-test-token\"\r\n".to_string(),
                        "incorrect username or password",
                    )
                } else {
                    (String::new(), "unsupported request")
                };
                (status, extra, json!({ "details": msg }).to_string())
            }
            Ok(account) => {
                let allowed: &[&str] = if account.is_some() {
                    &["pull", "push"]
                } else {
                    &["pull"]
                };
                let mut access = Vec::new();
                if service == self.service {
                    for s in &scopes {
                        let Some((kind, rest)) = s.split_once(':') else {
                            continue;
                        };
                        let Some((name, actions)) = rest.rsplit_once(':') else {
                            continue;
                        };
                        if kind != "repository" {
                            continue;
                        }
                        let granted: Vec<&str> =
                            actions.split(',').filter(|a| allowed.contains(a)).collect();
                        record
                            .granted
                            .push(format!("repository:{name}:{}", granted.join(",")));
                        access
                            .push(json!({"type": "repository", "name": name, "actions": granted}));
                    }
                }
                record.account = account.clone();
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs();
                let header = json!({"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]});
                let claims = json!({
                    "iss": self.issuer,
                    "sub": account.clone().unwrap_or_default(),
                    "aud": service,
                    "exp": now + 300,
                    "nbf": now.saturating_sub(1),
                    "iat": now,
                    "jti": format!("{:016x}", random_u64()),
                    "access": access,
                });
                let input = format!(
                    "{}.{}",
                    URL_SAFE_NO_PAD.encode(header.to_string()),
                    URL_SAFE_NO_PAD.encode(claims.to_string())
                );
                let sig = self.signer.sign(input.as_bytes()).expect("sign a token");
                let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig));
                let mut answer = json!({
                    "token": token,
                    "access_token": token,
                    "expires_in": 300,
                    "issued_at": rfc3339(now),
                });
                let offline = method == "POST"
                    || param("offline_token").as_deref() == Some("true")
                    || param("access_type").as_deref() == Some("offline");
                if account.is_some() && offline {
                    answer["refresh_token"] = json!(self.refresh_token);
                }
                (200, String::new(), answer.to_string())
            }
        };
        self.requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(record);
        answer
    }
}

/// `a=b&c=d` (URL-encoded) as pairs.
fn form(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// Pairs as `a=b&c=d`, URL-encoded (for a query or a form body).
pub fn encode_form(pairs: &[(&str, &str)]) -> String {
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ`.
fn rfc3339(secs: u64) -> String {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

// ---------------------------------------------------------------------------------------
// Self-tests: the helpers above, with skopeo (and Docker) as the clients.

/// What a test pushes: the multi-platform fixture.
const BASE: &str = "emukit/base";

/// skopeo pushes the multi-platform fixture, as the user where there is one, and reads the
/// index back byte for byte: three platforms, digests preserved.
fn pushes_and_reads_back(mode: Mode) -> (Registry, Pushed) {
    let reg = Registry::start(mode);
    let pushed = reg.push_multi(&format!("{BASE}:multi"));
    assert_eq!(pushed.reference, format!("{}/{BASE}:multi", reg.host()));
    assert_eq!(pushed.media_type, "application/vnd.oci.image.index.v1+json");
    let platforms: Vec<&str> = pushed.images.iter().map(|i| i.platform.as_str()).collect();
    assert_eq!(platforms, ["linux/arm64/v8", "linux/arm/v7", "linux/s390x"]);
    let creds = if mode.tls() {
        Creds::User
    } else {
        Creds::Anonymous
    };
    let raw = reg
        .skopeo_inspect_raw(&format!("{BASE}:multi"), creds)
        .success();
    let layout = image("oci-umoci").unwrap();
    let hex = pushed.digest.strip_prefix("sha256:").unwrap();
    let stored = std::fs::read_to_string(layout.join("blobs/sha256").join(hex)).unwrap();
    assert_eq!(
        raw.stdout.trim_end(),
        stored.trim_end(),
        "the index came back changed"
    );
    let index: Value = serde_json::from_str(&raw.stdout).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 3);
    // By digest too, and each child manifest is there.
    reg.skopeo_inspect_raw(&format!("{BASE}@{}", pushed.digest), creds)
        .success();
    for i in &pushed.images {
        reg.skopeo_inspect_raw(&format!("{BASE}@{}", i.manifest), creds)
            .success();
    }
    // The log saw the pushes: a PUT of each manifest, one upload per blob.
    assert_eq!(reg.count("PUT", &format!("/v2/{BASE}/manifests/")), 4);
    assert_eq!(
        reg.count("PUT", &format!("/v2/{BASE}/blobs/uploads/")),
        pushed.blobs().len()
    );
    (reg, pushed)
}

/// Plain HTTP: no auth on `GET /v2/`, skopeo needs no credentials; the log counts the blob
/// GETs of a pull, and a second pull into the same layout fetches no blob.
fn plain_push_pull_and_count() {
    let (reg, pushed) = pushes_and_reads_back(Mode::Plain);
    assert!(reg.base_url().starts_with("http://127.0.0.1:"));
    assert_eq!(reg.user(), None);
    assert_eq!(reg.ca_cert(), None);
    let r = reg.client().get(reg.url("/v2/")).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(reg.blob_gets(BASE), 0, "a push downloads no blob");

    let out = tempfile::tempdir().unwrap();
    let dest = format!("oci:{}:pulled", out.path().join("layout").display());
    reg.skopeo_pull(&format!("{BASE}:multi"), &dest, Creds::Anonymous)
        .success();
    let blobs = pushed.blobs();
    assert_eq!(blobs.len(), 6, "three configs, three layers");
    assert_eq!(reg.blob_gets(BASE), blobs.len(), "{:#?}", reg.requests());
    for b in &blobs {
        assert_eq!(reg.count("GET", &format!("/v2/{BASE}/blobs/{b}")), 1, "{b}");
        assert!(
            out.path()
                .join("layout/blobs/sha256")
                .join(&b[7..])
                .exists()
        );
    }
    let statuses: Vec<u16> = reg
        .requests()
        .iter()
        .filter(|r| r.uri.contains("/blobs/sha256:") && r.method == "GET")
        .map(|r| r.status)
        .collect();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");

    // The same pull again: skopeo finds the layers in the layout and fetches none of them
    // (it reads each image's config again, to check the image).
    reg.skopeo_pull(&format!("{BASE}:multi"), &dest, Creds::Anonymous)
        .success();
    for i in &pushed.images {
        for l in &i.layers {
            let n = reg.count("GET", &format!("/v2/{BASE}/blobs/{l}"));
            assert_eq!(n, 1, "the cached pull fetched layer {l} again");
        }
        assert_eq!(
            reg.count("GET", &format!("/v2/{BASE}/blobs/{}", i.config)),
            2
        );
    }
    assert_eq!(reg.blob_gets(BASE), blobs.len() + pushed.images.len());
    assert!(reg.count("GET", &format!("/v2/{BASE}/manifests/multi")) >= 2);
}
case! { plain_push_pull_and_count, needs = PLAIN }

/// HTTPS with the test CA and htpasswd: the user pushes and reads; a wrong password, no
/// credentials, and a client that does not trust the CA are all refused.
fn tls_basic_wants_the_password_and_the_ca() {
    let (reg, _pushed) = pushes_and_reads_back(Mode::TlsBasic);
    assert!(reg.base_url().starts_with("https://127.0.0.1:"));
    assert_eq!(reg.user(), Some(USER));
    let pw = reg.password().unwrap().to_string();
    assert!(reg.cert_dir().join("ca.crt").exists());
    assert_eq!(reg.cert_dir().parent().unwrap(), reg.certs_d());
    // The CA's certificate is what rustls (reqwest) trusts: Basic challenge, then 200.
    let r = reg.client().get(reg.url("/v2/")).send().unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let challenge = r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(challenge.starts_with("Basic realm="), "{challenge}");
    let r = reg
        .client()
        .get(reg.url("/v2/"))
        .basic_auth(USER, Some(&pw))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);

    let tag = format!("{BASE}:multi");
    for creds in [Creds::WrongPassword, Creds::Anonymous] {
        let r = reg.skopeo_inspect_raw(&tag, creds);
        assert_ne!(r.code, Some(0), "{creds:?} read the image:\n{}", r.stdout);
        assert!(
            r.stderr.contains("unauthorized") || r.stderr.contains("authentication required"),
            "{creds:?}: {}",
            r.stderr
        );
        let src = format!("oci:{}:arm64", image("oci-umoci").unwrap().display());
        let r = reg.skopeo_push(&src, &format!("{BASE}:refused"), creds);
        assert_ne!(r.code, Some(0), "{creds:?} pushed:\n{}", r.stderr);
    }
    assert_eq!(
        reg.count("PUT", &format!("/v2/{BASE}/manifests/refused")),
        0
    );
    let r = reg.skopeo_inspect_raw(&format!("{BASE}:refused"), Creds::User);
    assert!(r.stderr.contains("manifest unknown"), "{}", r.stderr);

    // Without the CA, TLS itself fails.
    let r = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=true",
        &format!("--creds={USER}:{pw}"),
        &format!("docker://{}", reg.reference(&tag)),
    ]);
    assert_ne!(r.code, Some(0));
    assert!(r.stderr.contains("x509"), "{}", r.stderr);

    // The Docker config written for the user carries the same credentials.
    let config = reg.docker_config().join("config.json");
    let v: Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    let auth = v["auths"][reg.host()]["auth"].as_str().unwrap();
    assert_eq!(
        STANDARD.decode(auth).unwrap(),
        format!("{USER}:{pw}").as_bytes()
    );
    let r = skopeo(&[
        "inspect",
        "--raw",
        &format!("--cert-dir={}", reg.cert_dir().display()),
        &format!("--authfile={}", config.display()),
        &format!("docker://{}", reg.reference(&tag)),
    ]);
    r.success();
}
case! { tls_basic_wants_the_password_and_the_ca, needs = TLS_BASIC }

/// HTTPS with bearer tokens: the user pushes (token with pull,push), anyone pulls (token
/// with pull), an anonymous push is refused, a wrong password gets no token at all.
fn tls_token_pull_for_anyone_push_for_the_user() {
    let (reg, pushed) = pushes_and_reads_back(Mode::TlsToken);
    let ts = reg.token_server().unwrap();
    let pw = reg.password().unwrap().to_string();
    assert!(ts.realm().starts_with("https://127.0.0.1:"));
    // The challenge names our realm and service.
    let r = reg.client().get(reg.url("/v2/")).send().unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let challenge = r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(
        challenge,
        format!(
            "Bearer realm=\"{}\",service=\"{TOKEN_SERVICE}\"",
            ts.realm()
        )
    );
    // The push asked as the user for push and got it.
    let pushes: Vec<TokenRequest> = ts
        .requests()
        .into_iter()
        .filter(|t| t.account.as_deref() == Some(USER))
        .collect();
    assert!(
        pushes
            .iter()
            .any(|t| t.granted.contains(&format!("repository:{BASE}:pull,push"))),
        "{pushes:#?}"
    );

    // Anonymous pull: a pull-only token, the whole image.
    let before = ts.requests().len();
    let out = tempfile::tempdir().unwrap();
    let dest = format!("oci:{}:pulled", out.path().join("layout").display());
    reg.skopeo_pull(&format!("{BASE}:multi"), &dest, Creds::Anonymous)
        .success();
    assert_eq!(reg.blob_gets(BASE), pushed.blobs().len());
    let anon: Vec<TokenRequest> = ts.requests()[before..].to_vec();
    assert!(!anon.is_empty());
    for t in &anon {
        assert_eq!(t.account, None, "{t:?}");
        assert_eq!(t.status, 200);
        assert_eq!(t.service, TOKEN_SERVICE);
        assert_eq!(t.granted, [format!("repository:{BASE}:pull")], "{t:?}");
    }

    // Anonymous push (to a new repository, so blobs must be uploaded): refused, as the token
    // lacks push, and nothing is stored.
    let src = format!("oci:{}:arm64", image("oci-umoci").unwrap().display());
    let before = ts.requests().len();
    let r = reg.skopeo_push(&src, "emukit/anonymous:arm64", Creds::Anonymous);
    assert_ne!(r.code, Some(0), "an anonymous push went through");
    assert!(
        r.stderr.contains("denied") || r.stderr.contains("unauthorized"),
        "{}",
        r.stderr
    );
    let asked = &ts.requests()[before..];
    assert!(
        asked.iter().any(|t| t.account.is_none()
            && t.scopes == ["repository:emukit/anonymous:pull,push"]
            && t.granted == ["repository:emukit/anonymous:pull"]),
        "{asked:#?}"
    );
    let writes: Vec<Logged> = reg
        .requests()
        .into_iter()
        .filter(|l| l.uri.starts_with("/v2/emukit/anonymous/") && l.method != "HEAD")
        .collect();
    assert!(!writes.is_empty());
    assert!(writes.iter().all(|l| l.status == 401), "{writes:#?}");
    assert!(
        !reg.storage()
            .join("docker/registry/v2/repositories/emukit/anonymous")
            .exists()
    );
    let r = reg.skopeo_inspect_raw("emukit/anonymous:arm64", Creds::User);
    assert_ne!(r.code, Some(0));

    // A wrong password: the token server says 401, skopeo gives up.
    let before = ts.requests().len();
    let r = reg.skopeo_inspect_raw(&format!("{BASE}:multi"), Creds::WrongPassword);
    assert_ne!(r.code, Some(0));
    let refused = &ts.requests()[before..];
    assert!(
        !refused.is_empty()
            && refused
                .iter()
                .all(|t| t.status == 401 && t.granted.is_empty()),
        "{refused:#?}"
    );

    // The user can push a new tag as well.
    reg.skopeo_push(&src, &format!("{BASE}:by-user"), Creds::User)
        .success();
    reg.skopeo_inspect_raw(&format!("{BASE}:by-user"), Creds::Anonymous)
        .success();

    // The token endpoint directly: GET with offline_token and POST grants give an identity
    // token, which buys a push token later.
    let c = reg.client();
    let scope = format!("repository:{BASE}:pull,push");
    let q = encode_form(&[
        ("service", TOKEN_SERVICE),
        ("scope", &scope),
        ("offline_token", "true"),
    ]);
    let r = c
        .get(format!("{}?{q}", ts.realm()))
        .basic_auth(USER, Some(&pw))
        .send()
        .unwrap();
    let r: Value = serde_json::from_str(&r.text().unwrap()).unwrap();
    assert_eq!(r["refresh_token"], ts.refresh_token());
    assert_eq!(r["expires_in"], 300);
    let claims = jwt_claims(r["token"].as_str().unwrap());
    assert_eq!(claims["iss"], TOKEN_ISSUER);
    assert_eq!(claims["aud"], TOKEN_SERVICE);
    assert_eq!(claims["sub"], USER);
    assert_eq!(
        claims["access"],
        json!([{"type": "repository", "name": BASE, "actions": ["pull", "push"]}])
    );
    let r = c
        .post(ts.realm())
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(encode_form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", ts.refresh_token()),
            ("service", TOKEN_SERVICE),
            ("scope", &scope),
            ("client_id", "emukit-test"),
        ]))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r: Value = serde_json::from_str(&r.text().unwrap()).unwrap();
    let token = r["access_token"].as_str().unwrap().to_string();
    assert_eq!(
        jwt_claims(&token)["access"][0]["actions"],
        json!(["pull", "push"])
    );
    // The registry takes that token.
    let r = c
        .get(reg.url(&format!("/v2/{BASE}/tags/list")))
        .bearer_auth(&token)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = c
        .post(ts.realm())
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(encode_form(&[
            ("grant_type", "password"),
            ("username", USER),
            ("password", "wrong"),
            ("service", TOKEN_SERVICE),
            ("scope", &scope),
        ]))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    // Another service's token has no access, and the registry refuses it.
    let q = encode_form(&[("service", "elsewhere"), ("scope", &scope)]);
    let r = c
        .get(format!("{}?{q}", ts.realm()))
        .basic_auth(USER, Some(&pw))
        .send()
        .unwrap();
    let r: Value = serde_json::from_str(&r.text().unwrap()).unwrap();
    let token = r["token"].as_str().unwrap().to_string();
    assert_eq!(jwt_claims(&token)["access"], json!([]));
    let r = c
        .get(reg.url(&format!("/v2/{BASE}/tags/list")))
        .bearer_auth(&token)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
}
case! { tls_token_pull_for_anyone_push_for_the_user, needs = TLS_TOKEN }

/// A JWT's claims (not verified: the registry does that).
fn jwt_claims(token: &str) -> Value {
    let claims = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap()
}

/// A corrupted blob: the registry serves bytes that do not match the digest, and skopeo,
/// which verifies, refuses the pull.
fn a_corrupted_blob_is_refused_by_a_verifying_client() {
    let reg = Registry::start(Mode::Plain);
    let pushed = reg.push_multi(&format!("{BASE}:multi"));
    let layer = pushed.image("linux/arm64").layers[0].clone();
    let path = reg.blob_path(&layer);
    let before = std::fs::read(&path).unwrap();
    reg.corrupt_blob(&layer);
    let after = std::fs::read(&path).unwrap();
    assert_eq!(before.len(), after.len());
    assert_ne!(before, after);
    // The registry still serves it as that digest, with its size.
    let r = reg
        .client()
        .get(reg.url(&format!("/v2/{BASE}/blobs/{layer}")))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.bytes().unwrap().as_ref(), &after[..]);

    let out = tempfile::tempdir().unwrap();
    let dest = format!("oci:{}:pulled", out.path().join("layout").display());
    let r = reg.skopeo_pull(&format!("{BASE}:multi"), &dest, Creds::Anonymous);
    assert_ne!(r.code, Some(0), "skopeo took a corrupted blob");
    assert!(
        r.stderr
            .contains(&format!("Digest did not match, expected {layer}")),
        "{}",
        r.stderr
    );
    // Another blob, replaced by other bytes of another size, is refused as well.
    let config = pushed.image("linux/s390x").config.clone();
    reg.replace_blob(&config, b"{}");
    let dest = format!("oci:{}:s390x", out.path().join("layout2").display());
    let mut args = vec![
        "copy".to_string(),
        "--override-arch=s390x".into(),
        "--override-os=linux".into(),
    ];
    args.extend(reg.skopeo_flags("src-", Creds::Anonymous));
    args.push(format!(
        "docker://{}",
        reg.reference(&format!("{BASE}:multi"))
    ));
    args.push(dest);
    let r = skopeo(&args);
    assert_ne!(r.code, Some(0), "skopeo took a replaced config");
    assert!(
        r.stderr
            .contains(&format!("does not match expected {config}")),
        "{}",
        r.stderr
    );
}
case! { a_corrupted_blob_is_refused_by_a_verifying_client, needs = PLAIN }

/// The Docker engine pulls one platform from a plain-HTTP registry on 127.0.0.1 (insecure by
/// default for loopback); the image is removed afterwards.
fn docker_pulls_one_platform_from_a_plain_registry() {
    let reg = Registry::start(Mode::Plain);
    let repo = format!("emukit/docker-pull-{}", std::process::id());
    let pushed = reg.push_multi(&format!("{repo}:multi"));
    let reference = pushed.reference.clone();
    let _rmi = DockerImage(reference.clone());
    tool("docker", &["pull", "--platform", "linux/arm64", &reference]).success();
    let r = tool(
        "docker",
        &[
            "image",
            "inspect",
            "--format",
            "{{.Os}}/{{.Architecture}}/{{.Variant}} {{.Id}}",
            &reference,
        ],
    )
    .success();
    let arm64 = pushed.image("linux/arm64");
    assert_eq!(
        r.stdout.trim(),
        format!("linux/arm64/v8 {}", arm64.config),
        "Docker got another image"
    );
    // It fetched the arm64 layer and config only.
    assert_eq!(reg.count("GET", &format!("/blobs/{}", arm64.layers[0])), 1);
    assert_eq!(reg.blob_gets(&repo), 2, "{:#?}", reg.requests());
}
case! { docker_pulls_one_platform_from_a_plain_registry, needs = PLAIN + [Docker] }

/// Removes a Docker image on drop (`docker rmi`), whatever the test did.
struct DockerImage(String);

impl Drop for DockerImage {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rmi", "--force", &self.0])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A registry in each mode leaves nothing when it drops: its process is gone (reaped), the
/// token server's port closed, the directory removed.
fn a_dropped_registry_leaves_nothing() {
    for mode in [Mode::Plain, Mode::TlsBasic, Mode::TlsToken] {
        let reg = Registry::start(mode);
        let pid = reg.child.id();
        let dir = reg.dir.path().to_path_buf();
        let token = reg.token_server().map(TokenServer::addr);
        let port = reg.port();
        assert!(Path::new(&format!("/proc/{pid}")).exists());
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
        assert_eq!(comm.trim(), "docker-registry", "{mode:?}");
        drop(reg);
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "{mode:?}: {pid} lives"
        );
        assert!(!dir.exists(), "{mode:?}: {} is left", dir.display());
        assert!(TcpStream::connect(("127.0.0.1", port)).is_err(), "{mode:?}");
        if let Some(addr) = token {
            assert!(TcpStream::connect(addr).is_err(), "{mode:?}: token server");
        }
    }
}
case! { a_dropped_registry_leaves_nothing, needs = [Tool("docker-registry"), Tool("openssl"), Tool("htpasswd")] }

/// A registry that is never dropped (a test run killed midway) dies with the thread that
/// started it: `setpriv --pdeathsig KILL`.
fn a_forgotten_registry_dies_with_its_thread() {
    let (pid, dir) = std::thread::spawn(|| {
        let reg = Registry::start(Mode::Plain);
        let out = (reg.child.id(), reg.dir.path().to_path_buf());
        std::mem::forget(reg);
        out
    })
    .join()
    .unwrap();
    let pid = nix::unistd::Pid::from_raw(pid as i32);
    // Killed by the kernel: a zombie of ours until reaped.
    let status = nix::sys::wait::waitpid(pid, None).expect("reap the registry");
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        status,
        nix::sys::wait::WaitStatus::Signaled(pid, nix::sys::signal::Signal::SIGKILL, false)
    );
}
case! { a_forgotten_registry_dies_with_its_thread, needs = [Tool("docker-registry"), Tool("setpriv")] }

/// The helpers' small parts: dates, URL forms.
fn token_server_parts() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    assert_eq!(
        form("scope=repository%3Aa%2Fb%3Apull%2Cpush&service=x+y&e="),
        [
            ("scope".to_string(), "repository:a/b:pull,push".to_string()),
            ("service".into(), "x y".into()),
            ("e".into(), String::new()),
        ]
    );
    assert_eq!(
        form(&encode_form(&[
            ("scope", "repository:a/b:pull push"),
            ("k", "ä&=")
        ])),
        [
            ("scope".to_string(), "repository:a/b:pull push".to_string()),
            ("k".into(), "ä&=".into()),
        ]
    );
    assert_eq!(percent_decode("100%"), "100%");
    assert_eq!(percent_decode("%zz"), "%zz");
}
case! { token_server_parts }
