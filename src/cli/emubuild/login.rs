//! `emubuild login` and `emubuild logout`: credentials checked against the registry, then
//! kept in the auth file (mode 0600), or removed from it.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{Context as _, Result};

use super::{LoginArgs, LogoutArgs, Settings};
use crate::cli::{Exit, UsageError};
use crate::oci::reference::RegistryRef;
use crate::registry::creds::Credentials;

/// A registry name as references spell it (`docker.io` for Docker Hub's aliases).
fn registry_name(host: &str) -> Result<String> {
    let h = host
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let h = h.split('/').next().unwrap_or(h);
    Ok(RegistryRef::parse(&format!("{h}/x"))
        .map(|r| r.registry)
        .map_err(|e| UsageError(format!("`{host}` is not a registry host: {e}")))?)
}

fn ask(prompt: &str, hidden: bool) -> Result<String> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(UsageError(format!(
            "{} needed and stdin is not a terminal; pass `--username` and `--password-stdin`",
            prompt.trim_end_matches(": ")
        ))
        .into());
    }
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let saved = rustix::termios::tcgetattr(&stdin).ok();
    if hidden && let Some(t) = &saved {
        let mut quiet = t.clone();
        quiet.local_modes.remove(rustix::termios::LocalModes::ECHO);
        let _ = rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &quiet);
    }
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if hidden {
        if let Some(t) = &saved {
            let _ = rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, t);
        }
        eprintln!();
    }
    read.context("cannot read from the terminal")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// Runs `login`.
pub fn login(s: &Settings, a: &LoginArgs) -> Result<Exit> {
    let p = &s.printer;
    let registry = registry_name(&a.host)?;
    let username = match &a.username {
        Some(u) => u.clone(),
        None => ask("Username: ", false)?,
    };
    let secret = if a.password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from stdin")?;
        line.trim_end_matches(['\n', '\r']).to_string()
    } else {
        ask("Password: ", true)?
    };
    let creds = Credentials { username, secret };
    let mut opts = s.registry.clone();
    opts.creds.explicit = Some(creds.clone());
    let session = crate::registry::Session::new(opts)?;
    session.check_login(&registry)?;
    drop(session);
    let path = s.registry.creds.save(&registry, &creds)?;
    p.info(format!(
        "login to {registry} succeeded; credentials saved in {}",
        path.display()
    ));
    Ok(Exit::Success)
}

/// Runs `logout`.
pub fn logout(s: &Settings, a: &LogoutArgs) -> Result<Exit> {
    let registry = registry_name(&a.host)?;
    if s.registry.creds.remove(&registry)? {
        s.printer
            .info(format!("removed the credentials for {registry}"));
        Ok(Exit::Success)
    } else {
        s.printer.error(format!(
            "no saved credentials for {registry} in {}",
            s.registry
                .creds
                .save_target()
                .map_or("(no auth file)".into(), |p| p.display().to_string())
        ));
        Ok(Exit::Failure)
    }
}
