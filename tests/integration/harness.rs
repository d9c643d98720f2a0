//! The harness behind `main`: every test is a [`Case`] registered next to its `fn` with
//! [`case!`](crate::case), run by libtest-mimic. A case declares what it needs ([`Need`]) and
//! which host resource it must have to itself ([`Serial`]); the harness checks each need once,
//! marks a case whose needs are unmet as ignored (or, in strict mode, fails it), and runs the
//! cases of one resource one at a time, across processes too.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use libtest_mimic::{Arguments, Failed, Trial};
use nix::fcntl::{Flock, FlockArg};

use crate::util;

/// One test: a plain `fn` in its module, what it needs and what it must have to itself.
pub struct Case {
    /// `module_path!()` where it was registered (`integration::binfmtctl`).
    pub module: &'static str,
    /// The function's name.
    pub name: &'static str,
    /// The test itself: it passes unless it panics.
    pub run: fn(),
    /// Prerequisites, in lists (a module's common set and the case's own); a case whose needs
    /// are unmet never runs.
    pub needs: &'static [&'static [Need]],
    /// A host resource the case changes: no other case holding it runs at the same time, in
    /// this process or another.
    pub serial: Option<Serial>,
}

inventory::collect!(Case);

impl Case {
    /// Every need, from all the lists.
    pub fn needs(&self) -> impl Iterator<Item = Need> + '_ {
        self.needs.iter().flat_map(|l| l.iter().copied())
    }

    /// The name shown and filtered on: `module::fn_name`.
    pub fn full_name(&self) -> String {
        let module = self
            .module
            .split_once("::")
            .map_or(self.module, |(_crate, m)| m);
        format!("{module}::{}", self.name)
    }
}

/// Registers a test `fn` with the harness:
///
/// ```ignore
/// fn installs_a_handler() { ... }
/// case! { installs_a_handler, needs = [Root, HostBinfmt, Busybox("arm64")], serial = HostBinfmt }
/// ```
///
/// `needs` is a list of [`Need`] variants (`[Root, Tool("skopeo")]`), the name of a
/// `const &[Need]` (`SANDBOX`), or such a name plus a list (`SANDBOX + [Tool("skopeo")]`);
/// `serial` names a [`Serial`] resource. Both are optional. Braces keep the registration on
/// one line (rustfmt leaves brace-delimited macro calls as they are). A test `fn` that is
/// never registered is dead code, which the compiler warns about (and CI's
/// `clippy -D warnings` refuses).
#[macro_export]
macro_rules! case {
    (
        $f:ident,
        needs = [$($need:ident $(($($arg:tt)*))?),* $(,)?]
        $(, serial = $serial:ident)? $(,)?
    ) => {
        $crate::case!(
            @submit $f,
            &[&[$($crate::harness::Need::$need $(($($arg)*))?),*]],
            $($serial)?
        );
    };
    ($f:ident, needs = $base:ident $(, serial = $serial:ident)? $(,)?) => {
        $crate::case!(@submit $f, &[$base], $($serial)?);
    };
    (
        $f:ident,
        needs = $base:ident + [$($need:ident $(($($arg:tt)*))?),* $(,)?]
        $(, serial = $serial:ident)? $(,)?
    ) => {
        $crate::case!(
            @submit $f,
            &[$base, &[$($crate::harness::Need::$need $(($($arg)*))?),*]],
            $($serial)?
        );
    };
    ($f:ident $(, serial = $serial:ident)? $(,)?) => {
        $crate::case!(@submit $f, &[], $($serial)?);
    };
    (@submit $f:ident, $needs:expr, $($serial:ident)?) => {
        ::inventory::submit! {
            $crate::harness::Case {
                module: ::core::module_path!(),
                name: ::core::stringify!($f),
                run: $f,
                needs: $needs,
                serial: $crate::case!(@serial $($serial)?),
            }
        }
    };
    (@serial) => {
        ::core::option::Option::None
    };
    (@serial $serial:ident) => {
        ::core::option::Option::Some($crate::harness::Serial::$serial)
    };
}

