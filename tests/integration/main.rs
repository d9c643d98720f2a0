//! Integration tests: one binary (links once), modules per area, shared helpers in `util`.
//!
//! Tests that touch the host's binfmt_misc are `#[serial]` and restore what was there before.
//! A test whose prerequisites are missing says why; with `EMUKIT_TEST_STRICT=1` (set by
//! `tests/run.sh` and CI) that is a failure, not a skip.

mod arch_table;
mod binfmtctl;
mod commit;
mod emubuild;
mod fetch;
mod packaging;
mod rootless;
mod util;
