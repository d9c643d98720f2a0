//! Shared test helpers: running our binaries, fixtures, the probes behind `harness::Need`, and
//! a guard that restores the host's binfmt_misc entries.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use emukit::binfmt::{BinfmtFs, Entry};

/// The `binfmtctl` binary under test.
pub fn binfmtctl_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_binfmtctl"))
}

/// The `emubuild` binary under test.
pub fn emubuild_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_emubuild"))
}

/// A command's outcome with convenient accessors.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from_output(o: Output) -> Run {
        Run {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    #[track_caller]
    pub fn success(self) -> Run {
        assert_eq!(
            self.code,
            Some(0),
            "expected success\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    #[track_caller]
    pub fn code_is(self, code: i32) -> Run {
        assert_eq!(
            self.code,
            Some(code),
            "expected exit {code}\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", self.stdout))
    }
}

/// Runs `binfmtctl` with a private state directory for ownership records.
pub fn binfmtctl(state: &Path, args: &[&str]) -> Run {
    binfmtctl_env(state, args, &[])
}

/// Runs `binfmtctl` with extra environment variables.
pub fn binfmtctl_env(state: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut c = Command::new(binfmtctl_bin());
    c.args(args)
        .env("BINFMTCTL_STATE_DIR", state)
        .env_remove("BINFMTCTL_ROOT");
    for (k, v) in env {
        c.env(k, v);
    }
    Run::from_output(c.output().expect("run binfmtctl"))
}

/// Where `tests/run.sh` puts fixtures.
pub fn fixtures() -> PathBuf {
    std::env::var_os("EMUKIT_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-fixtures"))
}

