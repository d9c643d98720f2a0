//! binfmt_misc entries: encoding a register line, parsing an entry file, and deciding which
//! programs an entry matches (and whether two entries overlap).
//!
//! Pure data, no I/O: `fs` reads and writes the files, `probe` runs programs through them.

use std::fmt;

use serde::Serialize;

use crate::arch::{self, Table, Target};

/// The kernel refuses register lines longer than this (fs/binfmt_misc.c, `MAX_REGISTER_LENGTH`).
pub const MAX_REGISTER_LENGTH: usize = 1920;
/// Magic must lie within the first bytes of the file (BINPRM_BUF_SIZE).
pub const MAX_MAGIC_END: usize = 128;

/// Errors in building or parsing entries.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EntryError {
    /// The handler name is not allowed by the kernel.
    #[error(
        "`{0}` is not a valid handler name (no `/`, no `:`, not `.` or `..`, at most 127 bytes)"
    )]
    BadName(String),
    /// The register line would be too long or malformed.
    #[error("register line for `{name}` is invalid: {reason}")]
    BadLine {
        /// The handler name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// An entry file could not be parsed.
    #[error("cannot parse binfmt_misc entry `{name}`: {reason}")]
    Parse {
        /// The entry name.
        name: String,
        /// What is wrong.
        reason: String,
    },
}

/// binfmt_misc flags, in the kernel's fixed order `POCF`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Flags {
    /// P: preserve argv[0].
    pub preserve_argv0: bool,
    /// O: pass an open file descriptor of the binary.
    pub open_binary: bool,
    /// C: credentials from the binary (implies O).
    pub credentials: bool,
    /// F: open the interpreter at registration time.
    pub fix_binary: bool,
}

impl Flags {
    /// The F flag alone: binfmtctl's default.
    pub fn fix_binary() -> Self {
        Flags {
            fix_binary: true,
            ..Flags::default()
        }
    }

    /// Parses a flags string (`POCF` in any order); unknown letters are an error.
    pub fn parse(s: &str) -> Result<Flags, String> {
        let mut f = Flags::default();
        for c in s.chars() {
            match c.to_ascii_uppercase() {
                'P' => f.preserve_argv0 = true,
                'O' => f.open_binary = true,
                'C' => {
                    f.credentials = true;
                    f.open_binary = true;
                }
                'F' => f.fix_binary = true,
                ' ' | '\n' => {}
                other => return Err(format!("unknown flag `{other}`")),
            }
        }
        Ok(f)
    }
}

impl fmt::Display for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (on, c) in [
            (self.preserve_argv0, 'P'),
            (self.open_binary, 'O'),
            (self.credentials, 'C'),
            (self.fix_binary, 'F'),
        ] {
            if on {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

/// How an entry recognises programs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Matcher {
    /// Magic bytes at an offset, under a mask.
    Magic {
        /// Where the magic starts.
        offset: usize,
        /// The magic bytes as the kernel holds them (already masked).
        #[serde(serialize_with = "ser_hex")]
        magic: Vec<u8>,
        /// The mask (None: all ones).
        #[serde(serialize_with = "ser_opt_hex")]
        mask: Option<Vec<u8>>,
    },
    /// A file name extension (without the dot).
    Extension {
        /// The extension.
        extension: String,
    },
}

fn ser_hex<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(v))
}

fn ser_opt_hex<S: serde::Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.serialize_str(&hex::encode(v)),
        None => s.serialize_none(),
    }
}

impl Matcher {
    /// The magic with the mask applied, as the kernel stores it.
    fn normalized(&self) -> Matcher {
        match self {
            Matcher::Magic {
                offset,
                magic,
                mask,
            } => {
                let magic = match mask {
                    Some(m) => magic.iter().zip(m).map(|(a, b)| a & b).collect(),
                    None => magic.clone(),
                };
                let mask = mask.clone().filter(|m| m.iter().any(|&b| b != 0xff));
                Matcher::Magic {
                    offset: *offset,
                    magic,
                    mask,
                }
            }
            other => other.clone(),
        }
    }

