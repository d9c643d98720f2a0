//! `emubuild tag`: points tags at an image or index by digest (see [`crate::promote`]).

use anyhow::Result;

use super::{Settings, TagArgs, parse_image};
use crate::cli::{Exit, UsageError};
use crate::container::Context;
use crate::oci::reference::Destination;

/// Runs `tag`.
pub fn run(s: &Settings, ctx: &Context, a: &TagArgs) -> Result<Exit> {
    let src = parse_image(&a.src)?;
    let dests = a
        .dests
        .iter()
        .map(|d| {
            d.parse::<Destination>()
                .map_err(|e| UsageError(format!("`{d}`: {e}")).into())
        })
        .collect::<Result<Vec<_>>>()?;
    let tagged = crate::promote::tag(ctx, &src, &dests)?;
    if a.json {
        s.printer.json(&tagged);
    } else {
        s.printer.data(&tagged.digest);
        for d in &tagged.dests {
            s.printer.info(format!("{d} -> {}", tagged.digest));
        }
    }
    Ok(Exit::Success)
}
