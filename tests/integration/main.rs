//! Integration tests: one binary (links once), modules per area, shared helpers in `util`, run
//! by our own harness on libtest-mimic (`harness`, `[[test]] harness = false`).
//!
//! # Writing a test
//! A test is a plain `fn` in its module, followed by one line that registers it:
//!
//! ```ignore
//! fn install_runs_foreign_programs() { ... }
//! case! { install_runs_foreign_programs, needs = HOST_FOREIGN, serial = HostBinfmt }
//! ```
//!
//! `case!` submits a `harness::Case` to an `inventory` collection, so there is no central list
//! to forget; a test `fn` left unregistered is dead code (a warning, an error in CI's
//! `clippy -D warnings`). The test's name is `module::fn_name` (`emubuild::ctrl_c_stops_the_command`),
//! and filters, `--exact`, `--skip`, `--list`, `--ignored`, `--include-ignored` and
//! `--test-threads` work as with libtest. A test passes unless it panics; the failure shows the
//! panic's location and message (and a backtrace with `RUST_BACKTRACE=1`). Output is not
//! captured.
//!
//! # Prerequisites
//! `needs = [...]` (variants of `harness::Need`), `needs = SET` (a `const &[Need]`) or
//! `needs = SET + [...]` lists prerequisites: root, the host's binfmt_misc, the image
//! fixtures, a busybox fixture for an architecture, a tool on the PATH, a Docker engine, user
//! namespaces, a private binfmt_misc, an installed emulator, a Debian mirror... Each need is
//! checked once per run, before the tests start, and only for the tests the filters select. A
//! test whose needs are unmet does not run:
//! * by default it is reported as **ignored**, and each missing need is printed once on stderr
//!   before the run, with the tests it holds back;
//! * with `EMUKIT_TEST_STRICT=1` (set by `tests/run.sh`, so CI) it **fails** with
//!   `cannot run: <why>`; so does an ignored test run anyway with `--ignored`.
//!
//! What can only be found out inside a test is an assertion: a test never returns early as a
//! pass.
//!
//! # Host resources
//! `serial = HostBinfmt` marks a test that changes the VM-global binfmt_misc (it restores what
//! was there, `util::HostBinfmt`). Such tests run one at a time: an in-process mutex, then an
//! exclusive `flock` on `/run/lock/emukit-tests-host-binfmt.lock` (in the temporary directory
//! when `/run/lock` is not writable), so two test processes never change the host's handlers
//! at once.

mod arch_table;
mod binfmtctl;
mod build;
mod commit;
mod emubuild;
mod fetch;
mod harness;
mod lists;
mod packaging;
mod pull_push;
mod registry;
mod rootfs;
mod rootless;
mod util;

fn main() {
    harness::main()
}