/// A prerequisite of a case, checked once per run and cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Need {
    /// Running as root (effective user ID 0).
    Root,
    /// The host's binfmt_misc at `/proc/sys/fs/binfmt_misc` (the test mounts it if needed).
    HostBinfmt,
    /// The base images `tests/fixtures/make-images.sh` builds (all but the Debian tree).
    Images,
    /// The Debian arm64 tree, `debian-arm64.tar` (`make-images.sh --with-debian`).
    DebianImage,
    /// Debian's busybox-static for a Debian architecture (`arm64`, `armhf`, `s390x`,
    /// `ppc64el`), from `tests/run.sh`.
    Busybox(&'static str),
    /// A command on the PATH.
    Tool(&'static str),
    /// A module `python3` can import.
    PythonModule(&'static str),
    /// An installed QEMU for a target (`/usr/bin/qemu-<t>-static`, `/usr/bin/qemu-<t>`, or the
    /// same in `/usr/local/bin`): what `binfmtctl install --source system` registers.
    Emulator(&'static str),
    /// Debian's `/usr/lib/binfmt.d/qemu-*.conf` (qemu-user-static).
    QemuBinfmtConfs,
    /// A running Docker engine (`docker info` succeeds).
    Docker,
    /// User namespaces for this user (`unshare -Urm true`).
    UserNs,
    /// A binfmt_misc of its own in a user namespace (Linux 6.7+).
    PrivateBinfmt,
    /// A new mount namespace (`unshare -m true`).
    MountNs,
    /// `chattr +i` works on a directory in the temporary directory's file system.
    ImmutableFiles,
    /// A Debian mirror is known: from the apt sources, or `BINFMTCTL_MIRROR`.
    Mirror,
    /// That mirror accepts a connection.
    Archive,
    /// The local copy of trixie's archive files under the fixtures (`util::mirror_fixture`),
    /// downloaded from the mirror the first time.
    MirrorFixture,
}

/// What a sandbox test needs: root, the host's binfmt_misc with the system's emulators for
/// arm64, arm and s390x, and the base images.
pub const SANDBOX: &[Need] = &[
    Need::Root,
    Need::HostBinfmt,
    Need::Emulator("aarch64"),
    Need::Emulator("arm"),
    Need::Emulator("s390x"),
    Need::Images,
];

/// Image fixtures the cases use (`Need::Images`).
const IMAGES: &[&str] = &[
    "rootfs-busybox-arm64.tar",
    "rootfs-busybox-arm64.tar.gz",
    "rootfs-busybox-arm64.tar.xz",
    "rootfs-busybox-arm64.tar.zst",
    "rootfs-busybox-armhf.tar",
    "rootfs-busybox-s390x.tar",
    "oci-umoci",
    "oci-buildah",
    "oci-layers",
    "oci-archive-arm64.tar",
    "evil",
];

impl Need {
    /// `Ok` if the need is met, else why not (what the run is missing, and what to do).
    fn check(self) -> Result<(), String> {
        let ok = |met: bool, why: &dyn Fn() -> String| if met { Ok(()) } else { Err(why()) };
        match self {
            Need::Root => ok(util::is_root(), &|| "needs root".into()),
            Need::HostBinfmt => ok(Path::new("/proc/sys/fs/binfmt_misc").is_dir(), &|| {
                "this kernel has no binfmt_misc (/proc/sys/fs/binfmt_misc is missing)".into()
            }),
            Need::Images => match IMAGES.iter().find(|n| util::image(n).is_none()) {
                None => Ok(()),
                Some(n) => Err(format!(
                    "image fixture {n} is missing in {}; run tests/run.sh (tests/fixtures/make-images.sh)",
                    util::fixtures().join("images").display()
                )),
            },
            Need::DebianImage => ok(util::image("debian-arm64.tar").is_some(), &|| {
                "debian-arm64.tar is missing; tests/run.sh builds it (make-images.sh --with-debian)"
                    .into()
            }),
            Need::Busybox(arch) => ok(util::busybox(arch).is_some(), &|| {
                format!("the busybox-static fixture for {arch} is missing; run tests/run.sh")
            }),
            Need::Tool(cmd) => ok(util::have(cmd), &|| {
                format!("{cmd} is not installed (tests/run.sh installs it)")
            }),
            Need::PythonModule(m) => ok(
                succeeds(Command::new("python3").args(["-c", &format!("import {m}")])),
                &|| format!("python3 cannot import {m} (tests/run.sh installs python3-{m})"),
            ),
            Need::Emulator(t) => ok(installed_emulator(t).is_some(), &|| {
                format!("no installed qemu-{t} emulator (apt-get install qemu-user-static)")
            }),
            Need::QemuBinfmtConfs => {
                let confs = std::fs::read_dir("/usr/lib/binfmt.d")
                    .map(|rd| {
                        rd.filter_map(Result::ok)
                            .filter(|e| {
                                let n = e.file_name().to_string_lossy().into_owned();
                                n.starts_with("qemu-") && n.ends_with(".conf")
                            })
                            .count()
                    })
                    .unwrap_or(0);
                ok(confs >= 20, &|| {
                    "Debian's qemu-user-static is not installed (no /usr/lib/binfmt.d/qemu-*.conf); `apt-get install qemu-user-static`".into()
                })
            }
            Need::Docker => ok(succeeds(Command::new("docker").arg("info")), &|| {
                "no Docker engine runs here (`docker info` failed)".into()
            }),
            Need::UserNs => ok(util::userns_works(), &|| {
                "user namespaces are not available (`unshare -Urm true` failed)".into()
            }),
            Need::PrivateBinfmt => ok(util::private_binfmt_works(), &|| {
                "this kernel cannot mount binfmt_misc in a user namespace (needs Linux 6.7+)".into()
            }),
            Need::MountNs => ok(
                succeeds(Command::new("unshare").args(["-m", "true"])),
                &|| "cannot make a mount namespace (`unshare -m true` failed)".into(),
            ),
            Need::ImmutableFiles => immutable_files(),
            Need::Mirror => util::system_mirror().map(drop).ok_or_else(|| {
                "no Debian mirror in the apt sources and BINFMTCTL_MIRROR unset".into()
            }),
            Need::Archive => {
                need(Need::Mirror)?;
                reachable(&util::system_mirror().unwrap_or_default())
            }
            Need::MirrorFixture => ok(util::mirror_fixture("trixie").is_some(), &|| {
                "cannot build the local mirror fixture (no reachable Debian mirror)".into()
            }),
        }
    }
}

/// Did the command run and exit 0 (its output discarded)?
fn succeeds(c: &mut Command) -> bool {
    c.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The installed emulator for a QEMU target, where `binfmtctl install --source system` looks.
pub fn installed_emulator(target: &str) -> Option<PathBuf> {
    ["/usr/bin", "/usr/local/bin"]
        .iter()
        .flat_map(|d| {
            [
                Path::new(d).join(format!("qemu-{target}-static")),
                Path::new(d).join(format!("qemu-{target}")),
            ]
        })
        .find(|p| p.exists())
}

fn immutable_files() -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| format!("no temporary directory: {e}"))?;
    let chattr = |flag: &str| succeeds(Command::new("chattr").arg(flag).arg(dir.path()));
    let works = chattr("+i");
    chattr("-i");
    if works {
        Ok(())
    } else {
        Err(format!(
            "chattr +i failed in {} (the file system lacks it, or chattr is missing)",
            std::env::temp_dir().display()
        ))
    }
}

/// Does `url`'s host accept a TCP connection (within 10 seconds)?
fn reachable(url: &str) -> Result<(), String> {
    use std::net::{TcpStream, ToSocketAddrs};
    let unreachable =
        |e: &dyn std::fmt::Display| format!("the Debian mirror {url} is unreachable: {e}");
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| unreachable(&"not a URL"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    let authority = authority.rsplit('@').next().unwrap_or_default();
    let default_port = if scheme == "https" { 443 } else { 80 };
    let addr = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        authority.to_string()
    } else {
        format!("{authority}:{default_port}")
    };
    let addrs: Vec<_> = addr
        .to_socket_addrs()
        .map_err(|e| unreachable(&e))?
        .collect();
    let mut last = String::from("no address");
    for a in addrs {
        match TcpStream::connect_timeout(&a, Duration::from_secs(10)) {
            Ok(_) => return Ok(()),
            Err(e) => last = e.to_string(),
        }
    }
    Err(unreachable(&last))
}

/// A need's check, done once: threads asking for it meanwhile wait for the outcome.
type Checked = Arc<OnceLock<Result<(), String>>>;

/// The cached outcome of each need's check.
fn need(n: Need) -> Result<(), String> {
    static CHECKED: OnceLock<Mutex<HashMap<Need, Checked>>> = OnceLock::new();
    let cell = CHECKED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(n)
        .or_default()
        .clone();
    // Checked outside the map's lock: another thread asking for the same need waits for this
    // check, one asking for another need does not.
    cell.get_or_init(|| n.check()).clone()
}

/// Why a case cannot run: each unmet need's reason, or None when all are met.
fn unmet(needs: impl Iterator<Item = Need>) -> Option<String> {
    let mut reasons: Vec<String> = needs.filter_map(|n| need(n).err()).collect();
    reasons.dedup();
    (!reasons.is_empty()).then(|| reasons.join("; "))
}

/// A host resource that cases take turns with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serial {
    /// The VM-global binfmt_misc handlers (`/proc/sys/fs/binfmt_misc`), and the host state
    /// that goes with them.
    HostBinfmt,
}

impl Serial {
    fn mutex(self) -> &'static Mutex<()> {
        static HOST_BINFMT: Mutex<()> = Mutex::new(());
        match self {
            Serial::HostBinfmt => &HOST_BINFMT,
        }
    }

    fn lock_file_name(self) -> &'static str {
        match self {
            Serial::HostBinfmt => "emukit-tests-host-binfmt.lock",
        }
    }

    /// Waits until this process's other cases and every other process are done with the
    /// resource: an in-process mutex, then `flock` on the resource's lock file.
    fn take(self) -> SerialGuard {
        let guard = self.mutex().lock().unwrap_or_else(PoisonError::into_inner);
        let (file, path) = lock_file(self.lock_file_name());
        let flock = Flock::lock(file, FlockArg::LockExclusive)
            .unwrap_or_else(|(_, e)| panic!("cannot lock {}: {e}", path.display()));
        SerialGuard {
            _flock: flock,
            _guard: guard,
        }
    }
}