/// Debian's static busybox for a Debian architecture (arm64, armhf, s390x, ppc64el).
pub fn busybox(debian_arch: &str) -> Option<PathBuf> {
    let p = fixtures().join("busybox").join(debian_arch).join("busybox");
    p.exists().then_some(p)
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Can this process use user namespaces (`unshare -Urm`)?
pub fn userns_works() -> bool {
    Command::new("unshare")
        .args(["-Urm", "true"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Can a user namespace mount its own binfmt_misc (Linux 6.7+)?
pub fn private_binfmt_works() -> bool {
    Command::new("unshare")
        .args([
            "-Urm",
            "sh",
            "-c",
            "mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc && test -e /proc/sys/fs/binfmt_misc/register",
        ])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Runs a shell script inside a new user and mount namespace (a private binfmt_misc can be
/// mounted there); `$BINFMTCTL` names the binary.
pub fn in_userns(script: &str, state: &Path) -> Run {
    let o = Command::new("unshare")
        .args(["-Urm", "sh", "-ec", script])
        .env("BINFMTCTL", binfmtctl_bin())
        .env("BINFMTCTL_STATE_DIR", state)
        .env_remove("BINFMTCTL_ROOT")
        .output()
        .expect("unshare");
    Run::from_output(o)
}

/// Saves the host's binfmt_misc state and restores it on drop: entries the test added are
/// removed, entries it removed (or that `take` set aside) are registered again in their
/// original order, enabled states come back, and a mount made by the test is undone.
pub struct HostBinfmt {
    fs: BinfmtFs,
    was_mounted: bool,
    before: Vec<Entry>,
}

impl HostBinfmt {
    /// Saves the state; mounts binfmt_misc if needed (and remembers to unmount).
    pub fn save() -> HostBinfmt {
        let fs = BinfmtFs::new("/proc/sys/fs/binfmt_misc");
        let was_mounted = fs.is_mounted();
        fs.ensure_mounted().expect("mount binfmt_misc");
        let before = fs.entries().expect("list entries");
        HostBinfmt {
            fs,
            was_mounted,
            before,
        }
    }

    pub fn fs(&self) -> &BinfmtFs {
        &self.fs
    }

    /// Sets aside existing entries with these names for the test's duration.
    pub fn take(&self, names: &[&str]) {
        for n in names {
            if self.before.iter().any(|e| e.name == *n) {
                self.fs.remove(n).expect("set aside an entry");
            }
        }
    }
}

impl Drop for HostBinfmt {
    fn drop(&mut self) {
        let now = self.fs.entries().unwrap_or_default();
        for e in &now {
            match self.before.iter().find(|b| b.name == e.name) {
                Some(b) if b == e => {}
                _ => {
                    let _ = self.fs.remove(&e.name);
                }
            }
        }
        // `before` is newest first; re-register oldest first to restore precedence.
        let present: Vec<String> = self.fs.names().unwrap_or_default();
        for b in self.before.iter().rev() {
            if !present.contains(&b.name) {
                if let Err(e) = self.fs.register(&b.to_registration()) {
                    eprintln!("could not restore binfmt entry {}: {e}", b.name);
                }
                if !b.enabled {
                    let _ = self.fs.set_enabled(&b.name, false);
                }
            }
        }
        if !self.was_mounted {
            let _ = nix::mount::umount(self.fs.root());
        }
    }
}

/// A tiny HTTP/1.1 file server on 127.0.0.1 for mirror tests. Serves `root`; `tamper` flips one
/// byte of one file (path relative to root, byte offset) as it is sent. Stops on drop.
pub struct MirrorServer {
    pub url: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    addr: std::net::SocketAddr,
    handle: Option<std::thread::JoinHandle<()>>,
}

/// A tamper offset that appends one byte to the file instead of flipping one.
pub const APPEND_BYTE: u64 = u64::MAX;

impl MirrorServer {
    /// Serves `root`; `tamper` flips the byte at an offset of one file (or, at
    /// [`APPEND_BYTE`], serves it one byte longer).
    pub fn start(root: &Path, tamper: Option<(&str, u64)>) -> MirrorServer {
        MirrorServer::start_with(root, tamper, None)
    }

    /// Serves `root`, but the first `times` transfers of `path` break off halfway through the
    /// body (a flaky network).
    pub fn flaky(root: &Path, path: &str, times: usize) -> MirrorServer {
        MirrorServer::start_with(root, None, Some((path.to_string(), times)))
    }

    fn start_with(
        root: &Path,
        tamper: Option<(&str, u64)>,
        flaky: Option<(String, usize)>,
    ) -> MirrorServer {
        use std::io::{BufRead, BufReader, Read, Write};
        let broken = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = stop.clone();
        let root = root.to_path_buf();
        let tamper = tamper.map(|(p, o)| (p.to_string(), o));
        let handle = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut conn) = conn else { continue };
                let root = root.clone();
                let tamper = tamper.clone();
                let flaky = flaky.clone();
                let broken = broken.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(conn.try_clone().unwrap());
                    let mut request = String::new();
                    if reader.read_line(&mut request).is_err() {
                        return;
                    }
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).is_err() || h == "\r\n" || h.is_empty() {
                            break;
                        }
                    }
                    let path = request
                        .split_whitespace()
                        .nth(1)
                        .unwrap_or("/")
                        .trim_start_matches('/')
                        .to_string();
                    let file = root.join(&path);
                    let Ok(mut f) = std::fs::File::open(&file) else {
                        let _ = conn.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                        return;
                    };
                    let grow = tamper
                        .as_ref()
                        .is_some_and(|(tp, off)| *tp == path && *off == APPEND_BYTE);
                    let len = f.metadata().unwrap().len() + u64::from(grow);
                    let _ = write!(
                        conn,
                        "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
                    );
                    // Break this transfer off halfway?
                    let cut = flaky.as_ref().is_some_and(|(p, times)| {
                        *p == path && broken.fetch_add(1, Ordering::SeqCst) < *times
                    });
                    let mut sent = 0u64;
                    let mut buf = vec![0u8; 1 << 16];
                    loop {
                        if cut && sent >= len / 2 {
                            return;
                        }
                        let n = match f.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if let Some((tp, off)) = &tamper
                            && *tp == path
                            && *off >= sent
                            && *off < sent + n as u64
                        {
                            buf[(*off - sent) as usize] ^= 0x01;
                        }
                        if conn.write_all(&buf[..n]).is_err() {
                            return;
                        }
                        sent += n as u64;
                    }
                    if grow {
                        let _ = conn.write_all(b"\n");
                    }
                });
            }
        });
        MirrorServer {
            url: format!("http://{addr}/debian"),
            stop,
            addr,
            handle: Some(handle),
        }
    }
}

impl Drop for MirrorServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(self.addr);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// The Debian mirror the system uses (its apt sources), or `BINFMTCTL_MIRROR`.
pub fn system_mirror() -> Option<String> {
    emukit::emulator::mirror::from_apt_sources(Path::new("/etc/apt"))
        .or_else(|| std::env::var("BINFMTCTL_MIRROR").ok())
}

