//! The transport to one or more registries: an async reqwest client per host (rustls with the
//! system roots, plus CAs and client certificates from `--cert-dir` and `certs.d`), HTTPS first
//! and plain HTTP only for loopback hosts or with `--tls-verify=false` when the server does not
//! speak TLS at all (a certificate error is never downgraded), retries of network errors, 5xx
//! and 429 with backoff that honours `Retry-After`, and authentication: bearer tokens per scope
//! from the challenge's realm (with Basic credentials when known), or Basic. Credentials go to
//! the registry and its token realm only; reqwest drops `Authorization` on redirects to other
//! hosts (a blob's CDN).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderMap, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::{RequestBuilder, Response, StatusCode};

use super::RegistryError;
use super::auth::{Challenge, Token, TokenAnswer, parse_challenge};
use super::creds::{CredentialSources, Credentials};

/// How a client talks to registries (the front end fills it from flags and environment).
#[derive(Debug, Clone)]
pub struct Options {
    /// Where credentials come from.
    pub creds: CredentialSources,
    /// `--cert-dir`: CAs (`*.crt`) and client certificates (`*.cert` + `*.key`) for any host.
    pub cert_dir: Option<PathBuf>,
    /// `certs.d` directories holding `<host[:port]>/` subdirectories of the same.
    pub certs_d: Vec<PathBuf>,
    /// `--tls-verify`.
    pub tls_verify: bool,
    /// Where transfer progress goes.
    pub progress: crate::progress::SharedReporter,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            creds: CredentialSources::default(),
            cert_dir: None,
            certs_d: vec![
                "/etc/containers/certs.d".into(),
                "/etc/docker/certs.d".into(),
            ],
            tls_verify: true,
            progress: crate::progress::silent(),
        }
    }
}

/// How many times a request is tried.
const ATTEMPTS: u32 = 4;

/// One registry's connection and authentication state.
#[derive(Debug)]
struct Host {
    http: reqwest::Client,
    /// `https://host[:port]` or `http://...`.
    base: String,
    creds: Option<Credentials>,
    /// The last challenge: how this registry wants to be authenticated.
    challenge: Option<Challenge>,
    /// Bearer tokens by the scopes they were asked for.
    tokens: HashMap<String, Token>,
}

/// A registry client (async; `registry::Session` runs it).
#[derive(Debug)]
pub struct Client {
    opts: Options,
    hosts: tokio::sync::Mutex<HashMap<String, Host>>,
    /// Where each blob was seen (`registry/repository`), for cross-repository mounts.
    pub(super) origins: Mutex<HashMap<String, Vec<String>>>,
}

/// The host to connect to for a registry name (Docker Hub's API host for `docker.io`).
pub fn api_host(registry: &str) -> &str {
    if registry == crate::oci::reference::DOCKER_HUB {
        "registry-1.docker.io"
    } else {
        registry
    }
}

/// Is the host name a loopback address (`127.0.0.0/8`, `::1`, `localhost`)?
pub fn is_loopback(host_port: &str) -> bool {
    let host = host_port
        .strip_prefix('[')
        .and_then(|h| h.split_once(']').map(|(h, _)| h))
        .unwrap_or_else(|| host_port.rsplit_once(':').map_or(host_port, |(h, _)| h));
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// What the chain of an error says, as one line.
pub(super) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = c.source();
    }
    s
}

/// The rustls error somewhere in an error's chain (io::Errors hide what they wrap from
/// `source()`, and wrap each other: each is looked inside).
fn rustls_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    if let Some(r) = e.downcast_ref::<rustls::Error>() {
        return Some(r);
    }
    if let Some(inner) = e
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
        && let Some(r) = rustls_error(inner)
    {
        return Some(r);
    }
    e.source().and_then(rustls_error)
}

/// The TLS failure behind a request error, if it is one: Some(true) when the certificate was
/// refused, Some(false) when the peer did not speak TLS (it answered with something else, or
/// closed the connection on the handshake, as plain-HTTP servers do).
fn tls_failure(e: &reqwest::Error) -> Option<bool> {
    if let Some(r) = rustls_error(e) {
        return Some(matches!(
            r,
            rustls::Error::InvalidCertificate(_)
                | rustls::Error::NoCertificatesPresented
                | rustls::Error::UnsupportedNameType
        ));
    }
    // io::Error's `source()` skips the error it wraps; `get_ref()` reaches it.
    fn hung_up(e: &(dyn std::error::Error + 'static)) -> bool {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if matches!(
                io.kind(),
                std::io::ErrorKind::UnexpectedEof
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
            ) {
                return true;
            }
            if let Some(inner) = io.get_ref()
                && hung_up(inner)
            {
                return true;
            }
        }
        e.source().is_some_and(hung_up)
    }
    (e.is_connect() && hung_up(e)).then_some(false)
}

