//! ELF inspection (goblin): what a program is built for, and whether it is statically linked.
//!
//! First stage of both pipelines: `binfmtctl inspect` reports it, the emulator locator refuses
//! dynamic or wrong-host emulators with it, and `emubuild` detects a root filesystem's platform.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use goblin::elf::Elf;
use goblin::elf::program_header::{PT_DYNAMIC, PT_INTERP};
use serde::Serialize;

use crate::arch::{Endian, Table, Target};
use crate::platform::Platform;

/// How many bytes binfmt_misc looks at.
pub const HEADER_LEN: usize = 128;

/// The largest ELF file we read whole (emulators are ~10 MB; programs in images rarely exceed this).
const MAX_ELF_SIZE: u64 = 512 * 1024 * 1024;

/// Errors from inspecting a file.
#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    /// The file could not be read.
    #[error("cannot read `{path}`")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Not an ELF file at all.
    #[error("`{path}` is not an ELF program")]
    NotElf {
        /// The file.
        path: PathBuf,
    },
    /// ELF magic present but goblin could not parse it.
    #[error("`{path}` is a damaged ELF file: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// goblin's message.
        reason: String,
    },
    /// Too large to inspect.
    #[error("`{path}` is larger than {MAX_ELF_SIZE} bytes; refusing to inspect it")]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
}

/// What an ELF program needs to run.
#[derive(Debug, Clone, Serialize)]
pub struct ElfInfo {
    /// The file inspected.
    pub path: PathBuf,
    /// 32 or 64.
    pub class: u8,
    /// Byte order.
    pub endian: Endian,
    /// `e_machine`.
    pub machine: u16,
    /// goblin's name for the machine (`AARCH64`, `ARM`, `S390`).
    pub machine_name: String,
    /// `e_type` name: `EXEC`, `DYN`, `REL`, `CORE`.
    pub kind: String,
    /// True when there is no program interpreter (static, including static-pie).
    pub is_static: bool,
    /// True for static-pie: ET_DYN without PT_INTERP.
    pub static_pie: bool,
    /// The program interpreter (dynamic loader) of a dynamic program.
    pub interpreter: Option<String>,
    /// Shared libraries it needs (DT_NEEDED).
    pub needed: Vec<String>,
    /// The QEMU target whose binfmt_misc magic matches the header (None when no target does).
    pub target: Option<String>,
    /// The OCI platform, refined for arm by the ARM attributes (v5/v6/v7).
    pub platform: Option<Platform>,
    /// The first bytes of the file (what binfmt_misc matches against).
    #[serde(skip)]
    pub header: Vec<u8>,
}

impl ElfInfo {
    /// The table entry for the target.
    pub fn target(&self) -> Option<&'static Target> {
        self.target.as_deref().and_then(|n| Table::get().by_name(n))
    }
}

/// Reads up to `HEADER_LEN` bytes of a file: what binfmt_misc would see.
pub fn read_header(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut f = File::open(path)?;
    let mut buf = vec![0u8; HEADER_LEN];
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    buf.truncate(n);
    Ok(buf)
}

/// Is this the start of an ELF file?
pub fn is_elf(header: &[u8]) -> bool {
    header.starts_with(b"\x7fELF")
}

