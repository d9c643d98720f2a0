//! The archive's signed index: `dists/<suite>/InRelease` verified with OpenPGP (rpgp) against the
//! Debian archive keyring, then read for the SHA256 and size of each index file, and the
//! `Packages` index read for a package's file, size and hash.
//!
//! Only the signed text is ever parsed; a changed byte anywhere in it fails every signature.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use pgp::composed::{CleartextSignedMessage, Deserializable, SignedPublicKey};

/// The system's Debian archive keyring.
pub const DEFAULT_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// Errors verifying or reading the archive's indexes.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    /// The keyring could not be read or holds no usable key.
    #[error(
        "cannot use keyring `{path}`: {reason}; install debian-archive-keyring or pass `--keyring FILE`"
    )]
    Keyring {
        /// The keyring file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// InRelease is not a valid clearsigned message.
    #[error("`{url}` is not a valid clearsigned InRelease file: {reason}")]
    Malformed {
        /// Where it came from.
        url: String,
        /// Why.
        reason: String,
    },
    /// No signature verified.
    #[error(
        "`{url}`: none of its {count} OpenPGP signatures verifies against `{keyring}`; the file was altered or signed by an unknown key, so nothing from this mirror is trusted"
    )]
    BadSignature {
        /// Where it came from.
        url: String,
        /// How many signatures it carried.
        count: usize,
        /// The keyring used.
        keyring: PathBuf,
    },
    /// The signed file is for another suite, or expired.
    #[error("`{url}`: {reason}")]
    Unacceptable {
        /// Where it came from.
        url: String,
        /// Why.
        reason: String,
    },
    /// A wanted file is not listed.
    #[error("`{url}` lists no SHA256 for `{file}`")]
    NotListed {
        /// Where it came from.
        url: String,
        /// The file looked for.
        file: String,
    },
}

/// The keys of a keyring.
pub struct Keyring {
    path: PathBuf,
    keys: Vec<SignedPublicKey>,
}

