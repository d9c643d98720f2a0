#!/usr/bin/env bash
# Registry transfers against skopeo, on the same local registry (Debian's docker-registry on
# 127.0.0.1, plain HTTP), in one run, medians of N rounds:
#
# * cold pull of a 3-platform base: `emubuild from --platform A,B,C REF` (fetch, verify and
#   unpack into the store) against `skopeo copy --all docker://REF oci:DIR` (fetch, verify,
#   store the blobs);
# * warm pull: the same `emubuild from` again on the same store (manifest requests only),
#   against skopeo's cold pull (goal <= 0.1x) and skopeo's own second copy;
# * push of the 3-platform image to a new repository: `emubuild push oci:DIR REF` against
#   `skopeo copy --all oci:DIR docker://REF`.
#
#   benches/registry.sh [ROUNDS]
#
# Two images, both for linux/arm64, linux/arm/v7 and linux/s390x, from tests/run.sh's
# fixtures (target/test-fixtures/images): "small", the busybox base (oci-umoci:multi, one
# layer of about 1 MB per platform, the size of alpine); "large", that platform's busybox tree
# and then the Debian arm64 tree with a marker of the platform (so no layer is shared),
# gzip'd: about 3 x 60 MB of blobs, 3 x 190 MB and 7,300 files unpacked.
# Needs root (it drops the page cache before each cold run), docker-registry, skopeo, buildah
# (pulls that unpack, as emubuild's do, for reference), python3, gzip. Prints each median and the ratios; asserts
# nothing. skopeo gets a fresh blob-info cache per round, so it never mounts from an earlier
# round's repository, and so does emubuild (a fresh store).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}"
images="$PWD/target/test-fixtures/images"
for f in oci-umoci debian-arm64.tar rootfs-busybox-arm64.tar rootfs-busybox-armhf.tar rootfs-busybox-s390x.tar; do
  [ -e "$images/$f" ] || { echo "benches/registry.sh: $images/$f missing; run tests/run.sh first" >&2; exit 2; }
done
for t in docker-registry skopeo buildah python3 gzip; do
  command -v "$t" >/dev/null || { echo "benches/registry.sh: $t is missing" >&2; exit 2; }
done
cargo build --release -q --bin emubuild
emubuild="$PWD/target/release/emubuild"
work="$(mktemp -d /tmp/emukit-bench-registry.XXXXXX)"
registry_pid=""
cleanup() { [ -n "$registry_pid" ] && kill "$registry_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# The image, as an OCI layout (setup, not timed).
python3 - "$images" "$work/image" <<'PY'
import gzip, hashlib, io, json, os, shutil, subprocess, sys, tarfile
images, out = sys.argv[1], sys.argv[2]
blobs = os.path.join(out, "blobs", "sha256")
os.makedirs(blobs)
def put(data):
    d = hashlib.sha256(data).hexdigest()
    with open(os.path.join(blobs, d), "wb") as f:
        f.write(data)
    return "sha256:" + d, len(data)
def layer(tar_bytes):
    diff = "sha256:" + hashlib.sha256(tar_bytes).hexdigest()
    gz = subprocess.run(["gzip", "-1", "-n", "-c"], input=tar_bytes, capture_output=True, check=True).stdout
    d, n = put(gz)
    return diff, {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": n}
debian = open(os.path.join(images, "debian-arm64.tar"), "rb").read()
# The Debian tree ends with two zero blocks; a marker member goes before them.
end = len(debian)
while end >= 512 and debian[end - 512:end] == b"\0" * 512:
    end -= 512
manifests = []
for arch, variant, bb in [("arm64", None, "arm64"), ("arm", "v7", "armhf"), ("s390x", None, "s390x")]:
    base = open(os.path.join(images, f"rootfs-busybox-{bb}.tar"), "rb").read()
    marker = io.BytesIO()
    with tarfile.open(fileobj=marker, mode="w", format=tarfile.PAX_FORMAT) as t:
        text = f"bench {arch}{variant or ''}\n".encode()
        info = tarfile.TarInfo("etc/bench-platform"); info.size = len(text); info.mtime = 0
        t.addfile(info, io.BytesIO(text))
    tree = debian[:end] + marker.getvalue()
    layers = [layer(base), layer(tree)]
    platform = {"architecture": arch, "os": "linux"}
    if variant:
        platform["variant"] = variant
    config = dict(platform, created="2026-01-01T00:00:00Z",
                  config={"Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": ["sh"]},
                  rootfs={"type": "layers", "diff_ids": [l[0] for l in layers]},
                  history=[{"created": "2026-01-01T00:00:00Z", "created_by": "benches/registry.sh"}] * 2)
    cd, cn = put(json.dumps(config).encode())
    m = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
         "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cn},
         "layers": [l[1] for l in layers]}
    md, mn = put(json.dumps(m).encode())
    manifests.append({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": mn, "platform": platform})
idx = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests}
xd, xn = put(json.dumps(idx).encode())
with open(os.path.join(out, "oci-layout"), "w") as f:
    f.write('{"imageLayoutVersion":"1.0.0"}')
with open(os.path.join(out, "index.json"), "w") as f:
    json.dump({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
               "manifests": [{"mediaType": "application/vnd.oci.image.index.v1+json", "digest": xd, "size": xn,
                              "annotations": {"org.opencontainers.image.ref.name": "multi"}}]}, f)
PY

# The registry: a free port of 127.0.0.1, its own storage, no auth.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/registry.yml" <<EOF
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $work/registry}, delete: {enabled: true}}
http: {addr: 127.0.0.1:$port}
EOF
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 100); do
  curl -fsS "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && break
  sleep 0.1
