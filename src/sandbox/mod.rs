//! The sandbox: a namespaced chroot of a working container's layers under emulation.
//! `spec` says what to run, `preflight` checks emulation first, `mounts` builds the root,
//! `caps` and `user` set who runs it, `process` runs it (the only `unsafe` lives in `sys`).

pub mod caps;
pub mod mounts;
pub mod preflight;
pub mod process;
pub mod spec;
pub(crate) mod sys;
pub mod user;

pub use process::{Outcome, SandboxError, run};
pub use spec::{Bind, Network, RootFs, RunSpec};
