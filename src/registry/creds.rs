//! Credentials for a registry, looked up as users' other tools store them, in this order:
//! `--creds USER[:PASS]`; `--authfile F` (or `$REGISTRY_AUTH_FILE`); the containers auth file
//! (`$XDG_RUNTIME_DIR/containers/auth.json`, else `~/.config/containers/auth.json`); Docker's
//! `config.json` (`$DOCKER_CONFIG` or `~/.docker`): `auths`, then `credHelpers.<host>`, then
//! `credsStore`, through `docker-credential-<name> get`. The first source that knows the
//! registry answers. Saving (`emubuild login`) writes the auth file (`--authfile`, else the
//! containers one) with mode 0600.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// A user name and secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user.
    pub username: String,
    /// The password or token.
    pub secret: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, <secret>)", self.username)
    }
}

impl Credentials {
    /// Parses `USER[:PASS]`.
    pub fn parse(s: &str) -> Credentials {
        let (u, p) = s.split_once(':').unwrap_or((s, ""));
        Credentials {
            username: u.to_string(),
            secret: p.to_string(),
        }
    }

    /// `Basic` header value.
    pub fn basic(&self) -> String {
        let raw = format!("{}:{}", self.username, self.secret);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

/// Where credentials are looked for (the front end fills it from flags and environment).
#[derive(Debug, Clone, Default)]
pub struct CredentialSources {
    /// `--creds`.
    pub explicit: Option<Credentials>,
    /// `--authfile` / `$REGISTRY_AUTH_FILE`: read first, and the file `login` writes.
    pub authfile: Option<PathBuf>,
    /// The containers auth file's default place.
    pub containers_auth: Option<PathBuf>,
    /// Docker's `config.json`.
    pub docker_config: Option<PathBuf>,
}

/// Why credentials could not be read or saved.
#[derive(Debug, thiserror::Error)]
pub enum CredsError {
    /// A file could not be read or written.
    #[error("cannot {action} the auth file `{path}`")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// An auth file is not valid JSON of the expected shape.
    #[error("the auth file `{path}` is not valid: {reason}; fix or remove it")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A credential helper failed.
    #[error("the credential helper `docker-credential-{helper}` failed for {host}: {reason}")]
    Helper {
        /// The helper's name.
        helper: String,
        /// The registry.
        host: String,
        /// What it said.
        reason: String,
    },
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct AuthFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(
        default,
        rename = "credHelpers",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    cred_helpers: BTreeMap<String, String>,
    #[serde(
        default,
        rename = "credsStore",
        skip_serializing_if = "Option::is_none"
    )]
    creds_store: Option<String>,
    #[serde(flatten)]
    other: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct AuthEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    auth: Option<String>,
    #[serde(flatten)]
    other: BTreeMap<String, serde_json::Value>,
}

/// The keys an auth file may use for `registry`: the host itself, `https://host`, and for
/// Docker Hub Docker's own key.
fn keys(registry: &str) -> Vec<String> {
    let mut k = vec![registry.to_string(), format!("https://{registry}")];
    if registry == crate::oci::reference::DOCKER_HUB {
        k.insert(0, "https://index.docker.io/v1/".to_string());
        k.push("index.docker.io".into());
        k.push("registry-1.docker.io".into());
    }
    k
}

/// The key `login` writes for `registry`.
fn write_key(registry: &str) -> String {
    if registry == crate::oci::reference::DOCKER_HUB {
        "https://index.docker.io/v1/".into()
    } else {
        registry.to_string()
    }
}

fn read_file(path: &Path) -> Result<Option<AuthFile>, CredsError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| CredsError::Malformed {
                path: path.to_path_buf(),
                reason: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CredsError::Io {
            action: "read",
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn from_auths(file: &AuthFile, registry: &str) -> Option<Credentials> {
    for k in keys(registry) {
        if let Some(auth) = file.auths.get(&k).and_then(|e| e.auth.as_deref()) {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(auth)
                .ok()?;
            return Some(Credentials::parse(&String::from_utf8_lossy(&raw)));
        }
    }
    None
}

fn helper(name: &str, registry: &str) -> Result<Option<Credentials>, CredsError> {
    let program = format!("docker-credential-{name}");
    let fail = |reason: String| CredsError::Helper {
        helper: name.to_string(),
        host: registry.to_string(),
        reason,
    };
    let mut child = match std::process::Command::new(&program)
        .arg("get")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return Err(fail(format!("cannot run it ({e})"))),
    };
    let server = keys(registry).remove(0);
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(server.as_bytes());
    }
    let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
    if !out.status.success() {
        // The helpers say "credentials not found in native keychain" for an unknown host.
        let text = String::from_utf8_lossy(&out.stdout).to_lowercase();
        if text.contains("not found") {
            return Ok(None);
        }
        return Err(fail(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    #[derive(Deserialize)]
    struct Answer {
        #[serde(rename = "Username")]
        username: String,
        #[serde(rename = "Secret")]
        secret: String,
    }
    let a: Answer = serde_json::from_slice(&out.stdout).map_err(|e| fail(e.to_string()))?;
    Ok(Some(Credentials {
        username: a.username,
        secret: a.secret,
    }))
}

impl CredentialSources {
    /// The credentials for `registry`, if any source has them.
    pub fn lookup(&self, registry: &str) -> Result<Option<Credentials>, CredsError> {
        if let Some(c) = &self.explicit {
            return Ok(Some(c.clone()));
        }
        let files = self
            .authfile
            .iter()
            .chain(self.containers_auth.iter())
            .chain(self.docker_config.iter());
        for path in files {
            let Some(file) = read_file(path)? else {
                continue;
            };
            if let Some(c) = from_auths(&file, registry) {
                tracing::debug!(registry, file = %path.display(), "credentials from an auth file");
                return Ok(Some(c));
            }
            let helper_name = keys(registry)
                .iter()
                .find_map(|k| file.cred_helpers.get(k).cloned())
                .or_else(|| file.creds_store.clone());
            if let Some(h) = helper_name
                && let Some(c) = helper(&h, registry)?
            {
                tracing::debug!(registry, helper = %h, "credentials from a credential helper");
                return Ok(Some(c));
            }
        }
        Ok(None)
    }

    /// The file `login` writes: `--authfile`, else the containers auth file.
    pub fn save_target(&self) -> Option<&Path> {
        self.authfile.as_deref().or(self.containers_auth.as_deref())
    }

    /// Saves credentials for `registry` (mode 0600, atomically; other entries kept).
    pub fn save(&self, registry: &str, c: &Credentials) -> Result<PathBuf, CredsError> {
        let path = self
            .save_target()
            .ok_or_else(|| CredsError::Malformed {
                path: PathBuf::from("(none)"),
                reason: "no auth file place is known; pass `--authfile`".into(),
            })?
            .to_path_buf();
        let mut file = read_file(&path)?.unwrap_or_default();
        let raw = format!("{}:{}", c.username, c.secret);
        file.auths.insert(
            write_key(registry),
            AuthEntry {
                auth: Some(base64::engine::general_purpose::STANDARD.encode(raw)),
                other: BTreeMap::new(),
            },
        );
        write(&path, &file)?;
        Ok(path)
    }

    /// Removes the credentials for `registry` from the file `login` writes; true when there
    /// were some.
    pub fn remove(&self, registry: &str) -> Result<bool, CredsError> {
        let Some(path) = self.save_target() else {
            return Ok(false);
        };
        let Some(mut file) = read_file(path)? else {
            return Ok(false);
        };
        let before = file.auths.len();
        for k in keys(registry) {
            file.auths.remove(&k);
        }
        if file.auths.len() == before {
            return Ok(false);
        }
        write(path, &file)?;
        Ok(true)
    }
}

fn write(path: &Path, file: &AuthFile) -> Result<(), CredsError> {
    let io = |action| {
        move |source| CredsError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io("create the directory of"))?;
    }
    let bytes = serde_json::to_vec_pretty(file).expect("auth files serialise");
    crate::util::write_atomic(path, &bytes, 0o600).map_err(io("write"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_order_and_save() {
        let d = tempfile::tempdir().unwrap();
        let docker = d.path().join("config.json");
        std::fs::write(
            &docker,
            r#"{"auths":{"https://index.docker.io/v1/":{"auth":"aHViOmh1YnB3"},"r.example":{"auth":"ZG9jazpwdw=="}},"other":1}"#,
        )
        .unwrap();
        let containers = d.path().join("containers/auth.json");
        let sources = CredentialSources {
            explicit: None,
            authfile: None,
            containers_auth: Some(containers.clone()),
            docker_config: Some(docker.clone()),
        };
        assert_eq!(
            sources.lookup("docker.io").unwrap(),
            Some(Credentials::parse("hub:hubpw"))
        );
        assert_eq!(
            sources.lookup("r.example").unwrap(),
            Some(Credentials::parse("dock:pw"))
        );
        assert_eq!(sources.lookup("elsewhere").unwrap(), None);
        // login writes the containers file, 0600; it then wins over Docker's.
        let p = sources
            .save("r.example", &Credentials::parse("me:secret"))
            .unwrap();
        assert_eq!(p, containers);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            sources.lookup("r.example").unwrap(),
            Some(Credentials::parse("me:secret"))
        );
        // --creds wins over everything; logout removes only ours.
        let explicit = CredentialSources {
            explicit: Some(Credentials::parse("x:y")),
            ..sources.clone()
        };
        assert_eq!(explicit.lookup("r.example").unwrap().unwrap().username, "x");
        assert!(sources.remove("r.example").unwrap());
        assert!(!sources.remove("r.example").unwrap());
        assert_eq!(
            sources.lookup("r.example").unwrap(),
            Some(Credentials::parse("dock:pw"))
        );
        // --authfile comes first, and the others still answer for hosts it lacks.
        let given = d.path().join("given.json");
        let with_file = CredentialSources {
            authfile: Some(given.clone()),
            ..sources.clone()
        };
        with_file
            .save("r.example", &Credentials::parse("file:pw"))
            .unwrap();
        assert_eq!(
            with_file.lookup("r.example").unwrap(),
            Some(Credentials::parse("file:pw"))
        );
        assert_eq!(
            with_file.lookup("docker.io").unwrap(),
            Some(Credentials::parse("hub:hubpw"))
        );
        assert!(
            !containers.exists()
                || !std::fs::read_to_string(&containers)
                    .unwrap()
                    .contains("file")
        );
        // A damaged file is an error naming it.
        std::fs::write(&containers, b"{").unwrap();
        let e = sources.lookup("r.example").unwrap_err().to_string();
        assert!(e.contains("auth.json"), "{e}");
    }
}
