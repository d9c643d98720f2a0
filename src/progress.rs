//! Progress of long transfers, reported through a trait the front end implements (the CLI
//! draws indicatif bars on a terminal); the library never draws anything itself.

use std::io::Read;
use std::sync::Arc;

/// Receives the progress of transfers.
pub trait Reporter: Send + Sync + std::fmt::Debug {
    /// A transfer starts: `label` names it, `size` is its length when known.
    fn start(&self, label: &str, size: Option<u64>) -> Box<dyn Transfer>;
}

/// One transfer under way.
pub trait Transfer: Send + Sync {
    /// `n` more bytes arrived.
    fn advance(&self, n: u64);
    /// It ended (done or failed); its display goes.
    fn finish(&self);
}

/// Reports nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

struct Nothing;

impl Transfer for Nothing {
    fn advance(&self, _: u64) {}
    fn finish(&self) {}
}

impl Reporter for Silent {
    fn start(&self, _: &str, _: Option<u64>) -> Box<dyn Transfer> {
        Box::new(Nothing)
    }
}

/// A shared reporter.
pub type SharedReporter = Arc<dyn Reporter>;

/// The silent reporter, shared.
pub fn silent() -> SharedReporter {
    Arc::new(Silent)
}

/// Reads through `inner`, reporting every byte to `transfer`.
pub struct Counting<'a, R> {
    inner: R,
    transfer: &'a dyn Transfer,
}

impl<'a, R> Counting<'a, R> {
    /// Wraps a reader.
    pub fn new(inner: R, transfer: &'a dyn Transfer) -> Self {
        Counting { inner, transfer }
    }
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.transfer.advance(n as u64);
        Ok(n)
    }
}
