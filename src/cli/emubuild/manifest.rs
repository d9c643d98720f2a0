//! `emubuild manifest`: manifest lists kept in the store, made from images by digest
//! (registries, layouts, archives), annotated, inspected and pushed (see [`crate::lists`]).

use std::io::Write as _;

use anyhow::Result;

use super::{
    ListFormat, ManifestAddArgs, ManifestAnnotateArgs, ManifestCommand, ManifestCreateArgs,
    ManifestInspectArgs, ManifestLsArgs, ManifestPushArgs, ManifestRemoveArgs, ManifestRmArgs,
    PickArgs, Settings, pairs, parse_image, write_digestfile,
};
use crate::cli::{Exit, UsageError};
use crate::container::Context;
use crate::lists::{self, Annotate, Format, List, ListError, Pick};
use crate::oci::reference::{Destination, Reference};
use crate::platform::Platform;

/// Runs a `manifest` subcommand.
pub fn run(s: &Settings, ctx: &Context, c: &ManifestCommand) -> Result<Exit> {
    match c {
        ManifestCommand::Create(a) => create(s, ctx, a),
        ManifestCommand::Add(a) => add(s, ctx, a),
        ManifestCommand::Remove(a) => remove(s, ctx, a),
        ManifestCommand::Annotate(a) => annotate(s, ctx, a),
        ManifestCommand::Inspect(a) => inspect(ctx, a),
        ManifestCommand::Push(a) => push(s, ctx, a),
        ManifestCommand::Rm(a) => rm(s, ctx, a),
        ManifestCommand::Ls(a) => ls(s, ctx, a),
    }
}

fn pick(a: &PickArgs) -> Result<Pick> {
    let platform = match &a.platform {
        None => None,
        Some(p) => Some(
            p.parse::<Platform>()
                .map_err(|e| UsageError(format!("`--platform {p}`: {e}")))?,
        ),
    };
    if a.all && platform.is_some() {
        return Err(
            UsageError("`--all` and `--platform` choose differently; pass one".into()).into(),
        );
    }
    Ok(Pick {
        all: a.all,
        platform,
    })
}

fn images(list: &[String]) -> Result<Vec<Reference>> {
    list.iter().map(|s| parse_image(s)).collect()
}

/// Usage errors of the list module exit 2.
fn usage(e: ListError) -> anyhow::Error {
    match e {
        ListError::Usage(m) => UsageError(m).into(),
        e @ (ListError::Exists(_) | ListError::ChooseEntry { .. }) => {
            UsageError(e.to_string()).into()
        }
        e => e.into(),
    }
}

fn report_added(s: &Settings, list: &List, notes: &[String], added: usize) {
    for n in notes {
        s.printer.note(n);
    }
    s.printer.info(format!(
        "{} entr{} in {}: {}",
        list.entries.len(),
        if list.entries.len() == 1 { "y" } else { "ies" },
        list.name,
        summary(list)
    ));
    tracing::debug!(added, "entries added");
}

fn summary(list: &List) -> String {
    if list.entries.is_empty() {
        return "none".into();
    }
    list.entries
        .iter()
        .map(|e| lists::platform_name(&e.descriptor))
        .collect::<Vec<_>>()
        .join(", ")
}

fn create(s: &Settings, ctx: &Context, a: &ManifestCreateArgs) -> Result<Exit> {
    let pick = pick(&a.pick)?;
    let refs = images(&a.images)?;
    // Reading images may take a while: done before the lock is held.
    if !a.amend && lists::load(ctx, &a.list)?.is_some() {
        return Err(usage(ListError::Exists(a.list.clone())));
    }
    // `--amend` without a local list: the index LIST names, if there is one. Read, like the
    // images, before the lock is held.
    let remote = match a.amend && lists::load(ctx, &a.list)?.is_none() {
        true => {
            let r = parse_image(&a.list).map_err(|_| {
                UsageError(format!(
                    "`--amend`: there is no local list `{}`, and it does not name an image",
                    a.list
                ))
            })?;
            Some(lists::from_index(ctx, &a.list, &r).map_err(usage)?)
        }
        false => None,
    };
    let entries = lists::resolve_all(ctx, &a.list, &refs, &pick).map_err(usage)?;
    let _lock = lists::lock(ctx)?;
    let mut list = match lists::load(ctx, &a.list)? {
        Some(l) if a.amend => l,
        Some(_) => return Err(usage(ListError::Exists(a.list.clone()))),
        None => remote.unwrap_or_else(|| lists::new_list(&a.list)),
    };
    let n = entries.len();
    let notes = lists::add(&mut list, entries);
    lists::save(ctx, &list)?;
    s.printer.data(&list.name);
    report_added(s, &list, &notes, n);
    Ok(Exit::Success)
}

