//! The distribution API's operations: `/v2/`, manifests (GET with every media type accepted,
//! HEAD, PUT), blobs (HEAD, GET streamed and resumed with Range, uploads by POST then PUT, and
//! cross-repository mounts), every body checked against its digest and size.

use std::io::Read;
use std::path::Path;
use std::pin::Pin;

use futures_util::{Stream, TryStreamExt};
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, LOCATION, RANGE};
use reqwest::{Response, StatusCode};

use super::auth::scope;
use super::client::{chain, read_limited};
use super::{Client, MAX_MANIFEST, RegistryError, Session, at};
use crate::oci::reference::RegistryRef;

/// A manifest as the registry served it: the exact bytes, their media type and digest.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The bytes (what the digest is of).
    pub bytes: Vec<u8>,
    /// `Content-Type` (or the document's own `mediaType`).
    pub media_type: String,
    /// `sha256:` of the bytes.
    pub digest: String,
}

/// What a HEAD of a manifest says.
#[derive(Debug, Clone, Default)]
pub struct Head {
    /// `Docker-Content-Digest`.
    pub digest: Option<String>,
    /// `Content-Type`.
    pub media_type: Option<String>,
    /// `Content-Length`.
    pub size: Option<u64>,
}

/// What a push wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Pushed {
    /// The digest of what the reference now names.
    pub digest: String,
    /// Blobs uploaded, mounted, and already there.
    pub uploaded: usize,
    /// Blobs mounted from another repository.
    pub mounted: usize,
    /// Blobs the registry had already.
    pub existing: usize,
    /// Blobs streamed from a repository that held them (another registry's).
    pub copied: usize,
}

/// The registry's error codes and messages, as `: CODE message; CODE message`.
async fn detail(resp: Response) -> String {
    #[derive(serde::Deserialize)]
    struct Body {
        #[serde(default)]
        errors: Vec<Item>,
    }
    #[derive(serde::Deserialize)]
    struct Item {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    let url = resp.url().to_string();
    let Ok(bytes) = read_limited(resp, 64 << 10, &url).await else {
        return String::new();
    };
    match serde_json::from_slice::<Body>(&bytes) {
        Ok(b) if !b.errors.is_empty() => {
            let items: Vec<String> = b
                .errors
                .iter()
                .map(|e| {
                    let m: String = e.message.chars().take(200).collect();
                    format!("{} {m}", e.code)
                })
                .collect();
            format!(": {}", items.join("; "))
        }
        _ => String::new(),
    }
}

/// 2xx passes; 404, 403 and the rest become errors naming `what` in `reference`.
async fn checked(
    resp: Response,
    r: &RegistryRef,
    what: &str,
    action: &'static str,
) -> Result<Response, RegistryError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    match status {
        StatusCode::NOT_FOUND => Err(RegistryError::NotFound {
            what: what.to_string(),
            reference: format!("{}/{}", r.registry, r.repository),
        }),
        StatusCode::FORBIDDEN => Err(RegistryError::Denied {
            registry: r.registry.clone(),
            repository: r.repository.clone(),
            action,
        }),
        s => Err(RegistryError::Status {
            url: resp.url().to_string(),
            status: s.as_u16(),
            detail: detail(resp).await,
        }),
    }
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", crate::digest::sha256_hex(bytes))
}

impl Client {
    /// `GET /v2/` with the credentials known: accepted, or why not.
    pub async fn check_login(&self, registry: &str) -> Result<(), RegistryError> {
        let r = RegistryRef {
            registry: registry.to_string(),
            repository: String::new(),
            tag: None,
            digest: None,
        };
        let resp = self
            .send(registry, &[], &|c, base| c.get(format!("{base}/v2/")))
            .await?;
        checked(resp, &r, "the API", "pull").await.map(drop)
    }

