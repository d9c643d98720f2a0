//! `emubuild build`: one Containerfile for three platforms under the host's emulators, judged
//! by skopeo, umoci and a busybox RUN in each result; per-platform build args and files, the
//! target and the stages it does not need, a failing platform that writes nothing, a build
//! without `-t` that stays addressable, and syntax errors that point at the line.

use std::path::Path;

use serde_json::Value;

use crate::case;
use crate::harness::SANDBOX;
use crate::util::*;

const TARGETS: &[&str] = &["aarch64", "arm", "s390x"];
const PLATFORMS: &str = "linux/arm64,linux/arm/v7,linux/s390x";

fn base() -> String {
    format!("oci:{}:multi", image("oci-umoci").unwrap().display())
}

fn context(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let p = d.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    d
}

/// `skopeo inspect --config --raw` of one platform of a layout (the config's own bytes).
fn config(layout: &str, arch: &str, variant: &str) -> Value {
    let mut args = vec![
        "inspect",
        "--config",
        "--raw",
        "--override-os",
        "linux",
        "--override-arch",
        arch,
    ];
    if !variant.is_empty() {
        args.extend(["--override-variant", variant]);
    }
    args.push(layout);
    serde_json::from_str(&tool("skopeo", &args).success().stdout).unwrap()
}

/// What `cat FILE` prints in one platform of an image (a working container made from it).
fn cat(store: &Path, image: &str, platform: &str, file: &str) -> String {
    let name = format!("cat-{}", platform.replace('/', "-"));
    let r = emubuild(
        store,
        &[
            "run",
            "--name",
            &name,
            "--platform",
            platform,
            "--from",
            image,
            "--",
            "cat",
            file,
        ],
    )
    .success();
    emubuild(store, &["rm", &name]).success();
    r.stdout
}

const APP: &str = r#"# syntax=docker/dockerfile:1
ARG BASE
FROM ${BASE} AS app
ARG TARGETARCH
ARG GREETING=hi
ENV APP=/app MODE=${GREETING}
WORKDIR $APP
COPY *.txt conf/ ./
RUN <<EOF
echo "$GREETING $TARGETARCH $(uname -m) ${TARGETOS:-no-os}" > built.txt
cat a.txt b.txt >> built.txt
EOF
RUN ["/bin/sh", "-c", "test \"$MODE\" = \"$GREETING\" && echo $APP > where"]
LABEL org.example.arch=$TARGETARCH org.example.v="1"
EXPOSE 8080 53/udp
USER 1000:1000
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s CMD ["true"]
CMD ["cat", "/app/built.txt"]
"#;

