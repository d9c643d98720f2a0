//! The Containerfile syntax, as BuildKit's parser (`frontend/dockerfile/parser`) reads it:
//! parser directives (`# syntax=`, `# escape=`, `# check=`) before anything else, a BOM, line
//! continuations with the escape character (comment and blank lines inside them skipped),
//! instructions in any case, `--flags`, then each instruction's arguments in its own form
//! (whitespace-separated words, name/value pairs, the JSON exec form with a fallback to the
//! shell form on invalid JSON, ONBUILD's sub-instruction, HEALTHCHECK's type), and heredocs
//! (`<<EOF`, `<<-EOF`, quoted delimiters, several per line) for RUN, COPY and ADD. Errors name
//! the file, line and column, and show the line with a caret. `Instruction::dump` prints
//! BuildKit's own test format, against which BuildKit's golden files are checked.

use super::shell::{Lex, NoEnv};

/// The parser directives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directives {
    /// The escape character: `\` (default) or `` ` ``.
    pub escape: char,
    /// `# syntax=`: the frontend image asked for.
    pub syntax: Option<String>,
    /// `# check=`: BuildKit's build-check settings.
    pub check: Option<String>,
}

impl Default for Directives {
    fn default() -> Self {
        Directives {
            escape: '\\',
            syntax: None,
            check: None,
        }
    }
}

/// A here-document of an instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter, quotes removed.
    pub name: String,
    /// The body, each line ending in a newline (leading tabs removed with `<<-`).
    pub content: String,
    /// Whether variables expand in it (no part of the delimiter was quoted).
    pub expand: bool,
    /// `<<-`: leading tabs removed.
    pub chomp: bool,
    /// The file descriptor before `<<` (`3<<EOF`), 0 when none.
    pub fd: u32,
}

/// One instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// The keyword, lower-case (`run`).
    pub keyword: String,
    /// `--flag[=value]` words before the arguments.
    pub flags: Vec<String>,
    /// The arguments, in the instruction's form (quotes are kept where BuildKit keeps them:
    /// they are removed by expansion).
    pub args: Vec<String>,
    /// The arguments came from a JSON array (the exec form).
    pub json: bool,
    /// ONBUILD's instruction.
    pub sub: Option<Box<Instruction>>,
    /// Its here-documents.
    pub heredocs: Vec<Heredoc>,
    /// The instruction's text after continuations were joined.
    pub original: String,
    /// Its first line (1-based).
    pub line: usize,
    /// Its last line.
    pub end_line: usize,
}

/// A parsed Containerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Containerfile {
    /// Its directives.
    pub directives: Directives,
    /// Its instructions, in order.
    pub instructions: Vec<Instruction>,
    /// Things the user should know (an unknown syntax image, a deprecated instruction).
    pub warnings: Vec<String>,
}

/// A syntax error, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}\n{text}\n{caret}", caret = caret(*.column))]
pub struct ParseError {
    /// The file's name.
    pub file: String,
    /// The line (1-based).
    pub line: usize,
    /// The column (1-based, in characters).
    pub column: usize,
    /// What is wrong.
    pub message: String,
    /// The line's text.
    pub text: String,
}

fn caret(column: usize) -> String {
    format!("{}^", " ".repeat(column.saturating_sub(1)))
}

/// The instructions BuildKit knows.
pub const KEYWORDS: &[&str] = &[
    "add",
    "arg",
    "cmd",
    "copy",
    "entrypoint",
    "env",
    "expose",
    "from",
    "healthcheck",
    "label",
    "maintainer",
    "onbuild",
    "run",
    "shell",
    "stopsignal",
    "user",
    "volume",
    "workdir",
];

/// The syntax images whose language this parser implements.
fn known_syntax(image: &str) -> bool {
    let name = image.split(['@']).next().unwrap_or(image);
    let repo = name
        .rsplit_once(':')
        .map_or(name, |(r, t)| if t.contains('/') { name } else { r });
    matches!(
        repo.trim_start_matches("docker.io/"),
        "docker/dockerfile" | "docker/dockerfile-upstream"
    )
}

struct Lines<'s> {
    lines: Vec<&'s str>,
    next: usize,
}

