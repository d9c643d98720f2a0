//! The multi-arch index workflow against a real registry (Debian's `docker-registry`): images
//! pushed by digest from separate jobs, joined into a manifest list, annotated and pushed
//! (OCI and Docker formats), lists from local layouts, a remote list appended to, a missing
//! child refused before anything is written, concurrent `--amend-remote` pushes, and tags
//! promoted by digest within a registry (no blob fetched) and across registries. The judges:
//! `skopeo inspect --raw`, `skopeo copy --all`, umoci, `docker manifest inspect --insecure`,
//! `docker run`, and the registry's own request log.

use std::path::Path;

use serde_json::Value;

use crate::case;
use crate::pull_push::{BASE, BUILD_AND_RUN, Client, PULL, sha256_hex};
use crate::registry::{Creds, Mode, Registry, skopeo};
use crate::util::*;

/// `os/arch[/variant]` of an index entry.
fn platform(m: &Value) -> String {
    let p = &m["platform"];
    let mut s = format!(
        "{}/{}",
        p["os"].as_str().unwrap_or("?"),
        p["architecture"].as_str().unwrap_or("?")
    );
    if let Some(v) = p["variant"].as_str() {
        s = format!("{s}/{v}");
    }
    s
}

/// The entries of an index document: (platform, digest).
fn entries(index: &Value) -> Vec<(String, String)> {
    index["manifests"]
        .as_array()
        .unwrap_or_else(|| panic!("not an index: {index}"))
        .iter()
        .map(|m| (platform(m), m["digest"].as_str().unwrap().to_string()))
        .collect()
}

/// The platforms of an index's entries.
fn platforms(index: &Value) -> Vec<String> {
    entries(index).into_iter().map(|(p, _)| p).collect()
}

/// The digests of an index's entries.
fn entry_digests(index: &Value) -> Vec<String> {
    entries(index).into_iter().map(|(_, d)| d).collect()
}

/// `skopeo inspect --raw` of `path` on `reg`: the bytes and the parsed document.
fn raw(reg: &Registry, path: &str) -> (String, Value) {
    let r = reg.skopeo_inspect_raw(path, Creds::Anonymous).success();
    let v = serde_json::from_str(&r.stdout).unwrap();
    (r.stdout, v)
}

fn digest_of(bytes: &str) -> String {
    format!("sha256:{}", sha256_hex(bytes.as_bytes()))
}