fn a_containerfile_for_three_platforms() {
    let _emu = Emulation::ensure(TARGETS);
    let store = tempfile::tempdir().unwrap();
    let ctx = context(&[
        ("Containerfile", APP),
        ("a.txt", "a\n"),
        ("b.txt", "b\n"),
        ("conf/app.conf", "x=1\n"),
        ("ignored.md", "no\n"),
    ]);
    let out = tempfile::tempdir().unwrap();
    let layout = format!("oci:{}:v1", out.path().join("l").display());
    let r = emubuild(
        store.path(),
        &[
            "build",
            "--platform",
            PLATFORMS,
            "--build-arg",
            &format!("BASE={}", base()),
            "--build-arg",
            "linux/s390x:GREETING=moin",
            "--label",
            "org.example.cli=yes",
            "-t",
            &layout,
            ctx.path().to_str().unwrap(),
        ],
    )
    .success();
    let digest = r.stdout.trim().to_string();
    // The per-platform log and the timing table.
    assert!(
        r.stderr.contains("[linux/s390x app 6/13] RUN <<EOF"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("PLATFORM") && r.stderr.contains("TIME"),
        "{}",
        r.stderr
    );
    // One index, three images; skopeo and umoci read it.
    let raw = tool("skopeo", &["inspect", "--raw", &layout]).success();
    assert_eq!(
        format!("sha256:{}", hex::encode(sha2_256(raw.stdout.as_bytes()))),
        digest
    );
    let index: Value = serde_json::from_str(&raw.stdout).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 3, "{index}");
    let ls = tool(
        "umoci",
        &["ls", "--layout", out.path().join("l").to_str().unwrap()],
    )
    .success();
    assert_eq!(ls.stdout.trim(), "v1");
    // Each platform's binaries ran under its emulator; ARGs only where declared.
    for (platform, arch, machine, greeting) in [
        ("linux/arm64", "arm64", "aarch64", "hi"),
        ("linux/arm/v7", "arm", "armv7l", "hi"),
        ("linux/s390x", "s390x", "s390x", "moin"),
    ] {
        let built = cat(store.path(), &layout, platform, "/app/built.txt");
        assert_eq!(
            built,
            format!("{greeting} {arch} {machine} no-os\na\nb\n"),
            "{platform}"
        );
        assert_eq!(cat(store.path(), &layout, platform, "/app/where"), "/app\n");
        assert_eq!(
            cat(store.path(), &layout, platform, "/app/app.conf"),
            "x=1\n"
        );
    }
    let c = config(&layout, "arm", "v7");
    let cfg = &c["config"];
    assert_eq!(cfg["Labels"]["org.example.arch"], "arm", "{c}");
    assert_eq!(cfg["Labels"]["org.example.v"], "1");
    assert_eq!(cfg["Labels"]["org.example.cli"], "yes");
    assert!(
        cfg["ExposedPorts"].get("8080/tcp").is_some()
            && cfg["ExposedPorts"].get("53/udp").is_some(),
        "{c}"
    );
    assert_eq!(cfg["WorkingDir"], "/app");
    assert_eq!(cfg["User"], "1000:1000");
    assert_eq!(cfg["StopSignal"], "SIGTERM");
    assert_eq!(cfg["Cmd"], serde_json::json!(["cat", "/app/built.txt"]));
    assert_eq!(
        cfg["Healthcheck"]["Test"],
        serde_json::json!(["CMD", "true"])
    );
    assert_eq!(cfg["Healthcheck"]["Interval"], 30_000_000_000u64);
    let env: Vec<&str> = cfg["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        env.contains(&"APP=/app") && env.contains(&"MODE=hi"),
        "{env:?}"
    );
    assert!(
        !env.iter()
            .any(|e| e.starts_with("TARGETARCH") || e.starts_with("GREETING")),
        "ARGs are not kept: {env:?}"
    );
    assert_eq!(
        config(&layout, "s390x", "")["config"]["Env"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| *e == "MODE=moin")
            .count(),
        1
    );
}
case! { a_containerfile_for_three_platforms, needs = SANDBOX + [Tool("umoci"), Tool("skopeo")], serial = HostBinfmt }

fn sha2_256(b: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(b).to_vec()
}