impl<'s> Lines<'s> {
    fn new(src: &'s str) -> Lines<'s> {
        let src = src.strip_prefix('\u{feff}').unwrap_or(src);
        let mut lines: Vec<&str> = src.split('\n').collect();
        if lines.last() == Some(&"") {
            lines.pop();
        }
        Lines { lines, next: 0 }
    }

    fn scan(&mut self) -> Option<&'s str> {
        let l = self.lines.get(self.next)?;
        self.next += 1;
        Some(l)
    }
}

fn trim_newline(s: &str) -> &str {
    s.trim_end_matches(['\r', '\n'])
}

fn is_comment(raw: &str) -> bool {
    trim_newline(raw).trim_start().starts_with('#')
}

struct DirectiveParser {
    d: Directives,
    done: bool,
    seen: Vec<String>,
    warnings: Vec<String>,
}

impl DirectiveParser {
    /// Reads `line` as a directive while directives may still come.
    fn line(&mut self, line: &str) -> Result<(), String> {
        if self.done {
            return Ok(());
        }
        let Some(rest) = line.strip_prefix('#') else {
            self.done = true;
            return Ok(());
        };
        let rest = rest.trim_start();
        let key_len = rest
            .char_indices()
            .take_while(|(i, c)| {
                if *i == 0 {
                    c.is_ascii_alphabetic()
                } else {
                    c.is_ascii_alphanumeric()
                }
            })
            .count();
        let (key, after) = rest.split_at(key_len);
        let Some(value) = after.trim_start().strip_prefix('=') else {
            self.done = true;
            return Ok(());
        };
        let value = value.trim();
        if key.is_empty() || value.is_empty() {
            self.done = true;
            return Ok(());
        }
        let key = key.to_ascii_lowercase();
        if self.seen.contains(&key) {
            return Err(format!("only one {key} parser directive can be used"));
        }
        match key.as_str() {
            "escape" => match value {
                "\\" => self.d.escape = '\\',
                "`" => self.d.escape = '`',
                other => {
                    return Err(format!(
                        "invalid escape token '{other}' does not match ` or \\"
                    ));
                }
            },
            "syntax" => {
                if !known_syntax(value) {
                    self.warnings.push(format!(
                        "`# syntax={value}`: emubuild builds with its own Containerfile frontend (BuildKit's language), not that image"
                    ));
                }
                self.d.syntax = Some(value.to_string());
            }
            "check" => self.d.check = Some(value.to_string()),
            _ => {}
        }
        self.seen.push(key);
        Ok(())
    }
}

/// Removes a trailing escape character (and blanks after it): the line continues. An escaped
/// escape (`\\` at the end) is not a continuation.
fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let trimmed = line.trim_end_matches([' ', '\t']);
    match trimmed.strip_suffix(escape) {
        Some(rest) if !rest.ends_with(escape) => (rest, false),
        _ => (line, true),
    }
}

/// Parses a Containerfile; `file` names it in errors.
pub fn parse(file: &str, src: &str) -> Result<Containerfile, ParseError> {
    let mut lines = Lines::new(src);
    let mut dp = DirectiveParser {
        d: Directives::default(),
        done: false,
        seen: Vec::new(),
        warnings: Vec::new(),
    };
    let mut instructions = Vec::new();
    let mut current = 0usize;
    let err = |line: usize, column: usize, message: String, text: &str| ParseError {
        file: file.to_string(),
        line,
        column,
        message,
        text: text.to_string(),
    };
    while let Some(raw) = lines.scan() {
        let token = trim_newline(raw).trim_start();
        current += 1;
        let start = current;
        dp.line(token).map_err(|m| err(start, 1, m, raw))?;
        let token = if token.starts_with('#') { "" } else { token };
        let (first, mut eol) = trim_continuation(token, dp.d.escape);
        if eol && first.is_empty() {
            continue;
        }
        let mut line = first.to_string();
        while !eol {
            let Some(raw) = lines.scan() else { break };
            current += 1;
            let token = trim_newline(raw);
            dp.line(token).map_err(|m| err(current, 1, m, raw))?;
            if is_comment(raw) || token.trim_start().is_empty() {
                continue;
            }
            let (more, end) = trim_continuation(token, dp.d.escape);
            eol = end;
            line.push_str(more);
        }
        let first_raw = trim_newline(src_line(src, start));
        let column = first_raw.chars().take_while(|c| c.is_whitespace()).count() + 1;
        let mut ins = instruction(&line, &dp.d).map_err(|m| err(start, column, m, first_raw))?;
        ins.line = start;
        if ins.can_hold_heredocs() && line.contains("<<") {
            for mut h in heredocs_of(&line) {
                let mut terminated = false;
                while let Some(raw) = lines.scan() {
                    current += 1;
                    let body = trim_newline(raw);
                    let possible = if h.chomp {
                        body.trim_start_matches('\t')
                    } else {
                        body
                    };
                    if possible == h.name {
                        terminated = true;
                        break;
                    }
                    h.content.push_str(if h.chomp { possible } else { raw });
                    if h.chomp || !raw.ends_with('\n') {
                        h.content.push('\n');
                    }
                }
                if !terminated {
                    return Err(err(
                        start,
                        column,
                        format!(
                            "unterminated heredoc: no line `{}` ends it before the end of the file",
                            h.name
                        ),
                        first_raw,
                    ));
                }
                ins.heredocs.push(h);
            }
        }
        ins.end_line = current;
        if ins.keyword == "maintainer" {
            dp.warnings.push(format!(
                "{file}:{start}: MAINTAINER is deprecated; use `LABEL org.opencontainers.image.authors=...`"
            ));
        }
        instructions.push(ins);
    }
    Ok(Containerfile {
        directives: dp.d,
        instructions,
        warnings: dp.warnings,
    })
}

