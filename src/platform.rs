//! OCI platforms (`os/arch[/variant]`): parsing, containerd's normalisation, canonical printing, and
//! matching an image index's entries against a wanted platform (with containerd's fallbacks).
//!
//! Every pipeline starts here: `--platform` values and index descriptors are normalised once, so
//! `linux/arm` and `linux/arm/v7`, or `arm64/v8` and `aarch64`, are the same platform everywhere after.

use std::fmt;
use std::str::FromStr;

/// Errors from parsing a platform string.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlatformError {
    /// The string is empty or has too many parts.
    #[error(
        "`{0}` is not a platform; write it as os/arch[/variant], e.g. `linux/arm64` or `linux/arm/v7`"
    )]
    Malformed(String),
}

/// The operating systems containerd knows; a first component naming one of these is an OS.
const KNOWN_OS: &[&str] = &[
    "aix",
    "android",
    "darwin",
    "dragonfly",
    "freebsd",
    "hurd",
    "illumos",
    "ios",
    "js",
    "linux",
    "nacl",
    "netbsd",
    "openbsd",
    "plan9",
    "solaris",
    "windows",
    "zos",
];

/// An OCI platform, always held in normalised form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Platform {
    /// Operating system, e.g. `linux`.
    pub os: String,
    /// Architecture in GOARCH spelling, e.g. `arm64`, `amd64`, `arm`.
    pub architecture: String,
    /// Variant, e.g. `v7`; empty when the architecture has none (or the default one).
    pub variant: String,
}

impl Platform {
    /// Builds a platform from its parts and normalises it.
    pub fn new(os: &str, architecture: &str, variant: &str) -> Self {
        let (architecture, variant) = normalize_arch(architecture, variant);
        Platform {
            os: normalize_os(os),
            architecture,
            variant,
        }
    }

    /// The platform of the machine this program runs on (from the compiled-in architecture).
    pub fn host() -> Self {
        Platform::new("linux", std::env::consts::ARCH, "")
    }

    /// The variant as an option (None when empty).
    pub fn variant(&self) -> Option<&str> {
        (!self.variant.is_empty()).then_some(self.variant.as_str())
    }

    /// The variant an image for this platform declares: its own, or `v8` for arm64 without
    /// one, as BuildKit and containerd write it (`linux/arm64/v8`), so a list made from the
    /// config names the variant.
    pub fn written_variant(&self) -> Option<&str> {
        match self.variant() {
            None if self.architecture == "arm64" => Some("v8"),
            v => v,
        }
    }

    /// Does an image built for `self` satisfy a request for `wanted`? Exact match after
    /// normalisation, plus containerd's fallbacks: an arm/v7 machine runs arm/v6 and arm/v5 images,
    /// an amd64/v3 machine runs amd64/v2 and amd64 (v1) images, arm64/v9 runs arm64 (v8).
    pub fn satisfies(&self, wanted: &Platform) -> bool {
        self.match_rank(wanted).is_some()
    }

    /// How well `self` (an image's platform) matches `wanted`: 0 is exact, higher is a fallback;
    /// None when it does not match at all. Used to pick the best entry of an index.
    pub fn match_rank(&self, wanted: &Platform) -> Option<u32> {
        if self.os != wanted.os || self.architecture != wanted.architecture {
            return None;
        }
        if self.variant == wanted.variant {
            return Some(0);
        }
        let have = variant_level(&self.architecture, &self.variant)?;
        let want = variant_level(&wanted.architecture, &wanted.variant)?;
        (have < want).then(|| want - have)
    }

    /// The environment values a build sees: TARGETPLATFORM, TARGETOS, TARGETARCH, TARGETVARIANT.
    pub fn target_env(&self) -> Vec<(String, String)> {
        vec![
            ("TARGETPLATFORM".into(), self.to_string()),
            ("TARGETOS".into(), self.os.clone()),
            ("TARGETARCH".into(), self.architecture.clone()),
            ("TARGETVARIANT".into(), self.variant.clone()),
        ]
    }

