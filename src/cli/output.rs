//! Output helpers: aligned plain-text tables for people, JSON for scripts, and colour only on a
//! terminal when `NO_COLOR` is unset.

use std::io::{IsTerminal, Write};

/// Prints rows as columns separated by two spaces, each as wide as its widest cell.
pub fn table(headers: &[&str], rows: &[Vec<String>]) {
    table_to(&mut std::io::stdout().lock(), headers, rows);
}

/// [`table`] into any writer (stderr when stdout carries JSON).
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

/// Prints a value as pretty JSON on stdout.
pub fn json<T: serde::Serialize>(v: &T) {
    let s = serde_json::to_string_pretty(v).expect("serialisable");
    println!("{s}");
}

/// Is colour wanted on stderr?
pub fn color() -> bool {
    std::env::var_os("NO_COLOR").is_none() && std::io::stderr().is_terminal()
}

/// A warning line on stderr.
pub fn warn(prog: &str, msg: &str) {
    if color() {
        eprintln!("{prog}: \x1b[33mwarning\x1b[0m: {msg}");
    } else {
        eprintln!("{prog}: warning: {msg}");
    }
}

/// An error line on stderr (for per-item errors that do not stop the command).
pub fn error(prog: &str, msg: &str) {
    if color() {
        eprintln!("{prog}: \x1b[31merror\x1b[0m: {msg}");
    } else {
        eprintln!("{prog}: error: {msg}");
    }
}
