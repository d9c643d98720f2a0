//! Which Debian mirror to fetch from: `--mirror` (or `$BINFMTCTL_MIRROR`, read with the other
//! settings), else the Debian mirror in the system's apt sources (one-line `.list` and deb822 `.sources` files). No mirror's
//! host name is built in.

use std::path::Path;

/// The environment variable naming a mirror.
pub const ENV: &str = "BINFMTCTL_MIRROR";

/// Errors finding a mirror.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    /// None was given and the apt sources name none.
    #[error(
        "no Debian mirror is known: pass `--mirror URL` (e.g. `--mirror http://<debian-mirror>/debian`), set ${ENV}, or add a Debian mirror to /etc/apt/sources.list"
    )]
    NotFound,
    /// The given mirror is not an http(s) URL.
    #[error("mirror `{0}` is not an http:// or https:// URL")]
    BadUrl(String),
}

/// Picks the mirror: the one given, else the apt sources under `apt_dir` (`/etc/apt`).
pub fn resolve(explicit: Option<&str>, apt_dir: &Path) -> Result<String, MirrorError> {
    let chosen = explicit
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .or_else(|| from_apt_sources(apt_dir));
    let url = chosen.ok_or(MirrorError::NotFound)?;
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(MirrorError::BadUrl(url));
    }
    Ok(url.trim_end_matches('/').to_string())
}

/// A `deb` source: its URI and suites.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Source {
    uri: String,
    suites: Vec<String>,
    components: Vec<String>,
}

/// The first apt source that is the Debian archive proper (URI path ending in `/debian`, with
/// `main`), from `sources.list`, then `sources.list.d/*.list` and `*.sources` in name order.
pub fn from_apt_sources(apt_dir: &Path) -> Option<String> {
    let mut sources = Vec::new();
    if let Ok(text) = std::fs::read_to_string(apt_dir.join("sources.list")) {
        sources.extend(parse_one_line(&text));
    }
    let mut files: Vec<_> = std::fs::read_dir(apt_dir.join("sources.list.d"))
        .map(|rd| rd.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        match f.extension().and_then(|e| e.to_str()) {
            Some("list") => sources.extend(parse_one_line(&text)),
            Some("sources") => sources.extend(parse_deb822(&text)),
            _ => {}
        }
    }
    sources
        .into_iter()
        .find(|s| {
            let path = s.uri.trim_end_matches('/');
            path.ends_with("/debian") && s.components.iter().any(|c| c == "main")
        })
        .map(|s| s.uri.trim_end_matches('/').to_string())
}

/// `deb [options] URI suite component...` lines.
fn parse_one_line(text: &str) -> Vec<Source> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some(rest) = line.strip_prefix("deb ") else {
            continue;
        };
        let mut rest = rest.trim();
        if rest.starts_with('[') {
            match rest.find(']') {
                Some(i) => rest = rest[i + 1..].trim(),
                None => continue,
            }
        }
        let mut words = rest.split_whitespace();
        let (Some(uri), Some(suite)) = (words.next(), words.next()) else {
            continue;
        };
        out.push(Source {
            uri: uri.to_string(),
            suites: vec![suite.to_string()],
            components: words.map(str::to_string).collect(),
        });
    }
    out
}

/// deb822 stanzas: `Types: deb`, `URIs:`, `Suites:`, `Components:`, `Enabled:`.
fn parse_deb822(text: &str) -> Vec<Source> {
    let mut out = Vec::new();
    for stanza in text.split("\n\n") {
        let mut types = Vec::new();
        let mut uris = Vec::new();
        let mut suites = Vec::new();
        let mut components = Vec::new();
        let mut enabled = true;
        for line in stanza.lines() {
            if line.starts_with('#') || line.starts_with(' ') || line.starts_with('\t') {
                continue;
            }
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            let words = || v.split_whitespace().map(str::to_string).collect::<Vec<_>>();
            match k.trim().to_ascii_lowercase().as_str() {
                "types" => types = words(),
                "uris" => uris = words(),
                "suites" => suites = words(),
                "components" => components = words(),
                "enabled" => enabled = v.trim() != "no",
                _ => {}
            }
        }
        if !enabled || !types.iter().any(|t| t == "deb") {
            continue;
        }
        for uri in uris {
            out.push(Source {
                uri,
                suites: suites.clone(),
                components: components.clone(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deb822_and_one_line() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("sources.list.d")).unwrap();
        std::fs::write(
            d.path().join("sources.list.d/debian.sources"),
            "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\nComponents: main\n\nTypes: deb deb-src\nURIs: http://mirror.example/debian/\nSuites: bookworm bookworm-updates\nComponents: main contrib\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n",
        )
        .unwrap();
        assert_eq!(
            from_apt_sources(d.path()).as_deref(),
            Some("http://mirror.example/debian")
        );
        std::fs::write(
            d.path().join("sources.list"),
            "# comment\ndeb [arch=amd64 signed-by=/x.gpg] https://other.example/debian bookworm main\n",
        )
        .unwrap();
        assert_eq!(
            from_apt_sources(d.path()).as_deref(),
            Some("https://other.example/debian")
        );
    }

    #[test]
    fn explicit_wins_and_is_checked() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(
            resolve(Some("http://127.0.0.1:9/debian/"), d.path()).unwrap(),
            "http://127.0.0.1:9/debian"
        );
        assert!(matches!(
            resolve(Some("ftp://x"), d.path()),
            Err(MirrorError::BadUrl(_))
        ));
    }

    #[test]
    fn disabled_and_non_debian_sources_are_ignored() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("sources.list.d")).unwrap();
        std::fs::write(
            d.path().join("sources.list.d/a.sources"),
            "Types: deb\nURIs: http://a.example/debian\nSuites: trixie\nComponents: main\nEnabled: no\n\nTypes: deb\nURIs: https://repo.example/apt\nSuites: stable\nComponents: main\n",
        )
        .unwrap();
        assert_eq!(from_apt_sources(d.path()), None);
    }
}