    /// A name safe to use as a file name (`linux-arm-v7`).
    pub fn file_name(&self) -> String {
        self.to_string().replace('/', "-")
    }
}

/// The numeric level of a variant for fallback ordering (arm v5 < v6 < v7 < v8; amd64 v1..v4;
/// arm64 v8 (empty) < v9 and v8.x).
fn variant_level(arch: &str, variant: &str) -> Option<u32> {
    let digits = |v: &str| -> Option<u32> {
        let v = v.strip_prefix('v')?;
        let mut parts = v.splitn(2, '.');
        let major: u32 = parts.next()?.parse().ok()?;
        let minor: u32 = parts.next().map(|m| m.parse().ok()).unwrap_or(Some(0))?;
        Some(major * 100 + minor)
    };
    match arch {
        "arm" => digits(variant),
        "amd64" => {
            if variant.is_empty() {
                Some(100)
            } else {
                digits(variant)
            }
        }
        "arm64" => {
            if variant.is_empty() {
                Some(800)
            } else {
                digits(variant)
            }
        }
        _ => None,
    }
}

fn normalize_os(os: &str) -> String {
    let os = os.to_ascii_lowercase();
    match os.as_str() {
        "macos" => "darwin".into(),
        _ => os,
    }
}

/// containerd's `normalizeArch`.
fn normalize_arch(arch: &str, variant: &str) -> (String, String) {
    let arch = arch.to_ascii_lowercase();
    let variant = variant.to_ascii_lowercase();
    match arch.as_str() {
        "i386" | "i486" | "i586" | "i686" | "x86" => ("386".into(), String::new()),
        "x86_64" | "x86-64" | "amd64" => {
            let variant = if variant == "v1" {
                String::new()
            } else {
                variant
            };
            ("amd64".into(), variant)
        }
        "aarch64" | "arm64" => {
            let variant = match variant.as_str() {
                "8" | "v8" | "v8.0" => String::new(),
                "9" | "9.0" | "v9.0" => "v9".into(),
                _ => variant,
            };
            ("arm64".into(), variant)
        }
        "armhf" => ("arm".into(), "v7".into()),
        "armel" => ("arm".into(), "v6".into()),
        "arm" => {
            let variant = match variant.as_str() {
                "" | "7" => "v7".into(),
                "5" | "6" | "8" => format!("v{variant}"),
                _ => variant,
            };
            ("arm".into(), variant)
        }
        "armv5" | "armv5l" => ("arm".into(), "v5".into()),
        "armv6" | "armv6l" => ("arm".into(), "v6".into()),
        "armv7" | "armv7l" => ("arm".into(), "v7".into()),
        "ppc64el" => ("ppc64le".into(), variant),
        "mipsel" => ("mipsle".into(), variant),
        "mips64el" => ("mips64le".into(), variant),
        "loongarch64" => ("loong64".into(), variant),
        "powerpc" => ("ppc".into(), variant),
        _ => (arch, variant),
    }
}

impl FromStr for Platform {
    type Err = PlatformError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let malformed = || PlatformError::Malformed(s.to_string());
        let s_trim = s.trim();
        if s_trim.is_empty() {
            return Err(malformed());
        }
        let parts: Vec<&str> = s_trim.split('/').collect();
        if parts
            .iter()
            .any(|p| p.is_empty() || p.contains(char::is_whitespace))
        {
            return Err(malformed());
        }
        let is_os = |p: &str| KNOWN_OS.contains(&p.to_ascii_lowercase().as_str());
        match parts.as_slice() {
            [one] if is_os(one) => Ok(Platform::new(one, std::env::consts::ARCH, "")),
            [arch] => Ok(Platform::new("linux", arch, "")),
            [os, arch] if is_os(os) => Ok(Platform::new(os, arch, "")),
            // `arm64/v8`, `arm/v7`: an architecture and its variant, on Linux.
            [arch, variant] => Ok(Platform::new("linux", arch, variant)),
            [os, arch, variant] => Ok(Platform::new(os, arch, variant)),
            _ => Err(malformed()),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if !self.variant.is_empty() {
            write!(f, "/{}", self.variant)?;
        }
        Ok(())
    }
}