/// A copy of the real archive's files for one suite, for a local mirror:
/// `<fixtures>/mirror/debian/dists/<suite>/InRelease`, its amd64 Packages.xz, and the emulator
/// package's `.deb`. Downloaded once from the system's Debian mirror; None when unreachable.
pub fn mirror_fixture(suite: &str) -> Option<(PathBuf, String, String)> {
    use emukit::emulator::download::Downloader;
    let root = fixtures().join("mirror");
    let base = root.join("debian");
    let suite_cfg = emukit::emulator::suites::Suites::get().find(suite)?;
    let dists = base.join("dists").join(suite);
    let index_rel = "main/binary-amd64/Packages.xz";
    let real = system_mirror()?;
    let dl = Downloader::new(emukit::progress::silent());
    if !dists.join(index_rel).exists() {
        std::fs::create_dir_all(dists.join("main/binary-amd64")).ok()?;
        let inrelease = dl
            .get_bytes(&format!("{real}/dists/{suite}/InRelease"), 1 << 24)
            .ok()?;
        let packages = dl
            .get_bytes(&format!("{real}/dists/{suite}/{index_rel}"), 1 << 28)
            .ok()?;
        std::fs::write(dists.join("InRelease"), inrelease).ok()?;
        std::fs::write(dists.join(index_rel), packages).ok()?;
    }
    let compressed = std::fs::read(dists.join(index_rel)).ok()?;
    let mut index = String::new();
    std::io::Read::read_to_string(
        &mut liblzma::read::XzDecoder::new(&compressed[..]),
        &mut index,
    )
    .ok()?;
    let pkg = emukit::emulator::release::find_package(&index, &suite_cfg.package)?;
    let deb = base.join(&pkg.filename);
    if !deb.exists() {
        std::fs::create_dir_all(deb.parent()?).ok()?;
        let bytes = dl
            .get_bytes(&format!("{real}/{}", pkg.filename), pkg.size + 1)
            .ok()?;
        std::fs::write(&deb, bytes).ok()?;
    }
    Some((
        root,
        format!("debian/{}", pkg.filename),
        format!("debian/dists/{suite}/{index_rel}"),
    ))
}

/// Handlers for the given targets registered as `binfmtctl install` does with no flags (P and
/// F, from the system's emulators) for the test's duration; the host's previous entries come
/// back on drop.
pub struct Emulation {
    _host: HostBinfmt,
    _state: tempfile::TempDir,
}

impl Emulation {
    pub fn ensure(targets: &[&str]) -> Emulation {
        let host = HostBinfmt::save();
        let names: Vec<String> = targets.iter().map(|t| format!("qemu-{t}")).collect();
        host.take(&names.iter().map(String::as_str).collect::<Vec<_>>());
        let state = tempfile::tempdir().unwrap();
        let mut args = vec!["install", "--source", "system"];
        args.extend(targets);
        binfmtctl(state.path(), &args).success();
        Emulation {
            _host: host,
            _state: state,
        }
    }
}

/// Runs `emubuild` with a store.
pub fn emubuild(store: &Path, args: &[&str]) -> Run {
    emubuild_with(store, args, None, &[])
}

/// Runs a tool no one here wrote (skopeo, umoci, buildah...).
pub fn tool(cmd: &str, args: &[&str]) -> Run {
    Run::from_output(
        Command::new(cmd)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{cmd}: {e}")),
    )
}

/// Is a command on the PATH?
pub fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Runs `emubuild` with a store, optional stdin and extra environment.
pub fn emubuild_with(
    store: &Path,
    args: &[&str],
    stdin: Option<&[u8]>,
    env: &[(&str, &str)],
) -> Run {
    use std::io::Write;
    let mut c = Command::new(emubuild_bin());
    c.args(args)
        .env("EMUBUILD_STORE", store)
        .env_remove("BINFMTCTL_ROOT");
    for (k, v) in env {
        c.env(k, v);
    }
    c.stdin(if stdin.is_some() {
        std::process::Stdio::piped()
    } else {
        std::process::Stdio::null()
    })
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().expect("run emubuild");
    if let Some(input) = stdin {
        let mut s = child.stdin.take().unwrap();
        s.write_all(input).unwrap();
    }
    Run::from_output(child.wait_with_output().unwrap())
}

/// A base-image fixture made by tests/fixtures/make-images.sh.
pub fn image(name: &str) -> Option<PathBuf> {
    let p = fixtures().join("images").join(name);
    p.exists().then_some(p)
}

/// A temporary directory whose path is all lowercase (buildah derives image names from paths).
pub fn lowercase_tempdir() -> tempfile::TempDir {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    tempfile::Builder::new()
        .prefix(&format!("emukit-{}-{n}", std::process::id()))
        .rand_bytes(0)
        .tempdir()
        .expect("temporary directory")
}
