//! `emubuild`: an emulated build sandbox that writes multi-arch OCI images.

fn main() -> std::process::ExitCode {
    emukit::cli::emubuild::main()
}
