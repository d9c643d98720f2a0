//! Word expansion as BuildKit's shell lexer does it (`frontend/dockerfile/shell/lex.go`):
//! `$V`, `${V}` and the modifiers `:-` `-` `:+` `+` `:?` `?` `#` `##` `%` `%%` `/` `//`, single
//! and double quotes (removed, unless raw), the escape character, and the split into words
//! that EXPOSE, VOLUME and heredoc detection use. Behaviour is checked against BuildKit's own
//! vectors (`envVarTest`, `wordsTest`) in this module's tests.

use std::collections::BTreeSet;

/// Where variables are looked up.
pub trait Env {
    /// The value of `name`, if it is set (set and empty is `Some("")`).
    fn get(&self, name: &str) -> Option<String>;
}

impl Env for [(String, String)] {
    fn get(&self, name: &str) -> Option<String> {
        // The last assignment wins.
        self.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
}

impl Env for Vec<(String, String)> {
    fn get(&self, name: &str) -> Option<String> {
        Env::get(self.as_slice(), name)
    }
}

/// No variables at all.
pub struct NoEnv;

impl Env for NoEnv {
    fn get(&self, _: &str) -> Option<String> {
        None
    }
}

/// Why an expansion failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed to process `{source_text}`: {reason}")]
pub struct ExpandError {
    /// The text being expanded.
    pub source_text: String,
    /// What went wrong.
    pub reason: String,
}

/// The lexer's settings.
#[derive(Debug, Clone, Copy)]
pub struct Lex {
    /// The escape character (`\`, or `` ` `` with `# escape=`).
    pub escape: char,
    /// Keep quotes in the result.
    pub raw_quotes: bool,
    /// Keep escape characters in the result.
    pub raw_escapes: bool,
    /// Leave an unset variable's reference as it was written.
    pub skip_unset_env: bool,
}

impl Lex {
    /// A lexer with escape character `escape`.
    pub fn new(escape: char) -> Lex {
        Lex {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_unset_env: false,
        }
    }

    /// Expands `word` into one string.
    pub fn word(&self, word: &str, env: &dyn Env) -> Result<String, ExpandError> {
        Ok(self.run(word, env)?.0)
    }

    /// Expands `word` and the names it read that were set.
    pub fn word_with_matches(
        &self,
        word: &str,
        env: &dyn Env,
    ) -> Result<(String, BTreeSet<String>), ExpandError> {
        let (w, _, m) = self.run(word, env)?;
        Ok((w, m))
    }

    /// Expands `word` and splits the result into words (unquoted whitespace separates).
    pub fn words(&self, word: &str, env: &dyn Env) -> Result<Vec<String>, ExpandError> {
        Ok(self.run(word, env)?.1)
    }

    fn run(
        &self,
        word: &str,
        env: &dyn Env,
    ) -> Result<(String, Vec<String>, BTreeSet<String>), ExpandError> {
        let mut sw = ShellWord {
            chars: word.chars().collect(),
            pos: 0,
            env,
            lex: *self,
            matches: BTreeSet::new(),
        };
        let raw = self.raw_escapes;
        let (w, words) = sw.stop_on(None, raw).map_err(|reason| ExpandError {
            source_text: word.to_string(),
            reason,
        })?;
        Ok((w, words, sw.matches))
    }
}

struct ShellWord<'e> {
    chars: Vec<char>,
    pos: usize,
    env: &'e dyn Env,
    lex: Lex,
    matches: BTreeSet<String>,
}

/// Words being split as characters arrive.
#[derive(Default)]
struct Words {
    word: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, c: char) {
        if c.is_whitespace() {
            if self.in_word && !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(c);
        }
    }

    fn add_raw_char(&mut self, c: char) {
        self.word.push(c);
        self.in_word = true;
    }

    fn add_str(&mut self, s: &str) {
        s.chars().for_each(|c| self.add_char(c));
    }

    fn add_raw_str(&mut self, s: &str) {
        self.word.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(std::mem::take(&mut self.word));
        }
        self.words
    }
}

type Step<T> = Result<T, String>;

