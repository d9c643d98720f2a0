//! Everything a user names as an image, parsed once: `oci:DIR[:TAG]`, `oci-archive:FILE[:TAG]`,
//! `rootfs:FILE`, `scratch`, and registry references, as skopeo's `docker://REF` or Docker's
//! bare `[HOST[:PORT]/]REPO[:TAG][@sha256:DIGEST]` with Docker's normalisation (`alpine` is
//! `docker.io/library/alpine:latest`). Sources are opened by `oci::source`, destinations written
//! by `commit`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Docker Hub's name in references.
pub const DOCKER_HUB: &str = "docker.io";

/// Why a string is not an image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// Empty.
    #[error(
        "no image given; name one as oci:DIR[:TAG], oci-archive:FILE[:TAG], rootfs:FILE, scratch, docker://REF or HOST/REPO[:TAG]"
    )]
    Empty,
    /// A registry reference that breaks Docker's grammar.
    #[error("`{input}` is not a valid image reference: {reason}")]
    Invalid {
        /// What was given.
        input: String,
        /// What is wrong.
        reason: String,
    },
    /// A reference that cannot be written to.
    #[error(
        "`{0}` cannot be a destination; write to oci:DIR[:TAG], oci-archive:FILE[:TAG] or a registry reference"
    )]
    NotADestination(String),
}

/// An image in a registry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RegistryRef {
    /// The registry (`docker.io`, `127.0.0.1:5000`).
    pub registry: String,
    /// The repository (`library/alpine`).
    pub repository: String,
    /// The tag, if given. A source with neither tag nor digest means `latest`
    /// ([`RegistryRef::reference`]); a destination without a tag is pushed by digest only.
    pub tag: Option<String>,
    /// The digest, if given (`sha256:...`).
    pub digest: Option<String>,
}

/// Where an image is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    /// `oci:DIR[:TAG]`: an OCI image layout.
    Layout {
        /// The layout.
        dir: PathBuf,
        /// The tag.
        tag: Option<String>,
    },
    /// `oci-archive:FILE[:TAG]`: a tar of a layout.
    Archive {
        /// The archive.
        file: PathBuf,
        /// The tag.
        tag: Option<String>,
    },
    /// `rootfs:FILE`: a root file system tarball (plain, gz, xz or zstd).
    Rootfs(PathBuf),
    /// `scratch`: an empty root.
    Scratch,
    /// `docker://REF` or `HOST/REPO[:TAG][@DIGEST]`.
    Registry(RegistryRef),
}

/// Where an image is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// `oci:DIR[:TAG]` (`latest` by default).
    Layout {
        /// The layout.
        dir: PathBuf,
        /// The tag.
        tag: String,
    },
    /// `oci-archive:FILE[:TAG]` (`latest` by default).
    Archive {
        /// The archive.
        file: PathBuf,
        /// The tag.
        tag: String,
    },
    /// A registry repository, by tag or by digest only.
    Registry(RegistryRef),
}

/// Splits `PATH[:TAG]`: the part after the last `:` is a tag when it holds no `/`.
fn split_tag(s: &str) -> (PathBuf, Option<String>) {
    match s.rsplit_once(':') {
        Some((p, t)) if !t.contains('/') && !t.is_empty() && !p.is_empty() => {
            (PathBuf::from(p), Some(t.to_string()))
        }
        _ => (PathBuf::from(s), None),
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if s == "scratch" {
            return Ok(Reference::Scratch);
        }
        if let Some(rest) = s.strip_prefix("oci:") {
            let (dir, tag) = split_tag(rest);
            return Ok(Reference::Layout { dir, tag });
        }
        if let Some(rest) = s.strip_prefix("oci-archive:") {
            let (file, tag) = split_tag(rest);
            return Ok(Reference::Archive { file, tag });
        }
        if let Some(rest) = s.strip_prefix("rootfs:") {
            return Ok(Reference::Rootfs(PathBuf::from(rest)));
        }
        let bare = s.strip_prefix("docker://").unwrap_or(s);
        RegistryRef::parse(bare).map(Reference::Registry)
    }
}

impl Reference {
    /// Where a commit of this reference writes (a tag defaults to `latest`).
    pub fn destination(&self) -> Result<Destination, ReferenceError> {
        match self {
            Reference::Layout { dir, tag } => Ok(Destination::Layout {
                dir: dir.clone(),
                tag: tag.clone().unwrap_or_else(|| "latest".into()),
            }),
            Reference::Archive { file, tag } => Ok(Destination::Archive {
                file: file.clone(),
                tag: tag.clone().unwrap_or_else(|| "latest".into()),
            }),
            Reference::Registry(r) => Ok(Destination::Registry(r.clone())),
            Reference::Rootfs(_) | Reference::Scratch => {
                Err(ReferenceError::NotADestination(self.to_string()))
            }
        }
    }
}