    /// Does a file with this header (and name) match? The kernel's test.
    pub fn matches(&self, header: &[u8], file_name: Option<&str>) -> bool {
        match self {
            Matcher::Magic {
                offset,
                magic,
                mask,
            } => {
                let all_ones = vec![0xff; magic.len()];
                arch::magic_matches(magic, mask.as_deref().unwrap_or(&all_ones), *offset, header)
            }
            Matcher::Extension { extension } => file_name
                .and_then(|n| n.rsplit_once('.'))
                .is_some_and(|(_, ext)| ext == extension),
        }
    }

    /// Can some file match both matchers? (Two magic entries overlap when, on every byte both
    /// constrain, the bits both masks keep agree.)
    pub fn overlaps(&self, other: &Matcher) -> bool {
        match (self, other) {
            (
                Matcher::Magic {
                    offset: o1,
                    magic: m1,
                    mask: k1,
                },
                Matcher::Magic {
                    offset: o2,
                    magic: m2,
                    mask: k2,
                },
            ) => {
                let byte = |magic: &[u8], mask: &Option<Vec<u8>>, off: usize, pos: usize| {
                    let i = pos.checked_sub(off)?;
                    let m = *magic.get(i)?;
                    let k = mask.as_ref().map_or(0xff, |k| k[i]);
                    Some((m, k))
                };
                let end = (o1 + m1.len()).max(o2 + m2.len());
                (0..end).all(
                    |pos| match (byte(m1, k1, *o1, pos), byte(m2, k2, *o2, pos)) {
                        (Some((a, ka)), Some((b, kb))) => (a ^ b) & ka & kb == 0,
                        _ => true,
                    },
                )
            }
            (Matcher::Extension { extension: a }, Matcher::Extension { extension: b }) => a == b,
            _ => false,
        }
    }
}

/// A registration to write: `:name:type:offset:magic:mask:interpreter:flags`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Registration {
    /// The handler name (`qemu-aarch64`).
    pub name: String,
    /// How it matches programs.
    pub matcher: Matcher,
    /// The interpreter path.
    pub interpreter: String,
    /// Flags.
    pub flags: Flags,
}

impl Registration {
    /// The QEMU handler for a target with the given emulator and flags.
    pub fn for_target(target: &Target, interpreter: &str, flags: Flags) -> Registration {
        Registration {
            name: target.handler_name(),
            matcher: Matcher::Magic {
                offset: 0,
                magic: target.magic.clone(),
                mask: Some(target.mask.clone()),
            },
            interpreter: interpreter.to_string(),
            flags,
        }
    }

    /// Encodes the line to write to `register` (and into a `binfmt.d` file). Every magic and mask
    /// byte is `\x` escaped; the delimiter is `:` unless the interpreter contains one.
    pub fn encode(&self) -> Result<String, EntryError> {
        validate_name(&self.name)?;
        let bad = |reason: String| EntryError::BadLine {
            name: self.name.clone(),
            reason,
        };
        if self.interpreter.is_empty() || !self.interpreter.starts_with('/') {
            return Err(bad(format!(
                "interpreter `{}` must be an absolute path",
                self.interpreter
            )));
        }
        if self.interpreter.contains(['\n', '\0']) {
            return Err(bad("interpreter path holds a newline or NUL".into()));
        }
        let delim = [':', '|', '#', '!', '%', ',', ';', '@']
            .into_iter()
            .find(|d| !self.interpreter.contains(*d) && !self.name.contains(*d))
            .ok_or_else(|| bad("no delimiter character is free".into()))?;
        let (kind, offset, magic, mask) = match &self.matcher {
            Matcher::Magic {
                offset,
                magic,
                mask,
            } => {
                if magic.is_empty() || offset + magic.len() > MAX_MAGIC_END {
                    return Err(bad(format!(
                        "magic must be 1 to {MAX_MAGIC_END} bytes within the first {MAX_MAGIC_END}"
                    )));
                }
                if mask.as_ref().is_some_and(|m| m.len() != magic.len()) {
                    return Err(bad("mask and magic differ in length".into()));
                }
                (
                    'M',
                    offset.to_string(),
                    arch::encode_escaped(magic),
                    mask.as_deref()
                        .map(arch::encode_escaped)
                        .unwrap_or_default(),
                )
            }
            Matcher::Extension { extension } => {
                if extension.is_empty() || extension.contains(['/', delim]) {
                    return Err(bad(format!("bad extension `{extension}`")));
                }
                ('E', String::new(), extension.clone(), String::new())
            }
        };
        let d = delim;
        let line = format!(
            "{d}{}{d}{kind}{d}{offset}{d}{magic}{d}{mask}{d}{}{d}{}",
            self.name, self.interpreter, self.flags
        );
        if line.len() > MAX_REGISTER_LENGTH {
            return Err(bad(format!(
                "line is {} bytes, the kernel takes at most {MAX_REGISTER_LENGTH}",
                line.len()
            )));
        }
        Ok(line)
    }