/// Inspects an ELF file.
pub fn inspect(path: &Path) -> Result<ElfInfo, ElfError> {
    let read = |source| ElfError::Read {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read)?;
    if meta.len() > MAX_ELF_SIZE {
        return Err(ElfError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    let header = read_header(path).map_err(read)?;
    if !is_elf(&header) {
        return Err(ElfError::NotElf {
            path: path.to_path_buf(),
        });
    }
    let bytes = std::fs::read(path).map_err(read)?;
    inspect_bytes(path, &bytes)
}

/// What the emulator check needs, read from the headers only (a few KiB, not the whole file).
#[derive(Debug, Clone)]
pub struct Headers {
    /// The QEMU target whose magic matches.
    pub target: Option<String>,
    /// `e_machine`.
    pub machine: u16,
    /// The program interpreter, when there is one.
    pub interpreter: Option<String>,
}

/// Reads the ELF header and program headers of a file (and the PT_INTERP string) without
/// reading the rest: enough to tell a static emulator for this host from anything else.
pub fn read_headers(path: &Path) -> Result<Headers, ElfError> {
    use goblin::container::{Container, Ctx};
    use goblin::elf::program_header::ProgramHeader;
    use std::io::{Seek, SeekFrom};
    use std::os::unix::fs::FileExt;

    let read = |source| ElfError::Read {
        path: path.to_path_buf(),
        source,
    };
    let malformed = |reason: String| ElfError::Malformed {
        path: path.to_path_buf(),
        reason,
    };
    let mut f = File::open(path).map_err(read)?;
    let header = read_header(path).map_err(read)?;
    if !is_elf(&header) {
        return Err(ElfError::NotElf {
            path: path.to_path_buf(),
        });
    }
    let h = Elf::parse_header(&header).map_err(|e| malformed(e.to_string()))?;
    let container = if h.e_ident[4] == 2 {
        Container::Big
    } else {
        Container::Little
    };
    let endian = goblin::container::Endian::from(h.e_ident[5] == 1);
    let ctx = Ctx::new(container, endian);
    let ph_len = usize::from(h.e_phnum) * usize::from(h.e_phentsize);
    if ph_len > 1 << 20 {
        return Err(malformed("too many program headers".into()));
    }
    let mut ph_bytes = vec![0u8; ph_len];
    f.seek(SeekFrom::Start(h.e_phoff)).map_err(read)?;
    f.read_exact(&mut ph_bytes).map_err(read)?;
    let phs = ProgramHeader::parse(&ph_bytes, 0, usize::from(h.e_phnum), ctx)
        .map_err(|e| malformed(e.to_string()))?;
    let interpreter = match phs.iter().find(|ph| ph.p_type == PT_INTERP) {
        Some(ph) => {
            let len = usize::try_from(ph.p_filesz).unwrap_or(0).min(4096);
            let mut buf = vec![0u8; len];
            f.read_exact_at(&mut buf, ph.p_offset).map_err(read)?;
            let s = String::from_utf8_lossy(&buf);
            Some(s.trim_end_matches('\0').to_string())
        }
        None => None,
    };
    Ok(Headers {
        target: Table::get().for_header(&header).map(|t| t.name.clone()),
        machine: h.e_machine,
        interpreter,
    })
}

/// Inspects ELF bytes already in memory.
pub fn inspect_bytes(path: &Path, bytes: &[u8]) -> Result<ElfInfo, ElfError> {
    if !is_elf(bytes) {
        return Err(ElfError::NotElf {
            path: path.to_path_buf(),
        });
    }
    let elf = Elf::parse(bytes).map_err(|e| ElfError::Malformed {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let header = bytes[..bytes.len().min(HEADER_LEN)].to_vec();
    let has_interp = elf.program_headers.iter().any(|ph| ph.p_type == PT_INTERP);
    let has_dynamic = elf.program_headers.iter().any(|ph| ph.p_type == PT_DYNAMIC);
    let kind = goblin::elf::header::et_to_str(elf.header.e_type).to_string();
    let target = Table::get().for_header(&header);
    let platform = target.and_then(|t| {
        if t.name == "arm" {
            Some(arm_platform(&elf, bytes))
        } else {
            t.platform().cloned()
        }
    });
    Ok(ElfInfo {
        path: path.to_path_buf(),
        class: if elf.is_64 { 64 } else { 32 },
        endian: if elf.little_endian {
            Endian::Little
        } else {
            Endian::Big
        },
        machine: elf.header.e_machine,
        machine_name: goblin::elf::header::machine_to_str(elf.header.e_machine).to_string(),
        kind: kind.clone(),
        is_static: !has_interp,
        static_pie: !has_interp && has_dynamic && kind == "DYN",
        interpreter: elf.interpreter.map(str::to_string),
        needed: elf.libraries.iter().map(|s| s.to_string()).collect(),
        target: target.map(|t| t.name.clone()),
        platform,
        header,
    })
}

/// The arm variant from the `.ARM.attributes` section's Tag_CPU_arch (v7 when absent or unknown).
fn arm_platform(elf: &Elf, bytes: &[u8]) -> Platform {
    let variant = elf
        .section_headers
        .iter()
        .find(|sh| elf.shdr_strtab.get_at(sh.sh_name) == Some(".ARM.attributes"))
        .and_then(|sh| {
            let start = usize::try_from(sh.sh_offset).ok()?;
            let len = usize::try_from(sh.sh_size).ok()?;
            bytes.get(start..start.checked_add(len)?)
        })
        .and_then(arm_cpu_arch)
        .map(|arch| match arch {
            0..=5 => "v5",
            6..=9 | 11 | 12 => "v6",
            _ => "v7",
        })
        .unwrap_or("v7");
    Platform::new("linux", "arm", variant)
}

/// Parses an ARM build attributes section for Tag_CPU_arch (tag 6) in the `aeabi` vendor's
/// file-scope subsection.
fn arm_cpu_arch(section: &[u8]) -> Option<u64> {
    let (&version, mut rest) = section.split_first()?;
    if version != b'A' {
        return None;
    }
    while rest.len() >= 4 {
        let len = u32::from_le_bytes(rest[..4].try_into().ok()?) as usize;
        if len < 4 || len > rest.len() {
            return None;
        }
        let sub = &rest[4..len];
        rest = &rest[len..];
        let nul = sub.iter().position(|&b| b == 0)?;
        if &sub[..nul] != b"aeabi" {
            continue;
        }
        let mut data = &sub[nul + 1..];
        while data.len() >= 5 {
            let tag = data[0];
            let size = u32::from_le_bytes(data[1..5].try_into().ok()?) as usize;
            if size < 5 || size > data.len() {
                return None;
            }
            if tag == 1 {
                // File scope: a list of (tag ULEB128, value) pairs.
                return file_attr_cpu_arch(&data[5..size]);
            }
            data = &data[size..];
        }
    }
    None
}

fn uleb128(data: &[u8], pos: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    let mut shift = 0;
    loop {
        let b = *data.get(*pos)?;
        *pos += 1;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(value);
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
}

fn file_attr_cpu_arch(data: &[u8]) -> Option<u64> {
    let mut pos = 0;
    while pos < data.len() {
        let tag = uleb128(data, &mut pos)?;
        match tag {
            6 => return uleb128(data, &mut pos),
            // NTBS-valued tags: 4 (CPU_raw_name), 5 (CPU_name), 32 (compatibility: ULEB + NTBS), 67.
            4 | 5 | 67 => {
                let nul = data[pos..].iter().position(|&b| b == 0)?;
                pos += nul + 1;
            }
            32 => {
                uleb128(data, &mut pos)?;
                let nul = data[pos..].iter().position(|&b| b == 0)?;
                pos += nul + 1;
            }
            // Tags >= 32: odd ones are strings, even ones ULEB128 (the generic rule).
            t if t > 32 && t % 2 == 1 => {
                let nul = data[pos..].iter().position(|&b| b == 0)?;
                pos += nul + 1;
            }
            _ => {
                uleb128(data, &mut pos)?;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inspects_this_test_binary() {
        let exe = std::env::current_exe().unwrap();
        let info = inspect(&exe).unwrap();
        let host = Table::get().host().unwrap();
        assert_eq!(info.target.as_deref(), Some(host.name.as_str()));
        assert_eq!(info.machine, host.elf.machine);
    }

    #[test]
    fn headers_agree_with_full_inspection() {
        // A dynamic program of this host (this test's own binary) and a static one (a probe).
        let probe = crate::binfmt::exec::write_executable(
            "probe",
            crate::binfmt::probe::program("aarch64").unwrap(),
        )
        .unwrap();
        let me = std::env::current_exe().unwrap();
        for p in [me.as_path(), probe.path()] {
            let full = inspect(p).unwrap();
            let quick = read_headers(p).unwrap();
            assert_eq!(quick.target, full.target);
            assert_eq!(quick.machine, full.machine);
            assert_eq!(quick.interpreter, full.interpreter);
        }
    }

    #[test]
    fn refuses_non_elf() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("script");
        std::fs::write(&f, "#!/bin/sh\necho hi\n").unwrap();
        assert!(matches!(inspect(&f), Err(ElfError::NotElf { .. })));
        let g = dir.path().join("broken");
        std::fs::write(&g, b"\x7fELF\x02\x01\x01").unwrap();
        assert!(matches!(inspect(&g), Err(ElfError::Malformed { .. })));
        assert!(matches!(
            inspect(&dir.path().join("missing")),
            Err(ElfError::Read { .. })
        ));
    }

    #[test]
    fn arm_attributes() {
        // 'A', subsection len, "aeabi\0", tag 1 (file), size, Tag_CPU_name(5)="7-A\0", Tag_CPU_arch(6)=10
        let mut file_attrs = vec![5u8];
        file_attrs.extend_from_slice(b"7-A\0");
        file_attrs.extend_from_slice(&[6, 10]);
        let mut sub = vec![1u8];
        sub.extend_from_slice(&((file_attrs.len() + 5) as u32).to_le_bytes());
        sub.extend_from_slice(&file_attrs);
        let mut section = vec![b'A'];
        let body_len = 4 + 6 + sub.len();
        section.extend_from_slice(&(body_len as u32).to_le_bytes());
        section.extend_from_slice(b"aeabi\0");
        section.extend_from_slice(&sub);
        assert_eq!(arm_cpu_arch(&section), Some(10));
        assert_eq!(arm_cpu_arch(b"B"), None);
        assert_eq!(arm_cpu_arch(&section[..7]), None);
    }
}
