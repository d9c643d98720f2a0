//! Embeds the probe programs under `probes/bin/` (one tiny static program per QEMU target) and
//! the arch table, so the binaries carry everything they need.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("probes/bin");
    println!("cargo:rerun-if-changed=probes/bin");
    println!("cargo:rerun-if-changed=qemu-configs");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let mut src = String::from(
        "/// (target, program) for every probe shipped in `probes/bin/`.\npub static PROBES: &[(&str, &[u8])] = &[\n",
    );
    for n in &names {
        println!("cargo:rerun-if-changed=probes/bin/{n}");
        let path = dir.join(n);
        writeln!(
            src,
            "    ({n:?}, include_bytes!({:?})),",
            path.display().to_string()
        )
        .unwrap();
    }
    src.push_str("];\n");
    let out = Path::new(&std::env::var("OUT_DIR").unwrap()).join("probes.rs");
    std::fs::write(out, src).unwrap();
}