impl Client {
    /// A client.
    pub fn new(opts: Options) -> Client {
        Client {
            opts,
            hosts: tokio::sync::Mutex::new(HashMap::new()),
            origins: Mutex::new(HashMap::new()),
        }
    }

    /// The options.
    pub fn options(&self) -> &Options {
        &self.opts
    }

    fn http_client(&self, host: &str) -> Result<reqwest::Client, RegistryError> {
        let mut b = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(15))
            .read_timeout(Duration::from_secs(60))
            .user_agent(concat!("emubuild/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::limited(10));
        let mut dirs: Vec<PathBuf> = self.opts.cert_dir.iter().cloned().collect();
        dirs.extend(self.opts.certs_d.iter().map(|d| d.join(host)));
        b = b.tls_backend_preconfigured(super::tls::client_config(&dirs, self.opts.tls_verify)?);
        b.build().map_err(|e| RegistryError::Network {
            url: host.to_string(),
            reason: chain(&e),
        })
    }

    /// Connects to a registry the first time it is used: HTTPS, or HTTP where allowed and the
    /// server does not speak TLS.
    async fn connect(&self, registry: &str) -> Result<Host, RegistryError> {
        let host = api_host(registry);
        let http = self.http_client(host)?;
        let creds = self.opts.creds.lookup(registry)?;
        let https = format!("https://{host}");
        let probe = http.get(format!("{https}/v2/")).send().await;
        let mut ping = None;
        let base = match probe {
            Ok(resp) => {
                ping = Some(resp);
                https
            }
            Err(e) => match tls_failure(&e) {
                Some(true) => {
                    return Err(RegistryError::Certificate {
                        registry: registry.to_string(),
                        reason: chain(&e),
                    });
                }
                Some(false) if is_loopback(host) || !self.opts.tls_verify => {
                    tracing::info!(
                        registry,
                        "the registry does not speak TLS; using plain HTTP"
                    );
                    format!("http://{host}")
                }
                Some(false) => {
                    return Err(RegistryError::PlainHttp {
                        registry: registry.to_string(),
                    });
                }
                None => {
                    return Err(RegistryError::Network {
                        url: format!("{https}/v2/"),
                        reason: chain(&e),
                    });
                }
            },
        };
        if ping.is_none() {
            ping = http.get(format!("{base}/v2/")).send().await.ok();
        }
        // The ping's challenge says how to authenticate from the first request on (Basic
        // credentials sent at once, a token fetched before the request that needs it).
        let challenge = ping
            .filter(|r| r.status() == StatusCode::UNAUTHORIZED)
            .and_then(|r| {
                let v = r
                    .headers()
                    .get(WWW_AUTHENTICATE)?
                    .to_str()
                    .ok()?
                    .to_string();
                parse_challenge(&v).ok()
            });
        tracing::info!(registry, %base, credentials = creds.is_some(), ?challenge, "connected");
        Ok(Host {
            http,
            base,
            creds,
            challenge,
            tokens: HashMap::new(),
        })
    }

    /// The base URL and client of a registry.
    pub async fn base(&self, registry: &str) -> Result<(reqwest::Client, String), RegistryError> {
        let mut hosts = self.hosts.lock().await;
        if !hosts.contains_key(registry) {
            let h = self.connect(registry).await?;
            hosts.insert(registry.to_string(), h);
        }
        let h = &hosts[registry];
        Ok((h.http.clone(), h.base.clone()))
    }

    async fn challenge(&self, registry: &str) -> Option<Challenge> {
        self.hosts.lock().await.get(registry)?.challenge.clone()
    }

    async fn auth_header(&self, registry: &str, scopes: &[String]) -> Option<String> {
        let hosts = self.hosts.lock().await;
        let h = hosts.get(registry)?;
        match &h.challenge {
            Some(Challenge::Bearer { .. }) => {
                let t = h.tokens.get(&scopes.join(" "))?;
                (t.expires > std::time::Instant::now()).then(|| format!("Bearer {}", t.value))
            }
            Some(Challenge::Basic) => h.creds.as_ref().map(Credentials::basic),
            None => None,
        }
    }

    /// Answers a 401: a token for `scopes` (and the challenge's own), or Basic credentials.
    async fn authenticate(
        &self,
        registry: &str,
        scopes: &[String],
        challenge: Challenge,
    ) -> Result<(), RegistryError> {
        let mut hosts = self.hosts.lock().await;
        let h = hosts.get_mut(registry).expect("connected first");
        match &challenge {
            Challenge::Basic => {
                if h.creds.is_none() {
                    return Err(RegistryError::Unauthorized {
                        registry: registry.to_string(),
                        had_credentials: false,
                    });
                }
            }
            Challenge::Bearer {
                realm,
                service,
                scope,
            } => {
                let mut wanted: Vec<String> = scopes.to_vec();
                if let Some(s) = scope
                    && !wanted.contains(s)
                {
                    wanted.push(s.clone());
                }
                let mut url = reqwest::Url::parse(realm).map_err(|e| RegistryError::Network {
                    url: realm.clone(),
                    reason: format!("the token realm is not a URL: {e}"),
                })?;
                {
                    let mut q = url.query_pairs_mut();
                    if let Some(s) = service {
                        q.append_pair("service", s);
                    }
                    for s in &wanted {
                        q.append_pair("scope", s);
                    }
                }
                let mut req = h.http.get(url.clone());
                // Credentials go to the realm only over TLS, or to a loopback realm, or when
                // TLS checks are off (`--tls-verify=false`).
                let realm_host = url.host_str().unwrap_or("");
                let safe =
                    url.scheme() == "https" || is_loopback(realm_host) || !self.opts.tls_verify;
                if let Some(c) = &h.creds {
                    if safe {
                        req = req.header(AUTHORIZATION, c.basic());
                    } else {
                        tracing::warn!(
                            realm,
                            "not sending credentials to a plain-HTTP token realm"
                        );
                    }
                }
                let resp = req.send().await.map_err(|e| RegistryError::Network {
                    url: realm.clone(),
                    reason: chain(&e),
                })?;
                match resp.status() {
                    s if s.is_success() => {}
                    StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                        return Err(RegistryError::Unauthorized {
                            registry: registry.to_string(),
                            had_credentials: h.creds.is_some(),
                        });
                    }
                    s => {
                        return Err(RegistryError::Status {
                            url: realm.clone(),
                            status: s.as_u16(),
                            detail: String::new(),
                        });
                    }
                }
                let body = read_limited(resp, 1 << 20, realm).await?;
                let answer: TokenAnswer =
                    serde_json::from_slice(&body).map_err(|e| RegistryError::Network {
                        url: realm.clone(),
                        reason: format!("the token service's answer is not valid: {e}"),
                    })?;
                let token = answer.into_token().ok_or_else(|| RegistryError::Network {
                    url: realm.clone(),
                    reason: "the token service gave no token".into(),
                })?;
                tracing::debug!(registry, scopes = ?wanted, "token");
                h.tokens.insert(scopes.join(" "), token);
            }
        }
        h.challenge = Some(challenge);
        Ok(())
    }