impl Keyring {
    /// Loads a binary (`.gpg`) or armored (`.asc`) keyring.
    pub fn load(path: &Path) -> Result<Keyring, ReleaseError> {
        let err = |reason: String| ReleaseError::Keyring {
            path: path.to_path_buf(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        let parsed: Vec<SignedPublicKey> = if bytes.starts_with(b"-----BEGIN") {
            SignedPublicKey::from_armor_many(&bytes[..])
                .map_err(|e| err(e.to_string()))?
                .0
                .filter_map(Result::ok)
                .collect()
        } else {
            SignedPublicKey::from_bytes_many(&bytes[..])
                .map_err(|e| err(e.to_string()))?
                .filter_map(Result::ok)
                .collect()
        };
        // The keyring is the trust anchor, so its primary keys are taken as they are (Debian's
        // keys also carry certifications by other keys, which a self-signature check rejects);
        // a subkey is used only when its binding signature by its primary key verifies.
        let keys: Vec<SignedPublicKey> = parsed
            .into_iter()
            .map(|mut k| {
                let primary = k.primary_key.clone();
                k.public_subkeys
                    .retain(|sk| sk.verify_bindings(&primary).is_ok());
                k
            })
            .collect();
        if keys.is_empty() {
            return Err(err("it holds no valid OpenPGP public key".into()));
        }
        Ok(Keyring {
            path: path.to_path_buf(),
            keys,
        })
    }

    /// How many keys it holds.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Is it empty? (Never, once loaded.)
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Verifies a clearsigned text: at least one signature must verify against a key (primary
    /// or subkey) of the keyring. Returns the signed text with LF line endings.
    pub fn verify_clearsigned(&self, url: &str, text: &str) -> Result<String, ReleaseError> {
        let (msg, _headers) =
            CleartextSignedMessage::from_string(text).map_err(|e| ReleaseError::Malformed {
                url: url.to_string(),
                reason: e.to_string(),
            })?;
        let signed = msg.signed_text();
        let verified = msg.signatures().iter().any(|sig| {
            self.keys.iter().any(|k| {
                sig.verify(k, signed.as_bytes()).is_ok()
                    || k.public_subkeys
                        .iter()
                        .any(|sk| sig.verify(sk, signed.as_bytes()).is_ok())
            })
        });
        if !verified {
            return Err(ReleaseError::BadSignature {
                url: url.to_string(),
                count: msg.signatures().len(),
                keyring: self.path.clone(),
            });
        }
        Ok(signed.replace("\r\n", "\n"))
    }
}

/// One file listed in a Release file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// SHA-256, hex.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

/// The fields of a verified Release file that matter here.
#[derive(Debug, Clone)]
pub struct Release {
    /// `Suite:` (e.g. `stable`).
    pub suite: String,
    /// `Codename:` (e.g. `trixie`).
    pub codename: String,
    /// `Date:`.
    pub date: String,
    /// `Valid-Until:`, when present.
    pub valid_until: Option<String>,
    sha256: HashMap<String, Listed>,
}

impl Release {
    /// Parses the signed text of an InRelease file.
    pub fn parse(text: &str) -> Release {
        let mut r = Release {
            suite: String::new(),
            codename: String::new(),
            date: String::new(),
            valid_until: None,
            sha256: HashMap::new(),
        };
        let mut in_sha256 = false;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix(' ') {
                if in_sha256 {
                    let mut w = rest.split_whitespace();
                    if let (Some(h), Some(s), Some(p)) = (w.next(), w.next(), w.next())
                        && let Ok(size) = s.parse()
                    {
                        r.sha256.insert(
                            p.to_string(),
                            Listed {
                                sha256: h.to_ascii_lowercase(),
                                size,
                            },
                        );
                    }
                }
                continue;
            }
            in_sha256 = false;
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            let v = v.trim().to_string();
            match k {
                "Suite" => r.suite = v,
                "Codename" => r.codename = v,
                "Date" => r.date = v,
                "Valid-Until" => r.valid_until = Some(v),
                "SHA256" => in_sha256 = true,
                _ => {}
            }
        }
        r
    }

    /// The SHA256 entry of a file (`main/binary-amd64/Packages.xz`).
    pub fn file(&self, url: &str, path: &str) -> Result<&Listed, ReleaseError> {
        self.sha256
            .get(path)
            .ok_or_else(|| ReleaseError::NotListed {
                url: url.to_string(),
                file: path.to_string(),
            })
    }

    /// Checks the file is for the suite asked for: its `Codename` must be exactly the codename
    /// in the URL (a moving name such as `oldstable` would let an old, genuinely signed file
    /// pass), it must not have expired (Valid-Until), and it must not be older than one already
    /// accepted for this suite (`not_before`, Unix seconds).
    pub fn check(
        &self,
        url: &str,
        codename: &str,
        now_unix: i64,
        not_before: Option<i64>,
    ) -> Result<(), ReleaseError> {
        if self.codename != codename {
            return Err(ReleaseError::Unacceptable {
                url: url.to_string(),
                reason: format!(
                    "it is the Release file of codename `{}` (suite `{}`), not of `{codename}`; the mirror serves the wrong suite",
                    self.codename, self.suite
                ),
            });
        }
        if let Some(vu) = &self.valid_until
            && let Some(t) = parse_rfc2822_utc(vu)
            && t < now_unix
        {
            return Err(ReleaseError::Unacceptable {
                url: url.to_string(),
                reason: format!(
                    "it expired at {vu} (Valid-Until); the mirror is stale or replaying old files"
                ),
            });
        }
        if let (Some(seen), Some(date)) = (not_before, parse_rfc2822_utc(&self.date))
            && date < seen
        {
            return Err(ReleaseError::Unacceptable {
                url: url.to_string(),
                reason: format!(
                    "it is dated {} but a newer one (Unix time {seen}) was already accepted for this suite; the mirror is replaying old files",
                    self.date
                ),
            });
        }
        Ok(())
    }

    /// The `Date:` as Unix seconds.
    pub fn date_unix(&self) -> Option<i64> {
        parse_rfc2822_utc(&self.date)
    }
}

/// Parses `Sat, 21 Nov 2026 00:53:02 UTC` (the archive's date format) to Unix seconds.
pub fn parse_rfc2822_utc(s: &str) -> Option<i64> {
    let s = s.split_once(", ").map_or(s, |(_, rest)| rest);
    let mut w = s.split_whitespace();
    let day: i64 = w.next()?.parse().ok()?;
    let month = match w.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: i64 = w.next()?.parse().ok()?;
    let mut hms = w.next()?.split(':').map(|x| x.parse::<i64>().ok());
    let (h, m, sec) = (
        hms.next()??,
        hms.next()??,
        hms.next().flatten().unwrap_or(0),
    );
    Some(days_from_civil(year, month, day) * 86400 + h * 3600 + m * 60 + sec)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// A package's stanza in a `Packages` index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageEntry {
    /// `Package:`.
    pub package: String,
    /// `Version:`.
    pub version: String,
    /// `Architecture:`.
    pub architecture: String,
    /// `Filename:` (relative to the mirror).
    pub filename: String,
    /// `Size:`.
    pub size: u64,
    /// `SHA256:`.
    pub sha256: String,
}

/// Finds a package in a `Packages` index (the first stanza with that name).
pub fn find_package(index: &str, name: &str) -> Option<PackageEntry> {
    for stanza in index.split("\n\n") {
        let mut fields: HashMap<&str, &str> = HashMap::new();
        for line in stanza.lines() {
            if line.starts_with(' ') {
                continue;
            }
            if let Some((k, v)) = line.split_once(':') {
                fields.insert(k, v.trim());
            }
        }
        if fields.get("Package") != Some(&name) {
            continue;
        }
        return Some(PackageEntry {
            package: name.to_string(),
            version: fields.get("Version")?.to_string(),
            architecture: fields.get("Architecture").unwrap_or(&"").to_string(),
            filename: fields.get("Filename")?.to_string(),
            size: fields.get("Size")?.parse().ok()?,
            sha256: fields.get("SHA256")?.to_ascii_lowercase(),
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const RELEASE: &str = "Origin: Debian\nSuite: stable\nCodename: trixie\nDate: Sat, 08 Nov 2025 10:00:00 UTC\nSHA256:\n 0123abcd 1234 main/binary-amd64/Packages.xz\n ffff 9 main/binary-arm64/Packages.xz\nSHA512:\n 99 1 main/binary-amd64/Packages.xz\n";

    #[test]
    fn release_fields() {
        let r = Release::parse(RELEASE);
        assert_eq!(r.codename, "trixie");
        assert_eq!(
            r.file("u", "main/binary-amd64/Packages.xz").unwrap(),
            &Listed {
                sha256: "0123abcd".into(),
                size: 1234
            }
        );
        assert!(r.file("u", "main/binary-s390x/Packages.xz").is_err());
        assert!(r.check("u", "trixie", 0, None).is_ok());
        assert!(
            r.check("u", "stable", 0, None).is_err(),
            "a moving suite name is not a codename"
        );
        let e = r.check("u", "bookworm", 0, None).unwrap_err().to_string();
        assert!(e.contains("wrong suite"), "{e}");
        let mut expired = r.clone();
        expired.valid_until = Some("Sat, 08 Nov 2025 10:00:00 UTC".into());
        assert!(expired.check("u", "trixie", 1_900_000_000, None).is_err());
        assert!(expired.check("u", "trixie", 1_700_000_000, None).is_ok());
        let date = r.date_unix().unwrap();
        assert!(r.check("u", "trixie", 0, Some(date)).is_ok());
        assert!(
            r.check("u", "trixie", 0, Some(date + 1))
                .unwrap_err()
                .to_string()
                .contains("replaying")
        );
    }

    #[test]
    fn dates() {
        assert_eq!(parse_rfc2822_utc("Thu, 01 Jan 1970 00:00:00 UTC"), Some(0));
        assert_eq!(
            parse_rfc2822_utc("Sat, 21 Nov 2026 00:53:02 UTC"),
            Some(1795222382)
        );
        assert_eq!(parse_rfc2822_utc("garbage"), None);
    }

    #[test]
    fn packages_index() {
        let idx = "Package: qemu-system\nVersion: 1\nFilename: a\nSize: 1\nSHA256: aa\n\nPackage: qemu-user\nVersion: 1:10.0.2+ds-2\nArchitecture: amd64\nDescription: x\n more\nFilename: pool/main/q/qemu/qemu-user_10.0.2+ds-2_amd64.deb\nSize: 71089852\nSHA256: ABCDEF\n";
        let p = find_package(idx, "qemu-user").unwrap();
        assert_eq!(p.version, "1:10.0.2+ds-2");
        assert_eq!(p.size, 71089852);
        assert_eq!(p.sha256, "abcdef");
        assert!(find_package(idx, "qemu-user-static").is_none());
    }
}
