//! `emubuild push`: a local image or index to a registry, exactly as it is; an index of one
//! image goes as that image's manifest unless `--index` (as `docker push` does).

use anyhow::Result;

use super::{PushArgs, Settings, parse_image, write_digestfile};
use crate::cli::{Exit, UsageError};
use crate::container::Context;
use crate::oci::reference::Reference;
use crate::oci::source::ImageSource;
use crate::transfer;

/// Runs `push`.
pub fn run(s: &Settings, ctx: &Context, a: &PushArgs) -> Result<Exit> {
    let p = &s.printer;
    let src = parse_image(&a.src)?;
    let dest = match parse_image(&a.dest)? {
        Reference::Registry(r) => r,
        other => {
            return Err(UsageError(format!(
                "`{other}` is not a registry reference; `emubuild push` writes to HOST/REPO[:TAG] (a local copy is `emubuild tag`'s job)"
            ))
            .into());
        }
    };
    let source = ImageSource::open(&src, &ctx.store.root().join("tmp"))?;
    let ImageSource::Layout { layout, tag, .. } = &source else {
        return Err(UsageError(format!(
            "`{src}` is not a local image; push reads oci:DIR[:TAG] or oci-archive:FILE[:TAG]"
        ))
        .into());
    };
    let root =
        transfer::layout_root(layout, tag.as_deref()).map_err(|e| UsageError(e.to_string()))?;
    let mut tree = transfer::tree(layout, &root, 0)?;
    if !a.index {
        tree = tree.single();
    }
    let session = ctx.session()?;
    let mut files = transfer::Sources::with_store(&ctx.store);
    files.add_layout(layout, &tree);
    let pushed = crate::registry::push::push(&session, &dest, &tree, &files)?;
    if let Some(f) = &a.digestfile {
        write_digestfile(f, &pushed.digest)?;
    }
    if a.json {
        p.json(&pushed);
    } else {
        p.data(&pushed.digest);
        p.info(format!(
            "pushed {src} to {dest} ({} blobs uploaded, {} mounted, {} copied from another registry, {} there already)",
            pushed.uploaded, pushed.mounted, pushed.copied, pushed.existing
        ));
    }
    Ok(Exit::Success)
}