/// Held while a case runs; released (file lock first) on drop.
struct SerialGuard {
    _flock: Flock<File>,
    _guard: MutexGuard<'static, ()>,
}

/// Opens the lock file in `/run/lock`, or in the temporary directory when `/run/lock` is not
/// writable. A lock file another user made (read-only to us) is opened read-only: `flock`
/// needs no write access, and both users then lock the same file.
fn lock_file(name: &str) -> (File, PathBuf) {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let dirs = [PathBuf::from("/run/lock"), std::env::temp_dir()];
    for dir in &dirs {
        let path = dir.join(name);
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o666)
            .open(&path)
        {
            Ok(f) => {
                // Past the umask, so that other users can open it too (only the owner can).
                let _ = f.set_permissions(std::fs::Permissions::from_mode(0o666));
                return (f, path);
            }
            Err(_) => {
                if let Ok(f) = File::open(&path) {
                    return (f, path);
                }
            }
        }
    }
    panic!("cannot open a lock file {name} in {dirs:?}");
}

/// Strict mode (`EMUKIT_TEST_STRICT` set, not empty or `0`): unmet needs fail the case.
fn strict() -> bool {
    std::env::var_os("EMUKIT_TEST_STRICT").is_some_and(|v| !v.is_empty() && v != "0")
}

