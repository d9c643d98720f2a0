//! emukit: build and run container images for CPU architectures you do not have.
//!
//! Two pipelines share this library:
//! - `binfmtctl`: ELF ident ([`elf`]) -> arch table ([`arch`]) -> emulator ([`emulator`]) ->
//!   binfmt_misc handler ([`binfmt`]): encode, register, verify, remove.
//! - `emubuild`: image source -> rootfs unpack -> sandbox run -> snapshot -> OCI image and index.
//!
//! The binaries in `src/bin/` only call [`cli`].

#![warn(missing_docs)]

pub mod arch;
pub mod binfmt;
pub mod build;
pub mod cli;
pub mod commit;
pub mod container;
pub mod containerfile;
pub mod digest;
pub mod dirs;
pub mod elf;
pub mod emulator;
pub mod host;
pub mod inspect;
pub mod lists;
pub mod oci;
pub mod platform;
pub mod progress;
pub mod promote;
pub mod registry;
pub mod rootfs;
pub mod rootless;
pub mod sandbox;
pub mod snapshotter;
pub mod store;
pub(crate) mod sys;
pub mod transfer;
pub mod util;
pub mod warning;