    /// The manifest `r` names, or `digest` in its repository; every media type accepted. By
    /// digest, the bytes must hash to it; by tag, to `Docker-Content-Digest` when given.
    pub async fn manifest(
        &self,
        r: &RegistryRef,
        digest: Option<&str>,
    ) -> Result<Manifest, RegistryError> {
        let reference = digest.map(str::to_string).unwrap_or_else(|| r.reference());
        let scopes = [scope(&r.repository, false)];
        let path = format!("/v2/{}/manifests/{reference}", r.repository);
        let resp = self
            .send(&r.registry, &scopes, &|c, base| {
                c.get(format!("{base}{path}")).header(ACCEPT, super::ACCEPT)
            })
            .await?;
        let resp = checked(resp, r, &format!("manifest `{reference}`"), "pull").await?;
        let url = resp.url().to_string();
        let header_digest = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.split(';').next().unwrap_or(s).trim().to_string());
        let bytes = read_limited(resp, MAX_MANIFEST, &url).await?;
        let actual = sha256(&bytes);
        let expected = if reference.starts_with("sha256:") {
            Some(reference.clone())
        } else {
            header_digest.filter(|d| d.starts_with("sha256:"))
        };
        if let Some(e) = expected
            && e != actual
        {
            return Err(RegistryError::Mismatch {
                what: format!("manifest `{reference}`"),
                url,
                field: "digest",
                expected: e,
                actual,
            });
        }
        let media_type = content_type
            .filter(|t| t.starts_with("application/vnd."))
            .or_else(|| {
                serde_json::from_slice::<serde_json::Value>(&bytes)
                    .ok()?
                    .get("mediaType")?
                    .as_str()
                    .map(str::to_string)
            })
            .unwrap_or_default();
        self.seen(&r.registry, &r.repository, &actual);
        Ok(Manifest {
            bytes,
            media_type,
            digest: actual,
        })
    }

    /// Does the repository hold a manifest with this reference? Its digest, media type and
    /// size when it does (HEAD: no pull is counted).
    pub async fn head_manifest(
        &self,
        r: &RegistryRef,
        reference: &str,
        push: bool,
    ) -> Result<Option<Head>, RegistryError> {
        let scopes = [scope(&r.repository, push)];
        let path = format!("/v2/{}/manifests/{reference}", r.repository);
        let resp = self
            .send(&r.registry, &scopes, &|c, base| {
                c.head(format!("{base}{path}"))
                    .header(ACCEPT, super::ACCEPT)
            })
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resp = checked(resp, r, &format!("manifest `{reference}`"), "pull").await?;
        let h = resp.headers();
        let text = |k| {
            h.get(k)
                .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
        };
        Ok(Some(Head {
            digest: text("docker-content-digest")
                .filter(|d| d.starts_with("sha256:"))
                .map(str::to_string),
            media_type: text("content-type")
                .map(|t| t.split(';').next().unwrap_or(t).trim().to_string()),
            size: text("content-length").and_then(|n| n.parse().ok()),
        }))
    }

    /// Is the blob in the repository?
    pub async fn blob_exists(
        &self,
        r: &RegistryRef,
        digest: &str,
        push: bool,
    ) -> Result<bool, RegistryError> {
        let scopes = [scope(&r.repository, push)];
        let path = format!("/v2/{}/blobs/{digest}", r.repository);
        let resp = self
            .send(&r.registry, &scopes, &|c, base| {
                c.head(format!("{base}{path}"))
            })
            .await?;
        match resp.status() {
            StatusCode::NOT_FOUND => Ok(false),
            s if s.is_success() => Ok(true),
            _ => checked(resp, r, &format!("blob {digest}"), "pull")
                .await
                .map(|_| true),
        }
    }

    /// Opens a blob's body from byte `offset` on (a Range request when not 0).
    pub async fn open_blob(
        &self,
        r: &RegistryRef,
        digest: &str,
        offset: u64,
    ) -> Result<Response, RegistryError> {
        let scopes = [scope(&r.repository, false)];
        let path = format!("/v2/{}/blobs/{digest}", r.repository);
        let resp = self
            .send(&r.registry, &scopes, &|c, base| {
                let req = c.get(format!("{base}{path}"));
                if offset > 0 {
                    req.header(RANGE, format!("bytes={offset}-"))
                } else {
                    req
                }
            })
            .await?;
        let resp = checked(resp, r, &format!("blob {digest}"), "pull").await?;
        if offset > 0 && resp.status() != StatusCode::PARTIAL_CONTENT {
            return Err(RegistryError::Status {
                url: resp.url().to_string(),
                status: resp.status().as_u16(),
                detail: ": no partial content for a resumed download".into(),
            });
        }
        Ok(resp)
    }

    /// Mounts `digest` into `target` from `from` (a repository of the same registry): true when
    /// mounted, false when the registry declined (the caller uploads instead).
    pub async fn mount(
        &self,
        target: &RegistryRef,
        digest: &str,
        from: &str,
    ) -> Result<bool, RegistryError> {
        // A mount needs pull on the source as well as push on the target.
        let scopes = [scope(&target.repository, true), scope(from, false)];
        let path = format!(
            "/v2/{}/blobs/uploads/?mount={digest}&from={from}",
            target.repository
        );
        let resp = self
            .send(&target.registry, &scopes, &|c, base| {
                c.post(format!("{base}{path}")).header(CONTENT_LENGTH, "0")
            })
            .await?;
        match resp.status() {
            StatusCode::CREATED => Ok(true),
            StatusCode::ACCEPTED => Ok(false),
            _ => checked(resp, target, &format!("mount of {digest}"), "push")
                .await
                .map(|_| false),
        }
    }

    /// Starts an upload of `digest` to `target` (POST); the URL to PUT its bytes to.
    async fn start_upload(
        &self,
        target: &RegistryRef,
        digest: &str,
    ) -> Result<String, RegistryError> {
        let scopes = [scope(&target.repository, true)];
        let start = format!("/v2/{}/blobs/uploads/", target.repository);
        let resp = self
            .send(&target.registry, &scopes, &|c, base| {
                c.post(format!("{base}{start}")).header(CONTENT_LENGTH, "0")
            })
            .await?;
        let resp = checked(resp, target, &format!("upload of {digest}"), "push").await?;
        let location = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| RegistryError::Status {
                url: resp.url().to_string(),
                status: resp.status().as_u16(),
                detail: ": no Location for the upload".into(),
            })?
            .to_string();
        let url = resp
            .url()
            .join(&location)
            .map_err(|e| RegistryError::Network {
                url: location.clone(),
                reason: e.to_string(),
            })?;
        let sep = if url.query().is_some() { '&' } else { '?' };
        Ok(format!("{url}{sep}digest={digest}"))
    }

    /// Finishes an upload with one PUT of `size` bytes from `body` (made again for a retry);
    /// the registry checks them against the digest.
    async fn finish_upload(
        &self,
        target: &RegistryRef,
        digest: &str,
        size: u64,
        put_url: &str,
        body: &(dyn Fn(std::sync::Arc<dyn crate::progress::Transfer>) -> reqwest::Body + Sync),
    ) -> Result<(), RegistryError> {
        let scopes = [scope(&target.repository, true)];
        let transfer = self.options().progress.start(digest, Some(size));
        let transfer: std::sync::Arc<dyn crate::progress::Transfer> = transfer.into();
        let resp = self
            .send(&target.registry, &scopes, &|c, _| {
                c.put(put_url)
                    .header(CONTENT_LENGTH, size)
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .body(body(transfer.clone()))
            })
            .await;
        transfer.finish();
        checked(resp?, target, &format!("blob {digest}"), "push").await?;
        Ok(())
    }

    /// Uploads the file at `path` as blob `digest` (`size` bytes): POST, then PUT with the
    /// digest; the registry checks it.
    pub async fn upload(
        &self,
        target: &RegistryRef,
        digest: &str,
        size: u64,
        file: &Path,
    ) -> Result<(), RegistryError> {
        let put_url = self.start_upload(target, digest).await?;
        self.finish_upload(target, digest, size, &put_url, &|t| {
            let path = file.to_path_buf();
            let stream =
                futures_util::stream::once(async move { tokio::fs::File::open(path).await })
                    .map_ok(|f| tokio_util::io::ReaderStream::with_capacity(f, 1 << 20))
                    .try_flatten()
                    .inspect_ok(move |b| t.advance(b.len() as u64));
            reqwest::Body::wrap_stream(stream)
        })
        .await
    }

    /// Copies blob `digest` from `from` (a repository of this or another registry) into
    /// `target`, streamed from the one to the other (never kept, never unpacked); the
    /// destination checks the bytes against the digest.
    pub async fn copy_blob(
        self: &std::sync::Arc<Self>,
        target: &RegistryRef,
        digest: &str,
        size: u64,
        from: &RegistryRef,
    ) -> Result<(), RegistryError> {
        let put_url = self.start_upload(target, digest).await?;
        self.finish_upload(target, digest, size, &put_url, &|t| {
            let (client, from, digest) = (self.clone(), from.clone(), digest.to_string());
            let stream = futures_util::stream::once(async move {
                client
                    .open_blob(&from, &digest, 0)
                    .await
                    .map(|r| r.bytes_stream().map_err(std::io::Error::other))
                    .map_err(std::io::Error::other)
            })
            .try_flatten()
            .inspect_ok(move |b| t.advance(b.len() as u64));
            reqwest::Body::wrap_stream(stream)
        })
        .await?;
        self.seen(&target.registry, &target.repository, digest);
        Ok(())
    }

    /// PUTs a manifest's exact bytes under `reference` (a tag, or its digest); returns the
    /// digest the registry gives it, which must be the bytes' own.
    pub async fn put_manifest(
        &self,
        target: &RegistryRef,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<String, RegistryError> {
        let scopes = [scope(&target.repository, true)];
        let path = format!("/v2/{}/manifests/{reference}", target.repository);
        let body = bytes.to_vec();
        let resp = self
            .send(&target.registry, &scopes, &|c, base| {
                c.put(format!("{base}{path}"))
                    .header(CONTENT_TYPE, media_type)
                    .body(body.clone())
            })
            .await?;
        let resp = checked(resp, target, &format!("manifest `{reference}`"), "push").await?;
        let ours = sha256(bytes);
        if let Some(theirs) = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            && theirs != ours
        {
            return Err(RegistryError::Mismatch {
                what: format!("manifest `{reference}`"),
                url: resp.url().to_string(),
                field: "digest",
                expected: ours,
                actual: theirs.to_string(),
            });
        }
        self.seen(&target.registry, &target.repository, &ours);
        Ok(ours)
    }
}

