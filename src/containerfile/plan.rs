//! What a Containerfile means for one target platform, before anything runs: build arguments
//! (`--build-arg [PLATFORM:]K=V`, the per-platform form overriding the plain one), the automatic
//! platform ARGs (TARGET*, BUILD*; normalised, so arm64 has an empty variant), ARG scoping as
//! BuildKit scopes it (global ARGs only in FROM lines; inside a stage a name is visible only
//! after its `ARG`), stages and their DAG (`FROM stage`, `COPY --from=NAME|INDEX`, `RUN
//! --mount=from=`), the stages the target needs, and `FROM --platform=$BUILDPLATFORM` stages
//! that run natively (once for every target when they read no TARGET* ARG). `Scope` carries a
//! stage's variables while it is built: ENV wins over ARG in expansion, an ENV line's values
//! see the environment from before that line, and declared ARGs become the RUN environment.

use super::parse::{Containerfile, Instruction};
use super::shell::{ExpandError, Lex};
use crate::platform::Platform;

/// The automatic platform ARGs.
pub const TARGET_ARGS: &[&str] = &["TARGETPLATFORM", "TARGETOS", "TARGETARCH", "TARGETVARIANT"];
/// The build platform's ARGs.
pub const BUILD_ARGS: &[&str] = &["BUILDPLATFORM", "BUILDOS", "BUILDARCH", "BUILDVARIANT"];

/// Why a Containerfile cannot be planned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// No FROM.
    #[error("{file}: no FROM instruction: a Containerfile starts its first stage with FROM IMAGE")]
    NoStage {
        /// The file.
        file: String,
    },
    /// An instruction before the first FROM other than ARG.
    #[error("{file}:{line}: {keyword} before the first FROM (only ARG may come before it)")]
    BeforeFrom {
        /// The file.
        file: String,
        /// The line.
        line: usize,
        /// The instruction.
        keyword: String,
    },
    /// A malformed instruction.
    #[error("{file}:{line}: {message}")]
    Bad {
        /// The file.
        file: String,
        /// The line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// `--target` names no stage.
    #[error("no stage `{target}` (stages: {stages})")]
    NoTarget {
        /// The name asked for.
        target: String,
        /// The stages.
        stages: String,
    },
    /// Stages that refer to each other.
    #[error("{file}:{line}: stage `{stage}` depends on itself (through {via})")]
    Cycle {
        /// The file.
        file: String,
        /// The line.
        line: usize,
        /// The stage.
        stage: String,
        /// The chain.
        via: String,
    },
    /// An expansion failed.
    #[error("{file}:{line}: {source}")]
    Expand {
        /// The file.
        file: String,
        /// The line.
        line: usize,
        /// Why.
        source: ExpandError,
    },
}

/// `--build-arg` values: plain ones, and per-platform ones that override them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildArgs {
    /// `K=V`.
    pub plain: Vec<(String, String)>,
    /// `PLATFORM:K=V`.
    pub per_platform: Vec<(Platform, String, String)>,
}

impl BuildArgs {
    /// Adds one `--build-arg [PLATFORM:]K=V`.
    pub fn add(&mut self, arg: &str) -> Result<(), String> {
        let Some((lhs, v)) = arg.split_once('=') else {
            return Err(format!(
                "`--build-arg {arg}`: expected [PLATFORM:]KEY=VALUE"
            ));
        };
        match lhs.split_once(':') {
            Some((p, k)) => {
                let p: Platform = p.parse().map_err(|e| format!("`--build-arg {arg}`: {e}"))?;
                if k.is_empty() {
                    return Err(format!("`--build-arg {arg}`: no KEY after the platform"));
                }
                self.per_platform.push((p, k.to_string(), v.to_string()));
            }
            None if lhs.is_empty() => {
                return Err(format!("`--build-arg {arg}`: no KEY before `=`"));
            }
            None => self.plain.push((lhs.to_string(), v.to_string())),
        }
        Ok(())
    }