    /// Parses a register line (as in `binfmt.d` files).
    pub fn parse_line(line: &str) -> Result<Registration, EntryError> {
        let line = line.trim_end_matches('\n');
        let perr = |reason: &str| EntryError::Parse {
            name: line.to_string(),
            reason: reason.to_string(),
        };
        let delim = line.chars().next().ok_or_else(|| perr("empty line"))?;
        let fields: Vec<&str> = line[delim.len_utf8()..].split(delim).collect();
        if fields.len() < 6 {
            return Err(perr(
                "expected :name:type:offset:magic:mask:interpreter:flags",
            ));
        }
        let name = fields[0].to_string();
        let interpreter = fields[5].to_string();
        let flags = Flags::parse(fields.get(6).copied().unwrap_or("")).map_err(|e| perr(&e))?;
        let matcher = match fields[1] {
            "M" => {
                let offset = if fields[2].is_empty() {
                    0
                } else {
                    fields[2].parse().map_err(|_| perr("bad offset"))?
                };
                let magic = arch::decode_escaped(fields[3]).map_err(|e| perr(&e))?;
                let mask = if fields[4].is_empty() {
                    None
                } else {
                    Some(arch::decode_escaped(fields[4]).map_err(|e| perr(&e))?)
                };
                Matcher::Magic {
                    offset,
                    magic,
                    mask,
                }
            }
            "E" => Matcher::Extension {
                extension: fields[3].to_string(),
            },
            _ => return Err(perr("type must be M or E")),
        };
        Ok(Registration {
            name,
            matcher,
            interpreter,
            flags,
        })
    }

    /// Is this registration the same as a live entry (same matcher after masking, interpreter
    /// and flags)? Re-installing such an entry is a no-op.
    pub fn same_as(&self, entry: &Entry) -> bool {
        self.name == entry.name
            && self.interpreter == entry.interpreter
            && self.flags == entry.flags
            && self.matcher.normalized() == entry.matcher.normalized()
    }
}

/// A live entry, parsed from `/proc/sys/fs/binfmt_misc/<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// The entry's name (its file name).
    pub name: String,
    /// `enabled` or `disabled`.
    pub enabled: bool,
    /// The interpreter path.
    pub interpreter: String,
    /// Flags.
    pub flags: Flags,
    /// How it matches.
    #[serde(flatten)]
    pub matcher: Matcher,
}

impl Entry {
    /// The entry the kernel shows right after `reg` was registered (enabled).
    pub fn registered(reg: &Registration) -> Entry {
        Entry {
            name: reg.name.clone(),
            enabled: true,
            interpreter: reg.interpreter.clone(),
            flags: reg.flags,
            matcher: reg.matcher.clone(),
        }
    }