impl ShellWord<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    fn get_env(&mut self, name: &str) -> Option<String> {
        let v = self.env.get(name);
        if v.is_some() {
            self.matches.insert(name.to_string());
        }
        v
    }

    /// Up to `stop` (consumed) or the end: the expanded text and its words.
    fn stop_on(&mut self, stop: Option<char>, raw_escapes: bool) -> Step<(String, Vec<String>)> {
        let saved = self.lex.raw_escapes;
        self.lex.raw_escapes = raw_escapes;
        let out = self.stop_on_inner(stop);
        self.lex.raw_escapes = saved;
        out
    }

    fn stop_on_inner(&mut self, stop: Option<char>) -> Step<(String, Vec<String>)> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(c) = self.peek() {
            if Some(c) == stop {
                self.next();
                return Ok((result, words.finish()));
            }
            match c {
                '$' => {
                    let v = self.dollar()?;
                    result.push_str(&v);
                    words.add_str(&v);
                }
                '\'' => {
                    let v = self.single_quote()?;
                    result.push_str(&v);
                    words.add_raw_str(&v);
                }
                '"' => {
                    let v = self.double_quote()?;
                    result.push_str(&v);
                    words.add_raw_str(&v);
                }
                _ => {
                    let mut c = self.next().expect("peeked");
                    if c == self.lex.escape {
                        if self.lex.raw_escapes {
                            words.add_raw_char(c);
                            result.push(c);
                        }
                        match self.next() {
                            None => break,
                            Some(n) => c = n,
                        }
                        words.add_raw_char(c);
                    } else {
                        words.add_char(c);
                    }
                    result.push(c);
                }
            }
        }
        if let Some(s) = stop {
            return Err(format!(
                "unexpected end of statement while looking for matching {s}"
            ));
        }
        Ok((result, words.finish()))
    }

    fn single_quote(&mut self) -> Step<String> {
        let mut result = String::new();
        let open = self.next().expect("peeked");
        if self.lex.raw_quotes {
            result.push(open);
        }
        loop {
            match self.next() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching single-quote"
                            .into(),
                    );
                }
                Some('\'') => {
                    if self.lex.raw_quotes {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(c) => result.push(c),
            }
        }
    }

    fn double_quote(&mut self) -> Step<String> {
        let mut result = String::new();
        let open = self.next().expect("peeked");
        if self.lex.raw_quotes {
            result.push(open);
        }
        loop {
            match self.peek() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching double-quote"
                            .into(),
                    );
                }
                Some('"') => {
                    self.next();
                    if self.lex.raw_quotes {
                        result.push('"');
                    }
                    return Ok(result);
                }
                Some('$') => {
                    let v = self.dollar()?;
                    result.push_str(&v);
                }
                Some(_) => {
                    let mut c = self.next().expect("peeked");
                    if c == self.lex.escape {
                        if self.lex.raw_escapes {
                            result.push(c);
                        }
                        match self.peek() {
                            // An escape at the very end is dropped.
                            None => continue,
                            Some(n) if n == '"' || n == '$' || n == self.lex.escape => {
                                c = self.next().expect("peeked");
                            }
                            Some(_) => {}
                        }
                    }
                    result.push(c);
                }
            }
        }
    }

    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek() {
            if name.is_empty() && c.is_ascii_digit() {
                while let Some(d) = self.peek().filter(char::is_ascii_digit) {
                    self.next();
                    name.push(d);
                }
                return name;
            }
            if name.is_empty() && matches!(c, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.next();
                return c.to_string();
            }
            if !c.is_alphanumeric() && c != '_' {
                break;
            }
            self.next();
            name.push(c);
        }
        name
    }

    fn dollar(&mut self) -> Step<String> {
        self.next();
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".into());
            }
            return Ok(match self.get_env(&name) {
                Some(v) => v,
                None if self.lex.skip_unset_env => format!("${name}"),
                None => String::new(),
            });
        }
        self.next();
        match self.peek() {
            None => return Err("syntax error: missing '}'".into()),
            Some('{' | '}' | ':') => return Err("syntax error: bad substitution".into()),
            Some(_) => {}
        }
        let name = self.name();
        let Some(mut c) = self.next() else {
            return Err("syntax error: missing '}'".into());
        };
        let mut chs = c.to_string();
        let mut null_is_unset = false;
        match c {
            '}' => Ok(match self.get_env(&name) {
                Some(v) => v,
                None if self.lex.skip_unset_env => format!("${{{name}}}"),
                None => String::new(),
            }),
            ':' | '+' | '-' | '?' | '#' | '%' => {
                if c == ':' {
                    null_is_unset = true;
                    c = self.next().ok_or("syntax error: missing '}'")?;
                    chs.push(c);
                }
                let raw = c == '#' || c == '%';
                if null_is_unset && raw {
                    return Err(format!("unsupported modifier ({chs}) in substitution"));
                }
                if !matches!(c, '+' | '-' | '?' | '#' | '%') {
                    return Err(format!("unsupported modifier ({chs}) in substitution"));
                }
                let word = match self.stop_on(Some('}'), raw) {
                    Ok((w, _)) => w,
                    Err(_) if self.peek().is_none() => {
                        return Err("syntax error: missing '}'".into());
                    }
                    Err(e) => return Err(e),
                };
                let value = self.get_env(&name);
                if self.lex.skip_unset_env && value.is_none() {
                    return Ok(format!("${{{name}{chs}{word}}}"));
                }
                let unset = value.is_none() || (null_is_unset && value.as_deref() == Some(""));
                match c {
                    '-' => Ok(if unset {
                        word
                    } else {
                        value.unwrap_or_default()
                    }),
                    '+' => Ok(if unset { String::new() } else { word }),
                    '?' => match value {
                        None => Err(format!(
                            "{name}: {}",
                            if word.is_empty() {
                                "is not allowed to be unset"
                            } else {
                                &word
                            }
                        )),
                        Some(v) if null_is_unset && v.is_empty() => Err(format!(
                            "{name}: {}",
                            if word.is_empty() {
                                "is not allowed to be empty"
                            } else {
                                &word
                            }
                        )),
                        Some(v) => Ok(v),
                    },
                    _ => {
                        let value = value.unwrap_or_default();
                        let (greedy, pattern) = match word.strip_prefix(c) {
                            Some(rest) => (true, rest.to_string()),
                            None => (false, word),
                        };
                        if c == '%' {
                            trim_suffix(&pattern, &value, greedy)
                        } else {
                            trim_prefix(&pattern, &value, greedy)
                        }
                    }
                }
            }
            '/' => {
                let all = self.peek() == Some('/');
                if all {
                    self.next();
                }
                let pattern = match self.stop_on(Some('/'), true) {
                    Ok((w, _)) => w,
                    Err(_) if self.peek().is_none() => {
                        return Err("syntax error: missing '/' in ${}".into());
                    }
                    Err(e) => return Err(e),
                };
                let replacement = match self.stop_on(Some('}'), true) {
                    Ok((w, _)) => w,
                    Err(_) if self.peek().is_none() => {
                        return Err("syntax error: missing '}'".into());
                    }
                    Err(e) => return Err(e),
                };
                let value = self.get_env(&name);
                if self.lex.skip_unset_env && value.is_none() {
                    return Ok(format!("${{{name}/{pattern}/{replacement}}}"));
                }
                let value = value.unwrap_or_default();
                let re = pattern_regex(&pattern, true, false)
                    .map_err(|e| format!("invalid pattern ({pattern}) in substitution: {e}"))?;
                Ok(if all {
                    re.replace_all(&value, regex::NoExpand(&replacement))
                        .into_owned()
                } else {
                    re.replace(&value, regex::NoExpand(&replacement))
                        .into_owned()
                })
            }
            _ => Err(format!("unsupported modifier ({chs}) in substitution")),
        }
    }
}

