//! Ignore files (`.containerignore`, `.dockerignore`, `<Containerfile>.dockerignore`) with
//! Docker's pattern rules (moby/patternmatcher): one pattern a line, `#` comments, patterns
//! cleaned and made relative to the context, `*` and `?` within one path component, `**` across
//! any number of them, `[...]` classes, `\` escapes, `!` exceptions; a path is excluded when the
//! last pattern matching it or one of its parents is not an exception.

use std::path::{Component, Path, PathBuf};

/// The ignore files looked for, in order: the first found is used.
pub fn ignore_file(context: &Path, containerfile: &Path) -> Option<PathBuf> {
    let own = containerfile
        .file_name()
        .map(|n| format!("{}.dockerignore", n.to_string_lossy()));
    let mut candidates = vec![
        context.join(".containerignore"),
        context.join(".dockerignore"),
    ];
    if let (Some(own), Some(dir)) = (own, containerfile.parent()) {
        candidates.push(dir.join(own));
    }
    candidates.into_iter().find(|p| p.is_file())
}

/// Parsed patterns.
#[derive(Debug, Clone, Default)]
pub struct Patterns {
    rules: Vec<(regex::Regex, bool)>,
}

/// Cleans a path as Go's `filepath.Clean` (no `.`, `..` applied, one `/` between names).
fn clean(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in Path::new(p).components() {
        match c {
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n.to_str().unwrap_or("")),
        }
    }
    if out.is_empty() {
        ".".into()
    } else {
        out.join("/")
    }
}

fn to_regex(pattern: &str) -> Result<regex::Regex, String> {
    let mut re = String::from("^");
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        match c {
            '*' if chars.get(i) == Some(&'*') => {
                i += 1;
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                if i >= chars.len() {
                    re.push_str(".*");
                } else {
                    re.push_str("(.*/)?");
                }
            }
            '*' => re.push_str("[^/]*"),
            '?' => re.push_str("[^/]"),
            '.' | '+' | '(' | ')' | '|' | '{' | '}' | '$' | '^' => {
                re.push('\\');
                re.push(c);
            }
            '\\' => match chars.get(i) {
                Some(n) => {
                    re.push_str(&regex::escape(&n.to_string()));
                    i += 1;
                }
                None => re.push_str("\\\\"),
            },
            c => re.push(c),
        }
    }
    re.push('$');
    regex::Regex::new(&re).map_err(|e| format!("`{pattern}`: {e}"))
}

impl Patterns {
    /// Parses an ignore file's text.
    pub fn parse(text: &str) -> Result<Patterns, String> {
        let mut rules = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (exception, p) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            let p = clean(p);
            if p == "." {
                continue;
            }
            let re = to_regex(&p).map_err(|e| format!("line {}: {e}", n + 1))?;
            rules.push((re, exception));
        }
        Ok(Patterns { rules })
    }

    /// Reads the ignore file of a context, if there is one.
    pub fn for_context(context: &Path, containerfile: &Path) -> Result<Patterns, String> {
        match ignore_file(context, containerfile) {
            None => Ok(Patterns::default()),
            Some(f) => {
                let text = std::fs::read_to_string(&f)
                    .map_err(|e| format!("cannot read `{}`: {e}", f.display()))?;
                Patterns::parse(&text).map_err(|e| format!("`{}`: {e}", f.display()))
            }
        }
    }

    /// No pattern at all?
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Is `rel` (relative to the context, `/`-separated) excluded?
    pub fn excluded(&self, rel: &str) -> bool {
        let rel = clean(rel);
        let parents: Vec<String> = {
            let parts: Vec<&str> = rel.split('/').collect();
            (1..parts.len()).map(|i| parts[..i].join("/")).collect()
        };
        let mut excluded = false;
        for (re, exception) in &self.rules {
            let hit = re.is_match(&rel) || parents.iter().any(|p| re.is_match(p));
            if hit {
                excluded = !exception;
            }
        }
        excluded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_rules() {
        let p = Patterns::parse(
            "# comment\n*.md\n!README.md\n/build\n**/*.o\ntmp?\ndocs/**\n!docs/keep.txt\nlogs/*.log\n",
        )
        .unwrap();
        assert!(p.excluded("notes.md"));
        assert!(!p.excluded("README.md"), "the exception is later");
        assert!(!p.excluded("sub/notes.md"), "`*` stays in one component");
        assert!(
            p.excluded("build") && p.excluded("build/out/x"),
            "a parent matches"
        );
        assert!(p.excluded("a/b/c.o") && p.excluded("c.o"));
        assert!(p.excluded("tmp1") && !p.excluded("tmp12"));
        assert!(p.excluded("docs/a/b.txt") && !p.excluded("docs/keep.txt"));
        assert!(
            p.excluded("logs/x.log") && !p.excluded("logs/x.txt") && !p.excluded("logs/a/x.log")
        );
        assert!(!p.excluded("src/main.rs"));
        // The last match wins.
        let p = Patterns::parse("!a\na\n").unwrap();
        assert!(p.excluded("a"));
        let p = Patterns::parse("a\n!a\n").unwrap();
        assert!(!p.excluded("a"));
        // Escapes and dots.
        let p = Patterns::parse("\\*.txt\nfile.c\n").unwrap();
        assert!(p.excluded("*.txt") && !p.excluded("a.txt"));
        assert!(p.excluded("file.c") && !p.excluded("fileXc"));
    }

    #[test]
    fn which_file() {
        let d = tempfile::tempdir().unwrap();
        let cf = d.path().join("Containerfile");
        assert!(ignore_file(d.path(), &cf).is_none());
        std::fs::write(d.path().join("Containerfile.dockerignore"), "a").unwrap();
        assert_eq!(
            ignore_file(d.path(), &cf),
            Some(d.path().join("Containerfile.dockerignore"))
        );
        std::fs::write(d.path().join(".dockerignore"), "b").unwrap();
        assert_eq!(
            ignore_file(d.path(), &cf),
            Some(d.path().join(".dockerignore"))
        );
        std::fs::write(d.path().join(".containerignore"), "c").unwrap();
        assert_eq!(
            ignore_file(d.path(), &cf),
            Some(d.path().join(".containerignore"))
        );
    }
}
