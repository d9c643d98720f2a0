//! binfmt_misc: the seam in front of the kernel (`kernel`; the real one is `fs`, tests use
//! `fake`), running programs through it (`exec`), the entries it holds (`entry`), what we own
//! (`owner`), boot-time persistence (`persist`), proving handlers work (`probe`), the
//! operations `binfmtctl` offers on top of them (`manage`), and what a mount holds (`status`).

pub mod entry;
pub mod exec;
#[cfg(test)]
pub mod fake;
pub mod fs;
pub mod kernel;
pub mod manage;
pub mod owner;
pub mod persist;
pub mod probe;
pub mod status;

pub use entry::{Entry, Flags, Matcher, Registration};
pub use fs::{BinfmtFs, Instance};
pub use kernel::Kernel;
