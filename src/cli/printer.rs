//! Everything a command shows goes through a [`Printer`], as uv does: data on stdout (tables,
//! JSON, digests) always; messages on stderr, hidden by `-q`; warnings and errors on stderr
//! always, in colour only on a terminal and when `NO_COLOR` is unset.

use std::io::{IsTerminal, Write};

/// Where a command's output goes, and how much of it.
#[derive(Debug, Clone, Copy)]
pub struct Printer {
    prog: &'static str,
    quiet: bool,
    color: bool,
}

impl Printer {
    /// A printer for program `prog`; `quiet` hides messages.
    pub fn new(prog: &'static str, quiet: bool) -> Printer {
        Printer {
            prog,
            quiet,
            color: std::env::var_os("NO_COLOR").is_none() && std::io::stderr().is_terminal(),
        }
    }

    /// The program's name.
    pub fn prog(&self) -> &'static str {
        self.prog
    }

    /// Is `-q` set?
    pub fn quiet(&self) -> bool {
        self.quiet
    }

    /// A line of data on stdout.
    pub fn data(&self, line: impl std::fmt::Display) {
        let _ = writeln!(std::io::stdout().lock(), "{line}");
    }

    /// A message on stderr (`binfmtctl: mounted binfmt_misc at ...`), unless quiet.
    pub fn info(&self, msg: impl std::fmt::Display) {
        if !self.quiet {
            eprintln!("{}: {msg}", self.prog);
        }
    }

    /// A line on stderr as it is (summaries, indented detail), unless quiet.
    pub fn note(&self, line: impl std::fmt::Display) {
        if !self.quiet {
            eprintln!("{line}");
        }
    }

    /// A warning on stderr.
    pub fn warn(&self, msg: impl std::fmt::Display) {
        self.tagged("warning", "33", &msg);
    }

    /// An error on stderr (for per-item errors that do not stop the command).
    pub fn error(&self, msg: impl std::fmt::Display) {
        self.tagged("error", "31", &msg);
    }

    fn tagged(&self, tag: &str, colour: &str, msg: &dyn std::fmt::Display) {
        if self.color {
            eprintln!("{}: \x1b[{colour}m{tag}\x1b[0m: {msg}", self.prog);
        } else {
            eprintln!("{}: {tag}: {msg}", self.prog);
        }
    }

    /// A value as pretty JSON on stdout.
    pub fn json<T: serde::Serialize>(&self, v: &T) {
        let s = serde_json::to_string_pretty(v).expect("serialisable");
        self.data(s);
    }

    /// Rows as columns on stdout.
    pub fn table(&self, headers: &[&str], rows: &[Vec<String>]) {
        table_to(&mut std::io::stdout().lock(), headers, rows);
    }

    /// Rows as columns on stderr (when stdout carries JSON), unless quiet.
    pub fn table_to_stderr(&self, headers: &[&str], rows: &[Vec<String>]) {
        if !self.quiet {
            table_to(&mut std::io::stderr().lock(), headers, rows);
        }
    }
}

/// Rows as columns separated by two spaces, each as wide as its widest cell.
pub fn table_to(out: &mut dyn Write, headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>, out: &mut dyn Write| {
        let n = cells.len();
        let mut s = String::new();
        for (i, c) in cells.into_iter().enumerate() {
            s.push_str(c);
            if i + 1 < n {
                let pad = widths[i].saturating_sub(c.chars().count()) + 2;
                s.push_str(&" ".repeat(pad));
            }
        }
        let _ = writeln!(out, "{}", s.trim_end());
    };
    line(headers.to_vec(), out);
    for r in rows {
        line(r.iter().map(String::as_str).collect(), out);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tables_align() {
        let mut out = Vec::new();
        super::table_to(
            &mut out,
            &["A", "LONGER"],
            &[vec!["xyz".into(), "1".into()], vec!["q".into(), "".into()]],
        );
        assert_eq!(String::from_utf8(out).unwrap(), "A    LONGER\nxyz  1\nq\n");
    }
}