    /// The value of `name` for `platform`: its own, else the plain one (the last given wins).
    pub fn get(&self, platform: &Platform, name: &str) -> Option<&str> {
        self.per_platform
            .iter()
            .rev()
            .find(|(p, k, _)| p == platform && k == name)
            .map(|(_, _, v)| v.as_str())
            .or_else(|| {
                self.plain
                    .iter()
                    .rev()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.as_str())
            })
    }

    /// Every name given.
    pub fn names(&self) -> Vec<&str> {
        let mut n: Vec<&str> = self
            .plain
            .iter()
            .map(|(k, _)| k.as_str())
            .chain(self.per_platform.iter().map(|(_, k, _)| k.as_str()))
            .collect();
        n.sort();
        n.dedup();
        n
    }
}

/// The automatic ARGs for a target and a build platform.
pub fn automatic_args(target: &Platform, build: &Platform) -> Vec<(String, String)> {
    let mut out = target.target_env();
    for (k, v) in build.target_env() {
        out.push((k.replacen("TARGET", "BUILD", 1), v));
    }
    out
}

/// What a stage starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base {
    /// An image reference (after expansion), or `scratch`.
    Image(String),
    /// An earlier stage.
    Stage(usize),
}

/// One stage, for one target platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// Its position.
    pub index: usize,
    /// `AS NAME`, lower-case.
    pub name: Option<String>,
    /// What it starts from.
    pub base: Base,
    /// The platform it runs for: `--platform`'s, or the target's.
    pub platform: Platform,
    /// It runs at the build platform (`--platform=$BUILDPLATFORM` or the build platform
    /// itself): no emulation.
    pub native: bool,
    /// It declares a TARGET* ARG (so a native stage is built once per target).
    pub reads_target: bool,
    /// The stages it reads (its base, `COPY --from`, `RUN --mount=from=`).
    pub deps: Vec<usize>,
    /// Its instructions after FROM.
    pub instructions: Vec<Instruction>,
    /// FROM's line.
    pub line: usize,
}

impl Stage {
    /// `NAME` or the index, as users refer to it.
    pub fn label(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.index.to_string())
    }
}

/// A Containerfile planned for one target platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Every stage.
    pub stages: Vec<Stage>,
    /// The stage built (`--target`, else the last).
    pub target: usize,
    /// The stages the target needs, dependencies first (the target last).
    pub order: Vec<usize>,
    /// The global ARGs with their values (for the stages' `ARG NAME` without a default).
    pub globals: Vec<(String, Option<String>)>,
    /// The automatic ARGs.
    pub automatic: Vec<(String, String)>,
    /// Build args no needed stage declares (BuildKit warns of them too).
    pub unused_args: Vec<String>,
}

/// What a plan is made for.
#[derive(Debug, Clone)]
pub struct PlanOptions<'a> {
    /// The file's name, for messages.
    pub file: &'a str,
    /// The target platform.
    pub platform: Platform,
    /// The platform builds run natively on.
    pub build_platform: Platform,
    /// `--build-arg`s.
    pub args: &'a BuildArgs,
    /// `--target`.
    pub target: Option<&'a str>,
}

