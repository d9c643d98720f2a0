//! `emubuild build`: a Containerfile built for several platforms over the working-container
//! pipeline: the file parsed and planned per platform (`containerfile`), one working container
//! for every platform made from the target's base, each instruction of the target's chain of
//! stages applied per platform (RUN under emulation with the stage's declared ARGs as its
//! environment; COPY/ADD from the context; ENV, WORKDIR, USER, LABEL, CMD, ENTRYPOINT,
//! EXPOSE, VOLUME, STOPSIGNAL, SHELL, HEALTHCHECK and ONBUILD into the config), then one commit
//! of all platforms (one index) to DEST, or into the store when no DEST is given. All or
//! nothing: a failing platform names itself and the step, and nothing is written to DEST.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::json;

use crate::container::{ContainerError, Context, CopyOptions, RunOptions};
use crate::containerfile::parse::{self, Containerfile, Instruction};
use crate::containerfile::plan::{self, Base, BuildArgs, Plan, PlanOptions, Scope};
use crate::oci::reference::{Destination, Reference};
use crate::platform::Platform;
use crate::sandbox::{Bind, Network};

/// What to build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The Containerfile, and per-platform ones (`-f PLATFORM=FILE`).
    pub file: PathBuf,
    /// Per-platform Containerfiles.
    pub platform_files: Vec<(Platform, PathBuf)>,
    /// The context directory.
    pub context: PathBuf,
    /// The target platforms (at least one).
    pub platforms: Vec<Platform>,
    /// `--build-arg`s.
    pub args: BuildArgs,
    /// `--target`.
    pub target: Option<String>,
    /// `-t`: where to commit (the first), and the others tagged with the same digest.
    pub dests: Vec<Destination>,
    /// `--label K=V`.
    pub labels: Vec<(String, String)>,
    /// `-v HOST:CTR[:ro]`, bound into every RUN (never into a layer).
    pub binds: Vec<Bind>,
    /// Layer compression.
    pub compression: crate::oci::compress::Compression,
    /// `--no-cache`: every step runs again.
    pub no_cache: bool,
    /// How many platforms build at once (0: all).
    pub jobs: usize,
    /// `--keep-going`: a failing platform does not stop the others; a table says how each
    /// ended.
    pub keep_going: bool,
    /// `--allow-partial`: with platforms failed, the others are still written (an index
    /// without them, which a warning names).
    pub allow_partial: bool,
}

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A file that cannot be read.
    #[error("cannot read `{}`", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A syntax error.
    #[error(transparent)]
    Parse(#[from] parse::ParseError),
    /// A meaning error.
    #[error(transparent)]
    Plan(#[from] plan::PlanError),
    /// An instruction that cannot be carried out.
    #[error("[{platform} {stage}] {file}:{line}: {message}")]
    Step {
        /// The platform.
        platform: String,
        /// The stage.
        stage: String,
        /// The file.
        file: String,
        /// The line.
        line: usize,
        /// What went wrong.
        message: String,
    },
    /// A RUN that failed.
    #[error(
        "[{platform} {stage}] {file}:{line}: `{command}` exited with status {code}; nothing was written"
    )]
    Run {
        /// The platform.
        platform: String,
        /// The stage.
        stage: String,
        /// The file.
        file: String,
        /// The line.
        line: usize,
        /// The command.
        command: String,
        /// Its status.
        code: i32,
    },
    /// The working container, the store or a commit.
    #[error(transparent)]
    Container(#[from] Box<ContainerError>),
    /// Tagging the other destinations.
    #[error(transparent)]
    Tag(#[from] Box<crate::promote::PromoteError>),
}

impl From<ContainerError> for BuildError {
    fn from(e: ContainerError) -> Self {
        BuildError::Container(Box::new(e))
    }
}

/// What a build produced.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Built {
    /// The index digest.
    pub digest: String,
    /// Where it was written (`-t`, or the store's layout when none was given).
    pub dests: Vec<String>,
    /// The working container left with the result.
    pub container: String,
    /// Seconds per step: platform, step label, time.
    pub timings: Vec<(String, String, f64)>,
    /// Things the user should know.
    pub warnings: Vec<String>,
}

/// A per-platform plan and the file it came from.
struct Planned {
    platform: Platform,
    file: String,
    cf: Containerfile,
    plan: Plan,
    /// The target's stages, base first (FROM stage chains followed).
    chain: Vec<usize>,
    /// The context's ignore file, for this file.
    ignore: crate::containerfile::ignore::Patterns,
}

