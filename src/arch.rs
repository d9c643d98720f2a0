//! The arch table (`qemu-configs/targets.toml`): every QEMU user-mode target with its binfmt_misc
//! magic and mask, ELF identity, OCI platforms, `uname -m`, Debian architectures and aliases.
//!
//! Loaded once from the data compiled into the binary. Everything that turns a name a user typed,
//! a platform, or the first bytes of an ELF file into a QEMU target goes through here.

use std::sync::OnceLock;

use serde::Deserialize;

use crate::platform::Platform;

/// The table's source, compiled in.
const TARGETS_TOML: &str = include_str!("../qemu-configs/targets.toml");

/// Errors from looking up a target.
#[derive(Debug, thiserror::Error)]
pub enum ArchError {
    /// No target has this name, alias, Debian architecture or platform.
    #[error("unknown target `{name}`; known targets: {known}")]
    Unknown {
        /// What the user typed.
        name: String,
        /// The target names, comma-separated.
        known: String,
    },
}

/// ELF byte order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Endian {
    /// Least significant byte first.
    Little,
    /// Most significant byte first.
    Big,
}

/// The ELF identity of a target's programs.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct ElfId {
    /// 32 or 64.
    pub class: u8,
    /// Byte order.
    pub endian: Endian,
    /// `e_machine`.
    pub machine: u16,
}

#[derive(Deserialize)]
struct RawTarget {
    name: String,
    family: String,
    #[serde(default)]
    compat: Vec<String>,
    elf: ElfId,
    magic: String,
    mask: String,
    platforms: Vec<String>,
    uname: String,
    debian: Vec<String>,
    aliases: Vec<String>,
    emulator: String,
}

#[derive(Deserialize)]
struct RawTable {
    target: Vec<RawTarget>,
}

/// One QEMU user-mode target.
#[derive(Debug, Clone)]
pub struct Target {
    /// QEMU's name (`aarch64`, `arm`, `s390x`).
    pub name: String,
    /// QEMU's host family (informational; what runs natively is [`crate::host::Host`]'s rule).
    pub family: String,
    /// Targets whose programs a kernel of this target runs natively besides its own (its
    /// 32-bit compat ABIs: i386 on x86_64, arm on aarch64).
    pub compat: Vec<String>,
    /// ELF class, byte order and machine.
    pub elf: ElfId,
    /// binfmt_misc magic (offset 0).
    pub magic: Vec<u8>,
    /// binfmt_misc mask, as long as the magic.
    pub mask: Vec<u8>,
    /// OCI platforms this target runs, most specific first.
    pub platforms: Vec<Platform>,
    /// `uname -m` on such a machine.
    pub uname: String,
    /// Debian architecture names.
    pub debian: Vec<String>,
    /// Other names people type.
    pub aliases: Vec<String>,
    /// QEMU's user-mode emulator binary name (`qemu-aarch64`).
    pub emulator: String,
}

impl Target {
    /// The binfmt_misc handler name binfmtctl registers: `qemu-<target>`.
    pub fn handler_name(&self) -> String {
        format!("qemu-{}", self.name)
    }

    /// Does `header` (the first bytes of a file) match this target's magic under its mask?
    /// This is the kernel's own test.
    pub fn matches_header(&self, header: &[u8]) -> bool {
        magic_matches(&self.magic, &self.mask, 0, header)
    }

    /// The main OCI platform of the target (None for targets no OCI platform names).
    pub fn platform(&self) -> Option<&Platform> {
        self.platforms.first()
    }
}

/// The kernel's magic test: `header[offset..]` equals `magic` on every bit the mask sets.
pub fn magic_matches(magic: &[u8], mask: &[u8], offset: usize, header: &[u8]) -> bool {
    let Some(window) = header.get(offset..offset + magic.len()) else {
        return false;
    };
    window
        .iter()
        .zip(magic)
        .enumerate()
        .all(|(i, (h, m))| (h ^ m) & mask.get(i).copied().unwrap_or(0xff) == 0)
}

/// Decodes the kernel's `\xHH` notation (other characters stand for themselves).
pub fn decode_escaped(s: &str) -> Result<Vec<u8>, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            if bytes.get(i + 1) != Some(&b'x') {
                return Err(format!("`\\` not followed by `x` at byte {i} of `{s}`"));
            }
            let hex = s
                .get(i + 2..i + 4)
                .ok_or_else(|| format!("truncated `\\x` escape at byte {i} of `{s}`"))?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| format!("bad hex `{hex}` in `{s}`"))?);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(out)
}

