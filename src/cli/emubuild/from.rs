//! `emubuild from`: a working container from a base image.

use anyhow::Result;

use super::{FromArgs, Settings, parse_image, parse_platforms};
use crate::cli::Exit;
use crate::container::{self, Context};

/// Runs `from`.
pub fn run(s: &Settings, ctx: &Context, a: &FromArgs) -> Result<Exit> {
    let p = &s.printer;
    let image = parse_image(&a.image)?;
    let platforms = parse_platforms(&a.platform)?;
    if a.replace && ctx.container(&a.name).exists() {
        container::remove(ctx, &a.name)?;
    }
    let created = container::create(ctx, &a.name, &image, &platforms, false)?;
    for w in &created.warnings {
        p.warn(w);
    }
    p.data(&created.container.name);
    p.info(format!(
        "working container `{}` from {} for {}",
        created.container.name,
        created.container.base,
        created
            .container
            .platforms
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    ));
    Ok(Exit::Success)
}