thread_local! {
    /// Set while a case runs on this thread: its panic is recorded instead of printed.
    static IN_CASE: Cell<bool> = const { Cell::new(false) };
    /// The first panic of the running case: location, message and (with RUST_BACKTRACE) the
    /// backtrace.
    static PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// A panic inside a case becomes its failure message (with the location, which libtest-mimic
/// would drop); other panics (threads a case starts) print as usual.
fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !IN_CASE.get() {
            return default(info);
        }
        let mut msg = info.to_string();
        let bt = std::backtrace::Backtrace::capture();
        if bt.status() == std::backtrace::BacktraceStatus::Captured {
            msg.push_str("\nstack backtrace:\n");
            msg.push_str(&short_backtrace(&bt.to_string()));
        }
        PANIC.with_borrow_mut(|p| {
            p.get_or_insert(msg);
        });
    }));
}

/// The frames of a backtrace in this package's own files (the harness's left out too), unless
/// `RUST_BACKTRACE=full` asks for all.
fn short_backtrace(bt: &str) -> String {
    if std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v == "full") {
        return bt.to_string();
    }
    let ours = |at: &str| {
        let path = at.trim_start().trim_start_matches("at ");
        let in_package = [
            env!("CARGO_MANIFEST_DIR"),
            "./tests/",
            "./src/",
            "tests/",
            "src/",
        ]
        .iter()
        .any(|p| path.starts_with(p));
        in_package && !path.contains("tests/integration/harness.rs")
    };
    let lines: Vec<&str> = bt.lines().collect();
    let mut out = String::new();
    for (i, l) in lines.iter().enumerate() {
        if let Some(at) = lines.get(i + 1)
            && !l.trim_start().starts_with("at ")
            && at.trim_start().starts_with("at ")
            && ours(at)
        {
            out.push_str(&format!("{l}\n{at}\n"));
        }
    }
    out.push_str("(frames outside this package left out; RUST_BACKTRACE=full shows them)");
    out
}

