//! The OCI distribution API, and nothing above it: authentication (challenges, tokens,
//! credentials), TLS settings, retries, manifests, blobs, uploads and cross-repository mounts.
//! The rest of the pipeline sees an image source (`oci::source`) or a destination, never HTTP.
//!
//! `Session` owns the tokio runtime transfers run on (several at once); its blocking methods are
//! what the synchronous pipeline calls. The runtime is shut down when the session is dropped,
//! so no thread outlives it (the sandbox forks only from a single-threaded process).

pub mod auth;
pub mod client;
pub mod creds;
mod ops;
pub mod push;
mod source;
mod tls;

use std::path::PathBuf;

pub use client::{Client, Options};
pub use ops::{BlobReader, Head, Manifest, Pushed};
pub use source::Repository;

use crate::oci::reference::RegistryRef;

/// The media types a manifest request accepts: both index kinds first, so a registry never
/// answers a tag with one platform's child.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// The largest manifest read (distribution refuses bodies over 4 MiB).
pub const MAX_MANIFEST: u64 = 4 << 20;

/// Errors talking to a registry, each naming the cause and the fix.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The network, after retries.
    #[error("cannot reach `{url}`: {reason}")]
    Network {
        /// The URL.
        url: String,
        /// What failed.
        reason: String,
    },
    /// The registry refused credentials, or asked for some and none were known.
    #[error(
        "{registry} refused {}; run `emubuild login {registry}`, or pass `--creds USER:PASS` or `--authfile FILE`",
        if *had_credentials { "the credentials given" } else { "access without credentials" }
    )]
    Unauthorized {
        /// The registry.
        registry: String,
        /// Were credentials sent?
        had_credentials: bool,
    },
    /// The credentials are good but do not allow this.
    #[error("{registry} denied {action} on `{repository}` to these credentials")]
    Denied {
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
        /// `pull` or `push`.
        action: &'static str,
    },
    /// No such tag, digest or repository.
    #[error("{what} not found in {reference}")]
    NotFound {
        /// The manifest or blob.
        what: String,
        /// Where it was looked for.
        reference: String,
    },
    /// The server's certificate was refused.
    #[error(
        "the certificate of {registry} is not trusted ({reason}); add its CA with `--cert-dir DIR` (a directory of `*.crt`) or `/etc/containers/certs.d/{registry}/ca.crt`, or pass `--tls-verify=false`"
    )]
    Certificate {
        /// The registry.
        registry: String,
        /// What rustls said.
        reason: String,
    },
    /// A registry that does not speak TLS, not on a loopback address.
    #[error(
        "{registry} does not speak TLS; plain HTTP is used only for loopback registries, or with `--tls-verify=false`"
    )]
    PlainHttp {
        /// The registry.
        registry: String,
    },
    /// A CA or client certificate file that cannot be used.
    #[error("cannot use the certificate `{}`: {reason}", .path.display())]
    Certificates {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Content that does not match its digest or size: nothing was stored.
    #[error(
        "{what} from {url} does not match its {field}: expected {expected}, got {actual}; the registry served other bytes, and nothing was stored"
    )]
    Mismatch {
        /// The manifest or blob.
        what: String,
        /// Where it came from.
        url: String,
        /// `digest` or `size`.
        field: &'static str,
        /// What the descriptor says.
        expected: String,
        /// What arrived.
        actual: String,
    },
    /// A destination by digest that names other content than what is pushed.
    #[error(
        "`{dest}` names {wanted}, but what is pushed is {actual}; give the repository with a tag or no reference at all"
    )]
    WrongDigest {
        /// The destination.
        dest: String,
        /// The digest it names.
        wanted: String,
        /// The content's.
        actual: String,
    },
    /// A body larger than allowed.
    #[error("`{url}` is larger than {limit} bytes; refusing it")]
    TooLarge {
        /// The URL.
        url: String,
        /// The cap.
        limit: u64,
    },
    /// Another status.
    #[error("`{url}` answered HTTP {status}{detail}")]
    Status {
        /// The URL.
        url: String,
        /// The status.
        status: u16,
        /// The registry's own error codes and messages (`: CODE message`), when it gave some.
        detail: String,
    },
    /// The pull rate limit is hit.
    #[error(
        "{registry}'s pull rate limit is reached ({figures}); wait, or log in (`emubuild login {registry}`) for a higher limit"
    )]
    RateLimited {
        /// The registry.
        registry: String,
        /// What its headers said.
        figures: String,
    },
    /// A challenge that cannot be read.
    #[error(transparent)]
    Challenge(#[from] auth::ChallengeError),
    /// Credentials could not be read.
    #[error(transparent)]
    Creds(#[from] creds::CredsError),
    /// A local file (a blob being pushed, a layer being written).
    #[error("cannot {action} `{}`", .path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A manifest that is not a valid document.
    #[error("the manifest of {reference} is not valid: {reason}")]
    BadManifest {
        /// The reference.
        reference: String,
        /// Why.
        reason: String,
    },
}

/// A client and the runtime its transfers run on.
pub struct Session {
    /// The client (shared with the transfers that outlive a borrow: a blob streamed from one
    /// registry into another).
    pub client: std::sync::Arc<Client>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("client", &self.client)
            .finish()
    }
}

impl Session {
    /// A session with `opts`.
    pub fn new(opts: Options) -> Result<Session, RegistryError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()
            .map_err(|source| RegistryError::Io {
                action: "start the transfer runtime for",
                path: PathBuf::from("(registry)"),
                source,
            })?;
        Ok(Session {
            client: std::sync::Arc::new(Client::new(opts)),
            runtime: Some(runtime),
        })
    }

    /// Runs a future to its end on the session's runtime (callable from several threads).
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime
            .as_ref()
            .expect("the runtime lives as long as the session")
            .block_on(f)
    }

    /// Checks that the credentials known for `registry` are accepted (`emubuild login`).
    pub fn check_login(&self, registry: &str) -> Result<(), RegistryError> {
        self.block_on(self.client.check_login(registry))
    }

    /// The manifest `r` names (by tag or digest), verified against the digest when it has one.
    pub fn manifest(&self, r: &RegistryRef) -> Result<Manifest, RegistryError> {
        self.block_on(self.client.manifest(r, None))
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(std::time::Duration::from_secs(10));
        }
    }
}

/// `registry/repository@digest` for messages.
pub fn at(r: &RegistryRef, digest: &str) -> String {
    format!("{}/{}@{digest}", r.registry, r.repository)
}
