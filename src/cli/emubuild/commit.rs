//! `emubuild commit`: the working container as one image per platform and an index.

use anyhow::Result;

use super::{CommitArgs, Settings, pairs, write_digestfile};
use crate::cli::{Exit, UsageError};
use crate::commit::{self, CommitOptions, ConfigEdits};
use crate::container::Context;
use crate::oci::reference::Destination;

/// `--cmd`/`--entrypoint`: a JSON array, or words split on spaces.
fn words(s: &str) -> Result<Vec<String>> {
    if s.trim_start().starts_with('[') {
        serde_json::from_str(s)
            .map_err(|e| UsageError(format!("`{s}` is not a JSON array of strings: {e}")).into())
    } else {
        Ok(s.split_whitespace().map(str::to_string).collect())
    }
}

/// Runs `commit`.
pub fn run(s: &Settings, ctx: &Context, a: &CommitArgs) -> Result<Exit> {
    let p = &s.printer;
    let dest: Destination = a
        .dest
        .parse()
        .map_err(|e: crate::oci::reference::ReferenceError| UsageError(e.to_string()))?;
    let compression = a.compression.parse().map_err(UsageError)?;
    let edits = ConfigEdits {
        cmd: a.cmd.as_deref().map(words).transpose()?,
        entrypoint: a.entrypoint.as_deref().map(words).transpose()?,
        env: pairs(&a.env, "--env")?,
        labels: pairs(&a.labels, "--label")?,
        workdir: a.workdir.clone(),
        user: a.user.clone(),
    };
    let opts = CommitOptions {
        compression,
        edits,
        index: a.index,
    };
    let done = commit::commit(ctx, &a.name, &dest, &opts)?;
    for w in &done.warnings {
        p.warn(w);
    }
    if let Some(f) = &a.digestfile {
        write_digestfile(f, &done.digest)?;
    }
    if a.json {
        p.json(&done);
    } else {
        p.data(&done.digest);
        for i in &done.images {
            p.info(format!(
                "{} {} ({} layers)",
                i.platform,
                i.manifest,
                i.layers.len()
            ));
        }
        match &done.index {
            Some(i) => p.info(format!("wrote {} (index {i})", done.dest)),
            None => p.info(format!(
                "wrote {} (image manifest {})",
                done.dest, done.digest
            )),
        }
    }
    Ok(Exit::Success)
}