    /// Sends a request built by `make` (from the registry's client and base URL), with
    /// authentication for `scopes`, retrying as the module says. A 401 after authenticating is
    /// an error.
    pub async fn send(
        &self,
        registry: &str,
        scopes: &[String],
        make: &(dyn Fn(&reqwest::Client, &str) -> RequestBuilder + Sync),
    ) -> Result<Response, RegistryError> {
        let (http, base) = self.base(registry).await?;
        let mut authenticated = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut req = make(&http, &base);
            let mut header = self.auth_header(registry, scopes).await;
            if header.is_none()
                && attempt == 1
                && let Some(challenge @ Challenge::Bearer { .. }) = self.challenge(registry).await
            {
                // A token for these scopes before the request, rather than after its 401.
                self.authenticate(registry, scopes, challenge).await?;
                header = self.auth_header(registry, scopes).await;
            }
            if let Some(h) = header {
                req = req.header(AUTHORIZATION, h);
            }
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) if attempt < ATTEMPTS && !e.is_builder() => {
                    tracing::debug!(error = %chain(&e), attempt, "network error; retrying");
                    tokio::time::sleep(backoff_for(attempt)).await;
                    continue;
                }
                Err(e) => {
                    return Err(RegistryError::Network {
                        url: e.url().map_or(base.clone(), ToString::to_string),
                        reason: chain(&e),
                    });
                }
            };
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED && !authenticated {
                let challenge = resp
                    .headers()
                    .get(WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .map(parse_challenge)
                    .transpose()?
                    .ok_or_else(|| RegistryError::Unauthorized {
                        registry: registry.to_string(),
                        had_credentials: false,
                    })?;
                self.authenticate(registry, scopes, challenge).await?;
                authenticated = true;
                continue;
            }
            if (status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS)
                && attempt < ATTEMPTS
            {
                let wait = retry_after(resp.headers()).unwrap_or_else(|| backoff_for(attempt));
                if status == StatusCode::TOO_MANY_REQUESTS {
                    tracing::warn!(
                        "{registry}: the rate limit is reached ({}); trying again in {} s",
                        rate_figures(resp.headers()),
                        wait.as_secs_f32().ceil()
                    );
                }
                tracing::debug!(%status, attempt, ?wait, "retrying");
                tokio::time::sleep(wait).await;
                continue;
            }
            if status == StatusCode::TOO_MANY_REQUESTS {
                return Err(RegistryError::RateLimited {
                    registry: registry.to_string(),
                    figures: rate_figures(resp.headers()),
                });
            }
            if status == StatusCode::UNAUTHORIZED {
                let had = self
                    .hosts
                    .lock()
                    .await
                    .get(registry)
                    .is_some_and(|h| h.creds.is_some());
                return Err(RegistryError::Unauthorized {
                    registry: registry.to_string(),
                    had_credentials: had,
                });
            }
            return Ok(resp);
        }
    }

    /// Records that `repository` of `registry` holds `digest` (a later push may mount it).
    pub fn seen(&self, registry: &str, repository: &str, digest: &str) {
        let mut o = self.origins.lock().expect("not poisoned");
        let e = o.entry(digest.to_string()).or_default();
        let from = format!("{registry}/{repository}");
        if !e.contains(&from) {
            e.push(from);
        }
    }
}