impl FromStr for Destination {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse::<Reference>()?.destination()
    }
}

fn tagged(
    f: &mut fmt::Formatter<'_>,
    kind: &str,
    p: &std::path::Path,
    t: Option<&str>,
) -> fmt::Result {
    match t {
        Some(t) => write!(f, "{kind}:{}:{t}", p.display()),
        None => write!(f, "{kind}:{}", p.display()),
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Layout { dir, tag } => tagged(f, "oci", dir, tag.as_deref()),
            Reference::Archive { file, tag } => tagged(f, "oci-archive", file, tag.as_deref()),
            Reference::Rootfs(p) => write!(f, "rootfs:{}", p.display()),
            Reference::Scratch => f.write_str("scratch"),
            Reference::Registry(r) => write!(f, "docker://{r}"),
        }
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Destination::Layout { dir, tag } => tagged(f, "oci", dir, Some(tag)),
            Destination::Archive { file, tag } => tagged(f, "oci-archive", file, Some(tag)),
            Destination::Registry(r) => write!(f, "docker://{r}"),
        }
    }
}

/// A path component of a repository: `[a-z0-9]+` joined by `.`, `_`, `__` or dashes.
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            x if x.is_ascii_lowercase() || x.is_ascii_digit() => i += 1,
            b'.' | b'_' | b'-' => {
                let start = i;
                while i < b.len() && matches!(b[i], b'.' | b'_' | b'-') {
                    i += 1;
                }
                let sep = &c[start..i];
                if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-')) {
                    return false;
                }
            }
            _ => return false,
        }
    }
    true
}

/// A tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|x| x.is_ascii_alphanumeric() || matches!(x, b'_' | b'.' | b'-'))
}

/// A registry host: a DNS name or IP (v6 in brackets), with an optional port.
fn valid_host(h: &str) -> bool {
    let (host, port) = match h.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || h.starts_with('[') => (host, Some(port)),
        _ => (h, None),
    };
    let host_ok = if let Some(v6) = host.strip_prefix('[').and_then(|x| x.strip_suffix(']')) {
        v6.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        !host.is_empty()
            && host.split('.').all(|l| {
                !l.is_empty()
                    && l.bytes().all(|x| x.is_ascii_alphanumeric() || x == b'-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            })
    };
    host_ok
        && port
            .is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|x| x.is_ascii_digit()))
}