fn read(path: &Path) -> Result<String, BuildError> {
    std::fs::read_to_string(path).map_err(|source| BuildError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Runs one RUN step of a working container's platform (in a process of its own: the
/// sandbox makes its namespaces once per process) and gives its exit status.
pub type StepRunner<'r> =
    dyn Fn(&str, &Platform, &RunOptions, &str) -> Result<i32, String> + Sync + 'r;

/// Where progress lines go.
pub type Log<'l> = dyn Fn(&str) + Sync + 'l;

/// Builds `o`; `log` gets each step's progress line, `runner` runs RUN steps.
pub fn build(
    ctx: &Context,
    o: &BuildOptions,
    log: &Log<'_>,
    runner: &StepRunner<'_>,
) -> Result<Built, BuildError> {
    let build_platform = Platform::host();
    let mut warnings = Vec::new();
    let mut planned = Vec::new();
    for platform in &o.platforms {
        let path = o
            .platform_files
            .iter()
            .find(|(p, _)| p == platform)
            .map(|(_, f)| f.clone())
            .unwrap_or_else(|| o.file.clone());
        let file = path.display().to_string();
        let cf = parse::parse(&file, &read(&path)?)?;
        for w in &cf.warnings {
            if !warnings.contains(w) {
                warnings.push(w.clone());
            }
        }
        let plan = plan::plan(
            &cf,
            &PlanOptions {
                file: &file,
                platform: platform.clone(),
                build_platform: build_platform.clone(),
                args: &o.args,
                target: o.target.as_deref(),
            },
        )?;
        for a in &plan.unused_args {
            let w = format!("build arg {a} is not declared by any stage built; it is unused");
            if !warnings.contains(&w) {
                warnings.push(w);
            }
        }
        let chain = chain_of(&plan, plan.target);
        let ignore = crate::containerfile::ignore::Patterns::for_context(&o.context, &path)
            .map_err(|message| BuildError::Step {
                platform: platform.to_string(),
                stage: String::new(),
                file: file.clone(),
                line: 0,
                message,
            })?;
        planned.push(Planned {
            ignore,
            platform: platform.clone(),
            file,
            cf,
            plan,
            chain,
        });
    }
    // One working container for every platform: the chain's base must be the same image.
    let base = |p: &Planned| match &p.plan.stages[p.chain[0]].base {
        Base::Image(i) => i.clone(),
        Base::Stage(_) => unreachable!("a chain starts at an image"),
    };
    let first = base(&planned[0]);
    if let Some(other) = planned.iter().find(|p| base(p) != first) {
        return Err(BuildError::Step {
            platform: other.platform.to_string(),
            stage: other.plan.stages[other.chain[0]].label(),
            file: other.file.clone(),
            line: other.plan.stages[other.chain[0]].line,
            message: format!(
                "this platform's base is `{}` but {}'s is `{first}`; one build starts every platform from the same image",
                base(other),
                planned[0].platform
            ),
        });
    }
    let reference: Reference = first.parse().map_err(|e| BuildError::Step {
        platform: planned[0].platform.to_string(),
        stage: planned[0].plan.stages[planned[0].chain[0]].label(),
        file: planned[0].file.clone(),
        line: planned[0].plan.stages[planned[0].chain[0]].line,
        message: format!("FROM {first}: {e}"),
    })?;
    // One working container per context, file, target and platforms: it is the step cache.
    let id = crate::digest::sha256_hex(
        format!(
            "{}\0{}\0{:?}\0{:?}",
            o.context.display(),
            o.file.display(),
            o.target,
            o.platforms
        )
        .as_bytes(),
    );
    let name = format!("build-{}", &id[..16]);
    // The other stages the target reads, each in a container of its own: per target
    // platform, or once for all when it runs natively and reads no TARGET* ARG.
    let mut built: BuiltStages = Vec::new();
    let mut timings = Vec::new();
    for p in &planned {
        for &d in &p.plan.order {
            if p.chain.contains(&d) {
                continue;
            }
            let chain = chain_of(&p.plan, d);
            let stage = &p.plan.stages[d];
            let shared = chain
                .iter()
                .all(|i| p.plan.stages[*i].native && !p.plan.stages[*i].reads_target);
            let run_as = stage.platform.clone();
            let owner = if shared { &run_as } else { &p.platform };
            let cname = format!("build-{}-{}-{}", &id[..16], d, owner.file_name());
            if !built.iter().any(|(_, (n, _))| *n == cname) {
                let Base::Image(base) = &p.plan.stages[chain[0]].base else {
                    unreachable!("a chain starts at an image")
                };
                let reference: Reference = base.parse().map_err(|e| BuildError::Step {
                    platform: p.platform.to_string(),
                    stage: stage.label(),
                    file: p.file.clone(),
                    line: p.plan.stages[chain[0]].line,
                    message: format!("FROM {base}: {e}"),
                })?;
                let keys = prepare(
                    ctx,
                    &cname,
                    &reference,
                    std::slice::from_ref(&run_as),
                    o.no_cache,
                )?;
                timings.extend(run_platform(
                    ctx, o, &cname, p, &chain, &run_as, &keys[0], &built, log, runner, None,
                )?);
            }
            built.push(((d, p.platform.clone()), (cname, run_as)));
        }
    }
    let keys = prepare(ctx, &name, &reference, &o.platforms, o.no_cache)?;
    let (t, failures) = run_all(ctx, o, &name, &planned, &keys, &built, log, runner);
    timings.extend(t);
    let failed: Vec<Platform> = failures.iter().map(|(p, _)| p.clone()).collect();
    if !failures.is_empty() && (o.keep_going || o.allow_partial) {
        log("per platform:");
        for p in &o.platforms {
            match failures.iter().find(|(f, _)| f == p) {
                None => log(&format!("  {:<14} ok", p.to_string())),
                Some((_, e)) => log(&format!("  {:<14} FAILED: {e}", p.to_string())),
            }
        }
    }
    let ok: Vec<Platform> = o
        .platforms
        .iter()
        .filter(|p| !failed.contains(p))
        .cloned()
        .collect();
    if let Some((_, first)) = failures.into_iter().next()
        && (!o.allow_partial || ok.is_empty())
    {
        return Err(first);
    }
    if !failed.is_empty() {
        warnings.push(format!(
            "--allow-partial: the index lacks {}, which failed",
            failed
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    // Programs the final stage added for another machine (BuildKit lets them through).
    for p in &ok {
        warnings.extend(foreign_programs(ctx, &name, p));
    }
    // Labels from the command line.
    let cdir = ctx.container(&name);
    for p in &ok {
        let mut state = cdir.read_platform(p).map_err(ContainerError::from)?;
        for (k, v) in &o.labels {
            state.config.set_label(k, v);
        }
        cdir.write_platform(&state).map_err(ContainerError::from)?;
    }
    let (commit_dest, more) = match o.dests.split_first() {
        Some((d, rest)) => (d.clone(), rest.to_vec()),
        None => (
            Destination::Layout {
                dir: ctx.store.root().join("builds").join(&name),
                tag: "latest".into(),
            },
            Vec::new(),
        ),
    };
    let opts = crate::commit::CommitOptions {
        compression: o.compression,
        edits: crate::commit::ConfigEdits::default(),
        index: true,
    };
    // A partial index: the container names only the platforms that built while it commits.
    let whole = cdir.read().map_err(ContainerError::from)?;
    if ok.len() != whole.platforms.len() {
        let mut part = whole.clone();
        part.platforms = ok.clone();
        cdir.write(&part).map_err(ContainerError::from)?;
    }
    let committed = crate::commit::commit(ctx, &name, &commit_dest, &opts);
    if ok.len() != whole.platforms.len() {
        cdir.write(&whole).map_err(ContainerError::from)?;
    }
    let committed = committed?;
    let mut dests = vec![commit_dest.to_string()];
    if !more.is_empty() {
        let src: Reference = match &commit_dest {
            Destination::Layout { dir, tag } => Reference::Layout {
                dir: dir.clone(),
                tag: Some(tag.clone()),
            },
            Destination::Archive { file, tag } => Reference::Archive {
                file: file.clone(),
                tag: Some(tag.clone()),
            },
            Destination::Registry(r) => Reference::Registry(crate::oci::reference::RegistryRef {
                tag: None,
                digest: Some(committed.digest.clone()),
                ..r.clone()
            }),
        };
        crate::promote::tag(ctx, &src, &more).map_err(Box::new)?;
        dests.extend(more.iter().map(ToString::to_string));
    }
    warnings.extend(committed.warnings.iter().map(ToString::to_string));
    Ok(Built {
        digest: committed.digest,
        dests,
        container: name,
        timings,
        warnings,
    })
}

/// A stage's chain, base first: `FROM stage` followed back to an image.
fn chain_of(plan: &Plan, stage: usize) -> Vec<usize> {
    let mut chain = vec![stage];
    while let Base::Stage(i) = plan.stages[*chain.last().expect("not empty")].base {
        chain.push(i);
    }
    chain.reverse();
    chain
}

/// Makes (or reuses, as the step cache) the working container `name` from `reference` for
/// `platforms`: a different base, a moved tag or `--no-cache` start it again. The base key of
/// each platform.
fn prepare(
    ctx: &Context,
    name: &str,
    reference: &Reference,
    platforms: &[Platform],
    no_cache: bool,
) -> Result<Vec<String>, BuildError> {
    if no_cache && ctx.container(name).exists() {
        crate::container::remove(ctx, name)?;
    }
    match crate::container::create(ctx, name, reference, platforms, true) {
        Ok(_) => {}
        Err(ContainerError::Exists { .. }) => {
            crate::container::remove(ctx, name)?;
            crate::container::create(ctx, name, reference, platforms, false)?;
        }
        Err(e) => return Err(e.into()),
    }
    let base_key = |p: &Platform| -> Result<String, BuildError> {
        let state = ctx
            .container(name)
            .read_platform(p)
            .map_err(ContainerError::from)?;
        Ok(crate::digest::sha256_hex(
            format!(
                "{reference}\0{}\0{:?}",
                state.base_manifest.as_deref().unwrap_or(""),
                state
                    .base_layers
                    .iter()
                    .map(|l| &l.diff_id)
                    .collect::<Vec<_>>()
            )
            .as_bytes(),
        ))
    };
    let mut stale = false;
    for p in platforms {
        let key = base_key(p)?;
        stale |= read_cache(&ctx.container(name).platform_dir(p))
            .first()
            .is_some_and(|e| e.key != key);
    }
    if stale {
        crate::container::remove(ctx, name)?;
        crate::container::create(ctx, name, reference, platforms, false)?;
    }
    platforms.iter().map(base_key).collect()
}

/// Where each stage a target reads was built: (stage, target platform) -> (container, the
/// platform it ran as).
type BuiltStages = Vec<((usize, Platform), (String, Platform))>;

/// Every platform, `o.jobs` at once (all when 0): all or nothing.
#[allow(clippy::too_many_arguments)]
fn run_all(
    ctx: &Context,
    o: &BuildOptions,
    name: &str,
    planned: &[Planned],
    keys: &[String],
    built: &BuiltStages,
    log: &Log<'_>,
    runner: &StepRunner<'_>,
) -> (Timings, Vec<(Platform, BuildError)>) {
    let jobs = if o.jobs == 0 { planned.len() } else { o.jobs };
    let mut timings = Vec::new();
    let mut failures = Vec::new();
    // Without --keep-going (or --allow-partial) a failure stops the other platforms at their
    // next step.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let stop = &stop;
    let keep_going = o.keep_going || o.allow_partial;
    let work: Vec<(&Planned, &String)> = planned.iter().zip(keys).collect();
    for batch in work.chunks(jobs.max(1)) {
        let results: Vec<Result<Timings, BuildError>> = std::thread::scope(|sc| {
            let handles: Vec<_> = batch
                .iter()
                .map(|(p, key)| {
                    sc.spawn(move || {
                        let r = run_platform(
                            ctx,
                            o,
                            name,
                            p,
                            &p.chain,
                            &p.platform,
                            key,
                            built,
                            log,
                            runner,
                            (!keep_going).then_some(stop),
                        );
                        if r.is_err() {
                            stop.store(true, std::sync::atomic::Ordering::SeqCst);
                        }
                        r
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a platform's build does not panic"))
                .collect()
        });
        for ((p, _), r) in batch.iter().zip(results) {
            match r {
                Ok(t) => timings.extend(t),
                Err(e) => failures.push((p.platform.clone(), e)),
            }
        }
    }
    (timings, failures)
}

/// Seconds per step: platform, step label, time.
type Timings = Vec<(String, String, f64)>;

/// One cached step: its key and the platform's state after it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct CacheEntry {
    key: String,
    state: crate::store::PlatformState,
}

const CACHE_FILE: &str = "build-cache.json";

/// Part of every key: a change to what a step does starts every cache again.
const CACHE_VERSION: u32 = 1;

fn read_cache(pdir: &Path) -> Vec<CacheEntry> {
    std::fs::read(pdir.join(CACHE_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn write_cache(pdir: &Path, cache: &[CacheEntry]) -> Result<(), BuildError> {
    let path = pdir.join(CACHE_FILE);
    crate::util::write_atomic(
        &path,
        &serde_json::to_vec(cache).expect("serialises"),
        0o600,
    )
    .map_err(|e| ContainerError::io("write", &path)(e).into())
}

/// The instructions that change only the stage's variables (and the shell) are applied again
/// on a cache hit, so later keys see the same scope.
fn replay_scope(scope: &mut Scope<'_>, shell: &mut Vec<String>, ins: &Instruction) {
    match ins.keyword.as_str() {
        "arg" => {
            let _ = scope.arg(ins);
        }
        "env" => {
            let _ = scope.env(ins);
        }
        "shell" if ins.json && !ins.args.is_empty() => *shell = ins.args.clone(),
        _ => {}
    }
}

/// Runs `chain` (stages of `p`'s plan) in the container `name`, as platform `run_as`.
#[allow(clippy::too_many_arguments)]
fn run_platform(
    ctx: &Context,
    o: &BuildOptions,
    name: &str,
    p: &Planned,
    chain: &[usize],
    run_as: &Platform,
    base_key: &str,
    built: &BuiltStages,
    log: &Log<'_>,
    runner: &StepRunner<'_>,
    stop: Option<&std::sync::atomic::AtomicBool>,
) -> Result<Vec<(String, String, f64)>, BuildError> {
    let mut timings = Vec::new();
    let steps: usize = chain
        .iter()
        .map(|i| p.plan.stages[*i].instructions.len())
        .sum();
    let cdir = ctx.container(name);
    let pdir = cdir.platform_dir(run_as);
    let state0 = cdir.read_platform(run_as).map_err(ContainerError::from)?;
    let mut cache = read_cache(&pdir);
    if cache.first().is_none_or(|e| e.key != base_key) {
        cache = vec![CacheEntry {
            key: base_key.to_string(),
            state: state0.clone(),
        }];
        write_cache(&pdir, &cache)?;
    }
    let base_env = env_pairs(&cache[0].state.config);
    let mut scope = Scope::new(
        &p.plan,
        &o.args,
        &p.platform,
        p.cf.directives.escape,
        base_env,
    );
    let mut shell = vec!["/bin/sh".to_string(), "-c".to_string()];
    let mut n = 0;
    let mut diverged = false;
    for si in chain {
        let stage = &p.plan.stages[*si];
        for ins in &stage.instructions {
            n += 1;
            let label = format!("{}/{}", n, steps);
            let prefix = if run_as == &p.platform {
                format!("[{} {} {label}] ", p.platform, stage.label())
            } else {
                format!("[{} {} {label} as {run_as}] ", p.platform, stage.label())
            };
            let started = Instant::now();
            let mut exec = Exec {
                ctx,
                o,
                runner,
                prefix: prefix.clone(),
                name,
                p,
                run_as,
                built,
                stage: &stage.label(),
                scope: &mut scope,
                shell: &mut shell,
            };
            if stop.is_some_and(|s| s.load(std::sync::atomic::Ordering::SeqCst)) {
                return Err(exec.err(
                    ins,
                    "stopped: another platform failed (--keep-going builds the others on)",
                ));
            }
            let material = exec.cache_material(ins)?;
            let key =
                crate::digest::sha256_hex(format!("{}\0{material}", cache[n - 1].key).as_bytes());
            if !diverged && cache.get(n).is_some_and(|e| e.key == key) {
                log(&format!("{prefix}CACHED {}", ins.original));
                replay_scope(&mut scope, &mut shell, ins);
                timings.push((
                    p.platform.to_string(),
                    format!(
                        "{} {label} {} (cached)",
                        stage.label(),
                        ins.keyword.to_uppercase()
                    ),
                    started.elapsed().as_secs_f64(),
                ));
                continue;
            }
            if !diverged {
                // From here on the cache no longer holds: back to the state before this step.
                diverged = true;
                cdir.write_platform(&cache[n - 1].state)
                    .map_err(ContainerError::from)?;
                cache.truncate(n);
            }
            log(&format!("{prefix}{}", ins.original));
            exec.instruction(ins)?;
            let state = cdir.read_platform(run_as).map_err(ContainerError::from)?;
            cache.push(CacheEntry { key, state });
            write_cache(&pdir, &cache)?;
            timings.push((
                p.platform.to_string(),
                format!("{} {label} {}", stage.label(), ins.keyword.to_uppercase()),
                started.elapsed().as_secs_f64(),
            ));
        }
    }
    // Every step was cached but an earlier build had more: its extra steps go.
    if !diverged && cache.len() > n + 1 {
        cdir.write_platform(&cache[n].state)
            .map_err(ContainerError::from)?;
        cache.truncate(n + 1);
        write_cache(&pdir, &cache)?;
    }
    Ok(timings)
}

fn env_pairs(config: &crate::oci::document::ImageConfig) -> Vec<(String, String)> {
    config
        .env()
        .iter()
        .filter_map(|e| {
            e.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect()
}

struct Exec<'a, 'p> {
    ctx: &'a Context,
    o: &'a BuildOptions,
    runner: &'a StepRunner<'a>,
    prefix: String,
    name: &'a str,
    p: &'a Planned,
    /// The platform the container runs (the build platform for a native stage).
    run_as: &'a Platform,
    built: &'a BuiltStages,
    stage: &'a str,
    scope: &'a mut Scope<'p>,
    shell: &'a mut Vec<String>,
}

impl Exec<'_, '_> {
    fn err(&self, ins: &Instruction, message: impl Into<String>) -> BuildError {
        BuildError::Step {
            platform: self.p.platform.to_string(),
            stage: self.stage.to_string(),
            file: self.p.file.clone(),
            line: ins.line,
            message: message.into(),
        }
    }

    fn expand(&self, ins: &Instruction, w: &str) -> Result<String, BuildError> {
        self.scope
            .expand(w)
            .map_err(|e| self.err(ins, e.to_string()))
    }

    /// Changes this platform's config.
    fn config(
        &self,
        f: impl FnOnce(&mut crate::oci::document::ImageConfig),
    ) -> Result<(), BuildError> {
        let cdir = self.ctx.container(self.name);
        let _lock = cdir
            .lock_platform(self.run_as)
            .map_err(ContainerError::from)?;
        let mut state = cdir
            .read_platform(self.run_as)
            .map_err(ContainerError::from)?;
        f(&mut state.config);
        cdir.write_platform(&state).map_err(ContainerError::from)?;
        Ok(())
    }

    /// A command in the exec form, or the shell form through SHELL.
    fn command(&self, ins: &Instruction) -> Vec<String> {
        if ins.json {
            ins.args.clone()
        } else {
            let mut argv = self.shell.clone();
            argv.push(ins.args.join(" "));
            argv
        }
    }

    fn instruction(&mut self, ins: &Instruction) -> Result<(), BuildError> {
        match ins.keyword.as_str() {
            "arg" => self
                .scope
                .arg(ins)
                .map_err(|e| self.err(ins, e.to_string())),
            "env" => {
                let pairs = self
                    .scope
                    .env(ins)
                    .map_err(|e| self.err(ins, e.to_string()))?;
                self.config(|c| {
                    c.edit_exec(|e| {
                        let mut env = e.env().clone().unwrap_or_default();
                        for (k, v) in &pairs {
                            env.retain(|x| x.split_once('=').map(|(n, _)| n) != Some(k.as_str()));
                            env.push(format!("{k}={v}"));
                        }
                        e.set_env(Some(env));
                    })
                })
            }
            "run" => self.run(ins),
            "copy" | "add" => self.copy(ins),
            "workdir" => {
                let w = self.expand(ins, ins.args.first().map_or("", String::as_str))?;
                let cur = self.current_workdir()?;
                let dir = if w.starts_with('/') {
                    w
                } else {
                    format!("{}/{w}", cur.trim_end_matches('/'))
                };
                self.config(|c| {
                    c.edit_exec(|e| {
                        e.set_working_dir(Some(dir.clone()));
                    })
                })
            }
            "user" => {
                let u = self.expand(ins, ins.args.first().map_or("", String::as_str))?;
                self.config(|c| {
                    c.edit_exec(|e| {
                        e.set_user(Some(u.clone()));
                    })
                })
            }
            "label" | "maintainer" => {
                let mut pairs = Vec::new();
                if ins.keyword == "maintainer" {
                    pairs.push(("maintainer".to_string(), ins.args.join(" ")));
                } else {
                    for kv in ins.args.chunks(3) {
                        if let [k, v, _] = kv {
                            pairs.push((self.expand(ins, k)?, self.expand(ins, v)?));
                        }
                    }
                }
                self.config(|c| pairs.iter().for_each(|(k, v)| c.set_label(k, v)))
            }
            "cmd" | "entrypoint" => {
                let argv = self.command(ins);
                let cmd = ins.keyword == "cmd";
                self.config(|c| {
                    c.edit_exec(|e| {
                        if cmd {
                            e.set_cmd(Some(argv.clone()));
                        } else {
                            e.set_entrypoint(Some(argv.clone()));
                            // BuildKit: ENTRYPOINT resets a CMD inherited from the base.
                            e.set_cmd(None);
                        }
                    })
                })
            }
            "expose" | "volume" => {
                let mut words = Vec::new();
                for a in &ins.args {
                    if ins.json {
                        words.push(a.clone());
                    } else {
                        words.extend(
                            self.scope
                                .expand_words(a)
                                .map_err(|e| self.err(ins, e.to_string()))?,
                        );
                    }
                }
                let expose = ins.keyword == "expose";
                if expose
                    && let Some(bad) = words.iter().find(|w| {
                        let port = w.split('/').next().unwrap_or("");
                        port.split('-').any(|x| x.parse::<u16>().is_err())
                    })
                {
                    return Err(self.err(ins, format!("EXPOSE {bad}: not a port[/tcp|udp|sctp]")));
                }
                self.config(|c| {
                    c.edit_exec(|e| {
                        if expose {
                            let mut ports = e.exposed_ports().clone().unwrap_or_default();
                            for w in &words {
                                let p = if w.contains('/') {
                                    w.to_lowercase()
                                } else {
                                    format!("{w}/tcp")
                                };
                                if !ports.contains(&p) {
                                    ports.push(p);
                                }
                            }
                            e.set_exposed_ports(Some(ports));
                        } else {
                            let mut vols = e.volumes().clone().unwrap_or_default();
                            for w in &words {
                                if !vols.contains(w) {
                                    vols.push(w.clone());
                                }
                            }
                            e.set_volumes(Some(vols));
                        }
                    })
                })
            }
            "stopsignal" => {
                let s = self.expand(ins, ins.args.first().map_or("", String::as_str))?;
                self.config(|c| {
                    c.edit_exec(|e| {
                        e.set_stop_signal(Some(s.clone()));
                    })
                })
            }
            "shell" => {
                if !ins.json || ins.args.is_empty() {
                    return Err(self.err(
                        ins,
                        "SHELL takes a JSON array: SHELL [\"/bin/bash\", \"-c\"]",
                    ));
                }
                *self.shell = ins.args.clone();
                let shell = ins.args.clone();
                self.config(|c| {
                    c.exec_extra.insert("Shell".into(), json!(shell));
                })
            }
            "healthcheck" => {
                let value = self.healthcheck(ins)?;
                self.config(|c| {
                    c.exec_extra.insert("Healthcheck".into(), value);
                })
            }
            "onbuild" => {
                let Some(sub) = &ins.sub else {
                    return Err(self.err(ins, "ONBUILD takes an instruction"));
                };
                let text = sub.original.clone();
                self.config(|c| {
                    let mut all = c
                        .exec_extra
                        .get("OnBuild")
                        .and_then(|v| v.as_array().cloned())
                        .unwrap_or_default();
                    all.push(json!(text));
                    c.exec_extra.insert("OnBuild".into(), json!(all));
                })
            }
            other => Err(self.err(
                ins,
                format!("{} is not valid inside a stage", other.to_uppercase()),
            )),
        }
    }

    /// The container and platform `COPY --from=FROM` reads, and a key for its content: an
    /// earlier stage the build made, or an image (made into a working container of its own).
    fn copy_source(
        &self,
        ins: &Instruction,
        from: &str,
    ) -> Result<(String, Platform, String), BuildError> {
        let stages = &self.p.plan.stages;
        let idx = stages
            .iter()
            .find(|st| st.name.as_deref() == Some(from.to_ascii_lowercase().as_str()))
            .map(|st| st.index)
            .or_else(|| from.parse::<usize>().ok().filter(|i| *i < stages.len()));
        if let Some(i) = idx
            && let Some((_, (cname, platform))) = self
                .built
                .iter()
                .find(|((d, t), _)| *d == i && *t == self.p.platform)
        {
            let cache = read_cache(&self.ctx.container(cname).platform_dir(platform));
            let key = cache.last().map(|e| e.key.clone()).unwrap_or_default();
            return Ok((cname.clone(), platform.clone(), key));
        }
        let reference: Reference = from.parse().map_err(|e| {
            self.err(
                ins,
                format!("--from={from}: neither an earlier stage nor an image ({e})"),
            )
        })?;
        let cname = format!(
            "build-img-{}",
            &crate::digest::sha256_hex(format!("{reference}\0{}", self.run_as).as_bytes())[..16]
        );
        let keys = prepare(
            self.ctx,
            &cname,
            &reference,
            std::slice::from_ref(self.run_as),
            false,
        )?;
        Ok((cname, self.run_as.clone(), keys[0].clone()))
    }

    /// What a step's cache key covers: the instruction as written, the variables it sees
    /// (declared ARGs and the environment), the shell, and for COPY/ADD the content of what
    /// it reads.
    fn cache_material(&self, ins: &Instruction) -> Result<String, BuildError> {
        let from = ins.flags.iter().find_map(|f| f.strip_prefix("--from="));
        let mut bound = Vec::new();
        for f in &ins.flags {
            let Some(m) = f.strip_prefix("--mount=") else {
                continue;
            };
            let m = self.expand(ins, m)?;
            let kv: Vec<(&str, &str)> = m.split(',').filter_map(|p| p.split_once('=')).collect();
            let get = |k: &str| kv.iter().rev().find(|(n, _)| *n == k).map(|(_, v)| *v);
            if get("type").unwrap_or("bind") == "bind" {
                match get("from") {
                    Some(from) => bound.push(self.copy_source(ins, from)?.2),
                    None => {
                        let src = get("source").or_else(|| get("src")).unwrap_or(".");
                        for p in
                            context_paths(&self.o.context, src).map_err(|m| self.err(ins, m))?
                        {
                            bound.push(self.digest(&p).map_err(|e| {
                                self.err(ins, format!("cannot read `{}`: {e}", p.display()))
                            })?);
                        }
                    }
                }
            }
        }
        let content = if let Some(from) = from {
            let from = self.expand(ins, from)?;
            vec![self.copy_source(ins, &from)?.2]
        } else if matches!(ins.keyword.as_str(), "copy" | "add") {
            let words = self.copy_words(ins)?;
            let mut h = Vec::new();
            if let Some((_, sources)) = words.split_last() {
                for s in sources {
                    if s.contains("://") || heredoc_source(ins, s).is_some() {
                        continue;
                    }
                    for path in self.context_sources(ins, s)? {
                        h.push(self.digest(&path).map_err(|e| {
                            self.err(ins, format!("cannot read `{}`: {e}", path.display()))
                        })?);
                    }
                }
            }
            h
        } else {
            Vec::new()
        };
        Ok(json!({
            "version": CACHE_VERSION,
            "keyword": ins.keyword,
            "flags": ins.flags,
            "args": ins.args,
            "json": ins.json,
            "heredocs": ins.heredocs.iter().map(|h| (&h.name, &h.content)).collect::<Vec<_>>(),
            "sub": ins.sub.as_ref().map(|s| &s.original),
            "env": self.scope.run_env(),
            "shell": self.shell,
            "content": content,
            "bound": bound,
            "binds": self.o.binds.iter().map(|b| format!("{}:{}:{}", b.source.display(), b.target.display(), b.readonly)).collect::<Vec<_>>(),
        })
        .to_string())
    }

    /// The context paths a COPY source names, the ignore file applied: a path named outright
    /// that it excludes is an error, a glob's excluded matches are left out.
    fn context_sources(&self, ins: &Instruction, src: &str) -> Result<Vec<PathBuf>, BuildError> {
        let all = context_paths(&self.o.context, src).map_err(|m| self.err(ins, m))?;
        if self.p.ignore.is_empty() {
            return Ok(all);
        }
        let glob = src.contains(['*', '?', '[']);
        let mut kept = Vec::new();
        for p in all {
            let rel = p
                .strip_prefix(&self.o.context)
                .unwrap_or(&p)
                .to_string_lossy()
                .to_string();
            if rel.is_empty() || !self.p.ignore.excluded(&rel) {
                kept.push(p);
            } else if !glob {
                return Err(self.err(ins, format!("`{src}` is excluded by the context's ignore file (.containerignore or .dockerignore)")));
            }
        }
        if kept.is_empty() {
            return Err(self.err(
                ins,
                format!("`{src}` matches only files the ignore file excludes"),
            ));
        }
        Ok(kept)
    }

    /// Is this context path excluded?
    fn ignored(&self, p: &Path) -> bool {
        !self.p.ignore.is_empty()
            && p.strip_prefix(&self.o.context).is_ok_and(|r| {
                !r.as_os_str().is_empty() && self.p.ignore.excluded(&r.to_string_lossy())
            })
    }

    /// [`tree_digest`] with the ignore file applied.
    fn digest(&self, p: &Path) -> std::io::Result<String> {
        tree_digest(p, &|x| self.ignored(x))
    }

    /// Copies `src` (a context directory) to `dest` without what the ignore file excludes.
    fn filtered_copy(&self, src: &Path, dest: &Path) -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt as _;
        let m = std::fs::symlink_metadata(src)?;
        if m.file_type().is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(src)?, dest)?;
        } else if m.is_dir() {
            std::fs::create_dir(dest)?;
            for e in std::fs::read_dir(src)? {
                let e = e?;
                if !self.ignored(&e.path()) {
                    self.filtered_copy(&e.path(), &dest.join(e.file_name()))?;
                }
            }
            std::fs::set_permissions(
                dest,
                std::fs::Permissions::from_mode(m.permissions().mode() & 0o7777),
            )?;
        } else if m.is_file() {
            std::fs::copy(src, dest)?;
        }
        Ok(())
    }

    /// COPY/ADD's words: the exec form as written, the shell form expanded.
    fn copy_words(&self, ins: &Instruction) -> Result<Vec<String>, BuildError> {
        ins.args
            .iter()
            .map(|a| {
                if ins.json {
                    Ok(a.clone())
                } else {
                    self.expand(ins, a)
                }
            })
            .collect()
    }

    fn current_workdir(&self) -> Result<String, BuildError> {
        let state = self
            .ctx
            .container(self.name)
            .read_platform(self.run_as)
            .map_err(ContainerError::from)?;
        Ok(state.config.working_dir().unwrap_or("/").to_string())
    }

    fn healthcheck(&self, ins: &Instruction) -> Result<serde_json::Value, BuildError> {
        let kind = ins.args.first().map(|s| s.to_ascii_uppercase());
        match kind.as_deref() {
            Some("NONE") => Ok(json!({"Test": ["NONE"]})),
            Some("CMD") => {
                let test: Vec<String> = if ins.json {
                    std::iter::once("CMD".to_string())
                        .chain(ins.args[1..].iter().cloned())
                        .collect()
                } else {
                    vec!["CMD-SHELL".into(), ins.args[1..].join(" ")]
                };
                let mut v = json!({ "Test": test });
                for f in &ins.flags {
                    let (k, val) = f
                        .trim_start_matches("--")
                        .split_once('=')
                        .unwrap_or((f, ""));
                    let field = match k {
                        "interval" => "Interval",
                        "timeout" => "Timeout",
                        "start-period" => "StartPeriod",
                        "start-interval" => "StartInterval",
                        "retries" => {
                            let n: u64 = val.parse().map_err(|_| {
                                self.err(ins, format!("--retries={val}: not a number"))
                            })?;
                            v["Retries"] = json!(n);
                            continue;
                        }
                        _ => return Err(self.err(ins, format!("HEALTHCHECK: unknown flag {f}"))),
                    };
                    let ns = duration_ns(val).ok_or_else(|| {
                        self.err(ins, format!("--{k}={val}: not a duration (30s, 1m30s)"))
                    })?;
                    v[field] = json!(ns);
                }
                Ok(v)
            }
            _ => Err(self.err(ins, "HEALTHCHECK takes NONE, or [flags] CMD command")),
        }
    }

    fn run(&mut self, ins: &Instruction) -> Result<(), BuildError> {
        let mut network = Network::Host;
        let mut mounts = self.o.binds.clone();
        // Held for the step: `sharing=locked` caches, and staged or empty directories.
        let mut held: Vec<crate::util::FileLock> = Vec::new();
        let mut staged: Vec<tempfile::TempDir> = Vec::new();
        for f in &ins.flags {
            match f.as_str() {
                "--network=none" => network = Network::None,
                "--network=host" | "--network=default" => network = Network::Host,
                f if f.starts_with("--mount=") => {
                    let m = self.expand(ins, &f["--mount=".len()..])?;
                    mounts.push(self.mount(ins, &m, &mut held, &mut staged)?);
                }
                f => return Err(self.err(ins, format!("RUN: unknown flag {f}"))),
            }
        }
        let argv = if let [h] = ins.heredocs.as_slice()
            && !ins.json
            && ins.args.first().is_some_and(|a| {
                a.trim()
                    .trim_start_matches("<<-")
                    .trim_start_matches("<<")
                    .trim_matches(['"', '\''])
                    == h.name
            }) {
            // `RUN <<EOF`: the body is the script (a shebang picks its interpreter).
            // The shell expands it (the stage's ARGs are in its environment), as in BuildKit.
            let body = h.content.clone();
            if body.starts_with("#!") {
                let interp = body.lines().next().unwrap_or("#!/bin/sh")[2..]
                    .trim()
                    .to_string();
                let mut argv: Vec<String> = interp.split_whitespace().map(str::to_string).collect();
                argv.extend(["-c".to_string(), body]);
                // `sh -c` takes the script; other interpreters read it from a -c too where
                // they can (python, perl, bash): the common ones do.
                argv
            } else {
                let mut argv = self.shell.clone();
                argv.push(body);
                argv
            }
        } else if !ins.heredocs.is_empty() && !ins.json {
            // Heredocs the command reads: the shell sees them as written.
            let mut script = ins.args.join(" ");
            for h in &ins.heredocs {
                script.push('\n');
                script.push_str(&h.content);
                script.push_str(&h.name);
            }
            let mut argv = self.shell.clone();
            argv.push(script);
            argv
        } else {
            self.command(ins)
        };
        let opts = RunOptions {
            argv: argv.clone(),
            env: self.scope.run_env(),
            workdir: None,
            user: None,
            mounts,
            network,
            tty: false,
            stdin: false,
            platform_env: false,
        };
        let code = (self.runner)(self.name, self.run_as, &opts, &self.prefix)
            .map_err(|m| self.err(ins, m))?;
        if code != 0 {
            return Err(BuildError::Run {
                platform: self.p.platform.to_string(),
                stage: self.stage.to_string(),
                file: self.p.file.clone(),
                line: ins.line,
                command: ins.original.clone(),
                code,
            });
        }
        Ok(())
    }

    /// One `RUN --mount=...`: `type=cache` (a directory in the store kept between builds, per
    /// platform unless `platform-shared`; `sharing=locked` holds a lock for the step,
    /// `private` gets an empty one), `type=bind` (from the context, read-only unless `rw`, or
    /// `from=` a stage or image) and `type=tmpfs` (an empty directory, discarded). Never part
    /// of a layer.
    fn mount(
        &self,
        ins: &Instruction,
        spec: &str,
        held: &mut Vec<crate::util::FileLock>,
        staged: &mut Vec<tempfile::TempDir>,
    ) -> Result<Bind, BuildError> {
        let mut kv: Vec<(String, String)> = Vec::new();
        for part in spec.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').unwrap_or((part, "true"));
            kv.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
        let get = |k: &str| {
            kv.iter()
                .rev()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.as_str())
        };
        let flag = |k: &str| get(k).is_some_and(|v| v != "false");
        let target = get("target")
            .or_else(|| get("dst"))
            .or_else(|| get("destination"))
            .ok_or_else(|| self.err(ins, format!("--mount={spec}: no target=")))?;
        let target = if target.starts_with('/') {
            PathBuf::from(target)
        } else {
            PathBuf::from(self.current_workdir()?).join(target)
        };
        let temp = |what: &str| {
            self.ctx
                .store
                .staging()
                .map_err(|e| self.err(ins, format!("--mount={spec}: {what}: {e}")))
        };
        match get("type").unwrap_or("bind") {
            "cache" => {
                let id = get("id").unwrap_or(&target.to_string_lossy()).to_string();
                if get("sharing") == Some("private") {
                    let d = temp("a private cache")?;
                    let b = Bind {
                        source: d.path().to_path_buf(),
                        target,
                        readonly: false,
                    };
                    staged.push(d);
                    return Ok(b);
                }
                let scope = if flag("platform-shared") {
                    "shared".to_string()
                } else {
                    self.run_as.file_name()
                };
                let dir = self
                    .ctx
                    .store
                    .root()
                    .join("build-caches")
                    .join(crate::digest::sha256_hex(id.as_bytes()))
                    .join(scope);
                std::fs::create_dir_all(&dir).map_err(ContainerError::io("create", &dir))?;
                if get("sharing") == Some("locked") {
                    let lock = dir.with_extension("lock");
                    held.push(
                        crate::util::FileLock::acquire(&lock)
                            .map_err(ContainerError::io("lock", &lock))?,
                    );
                }
                Ok(Bind {
                    source: dir,
                    target,
                    readonly: flag("ro") || flag("readonly"),
                })
            }
            "tmpfs" => {
                let d = temp("a tmpfs")?;
                let b = Bind {
                    source: d.path().to_path_buf(),
                    target,
                    readonly: false,
                };
                staged.push(d);
                Ok(b)
            }
            "bind" => {
                let source = get("source").or_else(|| get("src")).unwrap_or(".");
                let readonly = !(flag("rw") || flag("readwrite"));
                let host = match get("from") {
                    None => {
                        let p =
                            context_paths(&self.o.context, source).map_err(|m| self.err(ins, m))?;
                        p.into_iter().next().expect("one path")
                    }
                    Some(from) => {
                        let (cname, platform, _) = self.copy_source(ins, from)?;
                        let cdir = self.ctx.container(&cname);
                        let state = cdir
                            .read_platform(&platform)
                            .map_err(ContainerError::from)?;
                        let lowers = crate::container::stack_of(
                            &self.ctx.store,
                            &state,
                            &cdir.platform_dir(&platform),
                        )?;
                        let d = temp("a stage's files")?;
                        let out = d.path().join("m");
                        let rel = crate::rootfs::within::normalize(Path::new(
                            source.trim_start_matches('/'),
                        ))
                        .map_err(|e| self.err(ins, format!("`{source}`: {e}")))?
                        .unwrap_or_default();
                        crate::rootfs::stack::export(&lowers, &rel, &out)
                            .map_err(|e| self.err(ins, format!("--mount from={from}: {e}")))?;
                        staged.push(d);
                        out
                    }
                };
                Ok(Bind {
                    source: host,
                    target,
                    readonly,
                })
            }
            t @ ("secret" | "ssh") => Err(self.err(
                ins,
                format!("RUN --mount=type={t}: secrets and SSH agents are not supported yet"),
            )),
            t => Err(self.err(ins, format!("RUN --mount: unknown type={t}"))),
        }
    }

    fn copy(&mut self, ins: &Instruction) -> Result<(), BuildError> {
        let add = ins.keyword == "add";
        let mut chown = None;
        let mut chmod = None;
        let mut from = None;
        let mut parents = false;
        for f in &ins.flags {
            let (k, v) = f.split_once('=').unwrap_or((f.as_str(), ""));
            match k {
                "--chown" => chown = Some(self.expand(ins, v)?),
                "--chmod" => {
                    let m = self.expand(ins, v)?;
                    chmod = Some(u32::from_str_radix(&m, 8).map_err(|_| {
                        self.err(ins, format!("--chmod={m}: an octal mode such as 0755 (symbolic modes are not supported yet)"))
                    })?);
                }
                "--link" => {}
                "--parents" => parents = v.is_empty() || v == "true",
                "--from" => from = Some(self.expand(ins, v)?),
                _ => {
                    return Err(self.err(
                        ins,
                        format!(
                            "{}: unknown or unsupported flag {f}",
                            ins.keyword.to_uppercase()
                        ),
                    ));
                }
            }
        }

        let words = self.copy_words(ins)?;
        let Some((dest, sources)) = words.split_last().filter(|(_, s)| !s.is_empty()) else {
            return Err(self.err(
                ins,
                format!("{} takes SRC... DEST", ins.keyword.to_uppercase()),
            ));
        };
        if parents && from.is_some() {
            return Err(self.err(ins, "COPY --parents with --from is not supported yet"));
        }
        let mut paths = Vec::new();
        let staging = self.ctx.store.staging().map_err(ContainerError::from)?;
        if let Some(from) = &from {
            let (cname, platform, _) = self.copy_source(ins, from)?;
            let cdir = self.ctx.container(&cname);
            let state = cdir
                .read_platform(&platform)
                .map_err(ContainerError::from)?;
            let lowers =
                crate::container::stack_of(&self.ctx.store, &state, &cdir.platform_dir(&platform))?;
            let mut rels = Vec::new();
            for s in sources {
                let rel = crate::rootfs::within::normalize(Path::new(s.trim_start_matches('/')))
                    .map_err(|e| self.err(ins, format!("`{s}`: {e}")))?
                    .unwrap_or_default();
                if s.contains(['*', '?', '[']) {
                    let matched = crate::rootfs::stack::glob(&lowers, &rel)
                        .map_err(|e| self.err(ins, format!("--from={from} {s}: {e}")))?;
                    if matched.is_empty() {
                        return Err(self.err(
                            ins,
                            format!("--from={from} {s}: matches nothing in that stage"),
                        ));
                    }
                    rels.extend(matched.into_iter().map(|m| (s.clone(), m)));
                } else {
                    rels.push((s.clone(), rel));
                }
            }
            for (i, (s, rel)) in rels.into_iter().enumerate() {
                let dir = staging.path().join(i.to_string());
                std::fs::create_dir_all(&dir).map_err(ContainerError::io("create", &dir))?;
                let out = dir.join(rel.file_name().unwrap_or(std::ffi::OsStr::new("root")));
                crate::rootfs::stack::export(&lowers, &rel, &out)
                    .map_err(|e| self.err(ins, format!("--from={from} {s}: {e}")))?;
                paths.push(out);
            }
        }
        for s in sources.iter().filter(|_| from.is_none()) {
            // `COPY <<EOF /dest`: the heredoc's body, as a file named after its delimiter.
            if let Some(h) = heredoc_source(ins, s) {
                let body = if h.expand {
                    self.expand(ins, &h.content)?
                } else {
                    h.content.clone()
                };
                let dir = staging.path().join(format!("heredoc-{}", paths.len()));
                std::fs::create_dir_all(&dir).map_err(ContainerError::io("create", &dir))?;
                let file = dir.join(&h.name);
                std::fs::write(&file, body).map_err(ContainerError::io("write", &file))?;
                paths.push(file);
                continue;
            }
            if add && (s.contains("://") || s.starts_with("git@")) {
                return Err(self.err(ins, format!("ADD {s}: URLs and git sources are not supported yet; download it in a RUN step or into the context")));
            }
            let matched = self.context_sources(ins, s)?;
            // ADD extracts local tar archives (plain, gzip, xz, zstd) into the destination.
            let mut matched_plain = Vec::new();
            for m in matched {
                if add
                    && m.is_file()
                    && is_tar(&m)
                        .map_err(|e| self.err(ins, format!("cannot read `{}`: {e}", m.display())))?
                {
                    let dir = staging.path().join(format!("archive-{}", paths.len()));
                    std::fs::create_dir_all(&dir).map_err(ContainerError::io("create", &dir))?;
                    extract(&m, &dir, self.ctx).map_err(|e| {
                        self.err(ins, format!("ADD {}: cannot extract it: {e}", m.display()))
                    })?;
                    paths.push(dir);
                } else {
                    matched_plain.push(m);
                }
            }
            let matched = matched_plain;
            if parents {
                // `--parents`: each source keeps its path below the context (or below a `./`
                // in the source), in one tree whose contents go to DEST.
                let pivot = s
                    .find("/./")
                    .map(|i| &s[..i])
                    .map(|p| p.trim_start_matches('/'));
                let tree = staging.path().join(format!("parents-{}", paths.len()));
                for m in &matched {
                    let rel = m.strip_prefix(&self.o.context).unwrap_or(m);
                    let rel = match pivot {
                        Some(p) => rel.strip_prefix(p).unwrap_or(rel),
                        None => rel,
                    };
                    let out = tree.join(rel);
                    if let Some(parent) = out.parent() {
                        std::fs::create_dir_all(parent)
                            .map_err(ContainerError::io("create", parent))?;
                    }
                    self.filtered_copy(m, &out).map_err(|e| {
                        self.err(ins, format!("cannot copy `{}`: {e}", m.display()))
                    })?;
                }
                std::fs::create_dir_all(&tree).map_err(ContainerError::io("create", &tree))?;
                paths.push(tree);
                continue;
            }
            for (i, m) in matched.into_iter().enumerate() {
                // A directory with ignored entries is copied through a filtered copy.
                if !self.p.ignore.is_empty() && m.is_dir() {
                    let dir = staging.path().join(format!("ctx-{}-{i}", paths.len()));
                    std::fs::create_dir_all(&dir).map_err(ContainerError::io("create", &dir))?;
                    let out = dir.join(m.file_name().unwrap_or(std::ffi::OsStr::new("context")));
                    self.filtered_copy(&m, &out).map_err(|e| {
                        self.err(ins, format!("cannot copy `{}`: {e}", m.display()))
                    })?;
                    paths.push(out);
                } else {
                    paths.push(m);
                }
            }
        }
        let dest = if dest.starts_with('/') {
            dest.clone()
        } else {
            let cur = self.current_workdir()?;
            let cur = cur.trim_end_matches('/');
            match dest.as_str() {
                "." | "./" => format!("{cur}/"),
                _ => format!("{cur}/{}", dest.trim_start_matches("./")),
            }
        };
        let opts = CopyOptions {
            sources: paths,
            dest,
            chmod,
            chown,
            platforms: Some(vec![self.run_as.clone()]),
            // As BuildKit records it: the instruction, not where its files were staged.
            created_by: Some(format!("{} {}", ins.keyword.to_uppercase(), {
                let o = &ins.original;
                o.split_once(char::is_whitespace)
                    .map_or("", |(_, r)| r.trim_start())
            })),
        };
        crate::container::copy_step(self.ctx, self.name, &opts)?;
        Ok(())
    }
}

/// A digest of a file or tree: names, types, modes, symlink targets and contents (not times
/// or owners, as BuildKit's cache).
fn tree_digest(path: &Path, skip: &dyn Fn(&Path) -> bool) -> std::io::Result<String> {
    use sha2::Digest as _;
    use std::os::unix::fs::PermissionsExt as _;
    fn walk(
        base: &Path,
        rel: &Path,
        h: &mut sha2::Sha256,
        skip: &dyn Fn(&Path) -> bool,
    ) -> std::io::Result<()> {
        let p = if rel.as_os_str().is_empty() {
            base.to_path_buf()
        } else {
            base.join(rel)
        };
        let m = std::fs::symlink_metadata(&p)?;
        h.update(rel.as_os_str().as_encoded_bytes());
        h.update([0]);
        h.update(m.permissions().mode().to_le_bytes());
        if m.file_type().is_symlink() {
            h.update(b"l");
            h.update(std::fs::read_link(&p)?.as_os_str().as_encoded_bytes());
        } else if m.is_dir() {
            h.update(b"d");
            let mut names: Vec<_> = std::fs::read_dir(&p)?
                .map(|e| e.map(|e| e.file_name()))
                .collect::<Result<_, _>>()?;
            names.sort();
            for n in names {
                let child = rel.join(n);
                if !skip(&base.join(&child)) {
                    walk(base, &child, h, skip)?;
                }
            }
        } else if m.is_file() {
            h.update(b"f");
            h.update(m.len().to_le_bytes());
            let mut f = std::fs::File::open(&p)?;
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = std::io::Read::read(&mut f, &mut buf)?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
        } else {
            h.update(b"o");
        }
        h.update([0]);
        Ok(())
    }
    let mut h = sha2::Sha256::new();
    walk(path, Path::new(""), &mut h, skip)?;
    Ok(hex::encode(h.finalize()))
}

/// The ELF programs the build's own steps added to platform `p` of container `name` that are
/// for another machine than `p` (a native stage's output copied in unchanged, say): one
/// warning each, the first five.
fn foreign_programs(ctx: &Context, name: &str, p: &Platform) -> Vec<String> {
    let cdir = ctx.container(name);
    let Ok(state) = cdir.read_platform(p) else {
        return Vec::new();
    };
    let pdir = cdir.platform_dir(p);
    let want = crate::arch::Table::get()
        .for_platform(p)
        .map(|t| t.name.clone());
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = state
        .steps
        .iter()
        .filter_map(|s| s.dir.as_ref().map(|d| pdir.join(d)))
        .collect();
    let roots = stack.clone();
    while let Some(path) = stack.pop() {
        if out.len() >= 5 {
            break;
        }
        let Ok(m) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if m.is_dir() {
            if let Ok(rd) = std::fs::read_dir(&path) {
                stack.extend(rd.filter_map(Result::ok).map(|e| e.path()));
            }
            continue;
        }
        if !m.is_file() || m.len() < 64 {
            continue;
        }
        let Ok(header) = crate::elf::read_header(&path) else {
            continue;
        };
        if !crate::elf::is_elf(&header) {
            continue;
        }
        let Ok(info) = crate::elf::inspect(&path) else {
            continue;
        };
        let Some(prog) = info.platform else { continue };
        let theirs = crate::arch::Table::get()
            .for_platform(&prog)
            .map(|t| t.name.clone());
        if theirs.is_some() && theirs != want {
            let inside = roots
                .iter()
                .find_map(|r| path.strip_prefix(r).ok())
                .map(|r| format!("/{}", r.display()))
                .unwrap_or_else(|| path.display().to_string());
            out.push(format!(
                "{p}: {inside} is a program for {prog}, not for {p}; it will not run there (was it built by a native stage and copied in?)"
            ));
        }
    }
    out
}

/// The heredoc a COPY/ADD source word opens (`<<EOF`, `<<-"EOF"`), if it is one.
fn heredoc_source<'i>(ins: &'i Instruction, word: &str) -> Option<&'i parse::Heredoc> {
    let w = word.trim_start_matches(|c: char| c.is_ascii_digit());
    let name = w
        .strip_prefix("<<")?
        .trim_start_matches('-')
        .trim_matches(['"', '\'']);
    ins.heredocs.iter().find(|h| h.name == name)
}

/// The archive `p` decompressed (gzip, xz, zstd, bzip2, or none, by magic bytes).
fn archive_reader(p: &Path) -> std::io::Result<Box<dyn std::io::Read>> {
    let f = std::io::BufReader::new(crate::oci::layout::open_regular(p)?);
    if is_bzip2(p) {
        return Ok(Box::new(bzip2::bufread::MultiBzDecoder::new(f)));
    }
    crate::rootfs::unpack::decompress(f)
}

/// Is this file a tar archive (plain, or gzip, xz, zstd or bzip2 compressed), by its content,
/// as ADD decides?
fn is_tar(p: &Path) -> std::io::Result<bool> {
    let mut r = match archive_reader(p) {
        Ok(r) => r,
        Err(_) => return Ok(false),
    };
    let mut head = [0u8; 512];
    let mut got = 0;
    while got < head.len() {
        match std::io::Read::read(&mut r, &mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(_) => return Ok(false),
        }
    }
    Ok(got == 512 && &head[257..262] == b"ustar")
}

/// Does the file start as a bzip2 stream does?
fn is_bzip2(p: &Path) -> bool {
    let mut head = [0u8; 4];
    crate::oci::layout::open_regular(p)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
        .is_ok()
        && head[..3] == *b"BZh"
        && head[3].is_ascii_digit()
}

/// Extracts the archive `p` into `dir` with the layer unpacker (nothing is written outside it).
fn extract(p: &Path, dir: &Path, ctx: &Context) -> Result<(), String> {
    let r = archive_reader(p).map_err(|e| e.to_string())?;
    let opts = crate::rootfs::unpack::UnpackOptions {
        xattrs: ctx.xattrs(),
        rootless: ctx.rootless,
    };
    crate::rootfs::unpack::unpack_layer(r, dir, &opts)
        .map(|_| ())
        .map_err(|e| {
            let mut s = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(c) = src {
                s.push_str(&format!(": {c}"));
                src = c.source();
            }
            s
        })
}

/// `30s`, `1m30s`, `1h`, `500ms` in nanoseconds.
fn duration_ns(s: &str) -> Option<u64> {
    if s == "0" {
        return Some(0);
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .filter(|n| *n > 0)?;
        let value: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let (unit, len) = [
            ("ns", 1e0),
            ("us", 1e3),
            ("ms", 1e6),
            ("s", 1e9),
            ("m", 60e9),
            ("h", 3600e9),
        ]
        .iter()
        .filter(|(u, _)| rest.starts_with(u))
        .max_by_key(|(u, _)| u.len())
        .map(|(u, f)| (*f, u.len()))?;
        total += value * unit;
        rest = &rest[len..];
    }
    Some(total as u64)
}

/// The context paths a COPY source names: a path, or a glob (`*`, `?`, `[...]`) matched
/// against the context. A source leaving the context is refused.
fn context_paths(context: &Path, src: &str) -> Result<Vec<PathBuf>, String> {
    let rel = crate::rootfs::within::normalize(Path::new(src.trim_start_matches('/')))
        .map_err(|e| format!("`{src}`: {e}"))?
        .unwrap_or_default();
    let has_glob = src.contains(['*', '?', '[']);
    if !has_glob {
        let p = context.join(&rel);
        if std::fs::symlink_metadata(&p).is_err() {
            return Err(format!(
                "`{src}` is not in the context `{}`",
                context.display()
            ));
        }
        return Ok(vec![p]);
    }
    let pattern = context.join(&rel);
    let pattern = pattern.to_string_lossy();
    let mut out: Vec<PathBuf> = glob::glob(&pattern)
        .map_err(|e| format!("`{src}`: {e}"))?
        .filter_map(Result::ok)
        .filter(|p| p.starts_with(context))
        .collect();
    out.sort();
    if out.is_empty() {
        return Err(format!(
            "`{src}` matches nothing in the context `{}`",
            context.display()
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration_ns("30s"), Some(30_000_000_000));
        assert_eq!(duration_ns("1m30s"), Some(90_000_000_000));
        assert_eq!(duration_ns("500ms"), Some(500_000_000));
        assert_eq!(duration_ns("0"), Some(0));
        assert_eq!(duration_ns("x"), None);
    }

    #[test]
    fn context_sources() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a.txt"), "a").unwrap();
        std::fs::write(d.path().join("b.txt"), "b").unwrap();
        std::fs::write(d.path().join("c.md"), "c").unwrap();
        let got = context_paths(d.path(), "*.txt").unwrap();
        assert_eq!(got.len(), 2);
        assert!(context_paths(d.path(), "../etc/passwd").is_err());
        assert!(
            context_paths(d.path(), "nope")
                .unwrap_err()
                .contains("not in the context")
        );
        assert!(!is_tar(&d.path().join("a.txt")).unwrap());
        std::fs::write(d.path().join("x.bin"), b"BZh91AY&SY").unwrap();
        assert!(is_bzip2(&d.path().join("x.bin")) && !is_bzip2(&d.path().join("a.txt")));
    }
}