done
host="127.0.0.1:$port"

# skopeo with a private policy, auth file and blob-info cache (fresh per call when asked).
sk() {
  local home="$1"; shift
  mkdir -p "$home/data" "$home/config" "$home/run"
  chmod 700 "$home/run"
  echo '{"default":[{"type":"insecureAcceptAnything"}]}' > "$home/policy.json"
  _CONTAINERS_ROOTLESS_UID=1000 XDG_DATA_HOME="$home/data" XDG_CONFIG_HOME="$home/config" \
    XDG_RUNTIME_DIR="$home/run" HOME="$home" REGISTRY_AUTH_FILE="$home/auth.json" \
    skopeo --policy "$home/policy.json" "$@"
}

now() { date +%s.%N; }
# Before each cold measurement: written out, and the caches dropped. Besides making the reads
# cold for everyone, this matters on ext4 without a journal, which for 12 hours skips inodes
# deleted while their inode table is still cached (`recently_deleted`), making every file
# creation slow on a machine that has run the test suite.
cold() { sync; echo 3 > /proc/sys/vm/drop_caches; }
platforms=linux/arm64,linux/arm/v7,linux/s390x

# bench NAME LAYOUT:TAG: the three measurements for one image.
bench() {
  local name="$1" src="$2"
  local size
  size=$(du -sm "${src%:*}/blobs" | cut -f1)
  sk "$work/sk-setup" copy -q --all --preserve-digests --dest-tls-verify=false \
    "oci:$src" "docker://$host/bench/$name:multi"
  t_pull=(); t_warm=(); t_buildah_pull=(); t_skopeo_pull=(); t_skopeo_warm=(); t_push=(); t_skopeo_push=()
  for r in $(seq "$rounds"); do
    # Nothing is removed until the end: ext4 makes file creation slow for a while where many
    # files were just deleted, which would weigh on whoever unpacks next.
    local store="$work/$name-store-$r"
    cold; s=$(now)
    "$emubuild" --store "$store" -q from --name a --platform "$platforms" "$host/bench/$name:multi" >/dev/null
    t_pull+=("$(echo "$(now) - $s" | bc)")
    sync; s=$(now)
    "$emubuild" --store "$store" -q from --name b --platform "$platforms" "$host/bench/$name:multi" >/dev/null
    t_warm+=("$(echo "$(now) - $s" | bc)")

    cold; s=$(now)
    sk "$work/sk-$name-pull-$r" copy -q --all --src-tls-verify=false "docker://$host/bench/$name:multi" "oci:$work/$name-skopeo-$r:multi"
    t_skopeo_pull+=("$(echo "$(now) - $s" | bc)")
    sync; s=$(now)
    sk "$work/sk-$name-pull-$r" copy -q --all --src-tls-verify=false "docker://$host/bench/$name:multi" "oci:$work/$name-skopeo-$r:multi"
    t_skopeo_warm+=("$(echo "$(now) - $s" | bc)")

    # buildah does the work emubuild does (fetch and unpack), one platform after another.
    cold; s=$(now)
    for p in ${platforms//,/ }; do
      buildah --root "$work/$name-buildah-$r" --runroot "$work/$name-buildah-run-$r" --storage-driver vfs \
        pull -q --tls-verify=false --platform "$p" "docker://$host/bench/$name:multi" >/dev/null
    done
    t_buildah_pull+=("$(echo "$(now) - $s" | bc)")

    cold; s=$(now)
    "$emubuild" --store "$work/$name-push-store-$r" -q push "oci:$src" "$host/bench/$name-ours-$r:v1" >/dev/null
    t_push+=("$(echo "$(now) - $s" | bc)")
    cold; s=$(now)
    sk "$work/sk-$name-push-$r" copy -q --all --dest-tls-verify=false "oci:$src" "docker://$host/bench/$name-skopeo-$r:v1"
    t_skopeo_push+=("$(echo "$(now) - $s" | bc)")
  done
  echo "== $name: a 3-platform image, $size MB of blobs, on a local registry; medians of $rounds =="
  python3 - "${t_pull[*]}" "${t_skopeo_pull[*]}" "${t_warm[*]}" "${t_skopeo_warm[*]}" "${t_push[*]}" "${t_skopeo_push[*]}" "${t_buildah_pull[*]}" <<'PY'
import statistics, sys
p, sp, w, sw, u, su, bp = (statistics.median(float(x) for x in a.split()) for a in sys.argv[1:8])
print(f"cold pull  emubuild from (fetch + unpack):   {p:7.2f} s")
print(f"           skopeo copy --all docker:// oci:  {sp:7.2f} s  (fetch only)")
print(f"           ratio                             {p/sp:7.2f}  (goal <= 0.7)")
print(f"           buildah pull x3 (fetch + unpack): {bp:7.2f} s")
print(f"           ratio                             {p/bp:7.2f}")
print(f"warm pull  emubuild from, cached:            {w:7.2f} s")
print(f"           skopeo copy again (its warm):     {sw:7.2f} s")
print(f"           ratio to skopeo's cold pull       {w/sp:7.2f}  (goal <= 0.1)")
print(f"push       emubuild push oci: REF:           {u:7.2f} s")
print(f"           skopeo copy --all oci: docker://  {su:7.2f} s")
print(f"           ratio                             {u/su:7.2f}  (goal <= 0.7)")
PY
}

bench small "$images/oci-umoci:multi"
bench large "$work/image:multi"
