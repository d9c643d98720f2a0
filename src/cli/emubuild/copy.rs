//! `emubuild copy`: host files into every platform of a working container.

use std::path::PathBuf;

use anyhow::Result;

use super::{CopyArgs, Settings};
use crate::cli::{Exit, UsageError};
use crate::container::{self, Context};

/// Runs `copy`.
pub fn run(s: &Settings, ctx: &Context, a: &CopyArgs) -> Result<Exit> {
    let (dest, sources) = a.paths.split_last().expect("clap requires two paths");
    let chmod = match &a.chmod {
        None => None,
        Some(m) => Some(
            u32::from_str_radix(m.trim_start_matches("0o"), 8).map_err(|_| {
                UsageError(format!(
                    "`--chmod {m}`: expected an octal mode such as 0755"
                ))
            })?,
        ),
    };
    let opts = container::CopyOptions {
        sources: sources.iter().map(PathBuf::from).collect(),
        dest: dest.clone(),
        chmod,
        chown: a.chown.clone(),
        platforms: None,
        created_by: None,
    };
    let steps = container::copy_step(ctx, &a.name, &opts)?;
    s.printer.info(format!(
        "copied into {} platform(s) of `{}`",
        steps.len(),
        a.name
    ));
    Ok(Exit::Success)
}
