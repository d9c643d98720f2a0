//! Registry authentication: the `WWW-Authenticate` challenge (`Bearer realm=…,service=…,scope=…`
//! or `Basic realm=…`), scopes, and the bearer tokens a token service hands out, cached until
//! they expire.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// `Bearer realm=…,service=…,scope=…`.
    Bearer {
        /// Where tokens come from.
        realm: String,
        /// The service the token is for.
        service: Option<String>,
        /// The scope the registry asked for, if it said.
        scope: Option<String>,
    },
    /// `Basic realm=…`.
    Basic,
}

/// Why a challenge could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the registry's authentication challenge `{header}` cannot be read: {reason}")]
pub struct ChallengeError {
    /// The header's value (cut to 200 bytes).
    pub header: String,
    /// Why.
    pub reason: String,
}

/// Parses `Scheme k="v", k2=v2` (quoted strings with `\` escapes, or tokens).
pub fn parse_challenge(header: &str) -> Result<Challenge, ChallengeError> {
    let fail = |reason: &str| ChallengeError {
        header: header.chars().take(200).collect(),
        reason: reason.to_string(),
    };
    let h = header.trim();
    let (scheme, rest) = h.split_once(char::is_whitespace).unwrap_or((h, ""));
    let params = parse_params(rest).map_err(|r| fail(&r))?;
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Ok(Challenge::Basic),
        "bearer" => {
            let realm = params
                .get("realm")
                .filter(|r| !r.is_empty())
                .ok_or_else(|| fail("a Bearer challenge needs a realm"))?
                .clone();
            Ok(Challenge::Bearer {
                realm,
                service: params.get("service").cloned(),
                scope: params.get("scope").cloned(),
            })
        }
        other => Err(fail(&format!("unknown scheme `{other}`"))),
    }
}

fn parse_params(s: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    let b = s.as_bytes();
    let mut i = 0;
    let skip = |i: &mut usize| {
        while *i < b.len() && (b[*i] == b' ' || b[*i] == b'\t' || b[*i] == b',') {
            *i += 1;
        }
    };
    loop {
        skip(&mut i);
        if i >= b.len() {
            return Ok(out);
        }
        let start = i;
        while i < b.len() && b[i] != b'=' && b[i] != b',' {
            i += 1;
        }
        if i >= b.len() || b[i] != b'=' {
            return Err(format!("`{}` has no value", &s[start..i]));
        }
        let key = s[start..i].trim().to_ascii_lowercase();
        i += 1;
        let mut value = String::new();
        if i < b.len() && b[i] == b'"' {
            i += 1;
            loop {
                match b.get(i) {
                    None => return Err("an unterminated quoted string".into()),
                    Some(b'"') => {
                        i += 1;
                        break;
                    }
                    Some(b'\\') if i + 1 < b.len() => {
                        // The escaped character is taken as it is (a UTF-8 boundary is kept by
                        // taking whole characters).
                        let c = s[i + 1..].chars().next().unwrap_or('\\');
                        value.push(c);
                        i += 1 + c.len_utf8();
                    }
                    Some(_) => {
                        let c = s[i..].chars().next().unwrap_or(' ');
                        value.push(c);
                        i += c.len_utf8();
                    }
                }
            }
        } else {
            let vstart = i;
            while i < b.len() && b[i] != b',' {
                i += 1;
            }
            value = s[vstart..i].trim().to_string();
        }
        if key.is_empty() {
            return Err("a parameter with no name".into());
        }
        if out.len() > 32 {
            return Err("too many parameters".into());
        }
        out.insert(key, value);
    }
}

/// A repository scope: `repository:<name>:<actions>`.
pub fn scope(repository: &str, push: bool) -> String {
    if push {
        format!("repository:{repository}:pull,push")
    } else {
        format!("repository:{repository}:pull")
    }
}

/// A token and when it stops being good.
#[derive(Debug, Clone)]
pub struct Token {
    /// The bearer token.
    pub value: String,
    /// When to stop using it.
    pub expires: Instant,
}

/// What a token service answers.
#[derive(Debug, serde::Deserialize)]
pub struct TokenAnswer {
    /// The token (Docker's name).
    #[serde(default)]
    pub token: Option<String>,
    /// The token (OAuth2's name).
    #[serde(default)]
    pub access_token: Option<String>,
    /// Lifetime in seconds (60 when absent, as the spec says).
    #[serde(default)]
    pub expires_in: Option<u64>,
}

impl TokenAnswer {
    /// The token, good until a little before it expires.
    pub fn into_token(self) -> Option<Token> {
        let value = self.token.or(self.access_token).filter(|t| !t.is_empty())?;
        let life = Duration::from_secs(self.expires_in.unwrap_or(60).max(10));
        Some(Token {
            value,
            expires: Instant::now() + life - Duration::from_secs(5),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#
            )
            .unwrap(),
            Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/alpine:pull".into()),
            }
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#).unwrap(),
            Challenge::Basic
        );
        assert_eq!(
            parse_challenge(r#"bearer realm=http://127.0.0.1:5001/t, service = reg"#).unwrap(),
            Challenge::Bearer {
                realm: "http://127.0.0.1:5001/t".into(),
                service: Some("reg".into()),
                scope: None,
            }
        );
        let esc = parse_challenge(r#"Bearer realm="a\"b",scope="x""#).unwrap();
        assert!(matches!(esc, Challenge::Bearer { realm, .. } if realm == "a\"b"));
        for bad in [
            "Bearer",
            r#"Bearer realm="open"#,
            "Digest realm=x",
            "Bearer =x",
            "Bearer realm",
        ] {
            assert!(parse_challenge(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tokens() {
        let t: TokenAnswer = serde_json::from_str(r#"{"token":"abc","expires_in":300}"#).unwrap();
        let t = t.into_token().unwrap();
        assert_eq!(t.value, "abc");
        assert!(t.expires > Instant::now() + Duration::from_secs(200));
        let t: TokenAnswer = serde_json::from_str(r#"{"access_token":"x"}"#).unwrap();
        assert_eq!(t.into_token().unwrap().value, "x");
        let t: TokenAnswer = serde_json::from_str(r#"{"token":""}"#).unwrap();
        assert!(t.into_token().is_none());
        assert_eq!(scope("a/b", true), "repository:a/b:pull,push");
    }
}