type ByteStream = Pin<Box<dyn Stream<Item = std::io::Result<bytes::Bytes>> + Send>>;

/// A blob's body as a blocking reader, resumed with Range requests after a broken transfer
/// (up to three times); progress goes to the session's reporter.
pub struct BlobReader<'a> {
    session: &'a Session,
    r: RegistryRef,
    digest: String,
    size: u64,
    offset: u64,
    resumes: u32,
    inner: Option<
        tokio_util::io::SyncIoBridge<tokio_util::io::StreamReader<ByteStream, bytes::Bytes>>,
    >,
    transfer: Box<dyn crate::progress::Transfer>,
}

impl<'a> BlobReader<'a> {
    fn open(&mut self) -> std::io::Result<()> {
        let resp = self
            .session
            .block_on(
                self.session
                    .client
                    .open_blob(&self.r, &self.digest, self.offset),
            )
            .map_err(std::io::Error::other)?;
        let stream: ByteStream = Box::pin(resp.bytes_stream().map_err(std::io::Error::other));
        let reader = tokio_util::io::StreamReader::new(stream);
        let handle = self.session.handle();
        self.inner = Some(tokio_util::io::SyncIoBridge::new_with_handle(
            reader, handle,
        ));
        Ok(())
    }
}

impl Read for BlobReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if self.inner.is_none() {
                self.open()?;
            }
            let r = self.inner.as_mut().expect("opened").read(buf);
            match r {
                Ok(n) => {
                    self.offset += n as u64;
                    self.transfer.advance(n as u64);
                    if n == 0 && self.offset < self.size && self.resumes < 3 {
                        // The body ended early: ask for the rest.
                        self.resumes += 1;
                        self.inner = None;
                        continue;
                    }
                    return Ok(n);
                }
                Err(e) if self.resumes < 3 && self.offset < self.size => {
                    tracing::info!(digest = %self.digest, offset = self.offset, error = %chain(&e), "resuming a broken download");
                    self.resumes += 1;
                    self.inner = None;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl Drop for BlobReader<'_> {
    fn drop(&mut self) {
        self.transfer.finish();
    }
}

/// Blobs from this size on get a progress bar.
const SHOWN: u64 = 256 << 10;

impl Session {
    /// The runtime's handle (for blocking bridges).
    pub fn handle(&self) -> tokio::runtime::Handle {
        self.block_on(async { tokio::runtime::Handle::current() })
    }

    /// A blob of `r`'s repository as a blocking reader (the caller verifies digest and size).
    pub fn blob(&self, r: &RegistryRef, digest: &str, size: u64) -> BlobReader<'_> {
        self.client.seen(&r.registry, &r.repository, digest);
        BlobReader {
            session: self,
            r: r.clone(),
            digest: digest.to_string(),
            size,
            offset: 0,
            resumes: 0,
            inner: None,
            // Layers get a bar; configs and other small blobs come and go too fast for one.
            transfer: if size >= SHOWN {
                self.client
                    .options()
                    .progress
                    .start(&digest.chars().take(19).collect::<String>(), Some(size))
            } else {
                crate::progress::silent().start("", None)
            },
        }
    }

    /// A manifest of `r`'s repository by digest, verified.
    pub fn manifest_by_digest(
        &self,
        r: &RegistryRef,
        digest: &str,
    ) -> Result<Manifest, RegistryError> {
        self.block_on(self.client.manifest(r, Some(digest)))
    }

    /// `registry/repository@digest` of a manifest, for messages.
    pub fn name(&self, r: &RegistryRef, digest: &str) -> String {
        at(r, digest)
    }
}
