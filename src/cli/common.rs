//! What both commands share: the global output and log flags, the emulator source flags (every
//! variable they read is read here, by clap, once), and the progress bars.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use super::UsageError;
use super::printer::Printer;
use crate::dirs::BaseDirs;
use crate::emulator::cache::Cache;
use crate::emulator::release;
use crate::emulator::resolve::{Resolver, Source};
use crate::emulator::suites::Suites;
use crate::progress::{Reporter, SharedReporter, Transfer};

/// Output and logs (binfmtctl: `-v` anywhere on the line).
#[derive(Debug, Args, Clone)]
pub struct GlobalArgs {
    /// Print less: no messages or progress bars (data, warnings and errors stay).
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Log more (`-v` info: handlers, emulators, mounts; `-vv` debug; `-vvv` trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Log filter, as `RUST_LOG` takes it (`debug`, `emukit::binfmt=trace`).
    #[arg(long, global = true, value_name = "FILTER")]
    pub log_level: Option<String>,
}

/// Output and logs (emubuild: `-v` before the subcommand, since `run -v` is a volume, as in
/// `docker run`).
#[derive(Debug, Args, Clone)]
pub struct TopArgs {
    /// Print less: no messages or progress bars (data, warnings and errors stay).
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Log more (`-v` info: mounts, layer stacks, the snapshotter, handlers; `-vv` debug;
    /// `-vvv` trace); before the subcommand: `emubuild -v run ...`.
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Log filter, as `RUST_LOG` takes it (`debug`, `emukit::sandbox=trace`).
    #[arg(long, global = true, value_name = "FILTER")]
    pub log_level: Option<String>,
}

/// Starts logging and makes the printer.
pub fn start(prog: &'static str, quiet: bool, verbose: u8, log_level: Option<&str>) -> Printer {
    super::logging::init(verbose, log_level);
    Printer::new(prog, quiet)
}

impl GlobalArgs {
    /// Starts logging and makes the printer.
    pub fn start(&self, prog: &'static str) -> Printer {
        start(prog, self.quiet, self.verbose, self.log_level.as_deref())
    }
}

impl TopArgs {
    /// Starts logging and makes the printer.
    pub fn start(&self, prog: &'static str) -> Printer {
        start(prog, self.quiet, self.verbose, self.log_level.as_deref())
    }
}

/// Where emulators come from (binfmtctl's `install`, `fetch`, `run`; emubuild's rootless runs).
#[derive(Debug, Args, Clone)]
pub struct EmulatorArgs {
    /// Look for emulators in this directory first (`qemu-<target>-static` or `qemu-<target>`).
    #[arg(
        long = "emulator-dir",
        value_name = "DIR",
        env = "BINFMTCTL_EMULATOR_DIR"
    )]
    pub emulator_dirs: Vec<PathBuf>,
    /// Where emulators come from: installed ones, else the cache, else the Debian archive
    /// (auto); installed only (system); the Debian archive through the cache (debian).
    #[arg(long, value_enum, default_value = "auto", env = "BINFMTCTL_SOURCE")]
    pub source: Source,
    #[allow(missing_docs)]
    #[command(flatten)]
    pub archive: ArchiveArgs,
}

/// The Debian archive emulators are fetched from.
#[derive(Debug, Args, Clone)]
pub struct ArchiveArgs {
    /// Debian suite: trixie (default, QEMU 10), bookworm-backports, bookworm (QEMU 7.2).
    #[arg(long, env = "BINFMTCTL_SUITE", value_name = "SUITE")]
    pub suite: Option<String>,
    /// Debian mirror base URL, e.g. http://<debian-mirror>/debian (default: the Debian mirror
    /// in the apt sources).
    #[arg(long, env = "BINFMTCTL_MIRROR", value_name = "URL")]
    pub mirror: Option<String>,
    /// Keyring that must have signed the archive's InRelease.
    #[arg(long, env = "BINFMTCTL_KEYRING", value_name = "FILE", default_value = release::DEFAULT_KEYRING)]
    pub keyring: PathBuf,
    /// Emulator cache (default: /var/cache/binfmtctl as root, else $XDG_CACHE_HOME/binfmtctl).
    #[arg(long, env = "BINFMTCTL_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Where apt's sources are read from when no mirror is given.
    #[arg(long, value_name = "DIR", default_value = "/etc/apt", hide = true)]
    pub apt_dir: PathBuf,
}