/// A shell pattern (`*`, `?`, `\` escapes; no ranges) as a regular expression.
fn pattern_regex(pattern: &str, greedy: bool, anchored: bool) -> Result<regex::Regex, String> {
    let mut out = String::new();
    if anchored {
        out.push('^');
    }
    let star = if greedy { ".*" } else { ".*?" };
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' => out.push_str(star),
            '?' => out.push('.'),
            '\\' => {
                // `}` and `/` inside ${} are escaped, but the escape is not part of the pattern.
                if matches!(chars.peek(), Some('}' | '/')) {
                    continue;
                }
                match chars.next() {
                    Some(e @ ('*' | '?' | '\\' | '[' | ']')) => {
                        out.push_str(&regex::escape(&e.to_string()));
                    }
                    Some(e) => return Err(format!("invalid escape '\\{e}'")),
                    None => return Err("invalid escape '\\' at the end".into()),
                }
            }
            '[' => return Err("character ranges are not supported".into()),
            c => out.push_str(&regex::escape(&c.to_string())),
        }
    }
    regex::Regex::new(&out).map_err(|e| e.to_string())
}

fn trim_prefix(pattern: &str, value: &str, greedy: bool) -> Step<String> {
    let re = pattern_regex(pattern, greedy, true)
        .map_err(|e| format!("invalid pattern ({pattern}) in substitution: {e}"))?;
    Ok(match re.find(value) {
        Some(m) => value[m.end()..].to_string(),
        None => value.to_string(),
    })
}

/// The pattern reversed, escapes kept before what they escape.
fn reverse_pattern(pattern: &str) -> String {
    let p: Vec<char> = pattern.chars().collect();
    let mut out = vec![' '; p.len()];
    let last = p.len().saturating_sub(1);
    let mut i = 0;
    while i < p.len() {
        let o = last - i;
        if p[i] == '\\' && i != last {
            out[o - 1] = p[i];
            out[o] = p[i + 1];
            i += 2;
        } else {
            out[o] = p[i];
            i += 1;
        }
    }
    out.into_iter().collect()
}