    /// Parses the text of an entry file:
    /// `enabled`, `interpreter X`, `flags: F`, `offset N`, `magic HEX`, `mask HEX` (or `extension .X`).
    pub fn parse(name: &str, text: &str) -> Result<Entry, EntryError> {
        let perr = |reason: String| EntryError::Parse {
            name: name.to_string(),
            reason,
        };
        let mut enabled = None;
        let mut interpreter = None;
        let mut flags = Flags::default();
        let mut offset = 0usize;
        let mut magic = None;
        let mut mask = None;
        let mut extension = None;
        for line in text.lines() {
            let (key, value) = line.split_once([' ', ':']).unwrap_or((line, ""));
            let value = value.trim_start_matches(':').trim();
            match key {
                "enabled" => enabled = Some(true),
                "disabled" => enabled = Some(false),
                "interpreter" => interpreter = Some(value.to_string()),
                "flags" => flags = Flags::parse(value).map_err(&perr)?,
                "offset" => {
                    offset = value
                        .parse()
                        .map_err(|_| perr(format!("bad offset `{value}`")))?
                }
                "magic" => {
                    magic = Some(hex::decode(value).map_err(|e| perr(format!("bad magic: {e}")))?)
                }
                "mask" => {
                    mask = Some(hex::decode(value).map_err(|e| perr(format!("bad mask: {e}")))?)
                }
                "extension" => extension = Some(value.trim_start_matches('.').to_string()),
                _ => {}
            }
        }
        let matcher = match (magic, extension) {
            (Some(magic), None) => Matcher::Magic {
                offset,
                magic,
                mask,
            },
            (None, Some(extension)) => Matcher::Extension { extension },
            _ => return Err(perr("neither magic nor extension".into())),
        };
        Ok(Entry {
            name: name.to_string(),
            enabled: enabled.ok_or_else(|| perr("no enabled/disabled line".into()))?,
            interpreter: interpreter.ok_or_else(|| perr("no interpreter line".into()))?,
            flags,
            matcher,
        })
    }

    /// The register line that recreates this entry (for showing clashes side by side).
    pub fn to_registration(&self) -> Registration {
        Registration {
            name: self.name.clone(),
            matcher: self.matcher.clone(),
            interpreter: self.interpreter.clone(),
            flags: self.flags,
        }
    }

    /// The QEMU target whose programs this entry matches (by testing each target's own header).
    pub fn target(&self) -> Option<&'static Target> {
        Table::get().targets().iter().find(|t| {
            let mut header = t.magic.clone();
            header.resize(MAX_MAGIC_END, 0);
            self.matcher.matches(&header, None)
        })
    }
}