/// Line `n` (1-based) of `src`, for error messages.
fn src_line(src: &str, n: usize) -> &str {
    let src = src.strip_prefix('\u{feff}').unwrap_or(src);
    src.split('\n').nth(n - 1).unwrap_or("")
}

impl Instruction {
    /// RUN, COPY and ADD in the shell form may carry heredocs.
    fn can_hold_heredocs(&self) -> bool {
        matches!(self.keyword.as_str(), "run" | "copy" | "add") && !self.json
    }

    /// BuildKit's test format: `(keyword ["--flag"] "arg" ...)`.
    pub fn dump(&self) -> String {
        let mut s = format!("({}", self.keyword);
        if !self.flags.is_empty() {
            let flags: Vec<String> = self.flags.iter().map(|f| go_quote(f)).collect();
            s.push_str(&format!(" [{}]", flags.join(" ")));
        }
        if let Some(sub) = &self.sub {
            s.push(' ');
            s.push_str(&sub.dump());
        }
        for a in &self.args {
            s.push(' ');
            s.push_str(&go_quote(a));
        }
        s.push(')');
        s
    }
}

/// Go's `strconv.Quote`.
fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c == ' ' || !(c.is_control() || c.is_whitespace()) => out.push(c),
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// Splits an instruction's line: keyword, flags, and the rest.
fn instruction(line: &str, d: &Directives) -> Result<Instruction, String> {
    let line = line.trim();
    let (cmd, rest) = match line.find([' ', '\t', '\u{b}', '\u{c}', '\r']) {
        Some(i) => (
            &line[..i],
            line[i..].trim_start_matches([' ', '\t', '\u{b}', '\u{c}', '\r']),
        ),
        None => (line, ""),
    };
    let (rest, flags) = builder_flags(rest);
    let rest = rest.trim();
    let keyword = cmd.to_ascii_lowercase();
    let mut ins = Instruction {
        keyword: keyword.clone(),
        flags,
        args: Vec::new(),
        json: false,
        sub: None,
        heredocs: Vec::new(),
        original: line.to_string(),
        line: 0,
        end_line: 0,
    };
    match keyword.as_str() {
        "add" | "copy" | "volume" => match json(rest)? {
            Some(a) => (ins.args, ins.json) = (a, true),
            None => ins.args = whitespace_words(rest),
        },
        "cmd" | "entrypoint" | "run" | "shell" => {
            if !rest.is_empty() {
                match json(rest)? {
                    Some(a) => (ins.args, ins.json) = (a, true),
                    None => ins.args = vec![rest.to_string()],
                }
            }
        }
        "arg" => ins.args = words(rest, d.escape),
        "env" | "label" => ins.args = name_values(rest, &keyword, d.escape)?,
        "expose" | "from" => ins.args = whitespace_words(rest),
        "healthcheck" => {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            if end > 0 {
                ins.args.push(rest[..end].to_string());
                let cmd = rest[end..].trim_start();
                if !cmd.is_empty() {
                    match json(cmd)? {
                        Some(a) => {
                            ins.args.extend(a);
                            ins.json = true;
                        }
                        None => ins.args.push(cmd.to_string()),
                    }
                }
            }
        }
        "maintainer" | "stopsignal" | "user" | "workdir" => {
            if !rest.is_empty() {
                ins.args = vec![rest.to_string()];
            }
        }
        "onbuild" => {
            if !rest.is_empty() {
                let sub = instruction(rest, d)?;
                if matches!(sub.keyword.as_str(), "onbuild" | "from" | "maintainer") {
                    return Err(format!(
                        "{} isn't allowed as an ONBUILD trigger",
                        sub.keyword.to_uppercase()
                    ));
                }
                ins.sub = Some(Box::new(sub));
            }
        }
        _ => {
            let hint = KEYWORDS
                .iter()
                .min_by_key(|k| strsim_distance(k, &keyword))
                .filter(|k| strsim_distance(k, &keyword) <= 2)
                .map(|k| format!(" (did you mean {}?)", k.to_uppercase()))
                .unwrap_or_default();
            return Err(format!("unknown instruction: {cmd}{hint}"));
        }
    }
    Ok(ins)
}

