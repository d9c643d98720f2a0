//! Emulator extraction against `dpkg-deb -x`, on the same already-downloaded `.deb`, in one run.
//!
//!     cargo bench --bench extract -- [PATH.deb] [--suite trixie|bookworm] [--runs N]
//!
//! Without a path it uses the package `tests/run.sh` stored under `target/test-fixtures/mirror`.
//! Prints the median of N runs for each side and the ratio (ours / dpkg-deb). Not a test: no
//! assertion on time.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use emukit::arch::Table;
use emukit::emulator::deb;
use emukit::emulator::suites::Suites;

fn find_fixture() -> Option<PathBuf> {
    let pool = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/test-fixtures/mirror/debian/pool/main/q/qemu");
    let mut debs: Vec<PathBuf> = std::fs::read_dir(pool)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    debs.sort();
    debs.pop()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let mut deb_path = None;
    let mut suite = "trixie".to_string();
    let mut runs = 3;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--suite" => suite = args.next().expect("--suite NAME"),
            "--runs" => runs = args.next().and_then(|n| n.parse().ok()).expect("--runs N"),
            p => deb_path = Some(PathBuf::from(p)),
        }
    }
    let Some(deb_path) = deb_path.or_else(find_fixture) else {
        eprintln!(
            "no .deb given and no fixture found; run `tests/run.sh fetch` once or pass a path to qemu-user_*.deb"
        );
        std::process::exit(2);
    };
    let suite = Suites::get().resolve(Some(&suite)).expect("suite");
    let work = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-extract");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let size = std::fs::metadata(&deb_path).unwrap().len();
    println!(
        "package: {} ({:.1} MB)",
        deb_path.display(),
        size as f64 / 1e6
    );

    let mut ours = Vec::new();
    let mut dpkg = Vec::new();
    let mut extracted = 0;
    // One file read before any clock starts, and the two sides alternate which goes first, so
    // neither is favoured by the page cache.
    std::io::copy(
        &mut std::fs::File::open(&deb_path).unwrap(),
        &mut std::io::sink(),
    )
    .unwrap();
    for i in 0..runs {
        let run_ours = |ours: &mut Vec<Duration>, extracted: &mut usize| {
            // Ours: every emulator of the arch table that the package has.
            let out = work.join(format!("ours-{i}"));
            std::fs::create_dir_all(&out).unwrap();
            let wanted: HashMap<String, PathBuf> = Table::get()
                .targets()
                .iter()
                .map(|t| {
                    (
                        suite.emulator_path(&t.name),
                        out.join(format!("qemu-{}", t.name)),
                    )
                })
                .collect();
            let start = Instant::now();
            let f = std::fs::File::open(&deb_path).unwrap();
            let (found, _) = deb::extract(std::io::BufReader::new(f), &wanted).expect("extract");
            ours.push(start.elapsed());
            *extracted = found.len();
            found
        };
        let run_dpkg = |dpkg: &mut Vec<Duration>| {
            // Peer: dpkg-deb -x of the same file.
            let out = work.join(format!("dpkg-{i}"));
            let start = Instant::now();
            let st = Command::new("dpkg-deb")
                .arg("-x")
                .arg(&deb_path)
                .arg(&out)
                .status()
                .expect("dpkg-deb");
            dpkg.push(start.elapsed());
            assert!(st.success(), "dpkg-deb -x failed");
            out
        };
        let (found, out) = if i % 2 == 0 {
            let f = run_ours(&mut ours, &mut extracted);
            (f, run_dpkg(&mut dpkg))
        } else {
            let o = run_dpkg(&mut dpkg);
            (run_ours(&mut ours, &mut extracted), o)
        };
        // Same bytes for every emulator.
        for e in &found {
            let theirs = out.join(&e.archive_path);
            assert_eq!(
                emukit::digest::sha256_file(&theirs).unwrap().0,
                e.sha256,
                "{}",
                e.archive_path
            );
        }
    }
    let (o, d) = (median(ours), median(dpkg));
    println!("emulators extracted: {extracted}");
    println!(
        "binfmtctl extraction: {:.3} s (median of {runs})",
        o.as_secs_f64()
    );
    println!(
        "dpkg-deb -x:          {:.3} s (median of {runs})",
        d.as_secs_f64()
    );
    println!(
        "ratio (ours / dpkg-deb): {:.2}",
        o.as_secs_f64() / d.as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&work);
}