/// Checks a handler name the way the kernel does.
pub fn validate_name(name: &str) -> Result<(), EntryError> {
    let ok = !name.is_empty()
        && name.len() < 128
        && name != "."
        && name != ".."
        && name != "register"
        && name != "status"
        && !name.contains(['/', ':', '\n', '\0']);
    if ok {
        Ok(())
    } else {
        Err(EntryError::BadName(name.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aarch64() -> &'static Target {
        Table::get().by_name("aarch64").unwrap()
    }

    #[test]
    fn encodes_qemu_line() {
        let r = Registration::for_target(
            aarch64(),
            "/usr/bin/qemu-aarch64-static",
            Flags::fix_binary(),
        );
        let line = r.encode().unwrap();
        assert_eq!(
            line,
            ":qemu-aarch64:M:0:\\x7f\\x45\\x4c\\x46\\x02\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02\\x00\\xb7\\x00:\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\x00\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xfe\\xff\\xff\\xff:/usr/bin/qemu-aarch64-static:F"
        );
        assert_eq!(Registration::parse_line(&line).unwrap(), r);
    }

    #[test]
    fn delimiter_avoids_colon_in_interpreter() {
        let r = Registration::for_target(aarch64(), "/opt/a:b/qemu", Flags::fix_binary());
        let line = r.encode().unwrap();
        assert!(line.starts_with("|qemu-aarch64|M|"));
        assert_eq!(Registration::parse_line(&line).unwrap(), r);
    }

    #[test]
    fn rejects_bad_input() {
        let mut r = Registration::for_target(aarch64(), "relative/qemu", Flags::fix_binary());
        assert!(r.encode().is_err());
        r.interpreter = "/x".into();
        r.name = "a/b".into();
        assert_eq!(r.encode(), Err(EntryError::BadName("a/b".into())));
        r.name = "status".into();
        assert!(r.encode().is_err());
        r.name = "ok".into();
        r.matcher = Matcher::Magic {
            offset: 120,
            magic: vec![0; 20],
            mask: None,
        };
        assert!(r.encode().is_err());
        r.interpreter = format!("/{}", "x".repeat(2000));
        r.matcher = Matcher::Magic {
            offset: 0,
            magic: vec![1],
            mask: None,
        };
        assert!(r.encode().unwrap_err().to_string().contains("at most 1920"));
    }

    #[test]
    fn flags_order_and_parse() {
        let f = Flags::parse("FCP").unwrap();
        assert_eq!(f.to_string(), "POCF");
        assert_eq!(Flags::parse("").unwrap().to_string(), "");
        assert!(Flags::parse("X").is_err());
    }

    #[test]
    fn parses_kernel_entry_file() {
        let text = "enabled\ninterpreter /usr/bin/qemu-aarch64-static\nflags: F\noffset 0\nmagic 7f454c460201010000000000000000000200b700\nmask ffffffffffffff00fffffffffffffffffeffffff\n";
        let e = Entry::parse("qemu-aarch64", text).unwrap();
        assert!(e.enabled);
        assert_eq!(e.interpreter, "/usr/bin/qemu-aarch64-static");
        assert_eq!(e.flags, Flags::fix_binary());
        assert_eq!(e.target().unwrap().name, "aarch64");
        let r = Registration::for_target(
            aarch64(),
            "/usr/bin/qemu-aarch64-static",
            Flags::fix_binary(),
        );
        assert!(r.same_as(&e));
        let mut r2 = r.clone();
        r2.flags.preserve_argv0 = true;
        assert!(!r2.same_as(&e));

        let ext = Entry::parse(
            "py",
            "disabled\ninterpreter /usr/bin/python3\nflags: \nextension .pyc\n",
        )
        .unwrap();
        assert!(!ext.enabled);
        assert_eq!(
            ext.matcher,
            Matcher::Extension {
                extension: "pyc".into()
            }
        );
        assert!(ext.target().is_none());
        assert!(ext.matcher.matches(b"", Some("x.pyc")));
        assert!(Entry::parse("x", "enabled\n").is_err());
    }

    #[test]
    fn masked_magic_compares_equal() {
        // The kernel stores the magic masked; our unmasked table magic must still compare equal.
        let t = Table::get().by_name("loongarch64").unwrap();
        let masked: Vec<u8> = t.magic.iter().zip(&t.mask).map(|(a, b)| a & b).collect();
        let text = format!(
            "enabled\ninterpreter /q\nflags: F\noffset 0\nmagic {}\nmask {}\n",
            hex::encode(&masked),
            hex::encode(&t.mask)
        );
        let e = Entry::parse("qemu-loongarch64", &text).unwrap();
        assert!(Registration::for_target(t, "/q", Flags::fix_binary()).same_as(&e));
    }

    #[test]
    fn overlap() {
        let arm =
            Registration::for_target(Table::get().by_name("arm").unwrap(), "/a", Flags::default());
        let a64 = Registration::for_target(aarch64(), "/b", Flags::default());
        assert!(!arm.matcher.overlaps(&a64.matcher));
        assert!(a64.matcher.overlaps(&a64.matcher));
        let loose = Matcher::Magic {
            offset: 0,
            magic: b"\x7fELF".to_vec(),
            mask: None,
        };
        assert!(loose.overlaps(&a64.matcher) && a64.matcher.overlaps(&loose));
        let shifted = Matcher::Magic {
            offset: 18,
            magic: vec![0x28],
            mask: None,
        };
        assert!(shifted.overlaps(&arm.matcher));
        assert!(!shifted.overlaps(&a64.matcher));
    }
}
