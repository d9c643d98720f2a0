//! Logs through `tracing`, for the user who reports a bug: mounts, layer stacks, the
//! snapshotter chosen, every emulator and handler decision. Off by default but warnings;
//! `-v` shows info, `-vv` debug, `-vvv` trace; `--log-level` (any `RUST_LOG` filter, e.g.
//! `emukit::sandbox=debug`) or `RUST_LOG` choose exactly.

use tracing_subscriber::EnvFilter;

/// Installs the subscriber (stderr, no timestamps).
pub fn init(verbose: u8, log_level: Option<&str>) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = log_level
        .map(str::to_string)
        .or_else(|| {
            (verbose == 0)
                .then(|| std::env::var("RUST_LOG").ok())
                .flatten()
        })
        .unwrap_or_else(|| format!("emukit={default}"));
    let filter = EnvFilter::try_new(&filter).unwrap_or_else(|_| EnvFilter::new("emukit=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