impl RegistryRef {
    /// Parses Docker's `[HOST[:PORT]/]REPO[:TAG][@DIGEST]` with Docker's defaults: no host is
    /// Docker Hub (`docker.io`, whose one-component names live under `library/`), no tag and
    /// no digest is `latest`.
    pub fn parse(input: &str) -> Result<RegistryRef, ReferenceError> {
        let invalid = |reason: &str| ReferenceError::Invalid {
            input: input.to_string(),
            reason: reason.to_string(),
        };
        let (name_tag, digest) = match input.split_once('@') {
            Some((n, d)) => {
                let ok = d.parse::<oci_spec::image::Digest>().is_ok() && d.starts_with("sha256:");
                if !ok {
                    return Err(invalid(
                        "the digest must be sha256: and 64 lowercase hex digits",
                    ));
                }
                (n, Some(d.to_string()))
            }
            None => (input, None),
        };
        // The tag follows the last `:` after the last `/` (a `:` before it is a port).
        let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name_tag[last_slash..].rfind(':') {
            Some(i) => {
                let at = last_slash + i;
                (&name_tag[..at], Some(name_tag[at + 1..].to_string()))
            }
            None => (name_tag, None),
        };
        if let Some(t) = &tag
            && !valid_tag(t)
        {
            return Err(invalid(&format!(
                "`{t}` is not a valid tag (letters, digits, `_`, `.`, `-`; at most 128)"
            )));
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                if !valid_host(first) {
                    return Err(invalid(&format!(
                        "`{first}` is not a valid registry host; a local path needs `oci:`, `oci-archive:` or `rootfs:` before it"
                    )));
                }
                (first.to_string(), rest.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        let registry = if registry == "index.docker.io" || registry == "registry-1.docker.io" {
            DOCKER_HUB.to_string()
        } else {
            registry
        };
        if repository.is_empty() {
            return Err(invalid("no repository name"));
        }
        if repository.len() > 255 {
            return Err(invalid("the repository name is longer than 255 characters"));
        }
        if let Some(bad) = repository.split('/').find(|c| !valid_component(c)) {
            return Err(invalid(&format!(
                "`{bad}` is not a valid repository name component (lowercase letters, digits, and `.`, `_`, `__` or `-` between them); a local path needs `oci:`, `oci-archive:` or `rootfs:` before it"
            )));
        }
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        Ok(RegistryRef {
            registry,
            repository,
            tag,
            digest,
        })
    }
}

impl RegistryRef {
    /// What a pull asks for: the digest, else the tag, else `latest`.
    pub fn reference(&self) -> String {
        self.digest
            .clone()
            .or_else(|| self.tag.clone())
            .unwrap_or_else(|| "latest".into())
    }
}

impl fmt::Display for RegistryRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(s: &str) -> RegistryRef {
        match s.parse::<Reference>().unwrap() {
            Reference::Registry(r) => r,
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn local_references() {
        assert_eq!(
            "oci:/tmp/x:latest".parse::<Reference>().unwrap(),
            Reference::Layout {
                dir: "/tmp/x".into(),
                tag: Some("latest".into())
            }
        );
        assert_eq!(
            "oci:./dir".parse::<Reference>().unwrap(),
            Reference::Layout {
                dir: "./dir".into(),
                tag: None
            }
        );
        assert_eq!(
            "rootfs:/a/b.tar.gz".parse::<Reference>().unwrap(),
            Reference::Rootfs("/a/b.tar.gz".into())
        );
        assert_eq!("scratch".parse::<Reference>().unwrap(), Reference::Scratch);
        assert_eq!(
            "oci-archive:/x.tar:v1"
                .parse::<Reference>()
                .unwrap()
                .to_string(),
            "oci-archive:/x.tar:v1"
        );
        assert_eq!("".parse::<Reference>(), Err(ReferenceError::Empty));
    }

    #[test]
    fn docker_normalisation() {
        assert_eq!(reg("alpine").to_string(), "docker.io/library/alpine");
        assert_eq!(reg("alpine").reference(), "latest");
        assert_eq!(reg("alpine").tag, None);
        assert_eq!(
            reg("docker://alpine:3.20").to_string(),
            "docker.io/library/alpine:3.20"
        );
        assert_eq!(reg("user/app").repository, "user/app");
        assert_eq!(reg("index.docker.io/library/busybox").registry, "docker.io");
        let r = reg("127.0.0.1:5000/team/app:v1");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("127.0.0.1:5000", "team/app", Some("v1"))
        );
        let r = reg("localhost/app");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("localhost", "app")
        );
        let d = format!("sha256:{}", "a".repeat(64));
        let r = reg(&format!("quay.io/org/app@{d}"));
        assert_eq!((r.tag.clone(), r.digest.clone()), (None, Some(d.clone())));
        let r = reg(&format!("quay.io/org/app:v2@{d}"));
        assert_eq!(r.tag.as_deref(), Some("v2"));
        assert_eq!(r.to_string(), format!("quay.io/org/app:v2@{d}"));
    }

    #[test]
    fn bad_references_say_why() {
        for bad in [
            "UPPER/case",
            "a//b",
            "app:",
            "app:bad/tag",
            "app@sha256:short",
            "-app",
            "host.example:99999999/app",
            "./relative/path",
        ] {
            let e = bad.parse::<Reference>().unwrap_err().to_string();
            assert!(e.contains(bad) || e.contains("valid"), "{bad}: {e}");
        }
        let e = "./dir".parse::<Reference>().unwrap_err().to_string();
        assert!(e.contains("oci:"), "{e}");
    }

    #[test]
    fn destinations() {
        assert_eq!(
            "oci:/out:v1".parse::<Destination>().unwrap(),
            Destination::Layout {
                dir: "/out".into(),
                tag: "v1".into()
            }
        );
        assert_eq!(
            "oci:./out".parse::<Destination>().unwrap(),
            Destination::Layout {
                dir: "./out".into(),
                tag: "latest".into()
            }
        );
        assert!(matches!(
            "scratch".parse::<Destination>(),
            Err(ReferenceError::NotADestination(_))
        ));
        assert!(matches!(
            "docker://127.0.0.1:5000/x".parse::<Destination>(),
            Ok(Destination::Registry(_))
        ));
    }
}