/// A platform whose RUN fails fails the build, naming the platform, the stage and the line;
/// DEST is not created. Per-platform files (`-f PLATFORM=FILE`) and `--target` with a stage
/// that is not needed (it would fail) are seen too; without `-t` the result stays in the store,
/// and the digest and how to copy it are printed.
fn platforms_files_targets_and_failures() {
    let _emu = Emulation::ensure(TARGETS);
    let store = tempfile::tempdir().unwrap();
    let main = format!(
        "FROM {} AS base\nRUN echo main > /which\nFROM base AS never\nRUN false\nFROM base AS final\nRUN [ \"$(uname -m)\" != s390x ]\n",
        base()
    );
    let s390x = format!("FROM {}\nRUN echo own-file > /which\n", base());
    let ctx = context(&[("Dockerfile", &main), ("Containerfile.s390x", &s390x)]);
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("l");
    let r = emubuild(
        store.path(),
        &[
            "build",
            "--platform",
            PLATFORMS,
            "-t",
            &format!("oci:{}:v1", dest.display()),
            ctx.path().to_str().unwrap(),
        ],
    )
    .code_is(1);
    assert!(
        r.stderr.contains("[linux/s390x final]")
            && r.stderr.contains("Dockerfile:6:")
            && r.stderr.contains("nothing was written"),
        "{}",
        r.stderr
    );
    assert!(!dest.exists(), "a failed build wrote DEST");
    // --keep-going: the others build, a table says how each ended, still nothing is written;
    // --allow-partial writes the two that built and names the missing one.
    let r = emubuild(
        store.path(),
        &[
            "build",
            "--keep-going",
            "--platform",
            PLATFORMS,
            "-t",
            &format!("oci:{}:v1", dest.display()),
            ctx.path().to_str().unwrap(),
        ],
    )
    .code_is(1);
    let row = |p: &str, what: &str| {
        r.stderr
            .lines()
            .any(|l| l.contains(&format!("  {p} ")) && l.contains(what))
    };
    assert!(
        row("linux/arm64", " ok") && row("linux/s390x", "FAILED: "),
        "{}",
        r.stderr
    );
    assert!(!dest.exists());
    let r = emubuild(
        store.path(),
        &[
            "build",
            "--allow-partial",
            "--platform",
            PLATFORMS,
            "-t",
            &format!("oci:{}:v1", dest.display()),
            ctx.path().to_str().unwrap(),
        ],
    )
    .success();
    assert!(
        r.stderr.contains("the index lacks linux/s390x"),
        "{}",
        r.stderr
    );
    let raw = tool(
        "skopeo",
        &["inspect", "--raw", &format!("oci:{}:v1", dest.display())],
    )
    .success();
    let index: Value = serde_json::from_str(&raw.stdout).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2, "{index}");
    std::fs::remove_dir_all(&dest).unwrap();
    // `--target base`: the failing stages are not built; no -t: the result stays in the store.
    let r = emubuild(
        store.path(),
        &[
            "build",
            "--platform",
            "linux/arm64,linux/s390x",
            "--target",
            "base",
            ctx.path().to_str().unwrap(),
        ],
    )
    .success();
    let digest = r.stdout.trim();
    assert!(digest.starts_with("sha256:"), "{}", r.stdout);
    let hint = r.stderr.lines().last().unwrap();
    assert!(
        hint.contains(digest) && hint.contains("emubuild tag oci:"),
        "{}",
        r.stderr
    );
    let stored = hint
        .split("emubuild tag ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap();
    assert_eq!(cat(store.path(), stored, "linux/s390x", "/which"), "main\n");
    // The s390x platform from its own file.
    let f = ctx.path().join("Containerfile.s390x");
    let r = emubuild(
        store.path(),
        &[
            "build",
            "--platform",
            "linux/arm64,linux/s390x",
            "--target",
            "base",
            "-f",
            &format!("linux/s390x={}", f.display()),
            "-t",
            &format!("oci:{}:v2", dest.display()),
            ctx.path().to_str().unwrap(),
        ],
    )
    .code_is(1);
    // The s390x file has no stage `base`: the error says which stages there are.
    assert!(r.stderr.contains("no stage `base`"), "{}", r.stderr);
    emubuild(
        store.path(),
        &[
            "build",
            "--platform",
            "linux/arm64,linux/s390x",
            "-f",
            &format!("linux/s390x={}", f.display()),
            "--target",
            "0",
            "-t",
            &format!("oci:{}:v2", dest.display()),
            ctx.path().to_str().unwrap(),
        ],
    )
    .success();
    let v2 = format!("oci:{}:v2", dest.display());
    assert_eq!(
        cat(store.path(), &v2, "linux/s390x", "/which"),
        "own-file\n"
    );
    assert_eq!(cat(store.path(), &v2, "linux/arm64", "/which"), "main\n");
}
case! { platforms_files_targets_and_failures, needs = SANDBOX + [Tool("skopeo")], serial = HostBinfmt }