/// The tags of a repository (none when it has none).
fn tags(reg: &Registry, repo: &str) -> Vec<String> {
    let text = reg
        .client()
        .get(reg.url(&format!("/v2/{repo}/tags/list")))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    v["tags"]
        .as_array()
        .map(|t| t.iter().map(|x| x.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

/// `skopeo copy --all` of a registry image into a fresh directory (`dir:`, which takes
/// Docker lists as they are): every blob is there and checks out.
fn skopeo_copies_all(reg: &Registry, path: &str) {
    let out = tempfile::tempdir().unwrap();
    reg.skopeo_pull(
        path,
        &format!("dir:{}", out.path().join("l").display()),
        Creds::Anonymous,
    )
    .success();
}

/// Three jobs, each with a store of its own, build one platform each (a step run under
/// emulation) and commit it to `emukit/app` with no tag: each pushes its image manifest by
/// digest (no index, no tag) and writes the digest to a file. A fourth job joins the three
/// digests into a list, annotates an entry and the list, inspects it, and pushes it: no blob
/// moves, since the children are in the repository. skopeo, `docker manifest inspect` and
/// `docker run` of each platform judge it; `--format docker` is refused for these OCI children
/// before anything is written.
fn per_arch_digests_joined_annotated_and_pushed() {
    let _emu = Emulation::ensure(&["aarch64", "arm", "s390x"]);
    let reg = Registry::start(Mode::Plain);
    reg.push_multi(&format!("{BASE}:multi"));
    let base = reg.reference(&format!("{BASE}:multi"));
    let repo = format!("emukit/app-{}", std::process::id());
    let mut digests = Vec::new();
    for (platform, machine) in [
        ("linux/arm64", "aarch64"),
        ("linux/arm/v7", "armv7l"),
        ("linux/s390x", "s390x"),
    ] {
        let job = Client::new(&reg);
        job.run(&["from", "--platform", platform, &base]).success();
        let r = job
            .run(&["run", "--", "sh", "-c", "uname -m > /built; uname -m"])
            .success();
        assert_eq!(r.stdout.trim(), machine);
        let file = job.home.path().join("digest");
        let r = job
            .run(&[
                "commit",
                "--json",
                "--cmd",
                "cat /built",
                "--digestfile",
                file.to_str().unwrap(),
                &reg.reference(&repo),
            ])
            .success();
        let d = std::fs::read_to_string(&file).unwrap().trim().to_string();
        assert_eq!(r.json()["digest"].as_str(), Some(d.as_str()));
        assert!(r.json().get("index").is_none(), "{}", r.stdout);
        // An image manifest, as `docker push` sends it.
        let (bytes, doc) = raw(&reg, &format!("{repo}@{d}"));
        assert_eq!(digest_of(&bytes), d);
        assert_eq!(
            doc["mediaType"], "application/vnd.oci.image.manifest.v1+json",
            "{doc}"
        );
        digests.push(d);
    }
    assert_eq!(
        tags(&reg, &repo),
        Vec::<String>::new(),
        "by digest, yet tagged"
    );

    let joiner = Client::new(&reg);
    let list = reg.reference(&format!("{repo}:v1"));
    let refs: Vec<String> = digests
        .iter()
        .map(|d| reg.reference(&format!("{repo}@{d}")))
        .collect();
    let mut args = vec!["manifest", "create", list.as_str()];
    args.extend(refs.iter().map(String::as_str));
    let r = joiner.run(&args).success();
    assert!(r.stderr.contains("3 entries"), "{}", r.stderr);
    // The platforms come from the configs, variants included.
    let local: Value =
        serde_json::from_str(&joiner.run(&["manifest", "inspect", &list]).success().stdout)
            .unwrap();
    let platforms: Vec<String> = platforms(&local);
    assert_eq!(
        platforms,
        ["linux/arm64/v8", "linux/arm/v7", "linux/s390x"],
        "{local}"
    );
    joiner
        .run(&[
            "manifest",
            "annotate",
            &list,
            &digests[1],
            "--annotation",
            "org.example.board=raspberry-pi",
        ])
        .success();
    joiner
        .run(&[
            "manifest",
            "annotate",
            &list,
            "--index",
            "--annotation",
            "org.opencontainers.image.version=1.0",
        ])
        .success();
    let ls = joiner.run(&["manifest", "ls", "--json"]).success().json();
    assert_eq!(ls[0]["name"].as_str(), Some(list.as_str()), "{ls}");

    // `--format docker` cannot name OCI manifests: refused, nothing written.
    let r = joiner
        .run(&["manifest", "push", "--format", "docker", &list])
        .code_is(1);
    assert!(
        r.stderr.contains("--format docker") && r.stderr.contains(&digests[0]),
        "{}",
        r.stderr
    );
    assert!(tags(&reg, &repo).is_empty(), "{:?}", tags(&reg, &repo));

    let before = reg.requests().len();
    let file = joiner.home.path().join("list-digest");
    let pushed = joiner
        .run(&[
            "manifest",
            "push",
            "--digestfile",
            file.to_str().unwrap(),
            &list,
        ])
        .success()
        .stdout
        .trim()
        .to_string();
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), pushed);
    let during: Vec<_> = reg.requests().into_iter().skip(before).collect();
    assert!(
        !during
            .iter()
            .any(|r| r.uri.contains("/blobs/") && r.method != "HEAD"),
        "a blob moved: {during:#?}"
    );
    let (bytes, index) = raw(&reg, &format!("{repo}:v1"));
    assert_eq!(digest_of(&bytes), pushed);
    assert_eq!(
        index["annotations"]["org.opencontainers.image.version"], "1.0",
        "{index}"
    );
    assert_eq!(
        index["manifests"][1]["annotations"]["org.example.board"], "raspberry-pi",
        "{index}"
    );
    assert_eq!(entry_digests(&index), digests);
    // `manifest inspect REF` prints the registry's exact bytes.
    let r = joiner.run(&["manifest", "inspect", &list]).success();
    assert!(
        r.stdout.contains("raspberry-pi"),
        "the local list: {}",
        r.stdout
    );
    joiner.run(&["manifest", "rm", &list]).success();
    let r = joiner.run(&["manifest", "inspect", &list]).success();
    assert_eq!(r.stdout.trim_end(), bytes.trim_end());
    let v = joiner
        .run(&["manifest", "inspect", "--verbose", &list])
        .success()
        .json();
    assert_eq!(v.as_array().map(Vec::len), Some(3), "{v}");
    assert!(v[0]["layers"].as_u64().unwrap() >= 2, "{v}");

    // Docker reads the list, and runs each entry through the host's handlers.
    let m = tool("docker", &["manifest", "inspect", "--insecure", &list]).success();
    let dm: Value = serde_json::from_str(&m.stdout).unwrap();
    assert_eq!(entries(&dm), entries(&index), "{}", m.stdout);
    for (platform, machine) in [
        ("linux/arm64", "aarch64"),
        ("linux/arm/v7", "armv7l"),
        ("linux/s390x", "s390x"),
    ] {
        let out = tool(
            "docker",
            &[
                "run",
                "--rm",
                "--pull",
                "always",
                "--platform",
                platform,
                &list,
            ],
        );
        let _ = tool("docker", &["rmi", "-f", &list]);
        assert_eq!(out.success().stdout.trim(), machine, "{platform}");
    }
}
case! { per_arch_digests_joined_annotated_and_pushed, needs = BUILD_AND_RUN, serial = HostBinfmt }

/// Docker schema 2 images (skopeo converts the fixtures with `--format v2s2`) joined into a
/// Docker manifest list with `--format docker`: Docker's list media type, each child's own,
/// and `docker manifest inspect` reads it.
fn docker_format_list_of_docker_images() {
    let reg = Registry::start(Mode::Plain);
    let layout = image("oci-umoci").unwrap();
    let mut refs = Vec::new();
    for tag in ["arm64", "s390x"] {
        let mut args = vec!["copy".to_string(), "--format".into(), "v2s2".into()];
        args.extend(reg.skopeo_flags("dest-", Creds::Anonymous));
        args.push(format!("oci:{}:{tag}", layout.display()));
        args.push(format!(
            "docker://{}",
            reg.reference(&format!("emukit/v2:{tag}"))
        ));
        skopeo(&args).success();
        refs.push(reg.reference(&format!("emukit/v2:{tag}")));
    }
    let c = Client::new(&reg);
    let list = reg.reference("emukit/v2:list");
    c.run(&["manifest", "create", &list, &refs[0], &refs[1]])
        .success();
    let digest = c
        .run(&["manifest", "push", "--format", "docker", &list])
        .success()
        .stdout
        .trim()
        .to_string();
    let (bytes, doc) = raw(&reg, "emukit/v2:list");
    assert_eq!(digest_of(&bytes), digest);
    assert_eq!(
        doc["mediaType"],
        "application/vnd.docker.distribution.manifest.list.v2+json"
    );
    for m in doc["manifests"].as_array().unwrap() {
        assert_eq!(
            m["mediaType"],
            "application/vnd.docker.distribution.manifest.v2+json"
        );
    }
    assert_eq!(platforms(&doc), ["linux/arm64/v8", "linux/s390x"]);
    let m = tool("docker", &["manifest", "inspect", "--insecure", &list]).success();
    assert!(
        m.stdout.contains("manifest.list.v2+json") && m.stdout.contains("s390x"),
        "{}",
        m.stdout
    );
    skopeo_copies_all(&reg, "emukit/v2:list");
}
case! { docker_format_list_of_docker_images, needs = PULL + [Docker] }

/// `emubuild tag` within a repository and into another one: the same bytes and digest, no
/// blob fetched (mounted into the other repository); into a second registry: blobs streamed,
/// nothing unpacked into the store; into a layout: every blob copied, and umoci reads it.
fn promote_within_and_across_registries() {
    let reg = Registry::start(Mode::Plain);
    let pushed = reg.push_multi("emukit/rel:v1");
    let c = Client::new(&reg);
    let before = reg.requests().len();
    let r = c
        .run(&[
            "tag",
            "--json",
            &reg.reference("emukit/rel:v1"),
            &reg.reference("emukit/rel:latest"),
            &reg.reference("emukit/prod:stable"),
        ])
        .success();
    assert_eq!(r.json()["digest"].as_str(), Some(pushed.digest.as_str()));
    let (src_bytes, _) = raw(&reg, "emukit/rel:v1");
    for path in ["emukit/rel:latest", "emukit/prod:stable"] {
        let (bytes, _) = raw(&reg, path);
        assert_eq!(bytes, src_bytes, "{path}");
    }
    let during: Vec<_> = reg.requests().into_iter().skip(before).collect();
    let blob_gets: Vec<_> = during
        .iter()
        .filter(|r| r.method == "GET" && r.uri.contains("/blobs/"))
        .collect();
    assert!(
        blob_gets.is_empty(),
        "a promote fetched blobs: {blob_gets:#?}"
    );
    assert!(
        !during
            .iter()
            .any(|r| r.uri.contains("/blobs/uploads/") && !r.uri.contains("mount=")),
        "a promote uploaded: {during:#?}"
    );
    let mounts = during
        .iter()
        .filter(|r| r.method == "POST" && r.uri.contains("mount=") && r.status == 201)
        .count();
    assert_eq!(mounts, pushed.blobs().len(), "{during:#?}");
    skopeo_copies_all(&reg, "emukit/prod:stable");

    // Across registries: the same digest, blobs streamed through, nothing stored locally.
    let other = Registry::start(Mode::Plain);
    let c2 = Client::new(&reg);
    let dest = other.reference("emukit/mirror:v1");
    let r = c2
        .run(&["tag", &reg.reference("emukit/rel:v1"), &dest])
        .success();
    assert_eq!(r.stdout.trim(), pushed.digest);
    let (bytes, _) = raw(&other, "emukit/mirror:v1");
    assert_eq!(bytes, src_bytes);
    skopeo_copies_all(&other, "emukit/mirror:v1");
    for b in pushed.blobs() {
        let hex = b.strip_prefix("sha256:").unwrap();
        assert!(
            c2.stored(hex).is_empty(),
            "{b} was stored: {:?}",
            c2.stored(hex)
        );
    }

    // Into a layout: every blob copied; umoci and skopeo read it.
    let out = tempfile::tempdir().unwrap();
    let layout = out.path().join("copy");
    let r = c2
        .run(&[
            "tag",
            &reg.reference("emukit/rel:v1"),
            &format!("oci:{}:v1", layout.display()),
        ])
        .success();
    assert_eq!(r.stdout.trim(), pushed.digest);
    let ls = tool("umoci", &["ls", "--layout", layout.to_str().unwrap()]).success();
    assert_eq!(ls.stdout.trim(), "v1");
    skopeo(&[
        "copy",
        "--all",
        &format!("oci:{}:v1", layout.display()),
        &format!("oci:{}:again", out.path().join("again").display()),
    ])
    .success();
}
case! { promote_within_and_across_registries, needs = PULL + [Tool("umoci")] }

/// A list from a local archive and a layout, pushed to `oci:merged:v1`: one layout with one index whose
/// blobs are all present (umoci and skopeo judge it; oci-image-tool 1.0 predates indexes); the same list pushed to a
/// registry (blobs copied from the layouts) and to an archive.
fn a_list_from_local_layouts() {
    let reg = Registry::start(Mode::Plain);
    let c = Client::new(&reg);
    let dir = tempfile::tempdir().unwrap();
    let fixture = image("oci-umoci").unwrap();
    // Two images built apart, one each: an archive (its layout is kept with the list, since
    // the extracted copy goes away) and a layout.
    skopeo(&[
        "copy",
        &format!("oci:{}:s390x", fixture.display()),
        &format!("oci:{}:v1", dir.path().join("b").display()),
    ])
    .success();
    let a = format!(
        "oci-archive:{}",
        image("oci-archive-arm64.tar").unwrap().display()
    );
    let b = format!("oci:{}:v1", dir.path().join("b").display());
    c.run(&["manifest", "create", "mylist", &a, &b]).success();
    let merged = dir.path().join("merged");
    let digest = c
        .run(&[
            "manifest",
            "push",
            "mylist",
            &format!("oci:{}:v1", merged.display()),
        ])
        .success()
        .stdout
        .trim()
        .to_string();
    let ls = tool("umoci", &["ls", "--layout", merged.to_str().unwrap()]).success();
    assert_eq!(ls.stdout.trim(), "v1");
    let r = skopeo(&["inspect", "--raw", &format!("oci:{}:v1", merged.display())]).success();
    assert_eq!(digest_of(&r.stdout), digest);
    let index: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(platforms(&index), ["linux/arm64/v8", "linux/s390x"]);
    skopeo(&[
        "copy",
        "--all",
        &format!("oci:{}:v1", merged.display()),
        &format!("oci:{}:x", dir.path().join("check").display()),
    ])
    .success();
    // Every blob of the index's children is in the merged layout.
    let mut files: Vec<String> = std::fs::read_dir(merged.join("blobs/sha256"))
        .unwrap()
        .map(|e| format!("sha256:{}", e.unwrap().file_name().to_str().unwrap()))
        .collect();
    files.sort();
    for (_, d) in entries(&index) {
        assert!(files.contains(&d), "{d} missing");
    }

    // The same list to a registry (blobs copied from the layouts) and to an archive.
    let pushed = c
        .run(&[
            "manifest",
            "push",
            "mylist",
            &reg.reference("emukit/local:v1"),
        ])
        .success()
        .stdout
        .trim()
        .to_string();
    assert_eq!(pushed, digest);
    skopeo_copies_all(&reg, "emukit/local:v1");
    let archive = dir.path().join("merged.tar");
    c.run(&[
        "manifest",
        "push",
        "--rm",
        "mylist",
        &format!("oci-archive:{}:v1", archive.display()),
    ])
    .success();
    let r = skopeo(&[
        "inspect",
        "--raw",
        &format!("oci-archive:{}:v1", archive.display()),
    ])
    .success();
    assert_eq!(digest_of(&r.stdout), digest);
    // `--rm` removed the list.
    let r = c
        .run(&["manifest", "push", "mylist", "oci:/nowhere:v1"])
        .code_is(1);
    assert!(
        r.stderr.contains("no manifest list `mylist`"),
        "{}",
        r.stderr
    );
}
case! { a_list_from_local_layouts, needs = PULL + [Tool("umoci")] }

/// A remote list of two images (arm64 and armhf, pushed by digest); another job starts from
/// it with `manifest create --amend`, adds s390x from a local layout (its blobs uploaded) and
/// pushes it back: three entries, the first two as they were. A rebuilt arm64 image replaces
/// the arm64 entry. An index given without a platform is refused with its platforms. A child
/// deleted from the registry fails the push before anything is written, naming it.
fn append_to_a_remote_list_and_a_missing_child() {
    let reg = Registry::start(Mode::Plain);
    let arm64 = reg.push("oci-umoci:arm64", "emukit/multi:arm64");
    let armhf = reg.push("oci-umoci:armhf", "emukit/multi:armhf");
    let first = Client::new(&reg);
    let list = reg.reference("emukit/multi:v1");
    first
        .run(&[
            "manifest",
            "create",
            &list,
            &reg.reference(&format!("emukit/multi@{}", arm64.digest)),
            &reg.reference(&format!("emukit/multi@{}", armhf.digest)),
        ])
        .success();
    first.run(&["manifest", "push", "--rm", &list]).success();

    let c = Client::new(&reg);
    // An index without `--platform`/`--all`: its platforms are named.
    let r = c.run(&["manifest", "create", "x", &list]).code_is(2);
    assert!(
        r.stderr.contains("linux/arm64, linux/arm/v7") && r.stderr.contains("--all"),
        "{}",
        r.stderr
    );
    c.run(&["manifest", "create", "--amend", &list]).success();
    let fixture = image("oci-umoci").unwrap();
    let uploads = reg.count("PUT", "/blobs/uploads/");
    c.run(&[
        "manifest",
        "add",
        &list,
        &format!("oci:{}:s390x", fixture.display()),
    ])
    .success();
    let digest = c
        .run(&["manifest", "push", &list])
        .success()
        .stdout
        .trim()
        .to_string();
    assert_eq!(
        reg.count("PUT", "/blobs/uploads/"),
        uploads + 2,
        "config and layer"
    );
    let (bytes, index) = raw(&reg, "emukit/multi:v1");
    assert_eq!(digest_of(&bytes), digest);
    let got = entries(&index);
    assert_eq!(
        got,
        [
            ("linux/arm64/v8".to_string(), arm64.digest.clone()),
            ("linux/arm/v7".to_string(), armhf.digest.clone()),
            ("linux/s390x".to_string(), got[2].1.clone()),
        ],
        "{index}"
    );
    skopeo_copies_all(&reg, "emukit/multi:v1");

    // A rebuilt arm64 image (another digest, the same platform) replaces the arm64 entry.
    let rebuilt = tempfile::tempdir().unwrap();
    let rebuilt_ref = format!("oci:{}:arm64", rebuilt.path().join("l").display());
    c.run(&[
        "from",
        "--platform",
        "linux/arm64",
        &format!("oci:{}:arm64", fixture.display()),
    ])
    .success();
    c.run(&["commit", "--label", "rebuilt=yes", &rebuilt_ref])
        .success();
    let r = c.run(&["manifest", "add", &list, &rebuilt_ref]).success();
    assert!(r.stderr.contains("replaces"), "{}", r.stderr);
    let v: Value =
        serde_json::from_str(&c.run(&["manifest", "inspect", &list]).success().stdout).unwrap();
    let now = entries(&v);
    assert_eq!(now.len(), 3, "{v}");
    assert_eq!(now[0].0, "linux/arm64/v8");
    assert_ne!(now[0].1, arm64.digest);

    // A child deleted from the registry: refused before anything is written.
    let gone = &armhf.digest;
    let puts = reg.count("PUT", "/manifests/");
    let uploads = reg.count("POST", "/blobs/uploads/");
    let status = reg
        .client()
        .delete(reg.url(&format!("/v2/emukit/multi/manifests/{gone}")))
        .send()
        .unwrap()
        .status();
    assert_eq!(status.as_u16(), 202);
    let r = c
        .run(&["manifest", "push", &list, &reg.reference("emukit/other:v1")])
        .code_is(1);
    assert!(
        r.stderr.contains(gone.as_str()) && r.stderr.contains("nothing was written"),
        "{}",
        r.stderr
    );
    assert_eq!(reg.count("PUT", "/manifests/"), puts);
    assert_eq!(reg.count("POST", "/blobs/uploads/"), uploads);
    assert!(tags(&reg, "emukit/other").is_empty());
}
case! { append_to_a_remote_list_and_a_missing_child, needs = PULL }

/// Three jobs push a list of one image each with `--amend-remote` to the same tag at the same
/// time: every entry ends up in the list.
fn concurrent_amend_remote_pushes_all_land() {
    let reg = Registry::start(Mode::Plain);
    let pushed = reg.push_multi(&format!("{BASE}:multi"));
    let dest = reg.reference("emukit/race:v1");
    let jobs: Vec<Client> = (0..3).map(|_| Client::new(&reg)).collect();
    for (job, img) in jobs.iter().zip(&pushed.images) {
        let r = reg.reference(&format!("{BASE}@{}", img.manifest));
        job.run(&["manifest", "create", &dest, &r]).success();
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = jobs
            .iter()
            .map(|job| {
                let dest = dest.clone();
                s.spawn(move || job.run(&["manifest", "push", "--amend-remote", &dest]))
            })
            .collect();
        for h in handles {
            h.join().unwrap().success();
        }
    });
    let (_, index) = raw(&reg, "emukit/race:v1");
    let mut got: Vec<String> = entry_digests(&index);
    let mut want: Vec<String> = pushed.images.iter().map(|i| i.manifest.clone()).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want, "{index}");
    // `--amend-remote` is for registries.
    let r = jobs[0]
        .run(&[
            "manifest",
            "push",
            "--amend-remote",
            &dest,
            &format!("oci:{}:v1", Path::new("/nonexistent").display()),
        ])
        .code_is(2);
    assert!(r.stderr.contains("registries"), "{}", r.stderr);
    // It adds to the list a tag names: a repository alone is refused.
    let r = jobs[0]
        .run(&[
            "manifest",
            "push",
            "--amend-remote",
            &dest,
            &reg.reference("emukit/race"),
        ])
        .code_is(2);
    assert!(r.stderr.contains("has no tag"), "{}", r.stderr);
}
case! { concurrent_amend_remote_pushes_all_land, needs = PULL }
