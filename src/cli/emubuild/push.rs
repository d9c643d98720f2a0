//! `emubuild push`: a local image or index to a registry, exactly as it is.

use anyhow::Result;

use super::{PushArgs, Settings, parse_image};
use crate::cli::{Exit, UsageError};
use crate::container::Context;
use crate::oci::document::ref_name;
use crate::oci::reference::Reference;
use crate::oci::source::ImageSource;

/// Runs `push`.
pub fn run(s: &Settings, ctx: &Context, a: &PushArgs) -> Result<Exit> {
    let p = &s.printer;
    let src = parse_image(&a.src)?;
    let dest = match parse_image(&a.dest)? {
        Reference::Registry(r) => r,
        other => {
            return Err(UsageError(format!(
                "`{other}` is not a registry reference; `emubuild push` writes to HOST/REPO[:TAG] (a local copy is `emubuild commit`'s or skopeo's job)"
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
    let index = layout.index()?.typed;
    let entries: Vec<_> = index
        .manifests()
        .iter()
        .filter(|d| tag.as_deref().is_none_or(|t| ref_name(d) == Some(t)))
        .collect();
    let root = match entries.as_slice() {
        [one] => (*one).clone(),
        [] => {
            return Err(UsageError(format!(
                "no tag `{}` in `{src}`",
                tag.as_deref().unwrap_or("")
            ))
            .into());
        }
        _ => {
            return Err(UsageError(format!(
                "`{src}` holds several images; name one with `:TAG`"
            ))
            .into());
        }
    };
    let tree = crate::transfer::tree(layout, &root, 0)?;
    let session = ctx.session()?;
    let mut files = crate::transfer::Sources::with_store(&ctx.store);
    files.add_layout(layout, &tree);
    let pushed = crate::registry::push::push(&session, &dest, &tree, &files)?;
    if let Some(f) = &a.digestfile {
        crate::util::write_atomic(f, format!("{}\n", pushed.digest).as_bytes(), 0o644)
            .map_err(|e| anyhow::anyhow!("cannot write `{}`: {e}", f.display()))?;
    }
    if a.json {
        p.json(&pushed);
    } else {
        p.data(&pushed.digest);
        p.info(format!(
            "pushed {src} to {dest} ({} blobs uploaded, {} mounted, {} there already)",
            pushed.uploaded, pushed.mounted, pushed.existing
        ));
    }
    Ok(Exit::Success)
}