/// Encodes bytes in the kernel's `\xHH` notation, every byte escaped (safe for any delimiter).
pub fn encode_escaped(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("\\x{b:02x}")).collect()
}

/// The whole arch table.
#[derive(Debug)]
pub struct Table {
    targets: Vec<Target>,
}

impl Table {
    /// The table compiled into this binary (parsed once).
    pub fn get() -> &'static Table {
        static TABLE: OnceLock<Table> = OnceLock::new();
        TABLE.get_or_init(|| {
            Table::parse(TARGETS_TOML)
                .expect("qemu-configs/targets.toml is valid (checked by tests)")
        })
    }

    /// Parses a table from TOML text.
    pub fn parse(text: &str) -> Result<Table, String> {
        let raw: RawTable = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut targets = Vec::new();
        for t in raw.target {
            let magic = decode_escaped(&t.magic)?;
            let mask = decode_escaped(&t.mask)?;
            if magic.len() != mask.len() {
                return Err(format!("{}: magic and mask differ in length", t.name));
            }
            let platforms = t
                .platforms
                .iter()
                .map(|p| p.parse::<Platform>().map_err(|e| e.to_string()))
                .collect::<Result<Vec<_>, _>>()?;
            targets.push(Target {
                name: t.name,
                family: t.family,
                compat: t.compat,
                elf: t.elf,
                magic,
                mask,
                platforms,
                uname: t.uname,
                debian: t.debian,
                aliases: t.aliases,
                emulator: t.emulator,
            });
        }
        Ok(Table { targets })
    }

    /// Every target, in table order.
    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    /// A target by its QEMU name only.
    pub fn by_name(&self, name: &str) -> Option<&Target> {
        self.targets.iter().find(|t| t.name == name)
    }

    /// Resolves what a user typed: a QEMU target name, an alias, a Debian architecture, a
    /// `qemu-<target>` handler name, or an OCI platform (`linux/arm/v7`, `arm64/v8`).
    pub fn resolve(&self, input: &str) -> Result<&Target, ArchError> {
        let s = input.trim().to_ascii_lowercase();
        let s = s.strip_prefix("qemu-").unwrap_or(&s);
        let found = self
            .by_name(s)
            .or_else(|| {
                self.targets
                    .iter()
                    .find(|t| t.aliases.iter().any(|a| a == s))
            })
            .or_else(|| {
                self.targets
                    .iter()
                    .find(|t| t.debian.iter().any(|a| a == s))
            })
            .or_else(|| {
                s.parse::<Platform>()
                    .ok()
                    .and_then(|p| self.for_platform(&p))
            });
        found.ok_or_else(|| ArchError::Unknown {
            name: input.to_string(),
            known: self.names().join(", "),
        })
    }

    /// The target that runs programs of an OCI platform (arm/v5..v8 all map to `arm`).
    pub fn for_platform(&self, p: &Platform) -> Option<&Target> {
        self.targets
            .iter()
            .find(|t| t.platforms.iter().any(|tp| tp == p))
            .or_else(|| {
                self.targets.iter().find(|t| {
                    t.platforms
                        .iter()
                        .any(|tp| tp.os == p.os && tp.architecture == p.architecture)
                })
            })
    }

    /// The target whose binfmt_misc magic matches the first bytes of a file (the kernel's test).
    pub fn for_header(&self, header: &[u8]) -> Option<&Target> {
        self.targets.iter().find(|t| t.matches_header(header))
    }

    /// The target of the machine this program runs on, from this program's own ELF header.
    pub fn host(&self) -> Option<&Target> {
        static HOST: OnceLock<Option<String>> = OnceLock::new();
        let name = HOST.get_or_init(|| {
            let mut header = [0u8; 64];
            let from_exe = std::fs::File::open("/proc/self/exe")
                .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut header))
                .ok()
                .and_then(|_| self.for_header(&header))
                .map(|t| t.name.clone());
            from_exe.or_else(|| {
                self.resolve(std::env::consts::ARCH)
                    .ok()
                    .map(|t| t.name.clone())
            })
        });
        name.as_deref().and_then(|n| self.by_name(n))
    }

    /// The target names.
    pub fn names(&self) -> Vec<&str> {
        self.targets.iter().map(|t| t.name.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn table_loads_and_covers_required_targets() {
        let t = Table::get();
        for name in [
            "i386",
            "x86_64",
            "arm",
            "armeb",
            "aarch64",
            "aarch64_be",
            "s390x",
            "riscv32",
            "riscv64",
            "ppc",
            "ppc64",
            "ppc64le",
            "mips",
            "mipsel",
            "mips64",
            "mips64el",
            "loongarch64",
            "sparc",
            "sparc64",
            "m68k",
            "hppa",
            "sh4",
            "alpha",
        ] {
            assert!(t.by_name(name).is_some(), "{name} missing from the table");
        }
    }

    #[test]
    fn aliases_resolve() {
        let t = Table::get();
        let cases = [
            ("arm64", "aarch64"),
            ("aarch64", "aarch64"),
            ("arm", "arm"),
            ("armhf", "arm"),
            ("armv7", "arm"),
            ("arm32v7", "arm"),
            ("armel", "arm"),
            ("amd64", "x86_64"),
            ("x86_64", "x86_64"),
            ("386", "i386"),
            ("i386", "i386"),
            ("i686", "i386"),
            ("ppc64el", "ppc64le"),
            ("ppc64le", "ppc64le"),
            ("linux/arm/v7", "arm"),
            ("linux/arm/v6", "arm"),
            ("linux/arm64/v8", "aarch64"),
            ("arm64/v8", "aarch64"),
            ("linux/s390x", "s390x"),
            ("loong64", "loongarch64"),
            ("mips64le", "mips64el"),
            ("qemu-riscv64", "riscv64"),
            ("ARM64", "aarch64"),
        ];
        for (input, want) in cases {
            assert_eq!(t.resolve(input).unwrap().name, want, "{input}");
        }
        let err = t.resolve("vax").unwrap_err().to_string();
        assert!(
            err.contains("unknown target `vax`") && err.contains("aarch64"),
            "{err}"
        );
    }

    #[test]
    fn names_and_aliases_are_unambiguous() {
        let t = Table::get();
        let mut seen: HashMap<&str, &str> = HashMap::new();
        for target in t.targets() {
            for word in std::iter::once(&target.name).chain(&target.aliases) {
                if let Some(prev) = seen.insert(word, &target.name) {
                    panic!("`{word}` names both {prev} and {}", target.name);
                }
            }
        }
    }

    #[test]
    fn magic_agrees_with_elf_identity() {
        for t in Table::get().targets() {
            assert_eq!(&t.magic[..4], b"\x7fELF", "{}", t.name);
            assert_eq!(
                t.magic[4],
                if t.elf.class == 64 { 2 } else { 1 },
                "{} class",
                t.name
            );
            let data = if t.elf.endian == Endian::Little { 1 } else { 2 };
            assert_eq!(t.magic[5], data, "{} endian", t.name);
            let machine = match t.elf.endian {
                Endian::Little => u16::from_le_bytes([t.magic[18], t.magic[19]]),
                Endian::Big => u16::from_be_bytes([t.magic[18], t.magic[19]]),
            };
            assert_eq!(machine, t.elf.machine, "{} e_machine", t.name);
            assert_eq!(t.handler_name(), format!("qemu-{}", t.name));
        }
    }

    #[test]
    fn every_magic_matches_only_its_own_target() {
        let table = Table::get();
        for t in table.targets() {
            // A header made from the magic itself (ET_EXEC) must be claimed by exactly this target.
            let mut header = t.magic.clone();
            header.resize(64, 0);
            let claimants: Vec<_> = table
                .targets()
                .iter()
                .filter(|o| o.matches_header(&header))
                .map(|o| o.name.as_str())
                .collect();
            assert_eq!(claimants, vec![t.name.as_str()], "header of {}", t.name);
        }
    }

    #[test]
    fn escapes_round_trip() {
        let bytes = b"\x7fELF\x02\x01:\\\x00\xff";
        let enc = encode_escaped(bytes);
        assert_eq!(decode_escaped(&enc).unwrap(), bytes);
        assert_eq!(decode_escaped("\\x7fELF").unwrap(), b"\x7fELF");
        assert!(decode_escaped("\\x7").is_err());
        assert!(decode_escaped("\\y00").is_err());
    }

    #[test]
    fn host_is_known() {
        assert!(Table::get().host().is_some(), "host target");
    }

    #[test]
    fn compat_names_are_targets_of_the_same_byte_order() {
        for t in Table::get().targets() {
            for c in &t.compat {
                let c = Table::get()
                    .by_name(c)
                    .unwrap_or_else(|| panic!("{}: compat {c} is no target", t.name));
                assert_eq!(c.elf.endian, t.elf.endian, "{} runs {}", t.name, c.name);
                assert!(c.elf.class <= t.elf.class, "{} runs {}", t.name, c.name);
            }
        }
    }
}
