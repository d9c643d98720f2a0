# Shared by the registry benchmarks (sourced): a release emubuild, a work directory removed
# on exit, a local registry, a private skopeo, timing, cold caches, and the large 3-platform
# image. Sets `$emubuild` and `$work`; expects `$images`.

cargo build --release -q --bin emubuild
emubuild="$PWD/target/release/emubuild"
work="$(mktemp -d "/tmp/emukit-bench-$(basename "$0" .sh).XXXXXX")"
registry_pid=""
cleanup() { [ -n "$registry_pid" ] && kill "$registry_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# make_large_image OUT: an OCI layout (tag `multi`) for linux/arm64, linux/arm/v7 and
# linux/s390x, each that platform's busybox tree and then the Debian arm64 tree with a marker
# of the platform (so no layer is shared), gzip'd: about 3 x 60 MB of blobs.
make_large_image() {
python3 - "$images" "$1" <<'PY'
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
}

# start_registry: Debian's docker-registry on a free port of 127.0.0.1 (plain HTTP, no auth,
# its own storage under $work); sets $host and $registry_pid.
start_registry() {
local port
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
}

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
