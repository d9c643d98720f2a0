//! The sandbox: a namespaced chroot of a working container's layers under emulation.
//! `spec` says what to run, `preflight` checks emulation first, `mounts` builds the root,
//! `caps` and `user` set who runs it, `process` runs it, `report` carries what its init says
//! back (the `unsafe` it needs lives in the crate's `sys`).

pub mod caps;
pub mod mounts;
pub mod preflight;
pub mod process;
pub mod report;
pub mod spec;
pub mod user;

pub use process::{Outcome, SandboxError, run};
pub use report::SetupError;
pub use spec::{Bind, Network, RootFs, RunSpec};
