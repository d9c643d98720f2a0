//! The arch table against independent sources, byte for byte: Debian's
//! `/usr/lib/binfmt.d/qemu-*.conf` (from qemu-user-static), and QEMU's own
//! scripts/qemu-binfmt-conf.sh for the targets Debian does not ship on this host.

use std::collections::BTreeSet;
use std::path::Path;

use emukit::arch::{Table, decode_escaped};
use emukit::binfmt::Registration;

use crate::case;

/// Lines from QEMU's scripts/qemu-binfmt-conf.sh for targets Debian skips on x86 hosts.
const QEMU_UPSTREAM: &[(&str, &str, &str)] = &[
    (
        "i386",
        r"\x7fELF\x01\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x03\x00",
        r"\xff\xff\xff\xff\xff\xfe\xfe\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff",
    ),
    (
        "x86_64",
        r"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x3e\x00",
        r"\xff\xff\xff\xff\xff\xfe\xfe\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff",
    ),
    (
        "aarch64_be",
        r"\x7fELF\x02\x02\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7",
        r"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff",
    ),
];

fn magic_and_mask_match_debian_byte_for_byte() {
    let dir = Path::new("/usr/lib/binfmt.d");
    let confs: Vec<_> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    let n = p.file_name().unwrap().to_string_lossy();
                    n.starts_with("qemu-") && n.ends_with(".conf")
                })
                .collect()
        })
        .unwrap_or_default();
    let table = Table::get();
    let mut compared = BTreeSet::new();
    for path in confs {
        let text = std::fs::read_to_string(&path).unwrap();
        let line = text.lines().find(|l| l.starts_with(':')).unwrap();
        let reg = Registration::parse_line(line).unwrap();
        let target_name = reg.name.strip_prefix("qemu-").unwrap();
        let Some(target) = table.by_name(target_name) else {
            // Debian also ships targets we leave out (cris); nothing to compare.
            continue;
        };
        let emukit::binfmt::Matcher::Magic {
            offset,
            magic,
            mask,
        } = &reg.matcher
        else {
            panic!("{} is not a magic entry", path.display());
        };
        assert_eq!(*offset, 0, "{target_name}");
        assert_eq!(
            magic,
            &target.magic,
            "{target_name}: magic differs from {}",
            path.display()
        );
        assert_eq!(
            mask.as_ref().unwrap(),
            &target.mask,
            "{target_name}: mask differs from {}",
            path.display()
        );
        compared.insert(target_name.to_string());
    }
    for (name, magic, mask) in QEMU_UPSTREAM {
        if compared.contains(*name) {
            continue;
        }
        let t = table.by_name(name).unwrap();
        assert_eq!(
            t.magic,
            decode_escaped(magic).unwrap(),
            "{name} magic vs QEMU"
        );
        assert_eq!(t.mask, decode_escaped(mask).unwrap(), "{name} mask vs QEMU");
        compared.insert(name.to_string());
    }
    let unchecked: Vec<_> = table
        .names()
        .into_iter()
        .filter(|n| !compared.contains(*n))
        .collect();
    assert!(
        unchecked.is_empty(),
        "entries not checked against any source: {unchecked:?}"
    );
}
case! { magic_and_mask_match_debian_byte_for_byte, needs = [QemuBinfmtConfs] }