impl serde::Serialize for Platform {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Platform {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <String as serde::Deserialize>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Parses a comma-separated `--platform` list, normalising and removing duplicates (order kept).
pub fn parse_list(s: &str) -> Result<Vec<Platform>, PlatformError> {
    let mut out: Vec<Platform> = Vec::new();
    for part in s.split(',') {
        let p: Platform = part.parse()?;
        if !out.contains(&p) {
            out.push(p);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Platform {
        s.parse().unwrap()
    }

    #[test]
    fn containerd_normalisation() {
        assert_eq!(p("linux/arm"), p("linux/arm/v7"));
        assert_eq!(p("linux/arm").to_string(), "linux/arm/v7");
        assert_eq!(p("arm64/v8"), p("linux/arm64"));
        assert_eq!(p("linux/arm64/v8").to_string(), "linux/arm64");
        assert_eq!(p("aarch64").to_string(), "linux/arm64");
        assert_eq!(p("armhf").to_string(), "linux/arm/v7");
        assert_eq!(p("armel").to_string(), "linux/arm/v6");
        assert_eq!(p("x86_64").to_string(), "linux/amd64");
        assert_eq!(p("linux/x86_64/v1").to_string(), "linux/amd64");
        assert_eq!(p("linux/amd64/v3").to_string(), "linux/amd64/v3");
        assert_eq!(p("i386").to_string(), "linux/386");
        assert_eq!(p("linux/arm/7").to_string(), "linux/arm/v7");
        assert_eq!(p("linux/arm/6").to_string(), "linux/arm/v6");
        assert_eq!(p("LINUX/ARM64").to_string(), "linux/arm64");
        assert_eq!(p("linux/arm64/9").to_string(), "linux/arm64/v9");
        assert_eq!(p("ppc64el").to_string(), "linux/ppc64le");
        assert_eq!(p("linux/s390x").to_string(), "linux/s390x");
        assert_eq!(p("arm/v6").to_string(), "linux/arm/v6");
    }

    #[test]
    fn malformed() {
        for bad in ["", "/", "linux//arm", "a/b/c/d", "linux/ arm", " "] {
            assert!(bad.parse::<Platform>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn fallbacks() {
        let v7 = p("linux/arm/v7");
        assert_eq!(p("linux/arm/v7").match_rank(&v7), Some(0));
        assert_eq!(p("linux/arm/v6").match_rank(&v7), Some(100));
        assert_eq!(p("linux/arm/v5").match_rank(&v7), Some(200));
        assert!(!p("linux/arm/v7").satisfies(&p("linux/arm/v6")));
        assert!(p("linux/amd64").satisfies(&p("linux/amd64/v3")));
        assert!(p("linux/amd64/v2").satisfies(&p("linux/amd64/v3")));
        assert!(!p("linux/amd64/v4").satisfies(&p("linux/amd64/v3")));
        assert!(p("linux/arm64").satisfies(&p("linux/arm64/v9")));
        assert!(!p("linux/arm64").satisfies(&p("linux/amd64")));
        assert!(!p("linux/arm64").satisfies(&p("windows/arm64")));
    }

    #[test]
    fn lists() {
        let l = parse_list("linux/arm64,linux/arm/v7,arm64/v8").unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(l[1].to_string(), "linux/arm/v7");
    }

    #[test]
    fn target_env() {
        let env = p("linux/arm/v7").target_env();
        assert!(env.contains(&("TARGETARCH".into(), "arm".into())));
        assert!(env.contains(&("TARGETVARIANT".into(), "v7".into())));
        assert!(env.contains(&("TARGETPLATFORM".into(), "linux/arm/v7".into())));
    }
}
