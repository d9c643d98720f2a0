//! `binfmtctl`: QEMU user-mode emulation through binfmt_misc.

fn main() -> std::process::ExitCode {
    emukit::cli::binfmtctl::main()
}