/// Plans `cf` for one target platform.
pub fn plan(cf: &Containerfile, o: &PlanOptions<'_>) -> Result<Plan, PlanError> {
    let file = o.file.to_string();
    let lex = Lex::new(cf.directives.escape);
    let automatic = automatic_args(&o.platform, &o.build_platform);
    let expand_err = |line: usize| {
        let file = file.clone();
        move |source| PlanError::Expand {
            file: file.clone(),
            line,
            source,
        }
    };
    // Global ARGs: everything before the first FROM.
    let mut globals: Vec<(String, Option<String>)> = Vec::new();
    let mut rest = cf.instructions.as_slice();
    while let Some((ins, tail)) = rest.split_first() {
        match ins.keyword.as_str() {
            "from" => break,
            "arg" => {
                let env = values(&automatic, &globals);
                for (k, default) in arg_pairs(ins) {
                    let k = k.to_string();
                    let v = match o.args.get(&o.platform, &k) {
                        Some(v) => Some(v.to_string()),
                        None => default
                            .map(|d| lex.word(d, &env))
                            .transpose()
                            .map_err(expand_err(ins.line))?,
                    };
                    globals.retain(|(n, _)| *n != k);
                    globals.push((k, v));
                }
            }
            other => {
                return Err(PlanError::BeforeFrom {
                    file,
                    line: ins.line,
                    keyword: other.to_uppercase(),
                });
            }
        }
        rest = tail;
    }
    if rest.is_empty() {
        return Err(PlanError::NoStage { file });
    }
    // Stages.
    let from_env = values(&automatic, &globals);
    let mut stages: Vec<Stage> = Vec::new();
    for ins in rest {
        if ins.keyword == "from" {
            let (image, name) = match ins.args.as_slice() {
                [image] => (image, None),
                [image, as_, name] if as_.eq_ignore_ascii_case("as") => (image, Some(name)),
                _ => {
                    return Err(PlanError::Bad {
                        file,
                        line: ins.line,
                        message: "FROM takes IMAGE [AS NAME]".into(),
                    });
                }
            };
            let image = lex.word(image, &from_env).map_err(expand_err(ins.line))?;
            let name = name
                .map(|n| lex.word(n, &from_env))
                .transpose()
                .map_err(expand_err(ins.line))?
                .map(|n| n.to_ascii_lowercase());
            let mut platform = o.platform.clone();
            for f in &ins.flags {
                match f.strip_prefix("--platform=") {
                    Some(p) => {
                        let p = lex.word(p, &from_env).map_err(expand_err(ins.line))?;
                        platform = p.parse().map_err(|e| PlanError::Bad {
                            file: file.clone(),
                            line: ins.line,
                            message: format!("FROM --platform={p}: {e}"),
                        })?;
                    }
                    None => {
                        return Err(PlanError::Bad {
                            file,
                            line: ins.line,
                            message: format!("FROM: unknown flag {f} (FROM takes --platform)"),
                        });
                    }
                }
            }
            let base = match stages
                .iter()
                .find(|s| s.name.as_deref() == Some(image.to_ascii_lowercase().as_str()))
            {
                Some(s) => Base::Stage(s.index),
                None => Base::Image(image),
            };
            let index = stages.len();
            stages.push(Stage {
                index,
                name,
                deps: match base {
                    Base::Stage(i) => vec![i],
                    Base::Image(_) => Vec::new(),
                },
                base,
                native: platform == o.build_platform,
                platform,
                reads_target: false,
                instructions: Vec::new(),
                line: ins.line,
            });
            continue;
        }
        let stage = stages.last_mut().expect("a FROM came first");
        if ins.keyword == "arg" {
            for (k, _) in arg_pairs(ins) {
                if TARGET_ARGS.contains(&k) {
                    stage.reads_target = true;
                }
            }
        }
        stage.instructions.push(ins.clone());
    }
    // Dependencies named by COPY --from and RUN --mount=from=.
    let names: Vec<(String, usize)> = stages
        .iter()
        .filter_map(|s| s.name.clone().map(|n| (n, s.index)))
        .collect();
    for s in &mut stages {
        let mut deps = s.deps.clone();
        for ins in &s.instructions {
            for from in stage_refs(ins) {
                let from = lex.word(&from, &from_env).map_err(expand_err(ins.line))?;
                // Only an earlier stage: a later name is an image reference, as in BuildKit.
                let found = names
                    .iter()
                    .find(|(n, i)| *n == from.to_ascii_lowercase() && *i < s.index)
                    .map(|(_, i)| *i)
                    .or_else(|| from.parse::<usize>().ok().filter(|i| *i < s.index));
                if let Some(i) = found
                    && !deps.contains(&i)
                {
                    deps.push(i);
                }
            }
        }
        s.deps = deps;
    }
    let target = match o.target {
        None => stages.len() - 1,
        Some(t) => names
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(t))
            .map(|(_, i)| *i)
            .or_else(|| t.parse::<usize>().ok().filter(|i| *i < stages.len()))
            .ok_or_else(|| PlanError::NoTarget {
                target: t.to_string(),
                stages: stages
                    .iter()
                    .map(Stage::label)
                    .collect::<Vec<_>>()
                    .join(", "),
            })?,
    };
    let mut order = Vec::new();
    visit(&stages, target, &mut Vec::new(), &mut order, &file)?;
    let declared: Vec<&str> = order
        .iter()
        .flat_map(|i| stages[*i].instructions.iter())
        .chain(cf.instructions.iter().take_while(|i| i.keyword != "from"))
        .filter(|i| i.keyword == "arg")
        .flat_map(|i| arg_pairs(i).into_iter().map(|(k, _)| k))
        .collect();
    let unused_args = o
        .args
        .names()
        .into_iter()
        .filter(|n| !declared.contains(n) && *n != "SOURCE_DATE_EPOCH")
        .map(str::to_string)
        .collect();
    Ok(Plan {
        stages,
        target,
        order,
        globals,
        automatic,
        unused_args,
    })
}