/// Bad Containerfiles: the error names the file, line and column, with a caret; nothing runs.
fn syntax_errors_point_at_the_line() {
    let store = tempfile::tempdir().unwrap();
    let ctx = context(&[("Containerfile", "FROM scratch\n  RUNN true\n")]);
    let r = emubuild(store.path(), &["build", ctx.path().to_str().unwrap()]).code_is(1);
    assert!(
        r.stderr
            .contains("Containerfile:2:3: unknown instruction: RUNN (did you mean RUN?)"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("  RUNN true\n  ^"), "{}", r.stderr);
    let ctx = context(&[("Containerfile", "FROM scratch\nCOPY missing /x\n")]);
    let r = emubuild(store.path(), &["build", ctx.path().to_str().unwrap()]).code_is(1);
    assert!(
        r.stderr
            .contains("Containerfile:2: `missing` is not in the context"),
        "{}",
        r.stderr
    );
    let r = emubuild(
        store.path(),
        &["build", store.path().join("nowhere").to_str().unwrap()],
    )
    .code_is(2);
    assert!(r.stderr.contains("not a directory"), "{}", r.stderr);
}
case! { syntax_errors_point_at_the_line, needs = [Root] }

/// The step cache, keyed by platform: a rebuild with the same inputs runs nothing and gives the
/// same index digest (with SOURCE_DATE_EPOCH); a changed copied file reruns only the steps
/// after its COPY; a changed build arg for one platform reruns only that platform's steps that
/// see it; `--no-cache` runs everything again.
fn the_step_cache() {
    let _emu = Emulation::ensure(TARGETS);
    let store = tempfile::tempdir().unwrap();
    let file = format!(
        "FROM {}\nRUN echo one > /one\nCOPY data.txt /data.txt\nARG N=1\nRUN echo $N $(cat /data.txt) > /two\n",
        base()
    );
    let ctx = context(&[("Containerfile", &file), ("data.txt", "v1\n")]);
    let out = tempfile::tempdir().unwrap();
    let build = |tag: &str, extra: &[&str]| {
        let dest = format!("oci:{}:{tag}", out.path().join("l").display());
        let mut args = vec![
            "build",
            "--platform",
            "linux/arm64,linux/s390x",
            "-t",
            &dest,
        ];
        args.extend(extra);
        let c = ctx.path().to_str().unwrap().to_string();
        args.push(&c);
        let r = emubuild_with(
            store.path(),
            &args,
            None,
            &[("SOURCE_DATE_EPOCH", "1700000000")],
        )
        .success();
        let ran: Vec<String> = r
            .stderr
            .lines()
            .filter(|l| l.contains("] RUN ") || l.contains("] COPY "))
            .map(|l| {
                l.split(' ').nth(1).unwrap_or("").to_string()
                    + " "
                    + l.split("] ").nth(1).unwrap_or("")
            })
            .collect();
        (r.stdout.trim().to_string(), ran, dest)
    };
    let (d1, ran, _) = build("v1", &[]);
    assert_eq!(ran.len(), 6, "{ran:?}");
    let (d2, ran, _) = build("v2", &[]);
    assert_eq!(d1, d2, "the same inputs, the same digest");
    assert!(ran.is_empty(), "a rebuild ran {ran:?}");
    std::fs::write(ctx.path().join("data.txt"), "v2\n").unwrap();
    let (d3, ran, dest) = build("v3", &[]);
    assert_ne!(d3, d1);
    assert_eq!(
        ran.len(),
        4,
        "COPY and the RUN after it, per platform: {ran:?}"
    );
    assert!(ran.iter().all(|r| !r.contains("echo one")), "{ran:?}");
    assert_eq!(cat(store.path(), &dest, "linux/s390x", "/two"), "1 v2\n");
    let (_, ran, dest) = build("v4", &["--build-arg", "linux/s390x:N=2"]);
    assert_eq!(ran.len(), 1, "only s390x's last RUN: {ran:?}");
    assert!(ran[0].contains("linux/s390x"), "{ran:?}");
    assert_eq!(cat(store.path(), &dest, "linux/s390x", "/two"), "2 v2\n");
    assert_eq!(cat(store.path(), &dest, "linux/arm64", "/two"), "1 v2\n");
    let (_, ran, _) = build("v5", &["--no-cache"]);
    assert_eq!(ran.len(), 6, "{ran:?}");
}
case! { the_step_cache, needs = SANDBOX, serial = HostBinfmt }

/// A multi-stage build: a `$BUILDPLATFORM` stage that reads no TARGET* ARG runs natively and
/// once for both targets (its `uname -m` is the host's, and one container is made for it); a
/// `$BUILDPLATFORM` stage that declares TARGETARCH runs natively once per target; the final
/// stage runs under emulation and copies from both (a file, and a directory's contents). An
/// unneeded stage is not built. The same build again gives the same digest.
fn multi_stage_with_native_stages() {
    let _emu = Emulation::ensure(TARGETS);
    let store = tempfile::tempdir().unwrap();
    let file = format!(
        r#"FROM --platform=$BUILDPLATFORM scratch AS tools
COPY busybox /bin/busybox
RUN ["/bin/busybox", "sh", "-c", "/bin/busybox mkdir -p /out/sub && /bin/busybox uname -m > /out/native && echo deep > /out/sub/f"]
FROM --platform=$BUILDPLATFORM scratch AS cross
COPY busybox /bin/busybox
ARG TARGETARCH
RUN ["/bin/busybox", "sh", "-c", "echo built-for-$TARGETARCH-on-$(/bin/busybox uname -m) > /arch"]
FROM {base} AS unused
RUN false
FROM {base}
COPY --from=tools /out/native /native
COPY --from=cross /arch /arch
COPY --from=tools /out /outdir/
COPY --from=tools /bin/busybox /usr/local/bin/hostbox
COPY --from=tools /out/*ive /out/s?b /globbed/
RUN echo "$(cat /native) $(cat /arch) $(uname -m) $(cat /outdir/sub/f)" > /result
RUN cat /globbed/native /globbed/f > /globs
"#,
        base = base()
    );
    let bb = std::fs::read(fixtures().join("busybox/amd64/busybox")).unwrap();
    let ctx = context(&[("Containerfile", &file)]);
    std::fs::write(ctx.path().join("busybox"), bb).unwrap();
    std::fs::set_permissions(
        ctx.path().join("busybox"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    let build = |tag: &str| {
        let dest = format!("oci:{}:{tag}", out.path().join("l").display());
        let c = ctx.path().to_str().unwrap().to_string();
        let r = emubuild_with(
            store.path(),
            &[
                "build",
                "--platform",
                "linux/arm64,linux/s390x",
                "-t",
                &dest,
                &c,
            ],
            None,
            &[("SOURCE_DATE_EPOCH", "1700000000")],
        )
        .success();
        (r, dest)
    };
    let (r, dest) = build("v1");
    let tools_runs = r
        .stderr
        .lines()
        .filter(|l| l.contains(" tools 2/2 as linux/amd64] RUN"))
        .count();
    assert_eq!(
        tools_runs, 1,
        "the shared native stage runs once: {}",
        r.stderr
    );
    let cross_runs = r
        .stderr
        .lines()
        .filter(|l| l.contains(" cross 3/3 as linux/amd64] RUN"))
        .count();
    assert_eq!(cross_runs, 2, "once per target: {}", r.stderr);
    assert!(
        !r.stderr.contains("unused"),
        "an unneeded stage was built: {}",
        r.stderr
    );
    // The host's program copied into foreign images is pointed out, once per platform.
    let foreign: Vec<&str> = r.stderr.lines().filter(|l| l.contains("warning")).collect();
    assert_eq!(foreign.len(), 2, "{}", r.stderr);
    assert!(
        foreign
            .iter()
            .all(|l| l.contains("/usr/local/bin/hostbox is a program for linux/amd64")),
        "{foreign:?}"
    );
    assert_eq!(
        cat(store.path(), &dest, "linux/arm64", "/result"),
        "x86_64 built-for-arm64-on-x86_64 aarch64 deep\n"
    );
    assert_eq!(
        cat(store.path(), &dest, "linux/s390x", "/result"),
        "x86_64 built-for-s390x-on-x86_64 s390x deep\n"
    );
    assert_eq!(
        cat(store.path(), &dest, "linux/arm64", "/globs"),
        "x86_64\ndeep\n"
    );
    let first = r.stdout.trim().to_string();
    let (r, _) = build("v2");
    assert_eq!(r.stdout.trim(), first, "cached, the same digest");
    assert!(
        !r.stderr.lines().any(|l| l.contains("] RUN")),
        "{}",
        r.stderr
    );
}
case! { multi_stage_with_native_stages, needs = SANDBOX + [Busybox("amd64")], serial = HostBinfmt }

/// `RUN --mount`: a cache kept between builds and per platform (arm64's never sees s390x's),
/// a read-only bind of a context directory, and an empty scratch directory; none of them ends
/// up in a layer.
fn run_mounts() {
    let _emu = Emulation::ensure(TARGETS);
    let store = tempfile::tempdir().unwrap();
    let file = format!(
        "FROM {}\nARG N=1\nRUN --mount=type=cache,target=/cache,id=c1 echo \"$N $(uname -m)\" >> /cache/log && cat /cache/log > /seen\nRUN --mount=type=bind,source=src,target=/src cat /src/in.txt > /bound && ! touch /src/x 2>/dev/null\nRUN --mount=type=tmpfs,target=/scratch echo t > /scratch/t\n",
        base()
    );
    let ctx = context(&[("Containerfile", &file), ("src/in.txt", "bound\n")]);
    let out = tempfile::tempdir().unwrap();
    let mut dest = String::new();
    for n in ["1", "2"] {
        dest = format!("oci:{}:v{n}", out.path().join("l").display());
        emubuild(
            store.path(),
            &[
                "build",
                "--platform",
                "linux/arm64,linux/s390x",
                "--build-arg",
                &format!("N={n}"),
                "-t",
                &dest,
                ctx.path().to_str().unwrap(),
            ],
        )
        .success();
    }
    assert_eq!(
        cat(store.path(), &dest, "linux/arm64", "/seen"),
        "1 aarch64\n2 aarch64\n"
    );
    assert_eq!(
        cat(store.path(), &dest, "linux/s390x", "/seen"),
        "1 s390x\n2 s390x\n"
    );
    assert_eq!(cat(store.path(), &dest, "linux/s390x", "/bound"), "bound\n");
    let r = emubuild(
        store.path(),
        &[
            "run",
            "--name",
            "look",
            "--platform",
            "linux/arm64",
            "--from",
            &dest,
            "--",
            "ls",
            "/cache",
            "/src",
            "/scratch",
        ],
    );
    assert_ne!(
        r.code,
        Some(0),
        "mount targets were kept in a layer: {}",
        r.stdout
    );
}
case! { run_mounts, needs = SANDBOX, serial = HostBinfmt }

/// Ignore files: `.dockerignore` patterns keep files out of `COPY .` and out of the cache key
/// (changing an ignored file reruns nothing); `.containerignore` wins over `.dockerignore`; a
/// source named outright that is excluded is an error.
fn ignore_files() {
    let _emu = Emulation::ensure(TARGETS);
    let store = tempfile::tempdir().unwrap();
    let file = format!(
        "FROM {}\nCOPY . /ctx/\nRUN ls -R /ctx | sort | tr '\\n' ' ' > /listing\n",
        base()
    );
    let ctx = context(&[
        ("Containerfile", &file),
        (".dockerignore", "*.md\n!KEEP.md\nbuild\n**/*.o\n"),
        ("a.txt", "a"),
        ("notes.md", "n"),
        ("KEEP.md", "k"),
        ("build/out", "o"),
        ("src/x.o", "o"),
        ("src/x.c", "c"),
    ]);
    let out = tempfile::tempdir().unwrap();
    let dest = format!("oci:{}:v1", out.path().join("l").display());
    let b = |extra_ok: bool| {
        let r = emubuild(
            store.path(),
            &[
                "build",
                "--platform",
                "linux/arm64",
                "-t",
                &dest,
                ctx.path().to_str().unwrap(),
            ],
        );
        if extra_ok { r.success() } else { r }
    };
    b(true);
    let listing = cat(store.path(), &dest, "linux/arm64", "/listing");
    for want in ["a.txt", "KEEP.md", "x.c"] {
        assert!(listing.contains(want), "{want}: {listing}");
    }
    for gone in ["notes.md", "x.o", "out"] {
        assert!(!listing.contains(gone), "{gone} was copied: {listing}");
    }
    // An ignored file changes: nothing reruns.
    std::fs::write(ctx.path().join("notes.md"), "changed").unwrap();
    let r = b(true);
    assert!(
        !r.stderr
            .lines()
            .any(|l| l.contains("] COPY") && !l.contains("CACHED")),
        "{}",
        r.stderr
    );
    // .containerignore wins; naming an excluded file is an error.
    std::fs::write(ctx.path().join(".containerignore"), "a.txt\n").unwrap();
    std::fs::write(
        ctx.path().join("Containerfile"),
        format!("FROM {}\nCOPY a.txt /a\n", base()),
    )
    .unwrap();
    let r = b(false).code_is(1);
    assert!(
        r.stderr
            .contains("`a.txt` is excluded by the context's ignore file"),
        "{}",
        r.stderr
    );
}
case! { ignore_files, needs = SANDBOX, serial = HostBinfmt }

