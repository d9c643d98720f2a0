//! `emubuild inspect`: an image's platforms, layers, settings and history.

use anyhow::Result;

use super::{InspectArgs, Settings, parse_image};
use crate::cli::printer::Printer;
use crate::cli::{Exit, UsageError};
use crate::container::Context;
use crate::inspect::TagReport;
use crate::oci::source::ImageSource;

/// Runs `inspect`.
pub fn run(s: &Settings, ctx: &Context, a: &InspectArgs) -> Result<Exit> {
    let image = parse_image(&a.image)?;
    let source = ImageSource::open(&image, &ctx.store.root().join("tmp"))?;
    let report = match &source {
        ImageSource::Layout { layout, tag, .. } => crate::inspect::inspect(layout, tag.as_deref())?,
        ImageSource::Registry(r) => {
            let session = ctx.session()?;
            let repo = crate::registry::Repository {
                session: &session,
                reference: r.clone(),
                store: &ctx.store,
            };
            let root = repo.root()?;
            let tag = r.reference();
            crate::inspect::inspect_roots(&repo, &[(tag, root)])?
        }
        ImageSource::Rootfs(_) | ImageSource::Scratch => {
            return Err(UsageError(
                "inspect reads oci:DIR[:TAG], oci-archive:FILE[:TAG] or a registry reference"
                    .into(),
            )
            .into());
        }
    };
    if a.json {
        s.printer.json(&report);
    } else {
        print(&s.printer, &report);
    }
    Ok(Exit::Success)
}

fn print(p: &Printer, tags: &[TagReport]) {
    for t in tags {
        p.data(format!(
            "tag {}: {} {}",
            if t.tag.is_empty() { "(none)" } else { &t.tag },
            t.descriptor.media_type(),
            t.descriptor.digest()
        ));
        for i in &t.images {
            p.data(format!("  {}  manifest {}", i.platform, i.manifest));
            p.data(format!("    config {}", i.config));
            for k in ["Entrypoint", "Cmd", "WorkingDir", "User"] {
                if !i.settings[k].is_null() && i.settings[k] != "" {
                    p.data(format!("    {k}: {}", i.settings[k]));
                }
            }
            p.data("    layers:");
            for l in &i.layers {
                p.data(format!(
                    "      {} {:>10} {}",
                    l.digest(),
                    l.size(),
                    l.media_type()
                ));
            }
            p.data("    history:");
            for h in &i.history {
                let by = h.created_by().as_deref().unwrap_or("");
                let empty = h.empty_layer().unwrap_or(false);
                let at = h.created().as_deref().unwrap_or("");
                p.data(format!(
                    "      {at}  {}{by}",
                    if empty { "(no layer) " } else { "" }
                ));
            }
        }
    }
}