/// Depth-first: dependencies before the stage, each once; a cycle is an error.
fn visit(
    stages: &[Stage],
    i: usize,
    path: &mut Vec<usize>,
    order: &mut Vec<usize>,
    file: &str,
) -> Result<(), PlanError> {
    if order.contains(&i) {
        return Ok(());
    }
    if path.contains(&i) {
        let via = path
            .iter()
            .map(|p| stages[*p].label())
            .collect::<Vec<_>>()
            .join(" -> ");
        return Err(PlanError::Cycle {
            file: file.to_string(),
            line: stages[i].line,
            stage: stages[i].label(),
            via,
        });
    }
    path.push(i);
    for d in &stages[i].deps {
        visit(stages, *d, path, order, file)?;
    }
    path.pop();
    order.push(i);
    Ok(())
}

/// The stages an instruction names: `COPY/ADD --from=X`, `RUN --mount=...,from=X`.
fn stage_refs(ins: &Instruction) -> Vec<String> {
    let mut out = Vec::new();
    for f in &ins.flags {
        if matches!(ins.keyword.as_str(), "copy" | "add")
            && let Some(v) = f.strip_prefix("--from=")
        {
            out.push(v.to_string());
        }
        if ins.keyword == "run"
            && let Some(m) = f.strip_prefix("--mount=")
        {
            for kv in m.split(',') {
                if let Some(v) = kv.strip_prefix("from=") {
                    out.push(v.to_string());
                }
            }
        }
    }
    out
}

/// `ARG K[=V] ...` as (name, default) pairs.
pub fn arg_pairs(ins: &Instruction) -> Vec<(&str, Option<&str>)> {
    ins.args
        .iter()
        .map(|a| match a.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (a.as_str(), None),
        })
        .collect()
}

/// Automatic ARGs then those set.
fn values(
    automatic: &[(String, String)],
    set: &[(String, Option<String>)],
) -> Vec<(String, String)> {
    let mut out = automatic.to_vec();
    out.extend(
        set.iter()
            .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v))),
    );
    out
}

/// A stage's variables while it is built.
#[derive(Debug, Clone)]
pub struct Scope<'p> {
    plan: &'p Plan,
    args: &'p BuildArgs,
    platform: Platform,
    lex: Lex,
    /// Declared ARGs: name and value (None: declared, no value).
    declared: Vec<(String, Option<String>)>,
    /// The environment (the base image's, then ENV instructions).
    pub env: Vec<(String, String)>,
}