fn add(s: &Settings, ctx: &Context, a: &ManifestAddArgs) -> Result<Exit> {
    let pick = pick(&a.pick)?;
    let refs = images(&a.images)?;
    lists::get(ctx, &a.list)?;
    let entries = lists::resolve_all(ctx, &a.list, &refs, &pick).map_err(usage)?;
    let _lock = lists::lock(ctx)?;
    let mut list = lists::get(ctx, &a.list)?;
    let n = entries.len();
    let notes = lists::add(&mut list, entries);
    lists::save(ctx, &list)?;
    report_added(s, &list, &notes, n);
    Ok(Exit::Success)
}

fn remove(s: &Settings, ctx: &Context, a: &ManifestRemoveArgs) -> Result<Exit> {
    let _lock = lists::lock(ctx)?;
    let mut list = lists::get(ctx, &a.list)?;
    let i = lists::find(&list, &a.digest)?;
    let gone = list.entries.remove(i);
    lists::save(ctx, &list)?;
    s.printer.info(format!(
        "removed {} ({}) from {}",
        gone.descriptor.digest(),
        lists::platform_name(&gone.descriptor),
        list.name
    ));
    Ok(Exit::Success)
}

fn annotate(s: &Settings, ctx: &Context, a: &ManifestAnnotateArgs) -> Result<Exit> {
    let annotations = pairs(&a.annotations, "--annotation")?;
    let changes = Annotate {
        os: a.os.clone(),
        arch: a.arch.clone(),
        variant: a.variant.clone(),
        os_version: a.os_version.clone(),
        os_features: a.os_features.as_ref().map(|f| {
            f.split(',')
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .map(str::to_string)
                .collect()
        }),
        annotations,
    };
    if a.index {
        let platform_flags = [&a.os, &a.arch, &a.variant, &a.os_version, &a.os_features];
        if a.entry.is_some() || platform_flags.iter().any(|f| f.is_some()) {
            return Err(UsageError(
                "`--index` annotates the list itself: it takes `--annotation K=V` only, and no entry"
                    .into(),
            )
            .into());
        }
        if changes.annotations.is_empty() {
            return Err(UsageError("`--index`: give `--annotation K=V`".into()).into());
        }
        let _lock = lists::lock(ctx)?;
        let mut list = lists::get(ctx, &a.list)?;
        list.annotations.extend(changes.annotations);
        lists::save(ctx, &list)?;
        s.printer.info(format!("annotated {}", list.name));
        return Ok(Exit::Success);
    }
    let entry = a
        .entry
        .as_deref()
        .expect("clap requires it without --index");
    // An image names the entries it would add: its manifest's digest.
    let digests: Vec<String> = if entry.starts_with("sha256:") {
        vec![entry.to_string()]
    } else {
        let r = parse_image(entry)?;
        lists::digests_of(ctx, &r).map_err(usage)?
    };
    let _lock = lists::lock(ctx)?;
    let mut list = lists::get(ctx, &a.list)?;
    let mut done = Vec::new();
    for d in &digests {
        let i = lists::find(&list, d)?;
        lists::annotate(&mut list, i, &changes);
        done.push(i);
    }
    lists::save(ctx, &list)?;
    for i in done {
        let d = &list.entries[i].descriptor;
        s.printer
            .info(format!("{} is now {}", d.digest(), lists::platform_name(d)));
    }
    Ok(Exit::Success)
}

