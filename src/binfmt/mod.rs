//! binfmt_misc: the kernel interface (`fs`), the entries it holds (`entry`), what we own
//! (`owner`), boot-time persistence (`persist`), proving handlers work (`probe`), and the
//! operations `binfmtctl` offers on top of them (`manage`).

pub mod entry;
pub mod fs;
pub mod manage;
pub mod owner;
pub mod persist;
pub mod probe;

pub use entry::{Entry, Flags, Matcher, Registration};
pub use fs::{BinfmtFs, Instance};