impl<'p> Scope<'p> {
    /// The scope of a stage of `plan` starting from the base image's environment.
    pub fn new(
        plan: &'p Plan,
        args: &'p BuildArgs,
        platform: &Platform,
        escape: char,
        base_env: Vec<(String, String)>,
    ) -> Scope<'p> {
        Scope {
            plan,
            args,
            platform: platform.clone(),
            lex: Lex::new(escape),
            declared: Vec::new(),
            env: base_env,
        }
    }

    /// What expansion sees: declared ARGs with values, overridden by the environment.
    pub fn expansion_env(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .declared
            .iter()
            .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
            .collect();
        out.extend(self.env.iter().cloned());
        out
    }

    /// Expands one word (quotes removed).
    pub fn expand(&self, word: &str) -> Result<String, ExpandError> {
        self.lex.word(word, &self.expansion_env())
    }

    /// Expands and splits (EXPOSE, VOLUME's shell form).
    pub fn expand_words(&self, word: &str) -> Result<Vec<String>, ExpandError> {
        self.lex.words(word, &self.expansion_env())
    }

    /// Applies `ARG K[=V] ...`: a build arg wins, then the default (expanded), then the global
    /// ARG's or automatic ARG's value.
    pub fn arg(&mut self, ins: &Instruction) -> Result<(), ExpandError> {
        for (k, default) in arg_pairs(ins) {
            let v = match self.args.get(&self.platform, k) {
                Some(v) if !BUILD_ARGS.contains(&k) && !TARGET_ARGS.contains(&k) => {
                    Some(v.to_string())
                }
                _ => match default {
                    Some(d) => Some(self.expand(d)?),
                    None => self
                        .plan
                        .automatic
                        .iter()
                        .find(|(n, _)| n == k)
                        .map(|(_, v)| v.clone())
                        .or_else(|| {
                            self.plan
                                .globals
                                .iter()
                                .find(|(n, _)| n == k)
                                .and_then(|(_, v)| v.clone())
                        }),
                },
            };
            self.declared.retain(|(n, _)| n != k);
            self.declared.push((k.to_string(), v));
        }
        Ok(())
    }

    /// Applies `ENV` (key, value and separator triples, as parsed): every value is expanded
    /// with the environment from before the line. The pairs set.
    pub fn env(&mut self, ins: &Instruction) -> Result<Vec<(String, String)>, ExpandError> {
        let mut pairs = Vec::new();
        for kv in ins.args.chunks(3) {
            let [k, v, _] = kv else { continue };
            pairs.push((self.expand(k)?, self.expand(v)?));
        }
        for (k, v) in &pairs {
            self.env.retain(|(n, _)| n != k);
            self.env.push((k.clone(), v.clone()));
        }
        Ok(pairs)
    }

    /// The RUN environment: the environment, plus declared ARGs with values it does not set.
    pub fn run_env(&self) -> Vec<(String, String)> {
        let mut out = self.env.clone();
        for (k, v) in &self.declared {
            if let Some(v) = v
                && !out.iter().any(|(n, _)| n == k)
            {
                out.push((k.clone(), v.clone()));
            }
        }
        out
    }

    /// The declared ARGs and their values, in order (part of a step's cache key).
    pub fn declared(&self) -> &[(String, Option<String>)] {
        &self.declared
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::containerfile::parse::parse;

    fn p(s: &str) -> Platform {
        s.parse().unwrap()
    }

    fn plan_of(
        src: &str,
        platform: &str,
        args: &BuildArgs,
        target: Option<&str>,
    ) -> Result<Plan, PlanError> {
        let cf = parse("Containerfile", src).unwrap();
        plan(
            &cf,
            &PlanOptions {
                file: "Containerfile",
                platform: p(platform),
                build_platform: p("linux/amd64"),
                args,
                target,
            },
        )
    }

    const MULTI: &str = "\
ARG BASE=busybox
ARG TAG
FROM --platform=$BUILDPLATFORM ${BASE}:${TAG:-1} AS tools
RUN uname -m > /native
FROM --platform=$BUILDPLATFORM ${BASE} AS cross
ARG TARGETARCH
RUN echo $TARGETARCH > /arch
FROM alpine AS unused
RUN false
FROM $BASE
COPY --from=tools /native /native
COPY --from=cross /arch /arch
";

    #[test]
    fn stages_deps_native_and_unneeded() {
        let args = BuildArgs::default();
        let plan = plan_of(MULTI, "linux/arm64", &args, None).unwrap();
        assert_eq!(plan.stages.len(), 4);
        assert_eq!(plan.order, vec![0, 1, 3], "the unused stage is not built");
        assert_eq!(plan.stages[0].base, Base::Image("busybox:1".into()));
        assert!(plan.stages[0].native && !plan.stages[0].reads_target);
        assert!(plan.stages[1].native && plan.stages[1].reads_target);
        assert!(!plan.stages[3].native);
        assert_eq!(plan.stages[3].platform, p("linux/arm64"));
        let plan = plan_of(MULTI, "linux/arm64", &args, Some("UNUSED")).unwrap();
        assert_eq!(plan.order, vec![2]);
        let e = plan_of(MULTI, "linux/arm64", &args, Some("nope")).unwrap_err();
        assert!(e.to_string().contains("tools, cross, unused, 3"), "{e}");
    }

    #[test]
    fn build_args_per_platform_and_scoping() {
        let mut args = BuildArgs::default();
        args.add("TAG=2").unwrap();
        args.add("linux/s390x:TAG=3").unwrap();
        args.add("NOBODY=x").unwrap();
        assert!(args.add("not a platform:K=V").is_err());
        assert!(args.add("=V").is_err());
        let plan = plan_of(MULTI, "linux/arm64", &args, None).unwrap();
        assert_eq!(plan.stages[0].base, Base::Image("busybox:2".into()));
        assert_eq!(plan.unused_args, vec!["NOBODY".to_string()]);
        let plan = plan_of(MULTI, "linux/s390x", &args, None).unwrap();
        assert_eq!(plan.stages[0].base, Base::Image("busybox:3".into()));

        // Inside a stage: visible only after ARG; ENV wins; ENV on one line sees the old values.
        let src = "ARG G=global\nFROM scratch\nENV before=$G\nARG G\nARG TARGETARCH\nARG D=${G}-d\nENV G=env a=$G\nENV b=$G\n";
        let plan = plan_of(src, "linux/arm/v7", &BuildArgs::default(), None).unwrap();
        let ins = &plan.stages[0].instructions;
        let mut s = Scope::new(
            &plan,
            &args,
            &p("linux/arm/v7"),
            '\\',
            vec![("PATH".into(), "/bin".into())],
        );
        assert_eq!(
            s.env(&ins[0]).unwrap(),
            vec![("before".into(), String::new())]
        );
        s.arg(&ins[1]).unwrap();
        s.arg(&ins[2]).unwrap();
        s.arg(&ins[3]).unwrap();
        assert_eq!(
            s.expand("$G $TARGETARCH $D").unwrap(),
            "global arm global-d"
        );
        assert_eq!(
            s.env(&ins[4]).unwrap(),
            vec![("G".into(), "env".into()), ("a".into(), "global".into())]
        );
        assert_eq!(s.env(&ins[5]).unwrap(), vec![("b".into(), "env".into())]);
        let run = s.run_env();
        assert!(run.contains(&("TARGETARCH".into(), "arm".into())));
        assert!(run.contains(&("G".into(), "env".into())));
        assert!(
            !run.iter().any(|(k, _)| k == "TARGETOS"),
            "undeclared: {run:?}"
        );
    }

    #[test]
    fn automatic_args_are_normalised() {
        let a = automatic_args(&p("linux/arm64/v8"), &p("linux/amd64"));
        assert!(a.contains(&("TARGETPLATFORM".into(), "linux/arm64".into())));
        assert!(a.contains(&("TARGETVARIANT".into(), String::new())));
        assert!(a.contains(&("BUILDARCH".into(), "amd64".into())));
    }

    #[test]
    fn errors_name_the_line() {
        let args = BuildArgs::default();
        let e = plan_of("RUN x\nFROM a\n", "linux/arm64", &args, None).unwrap_err();
        assert!(
            e.to_string()
                .contains("Containerfile:1: RUN before the first FROM"),
            "{e}"
        );
        let e = plan_of("ARG A\n", "linux/arm64", &args, None).unwrap_err();
        assert!(matches!(e, PlanError::NoStage { .. }));
        let e = plan_of("FROM a\nFROM ${X:?setX}\n", "linux/arm64", &args, None).unwrap_err();
        assert!(
            e.to_string().contains("Containerfile:2:") && e.to_string().contains("X: setX"),
            "{e}"
        );
        let e = plan_of("FROM a b c d\n", "linux/arm64", &args, None).unwrap_err();
        assert!(e.to_string().contains("AS NAME"), "{e}");
    }
}
