//! HTTP downloads from the mirror: a blocking client, a few retries on network errors (never on
//! integrity errors), progress through the caller's reporter, and a size cap on everything read.

use std::io::Read;
use std::time::Duration;

use crate::progress::{Counting, SharedReporter};

/// How many times a request is tried.
pub const ATTEMPTS: u32 = 3;

/// Errors from the network.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// The request failed (after retries).
    #[error(
        "cannot download `{url}` (tried {attempts} times): {reason}; check the mirror and the network, or pass another `--mirror`"
    )]
    Network {
        /// The URL.
        url: String,
        /// How many attempts were made.
        attempts: u32,
        /// The last error.
        reason: String,
    },
    /// The server answered with an error status.
    #[error("`{url}` answered HTTP {status}; the mirror may not carry this suite or architecture")]
    Status {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
    },
    /// The body is larger than allowed.
    #[error("`{url}` is larger than the {limit} bytes expected; refusing it")]
    TooLarge {
        /// The URL.
        url: String,
        /// The cap.
        limit: u64,
    },
}

impl DownloadError {
    /// Worth retrying?
    pub fn retryable(&self) -> bool {
        match self {
            DownloadError::Network { .. } => true,
            DownloadError::Status { status, .. } => *status >= 500 || *status == 429,
            DownloadError::TooLarge { .. } => false,
        }
    }
}

/// A client for one fetch.
pub struct Downloader {
    client: reqwest::blocking::Client,
    progress: SharedReporter,
}

impl Downloader {
    /// A client reporting each transfer's progress to `progress`.
    pub fn new(progress: SharedReporter) -> Downloader {
        let client = reqwest::blocking::Client::builder()
            .connect_timeout(Duration::from_secs(15))
            .timeout(None)
            .user_agent(concat!("binfmtctl/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("HTTP client");
        Downloader { client, progress }
    }

    /// Opens a GET response (one attempt). The whole transfer must finish within a time that
    /// allows for the expected size at a slow rate, so a mirror that stalls mid-transfer is a
    /// network error (and retried), never a hang.
    fn open(
        &self,
        url: &str,
        expected_size: Option<u64>,
    ) -> Result<reqwest::blocking::Response, DownloadError> {
        let resp = self
            .client
            .get(url)
            .timeout(transfer_deadline(expected_size))
            .send()
            .map_err(|e| DownloadError::Network {
                url: url.to_string(),
                attempts: 1,
                reason: error_chain(&e),
            })?;
        let status = resp.status();
        if !status.is_success() {
            return Err(DownloadError::Status {
                url: url.to_string(),
                status: status.as_u16(),
            });
        }
        Ok(resp)
    }

    /// Runs `f` on a streaming response, retrying network failures (`f` returning Err(Some))
    /// up to [`ATTEMPTS`] times. `f` returns Err(None) for a retryable read failure and
    /// Err(Some(e)) to stop at once.
    pub fn with_body<T, E>(
        &self,
        url: &str,
        label: &str,
        expected_size: Option<u64>,
        mut f: impl FnMut(&mut dyn Read) -> Result<T, BodyError<E>>,
    ) -> Result<T, FetchFailure<E>> {
        let mut last = String::new();
        for attempt in 1..=ATTEMPTS {
            if attempt > 1 {
                std::thread::sleep(Duration::from_millis(500 * u64::from(attempt)));
            }
            let resp = match self.open(url, expected_size) {
                Ok(r) => r,
                Err(e) if e.retryable() && attempt < ATTEMPTS => {
                    last = e.to_string();
                    continue;
                }
                Err(DownloadError::Network { url, reason, .. }) => {
                    return Err(FetchFailure::Download(DownloadError::Network {
                        url,
                        attempts: attempt,
                        reason,
                    }));
                }
                Err(e) => return Err(FetchFailure::Download(e)),
            };
            let size = expected_size.or(resp.content_length());
            let transfer = self.progress.start(label, size);
            let out = f(&mut Counting::new(resp, transfer.as_ref()));
            transfer.finish();
            match out {
                Ok(v) => return Ok(v),
                Err(BodyError::Stop(e)) => return Err(FetchFailure::Other(e)),
                Err(BodyError::Io(e)) => last = e.to_string(),
            }
        }
        Err(FetchFailure::Download(DownloadError::Network {
            url: url.to_string(),
            attempts: ATTEMPTS,
            reason: last,
        }))
    }

    /// Downloads a whole body into memory, capped at `limit` bytes.
    pub fn get_bytes(&self, url: &str, limit: u64) -> Result<Vec<u8>, DownloadError> {
        let r = self.with_body::<Vec<u8>, DownloadError>(url, url, None, |body| {
            let mut buf = Vec::new();
            body.take(limit + 1)
                .read_to_end(&mut buf)
                .map_err(BodyError::Io)?;
            if buf.len() as u64 > limit {
                return Err(BodyError::Stop(DownloadError::TooLarge {
                    url: url.to_string(),
                    limit,
                }));
            }
            Ok(buf)
        });
        match r {
            Ok(v) => Ok(v),
            Err(FetchFailure::Download(e)) | Err(FetchFailure::Other(e)) => Err(e),
        }
    }
}

/// What a body callback can fail with.
pub enum BodyError<E> {
    /// A read error: the download is retried.
    Io(std::io::Error),
    /// A final error (integrity): no retry.
    Stop(E),
}

/// Why a streamed download failed.
#[derive(Debug)]
pub enum FetchFailure<E> {
    /// The network or server.
    Download(DownloadError),
    /// The callback's own error.
    Other(E),
}

/// How long a transfer of `size` bytes may take: a minute, plus the time at 64 KiB/s.
fn transfer_deadline(size: Option<u64>) -> Duration {
    const SLOWEST: u64 = 64 * 1024;
    Duration::from_secs(60 + size.unwrap_or(16 << 20) / SLOWEST)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}