/// How registries are talked to (every command that names an image).
#[derive(Debug, Args, Clone)]
pub struct RegistryArgs {
    /// Credentials for registries, USER[:PASSWORD] (default: the auth files).
    #[arg(
        long,
        global = true,
        value_name = "USER[:PASS]",
        hide_short_help = true
    )]
    pub creds: Option<String>,
    /// The auth file to read credentials from and `login` writes (default:
    /// $XDG_RUNTIME_DIR/containers/auth.json, then Docker's config.json).
    #[arg(
        long,
        global = true,
        env = "REGISTRY_AUTH_FILE",
        value_name = "FILE",
        hide_short_help = true
    )]
    pub authfile: Option<PathBuf>,
    /// Docker's configuration directory (its config.json: auths, credHelpers, credsStore).
    #[arg(
        long,
        global = true,
        env = "DOCKER_CONFIG",
        value_name = "DIR",
        hide = true
    )]
    pub docker_config: Option<PathBuf>,
    /// Extra CAs (`*.crt`) and client certificates (`*.cert` + `*.key`) for registries.
    #[arg(long, global = true, value_name = "DIR", hide_short_help = true)]
    pub cert_dir: Option<PathBuf>,
    /// Check registries' TLS certificates (`false` also allows plain HTTP to any host).
    #[arg(long, global = true, value_parser = clap::builder::BoolishValueParser::new(), default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL", hide_short_help = true)]
    pub tls_verify: bool,
}

impl RegistryArgs {
    /// The registry client's options.
    pub fn options(&self, printer: &Printer) -> crate::registry::Options {
        let dirs = base_dirs();
        let containers_auth = dirs
            .runtime_dir
            .as_ref()
            .map(|d| d.join("containers/auth.json"))
            .or_else(|| {
                dirs.home
                    .as_ref()
                    .map(|h| h.join(".config/containers/auth.json"))
            });
        let docker_config = self
            .docker_config
            .clone()
            .or_else(|| dirs.home.as_ref().map(|h| h.join(".docker")))
            .map(|d| d.join("config.json"));
        crate::registry::Options {
            creds: crate::registry::creds::CredentialSources {
                explicit: self
                    .creds
                    .as_deref()
                    .map(crate::registry::creds::Credentials::parse),
                authfile: self.authfile.clone(),
                containers_auth,
                docker_config,
            },
            cert_dir: self.cert_dir.clone(),
            tls_verify: self.tls_verify,
            progress: bars(printer),
            ..crate::registry::Options::default()
        }
    }
}

/// The base directories, from the environment (read here, once).
pub fn base_dirs() -> BaseDirs {
    let abs = |k: &str| {
        std::env::var_os(k)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    BaseDirs {
        privileged: nix::unistd::geteuid().is_root()
            && crate::binfmt::fs::in_initial_user_namespace(),
        home: abs("HOME"),
        data_home: abs("XDG_DATA_HOME"),
        cache_home: abs("XDG_CACHE_HOME"),
        runtime_dir: abs("XDG_RUNTIME_DIR"),
        uid: nix::unistd::geteuid().as_raw(),
    }
}

impl ArchiveArgs {
    /// The emulator cache.
    pub fn cache(&self) -> Cache {
        Cache::new(
            self.cache_dir
                .clone()
                .unwrap_or_else(|| Cache::default_dir(&base_dirs())),
        )
    }

    /// A resolver for `source`, searching `dirs` first, reporting downloads to the printer.
    pub fn resolver(
        &self,
        source: Source,
        dirs: Vec<PathBuf>,
        printer: &Printer,
    ) -> Result<Resolver<'static>, UsageError> {
        let suite = Suites::get()
            .resolve(self.suite.as_deref())
            .map_err(UsageError)?;
        Ok(Resolver {
            source,
            dirs,
            suite,
            mirror: self.mirror.clone(),
            apt_dir: self.apt_dir.clone(),
            keyring: self.keyring.clone(),
            cache: self.cache(),
            progress: bars(printer),
            offline: false,
        })
    }
}

impl EmulatorArgs {
    /// The resolver these flags describe.
    pub fn resolver(&self, printer: &Printer) -> Result<Resolver<'static>, UsageError> {
        self.archive
            .resolver(self.source, self.emulator_dirs.clone(), printer)
    }
}

/// Progress bars on stderr when it is a terminal and `-q` is not set; nothing otherwise.
pub fn bars(printer: &Printer) -> SharedReporter {
    if printer.quiet() || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        crate::progress::silent()
    } else {
        Arc::new(Bars(MultiProgress::new()))
    }
}

/// One indicatif bar per transfer.
#[derive(Debug)]
struct Bars(MultiProgress);

struct Bar(ProgressBar);

impl Transfer for Bar {
    fn advance(&self, n: u64) {
        self.0.inc(n);
    }
    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

impl Reporter for Bars {
    fn start(&self, label: &str, size: Option<u64>) -> Box<dyn Transfer> {
        let bar = match size {
            Some(n) => ProgressBar::new(n),
            None => ProgressBar::no_length(),
        };
        bar.set_style(
            ProgressStyle::with_template(
                "{msg} {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_message(label.to_string());
        Box::new(Bar(self.0.add(bar)))
    }
}