/// Levenshtein distance, for "did you mean".
fn strsim_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The leading `--flag` words (quotes and `\` handled as BuildKit does), and the rest.
fn builder_flags(line: &str) -> (&str, Vec<String>) {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let b: Vec<(usize, char)> = line.char_indices().collect();
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut pos = 0;
    loop {
        let end = pos >= b.len();
        let ch = b.get(pos).map(|x| x.1).unwrap_or('\0');
        if phase == Phase::Spaces {
            if end {
                break;
            }
            if ch.is_whitespace() {
                pos += 1;
                continue;
            }
            if ch != '-' || b.get(pos + 1).map(|x| x.1) != Some('-') {
                return (&line[b[pos].0..], words);
            }
            phase = Phase::Word;
        }
        if end {
            if word != "--" && (blank_ok || !word.is_empty()) {
                words.push(word);
            }
            break;
        }
        match phase {
            Phase::Word => {
                if ch.is_whitespace() {
                    phase = Phase::Spaces;
                    if word == "--" {
                        return (&line[b[pos].0..], words);
                    }
                    if blank_ok || !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                    word.clear();
                    blank_ok = false;
                } else if ch == '\'' || ch == '"' {
                    quote = ch;
                    blank_ok = true;
                    phase = Phase::Quote;
                } else if ch == '\\' {
                    if pos + 1 < b.len() {
                        pos += 1;
                        word.push(b[pos].1);
                    }
                } else {
                    word.push(ch);
                }
            }
            Phase::Quote => {
                if ch == quote {
                    phase = Phase::Word;
                } else if ch == '\\' {
                    if pos + 1 == b.len() {
                        phase = Phase::Word;
                    } else {
                        pos += 1;
                        word.push(b[pos].1);
                    }
                } else {
                    word.push(ch);
                }
            }
            Phase::Spaces => unreachable!("handled above"),
        }
        pos += 1;
    }
    ("", words)
}

/// The JSON exec form: Some(strings) for a JSON array of strings, None when `rest` is not a
/// JSON array (the shell form), an error for an array of anything but strings.
fn json(rest: &str) -> Result<Option<Vec<String>>, String> {
    let rest = rest.trim_start();
    if !rest.starts_with('[') {
        return Ok(None);
    }
    let Ok(values) = serde_json::from_str::<Vec<serde_json::Value>>(rest) else {
        return Ok(None);
    };
    values
        .into_iter()
        .map(|v| match v {
            serde_json::Value::String(s) => Ok(s),
            _ => {
                Err("when using JSON array syntax, arrays must be comprised of strings only".into())
            }
        })
        .collect::<Result<Vec<_>, String>>()
        .map(Some)
}

/// Words split at runs of whitespace (FROM, EXPOSE, and the shell form of COPY and ADD).
fn whitespace_words(rest: &str) -> Vec<String> {
    if rest.is_empty() {
        return Vec::new();
    }
    rest.split([' ', '\t', '\u{b}', '\u{c}', '\r'])
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// Words split at unquoted whitespace, quotes and escapes kept (BuildKit's `parseWords`).
fn words(rest: &str, escape: char) -> Vec<String> {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let chars: Vec<char> = rest.chars().collect();
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut pos = 0;
    loop {
        let end = pos >= chars.len();
        let ch = chars.get(pos).copied().unwrap_or('\0');
        if phase == Phase::Spaces {
            if end {
                break;
            }
            if ch.is_whitespace() {
                pos += 1;
                continue;
            }
            phase = Phase::Word;
        }
        if end {
            if blank_ok || !word.is_empty() {
                words.push(word);
            }
            break;
        }
        if phase == Phase::Word {
            if ch.is_whitespace() {
                phase = Phase::Spaces;
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                blank_ok = false;
                pos += 1;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
            }
            if ch == escape {
                if pos + 1 == chars.len() {
                    pos += 1;
                    continue;
                }
                word.push(ch);
                pos += 1;
            }
            word.push(chars[pos]);
            pos += 1;
            continue;
        }
        // In quotes.
        if ch == quote {
            phase = Phase::Word;
        }
        if ch == escape && quote != '\'' {
            if pos + 1 == chars.len() {
                phase = Phase::Word;
                pos += 1;
                continue;
            }
            pos += 1;
            word.push(ch);
        }
        word.push(chars[pos]);
        pos += 1;
    }
    words
}

/// ENV and LABEL: `KEY value` (the old form) or `K=V ...`; each pair as key, value and the
/// separator (`""` or `"="`).
fn name_values(rest: &str, keyword: &str, escape: char) -> Result<Vec<String>, String> {
    let ws = words(rest, escape);
    let Some(first) = ws.first() else {
        return Ok(Vec::new());
    };
    if !first.contains('=') {
        let Some(i) = rest.find([' ', '\t', '\u{b}', '\u{c}', '\r']) else {
            return Err(format!(
                "{} must have two arguments",
                keyword.to_uppercase()
            ));
        };
        let value = rest[i..].trim_start_matches([' ', '\t', '\u{b}', '\u{c}', '\r']);
        return Ok(vec![
            rest[..i].to_string(),
            value.to_string(),
            String::new(),
        ]);
    }
    let mut out = Vec::new();
    for w in ws {
        let Some((k, v)) = w.split_once('=') else {
            return Err(format!(
                "Syntax error - can't find = in {w:?}. Must be of the form: name=value"
            ));
        };
        out.extend([k.to_string(), v.to_string(), "=".to_string()]);
    }
    Ok(out)
}

/// The heredocs a line opens, in order (BuildKit's `heredocsFromLine`).
fn heredocs_of(line: &str) -> Vec<Heredoc> {
    let raw = Lex {
        raw_quotes: true,
        raw_escapes: true,
        ..Lex::new('\\')
    };
    let Ok(ws) = raw.words(line, &NoEnv) else {
        return Vec::new();
    };
    ws.iter().filter_map(|w| heredoc_word(w)).collect()
}

/// `[N]<<[-]WORD` as a heredoc.
fn heredoc_word(word: &str) -> Option<Heredoc> {
    let digits = word.chars().take_while(char::is_ascii_digit).count();
    let rest = word[digits..].strip_prefix("<<")?;
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    if rest.is_empty() || rest.contains('<') {
        return None;
    }
    let fd = word[..digits].parse().unwrap_or(0);
    let lex = Lex {
        skip_unset_env: true,
        ..Lex::new('\\')
    };
    let plain = lex.words(rest, &NoEnv).ok()?;
    let [name] = plain.as_slice() else {
        return None;
    };
    let raw = Lex {
        raw_quotes: true,
        ..lex
    }
    .words(rest, &NoEnv)
    .ok()?;
    let quotes = |s: &str| s.matches(['\'', '"']).count();
    let expand = raw.len() == 1 && quotes(name) == quotes(&raw[0]);
    Some(Heredoc {
        name: name.clone(),
        content: String::new(),
        expand,
        chomp,
        fd,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn testfiles() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/testdata/buildkit/parser/testfiles")
    }

    /// Every one of BuildKit's golden files parses to BuildKit's own result.
    #[test]
    fn buildkit_golden_files() {
        let mut dirs: Vec<_> = std::fs::read_dir(testfiles())
            .expect("BuildKit's test files in ../shared/testdata/buildkit")
            .map(|e| e.unwrap().path())
            .collect();
        dirs.sort();
        let mut failures = Vec::new();
        for dir in &dirs {
            let src = std::fs::read_to_string(dir.join("Dockerfile")).unwrap();
            let want = std::fs::read_to_string(dir.join("result")).unwrap();
            let name = dir.file_name().unwrap().to_string_lossy().to_string();
            match parse(&name, &src) {
                Ok(cf) => {
                    let got: Vec<String> = cf.instructions.iter().map(Instruction::dump).collect();
                    let want: Vec<&str> = want.lines().filter(|l| !l.is_empty()).collect();
                    if got != want {
                        let diff: Vec<String> = got
                            .iter()
                            .zip(want.iter().chain(std::iter::repeat(&"<none>")))
                            .filter(|(g, w)| g != w)
                            .take(3)
                            .map(|(g, w)| format!("  got  {g}\n  want {w}"))
                            .collect();
                        failures.push(format!(
                            "{name}: {} lines, want {}\n{}",
                            got.len(),
                            want.len(),
                            diff.join("\n")
                        ));
                    }
                }
                Err(e) => failures.push(format!("{name}: {e}")),
            }
        }
        assert!(dirs.len() >= 33, "{}", dirs.len());
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn heredocs() {
        let src = "FROM scratch\nRUN <<EOF cat - && 3<<'END' cat /dev/fd/3\nhello $x\nEOF\n\tno\nEND\nCOPY <<-EOT /f\n\t\tindented\n\tEOT\nRUN <<EOF\n#!/bin/sh\necho hi\nEOF\nCMD x\n";
        let cf = parse("Containerfile", src).unwrap();
        let run = &cf.instructions[1];
        assert_eq!(run.heredocs.len(), 2);
        assert_eq!(run.heredocs[0].name, "EOF");
        assert_eq!(run.heredocs[0].content, "hello $x\n");
        assert!(run.heredocs[0].expand);
        assert_eq!(run.heredocs[1].name, "END");
        assert_eq!(run.heredocs[1].fd, 3);
        assert!(!run.heredocs[1].expand, "a quoted delimiter");
        assert_eq!(run.heredocs[1].content, "\tno\n");
        let copy = &cf.instructions[2];
        assert!(copy.heredocs[0].chomp);
        assert_eq!(copy.heredocs[0].content, "indented\n");
        assert_eq!(
            cf.instructions[3].heredocs[0].content,
            "#!/bin/sh\necho hi\n"
        );
        assert_eq!(cf.instructions[4].dump(), "(cmd \"x\")");
        assert_eq!(
            (cf.instructions[1].line, cf.instructions[1].end_line),
            (2, 6)
        );
        let e = parse("Containerfile", "FROM a\nRUN <<EOF\nnever ends\n").unwrap_err();
        assert!(e.to_string().contains("unterminated heredoc"), "{e}");
    }

    #[test]
    fn directives_lower_case_and_errors_with_a_caret() {
        let cf = parse(
            "F",
            "\u{feff}# syntax=example/other\n# escape=`\nfrom a\nrun echo `\n  hi\n",
        )
        .unwrap();
        assert_eq!(cf.directives.escape, '`');
        assert_eq!(cf.instructions[1].dump(), "(run \"echo   hi\")");
        assert!(
            cf.warnings[0].contains("example/other"),
            "{:?}",
            cf.warnings
        );
        let e = parse("Containerfile", "FROM a\n  RUNN echo\n").unwrap_err();
        assert_eq!((e.line, e.column), (2, 3));
        let text = e.to_string();
        assert!(
            text.contains("Containerfile:2:3: unknown instruction: RUNN (did you mean RUN?)"),
            "{text}"
        );
        assert!(text.ends_with("  RUNN echo\n  ^"), "{text}");
        let e = parse("F", "# escape=x\nFROM a\n").unwrap_err();
        assert!(e.message.contains("invalid escape token"), "{e}");
        let e = parse("F", "FROM a\nCMD [1, 2]\n").unwrap_err();
        assert!(e.message.contains("strings only"), "{e}");
        let cf = parse("F", "FROM a\nMAINTAINER me\n").unwrap();
        assert!(cf.warnings[0].contains("deprecated"));
        let e = parse("F", "FROM a\nONBUILD FROM b\n").unwrap_err();
        assert!(e.message.contains("ONBUILD"), "{e}");
    }
}