fn inspect(ctx: &Context, a: &ManifestInspectArgs) -> Result<Exit> {
    // A local list first (as `docker manifest inspect`), then an image.
    let bytes = match lists::load(ctx, &a.target)? {
        Some(list) => lists::inspect_list(ctx, &list, a.verbose)?,
        None => {
            let r = parse_image(&a.target).map_err(|_| {
                UsageError(format!(
                    "`{}` is neither a local list (`emubuild manifest ls`) nor an image reference",
                    a.target
                ))
            })?;
            lists::inspect_image(ctx, &r, a.verbose)?
        }
    };
    let mut out = std::io::stdout().lock();
    out.write_all(&bytes)?;
    if !bytes.ends_with(b"\n") {
        out.write_all(b"\n")?;
    }
    Ok(Exit::Success)
}

fn push(s: &Settings, ctx: &Context, a: &ManifestPushArgs) -> Result<Exit> {
    let list = lists::get(ctx, &a.list)?;
    let dest_s = a.dest.as_deref().unwrap_or(&a.list);
    let dest: Destination = dest_s.parse().map_err(|e| {
        UsageError(match &a.dest {
            Some(_) => format!("`{dest_s}`: {e}"),
            None => format!(
                "the list `{dest_s}` is not named by a reference ({e}); give DEST: a registry reference, oci:DIR:TAG or oci-archive:FILE:TAG"
            ),
        })
    })?;
    if list.entries.is_empty() {
        return Err(UsageError(format!(
            "the list `{}` is empty; add images with `emubuild manifest add`",
            list.name
        ))
        .into());
    }
    let format = match a.format {
        ListFormat::Oci => Format::Oci,
        ListFormat::Docker => Format::Docker,
    };
    let pushed = lists::push(ctx, &list, &dest, format, a.amend_remote).map_err(usage)?;
    if let Some(f) = &a.digestfile {
        write_digestfile(f, &pushed.digest)?;
    }
    if a.rm {
        // Only the list that was pushed: one changed meanwhile (`manifest add`) is kept.
        let _lock = lists::lock(ctx)?;
        let now = lists::load(ctx, &list.name)?;
        let same = now.as_ref().map(|l| serde_json::to_vec(l).ok())
            == Some(serde_json::to_vec(&list).ok());
        if same {
            lists::remove(ctx, &list.name)?;
        } else if now.is_some() {
            s.printer.warn(format!(
                "the list `{}` changed while it was pushed; it is kept (push it again, or `emubuild manifest rm` it)",
                list.name
            ));
        }
    }
    if a.json {
        s.printer.json(&pushed);
    } else {
        s.printer.data(&pushed.digest);
        let merged = if pushed.merged > 0 {
            format!(", {} kept from the remote list", pushed.merged)
        } else {
            String::new()
        };
        s.printer.info(format!(
            "pushed {} to {} ({} entries{merged})",
            list.name, pushed.dest, pushed.entries
        ));
    }
    Ok(Exit::Success)
}

fn rm(s: &Settings, ctx: &Context, a: &ManifestRmArgs) -> Result<Exit> {
    let _lock = lists::lock(ctx)?;
    let mut exit = Exit::Success;
    for name in &a.lists {
        if lists::remove(ctx, name)? {
            s.printer.info(format!("removed {name}"));
        } else {
            s.printer.error(ListError::NoList(name.clone()));
            exit = Exit::Failure;
        }
    }
    Ok(exit)
}

fn ls(s: &Settings, ctx: &Context, a: &ManifestLsArgs) -> Result<Exit> {
    let all = lists::all(ctx)?;
    if a.json {
        s.printer.json(&all);
        return Ok(Exit::Success);
    }
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|l| vec![l.name.clone(), l.entries.len().to_string(), summary(l)])
        .collect();
    s.printer.table(&["NAME", "ENTRIES", "PLATFORMS"], &rows);
    Ok(Exit::Success)
}