/// The shortest (or longest) match of `pattern` at the end of `value` removed: a leftmost
/// match on both reversed.
fn trim_suffix(pattern: &str, value: &str, greedy: bool) -> Step<String> {
    let reversed: String = value.chars().rev().collect();
    let trimmed = trim_prefix(&reverse_pattern(pattern), &reversed, greedy)?;
    Ok(trimmed.chars().rev().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// BuildKit's vectors, beside the project (`../shared/testdata/buildkit`).
    fn vectors(name: &str) -> String {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/testdata/buildkit")
            .join(name);
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    #[test]
    fn buildkit_env_var_vectors() {
        let env: Vec<(String, String)> = [
            ("PWD", "/home"),
            ("SHELL", "bash"),
            ("KOREAN", "한국어"),
            ("NULL", ""),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let lex = Lex::new('\\');
        let mut checked = 0;
        let mut failures = Vec::new();
        for (n, line) in vectors("envVarTest").lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let parts: Vec<&str> = line.split('|').collect();
            assert_eq!(parts.len(), 3, "line {}: {line}", n + 1);
            let (platform, input, expected) = (parts[0].trim(), parts[1].trim(), parts[2].trim());
            if platform == "W" {
                continue;
            }
            checked += 1;
            match (lex.word(input, &env), expected) {
                (Err(_), "error") => {}
                (Ok(got), want) if got == want => {}
                (got, want) => {
                    failures.push(format!("line {}: {input:?}: {got:?}, want {want:?}", n + 1))
                }
            }
        }
        assert!(
            failures.is_empty(),
            "{} of {checked}:\n{}",
            failures.len(),
            failures.join("\n")
        );
        assert!(checked > 100, "{checked}");
    }

    #[test]
    fn buildkit_words_vectors() {
        let lex = Lex::new('\\');
        let mut env: Vec<(String, String)> = Vec::new();
        let mut checked = 0;
        let mut failures = Vec::new();
        for (n, line) in vectors("wordsTest").lines().enumerate() {
            if line.starts_with('#') {
                continue;
            }
            let line = line.trim_start_matches([' ', '\t']);
            if line.is_empty() {
                continue;
            }
            if let Some(kv) = line.strip_prefix("ENV ") {
                let kv = kv.trim_start_matches([' ', '\t']);
                let (k, v) = kv.split_once('=').unwrap();
                env.push((k.to_string(), v.to_string()));
                continue;
            }
            let parts: Vec<&str> = line.split('|').collect();
            assert_eq!(parts.len(), 2, "line {}: {line}", n + 1);
            let input = parts[0].trim();
            let expected: Vec<&str> = parts[1].trim_start_matches(' ').split(',').collect();
            checked += 1;
            let got = lex
                .words(input, &env)
                .unwrap_or_else(|_| vec!["error".into()]);
            if got != expected {
                failures.push(format!(
                    "line {}: {input:?}: {got:?}, want {expected:?}",
                    n + 1
                ));
            }
        }
        assert!(
            failures.is_empty(),
            "{} of {checked}:\n{}",
            failures.len(),
            failures.join("\n")
        );
        assert!(checked > 20, "{checked}");
    }

    #[test]
    fn modifiers() {
        let env: Vec<(String, String)> = [("v", "a.b.c"), ("e", ""), ("p", "/usr/local/bin")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lex = Lex::new('\\');
        let w = |s: &str| lex.word(s, &env);
        assert_eq!(w("${v%.*}").unwrap(), "a.b");
        assert_eq!(w("${v%%.*}").unwrap(), "a");
        assert_eq!(w("${v#*.}").unwrap(), "b.c");
        assert_eq!(w("${v##*.}").unwrap(), "c");
        assert_eq!(w("${p/local/opt}").unwrap(), "/usr/opt/bin");
        assert_eq!(w("${p//\\//:}").unwrap(), ":usr:local:bin");
        assert_eq!(w("${e:-x} ${e-x} ${u-x}").unwrap(), "x  x");
        assert_eq!(w("${e:+x} ${e+x} ${u+x}").unwrap(), " x ");
        assert!(
            w("${u?}")
                .unwrap_err()
                .to_string()
                .contains("u: is not allowed to be unset")
        );
        assert!(
            w("${e:?must be set}")
                .unwrap_err()
                .to_string()
                .contains("e: must be set")
        );
        assert_eq!(w("${e?}").unwrap(), "");
        // Quotes and escapes.
        assert_eq!(w(r#""$v" '$v' \$v"#).unwrap(), "a.b.c $v $v");
        let raw = Lex {
            skip_unset_env: true,
            ..lex
        };
        assert_eq!(raw.word("${u:-x}$u${v}", &env).unwrap(), "${u:-x}$ua.b.c");
    }

    #[test]
    fn the_escape_character_can_be_a_backtick() {
        let lex = Lex::new('`');
        assert_eq!(lex.word(r"C:\dir `$x", &NoEnv).unwrap(), r"C:\dir $x");
    }
}