/// ADD extracts a local tar archive (by content, here gzip'd) into the destination; COPY
/// from a heredoc writes its body (expanded unless the delimiter is quoted); an archive that
/// tries to leave the destination is refused.
fn add_archives_and_copy_heredocs() {
    let _emu = Emulation::ensure(TARGETS);
    let store = tempfile::tempdir().unwrap();
    let ctx = context(&[("t/inner.txt", "inner\n"), ("t/sub/deep.txt", "deep\n")]);
    tool(
        "tar",
        &[
            "-czf",
            ctx.path().join("pkg.tgz.bin").to_str().unwrap(),
            "-C",
            ctx.path().join("t").to_str().unwrap(),
            ".",
        ],
    )
    .success();
    let bz = ctx.path().join("pkg.tar.bz2");
    tool(
        "python3",
        &[
            "-c",
            "import sys, tarfile; t = tarfile.open(sys.argv[1], 'w:bz2'); t.add(sys.argv[2], arcname='.'); t.close()",
            bz.to_str().unwrap(),
            ctx.path().join("t").to_str().unwrap(),
        ],
    )
    .success();
    let file = format!(
        "FROM {}\nARG WHO=world\nADD pkg.tgz.bin /opt/pkg/\nCOPY <<EOT /etc/greeting\nhello $WHO\nEOT\nCOPY <<'EOT' /etc/raw\nhello $WHO\nEOT\nCOPY --parents t/sub/*.txt /p/\nCOPY --parents t/./sub/deep.txt /q/\nADD pkg.tar.bz2 /opt/bz/\n",
        base()
    );
    std::fs::write(ctx.path().join("Containerfile"), file).unwrap();
    let out = tempfile::tempdir().unwrap();
    let dest = format!("oci:{}:v1", out.path().join("l").display());
    emubuild(
        store.path(),
        &[
            "build",
            "--platform",
            "linux/arm64",
            "-t",
            &dest,
            ctx.path().to_str().unwrap(),
        ],
    )
    .success();
    assert_eq!(
        cat(store.path(), &dest, "linux/arm64", "/opt/pkg/sub/deep.txt"),
        "deep\n"
    );
    assert_eq!(
        cat(store.path(), &dest, "linux/arm64", "/etc/greeting"),
        "hello world\n"
    );
    assert_eq!(
        cat(store.path(), &dest, "linux/arm64", "/etc/raw"),
        "hello $WHO\n"
    );
    assert_eq!(
        cat(store.path(), &dest, "linux/arm64", "/opt/bz/inner.txt"),
        "inner\n"
    );
    // --parents keeps the path below the context, or below a `./`.
    assert_eq!(
        cat(store.path(), &dest, "linux/arm64", "/p/t/sub/deep.txt"),
        "deep\n"
    );
    assert_eq!(
        cat(store.path(), &dest, "linux/arm64", "/q/sub/deep.txt"),
        "deep\n"
    );
    // A hostile archive (an entry climbing out with `..`).
    let evil = image("evil").unwrap().join("dotdot.tar");
    std::fs::copy(&evil, ctx.path().join("evil.tar")).unwrap();
    std::fs::write(
        ctx.path().join("Containerfile"),
        format!("FROM {}\nADD evil.tar /x/\n", base()),
    )
    .unwrap();
    let r = emubuild(
        store.path(),
        &[
            "build",
            "--platform",
            "linux/arm64",
            ctx.path().to_str().unwrap(),
        ],
    )
    .code_is(1);
    assert!(r.stderr.contains("cannot extract it"), "{}", r.stderr);
}
case! { add_archives_and_copy_heredocs, needs = SANDBOX + [Tool("tar")], serial = HostBinfmt }