/// Runs a case on this thread: Ok unless it panicked.
fn run_case(case: &'static Case) -> Result<(), Failed> {
    if let Some(why) = unmet(case.needs()) {
        return Err(format!("cannot run: {why}").into());
    }
    let _serial = case.serial.map(Serial::take);
    PANIC.take();
    IN_CASE.set(true);
    let outcome = std::panic::catch_unwind(case.run);
    IN_CASE.set(false);
    let panic = PANIC.take();
    outcome.map_err(|_| panic.unwrap_or_else(|| "panicked".into()).into())
}

/// The test binary's `main`.
pub fn main() -> ! {
    let args = Arguments::from_args();
    let mut cases: Vec<&'static Case> = inventory::iter::<Case>.into_iter().collect();
    cases.sort_by_key(|c| c.full_name());
    if let Some(w) = cases
        .windows(2)
        .find(|w| w[0].full_name() == w[1].full_name())
    {
        panic!("{} is registered twice", w[0].full_name());
    }

    // Needs are checked for the cases the name filters select (a plain `--list` checks
    // nothing), several at a time: some start processes or reach the network.
    let by_name = Arguments {
        ignored: false,
        ..args.clone()
    };
    let selected: Vec<&'static Case> = cases
        .iter()
        .copied()
        .filter(|c| !by_name.is_filtered_out(&Trial::test(c.full_name(), || Ok(()))))
        .collect();
    if !args.list || args.ignored {
        let mut distinct: Vec<Need> = selected.iter().flat_map(|c| c.needs()).collect();
        distinct.sort();
        distinct.dedup();
        std::thread::scope(|s| {
            for n in distinct {
                s.spawn(move || need(n));
            }
        });
    }
    let strict = strict();
    let skipped = |c: &Case| -> bool {
        !strict
            && (!args.list || args.ignored)
            && selected.iter().any(|s| std::ptr::eq(*s, c))
            && unmet(c.needs()).is_some()
    };

    // The reasons, once each, before the run.
    if !strict && !args.list {
        let mut by_reason: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for c in selected.iter().filter(|c| skipped(c)) {
            for n in c.needs() {
                if let Err(why) = need(n) {
                    let names = by_reason.entry(why).or_default();
                    if names.last() != Some(&c.full_name()) {
                        names.push(c.full_name());
                    }
                }
            }
        }
        if !by_reason.is_empty() {
            let n = selected.iter().filter(|c| skipped(c)).count();
            eprintln!(
                "{n} of {} tests are ignored: what they need is missing (EMUKIT_TEST_STRICT=1 makes them fail instead)",
                selected.len()
            );
            for (why, names) in &by_reason {
                eprintln!("  {why}: {}", names.join(", "));
            }
        }
    }

    let trials = |cs: &[&'static Case]| -> Vec<Trial> {
        cs.iter()
            .map(|&c| Trial::test(c.full_name(), move || run_case(c)).with_ignored_flag(skipped(c)))
            .collect()
    };
    // With several threads, cases that take a resource alternate with cases that take none,
    // so that a thread waiting for the resource is the exception.
    let order: Vec<&'static Case> = if args.test_threads == Some(1) || args.list {
        cases
    } else {
        let (mut serial, mut free): (Vec<_>, Vec<_>) =
            cases.into_iter().partition(|c| c.serial.is_some());
        serial.reverse();
        free.reverse();
        let mut order = Vec::new();
        while !(serial.is_empty() && free.is_empty()) {
            order.extend(serial.pop());
            order.extend(free.pop());
        }
        order
    };
    install_panic_hook();
    libtest_mimic::run(&args, trials(&order)).exit()
}