/// Reads a whole body, at most `limit` bytes (more is an error naming the URL).
pub(super) async fn read_limited(
    mut resp: Response,
    limit: u64,
    url: &str,
) -> Result<Vec<u8>, RegistryError> {
    if resp.content_length().is_some_and(|n| n > limit) {
        return Err(RegistryError::TooLarge {
            url: url.to_string(),
            limit,
        });
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| RegistryError::Network {
        url: url.to_string(),
        reason: chain(&e),
    })? {
        out.extend_from_slice(&chunk);
        if out.len() as u64 > limit {
            return Err(RegistryError::TooLarge {
                url: url.to_string(),
                limit,
            });
        }
    }
    Ok(out)
}

/// `Retry-After` in seconds (an HTTP date is taken as "soon").
fn retry_after(h: &HeaderMap) -> Option<Duration> {
    let v = h.get(RETRY_AFTER)?.to_str().ok()?;
    Some(Duration::from_secs(
        v.trim().parse::<u64>().unwrap_or(5).min(60),
    ))
}

/// How long to wait before attempt `attempt + 1` when the server did not say.
fn backoff_for(attempt: u32) -> Duration {
    Duration::from_millis(250 * 2u64.pow(attempt.min(6)))
}

/// Docker Hub's `ratelimit-limit` and `ratelimit-remaining` (`100;w=21600`: 100 pulls per
/// 21600 s), as `0 of 100 pulls left per 6 h`.
fn rate_figures(h: &HeaderMap) -> String {
    let get = |k: &str| h.get(k).and_then(|v| v.to_str().ok()).map(str::to_string);
    let (Some(remaining), Some(limit)) = (get("ratelimit-remaining"), get("ratelimit-limit"))
    else {
        return "no figures given".into();
    };
    let count = |v: &str| v.split(';').next().unwrap_or(v).trim().to_string();
    let window = limit
        .split(';')
        .find_map(|p| p.trim().strip_prefix("w="))
        .and_then(|w| w.parse::<u64>().ok())
        .map(|secs| match secs {
            s if s % 3600 == 0 => format!(" per {} h", s / 3600),
            s if s % 60 == 0 => format!(" per {} min", s / 60),
            s => format!(" per {s} s"),
        })
        .unwrap_or_default();
    format!(
        "{} of {} pulls left{window}",
        count(&remaining),
        count(&limit)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for h in [
            "127.0.0.1:5000",
            "127.1.2.3",
            "localhost:80",
            "[::1]:5000",
            "localhost",
        ] {
            assert!(is_loopback(h), "{h}");
        }
        for h in ["10.0.0.1:5000", "example.com", "[2001:db8::1]:443"] {
            assert!(!is_loopback(h), "{h}");
        }
        assert_eq!(api_host("docker.io"), "registry-1.docker.io");
        assert_eq!(api_host("quay.io"), "quay.io");
    }

    #[test]
    fn retry_after_and_figures() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert(RETRY_AFTER, "600".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(60)));
        h.insert("ratelimit-limit", "100;w=21600".parse().unwrap());
        h.insert("ratelimit-remaining", "0;w=21600".parse().unwrap());
        assert_eq!(rate_figures(&h), "0 of 100 pulls left per 6 h");
        h.insert("ratelimit-limit", "5000".parse().unwrap());
        h.insert("ratelimit-remaining", "12".parse().unwrap());
        assert_eq!(rate_figures(&h), "12 of 5000 pulls left");
        h.remove("ratelimit-limit");
        assert_eq!(rate_figures(&h), "no figures given");
    }
}
