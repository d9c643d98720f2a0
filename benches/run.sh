#!/usr/bin/env bash
# `emubuild run -- true` against a raw `unshare --mount --pid --fork chroot` and against
# `buildah run --isolation chroot`, on the same arm64 base image, in one run.
#
#   benches/run.sh [IMAGE_LAYOUT:TAG] [RUNS]
#
# IMAGE defaults to the arm64 busybox image tests/run.sh builds
# (target/test-fixtures/images/oci-umoci:arm64). Needs root, hyperfine and buildah, and an
# aarch64 binfmt_misc handler with the F flag (`binfmtctl install aarch64`). Prints each median
# and the ratios (warm: the container exists; cold: from + run); it asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
image="${1:-$PWD/target/test-fixtures/images/oci-umoci:arm64}"
runs="${2:-30}"
for t in hyperfine buildah unshare chroot; do
  command -v "$t" >/dev/null || { echo "benches/run.sh: $t is missing (apt-get install $t)" >&2; exit 2; }
done
cargo build --release -q --bin emubuild
emubuild="$PWD/target/release/emubuild"
work="$(mktemp -d)"
trap 'buildah --root "$work/buildah" --runroot "$work/buildah-run" rm -a >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

export EMUBUILD_STORE="$work/store"
"$emubuild" from --name bench --platform linux/arm64 "oci:$image" >/dev/null
# The raw chroot gets the very same unpacked base: emubuild's single layer directory.
[ "$(ls -d "$EMUBUILD_STORE"/layers/*/ | wc -l)" -eq 1 ] || { echo "benches/run.sh: use a one-layer image (the raw chroot needs one directory)" >&2; exit 2; }
base="$(ls -d "$EMUBUILD_STORE"/layers/*/ | head -n 1)"

b=(buildah --root "$work/buildah" --runroot "$work/buildah-run" --storage-driver vfs)
start=$(date +%s.%N)
ctr=$("${b[@]}" from --arch arm64 "oci:$image")
from_s=$(echo "$(date +%s.%N) - $start" | bc)

hyperfine -N --style basic -w 3 -r "$runs" --export-json "$work/h.json" \
  -n emubuild "$emubuild run --name bench -- /bin/true" \
  -n raw-chroot "unshare --mount --pid --fork chroot $base /bin/true" \
  -n buildah "${b[*]} run --isolation chroot $ctr -- /bin/true" >/dev/null
# Cold: a new working container from the image, then the run (the layer cache is warm for
# emubuild, as buildah's storage is for it).
cold_runs=$(( runs < 10 ? runs : 10 ))
hyperfine -N --style basic -w 1 -r "$cold_runs" --export-json "$work/c.json" \
  -n emubuild-cold "$emubuild run --name cold --from oci:$image -- /bin/true" \
  -n buildah-cold "sh -c 'c=\$(${b[*]} from --arch arm64 oci:$image) && ${b[*]} run --isolation chroot \$c -- /bin/true && ${b[*]} rm \$c >/dev/null'" >/dev/null

python3 - "$work/h.json" "$work/c.json" "$from_s" <<'PY'
import json, sys
def medians(f):
    return {x["command"]: x["median"] for x in json.load(open(f))["results"]}
r, c2 = medians(sys.argv[1]), medians(sys.argv[2])
e, c, b = r["emubuild"], r["raw-chroot"], r["buildah"]
ec, bc = c2["emubuild-cold"], c2["buildah-cold"]
print(f"emubuild run -- true:                    {e*1000:8.1f} ms (median)")
print(f"unshare --mount --pid --fork chroot:     {c*1000:8.1f} ms (median)")
print(f"buildah run --isolation chroot:          {b*1000:8.1f} ms (median; its first from took {float(sys.argv[3])*1000:.0f} ms)")
print(f"ratio emubuild / raw chroot:             {e/c:8.2f}  (goal <= 1.3)")
print(f"ratio emubuild / buildah:                {e/b:8.2f}  (goal <= 0.33)")
print(f"emubuild run --from IMAGE -- true:       {ec*1000:8.1f} ms (median, new container each time)")
print(f"buildah from + run + rm:                 {bc*1000:8.1f} ms (median)")
print(f"ratio cold emubuild / buildah:           {ec/bc:8.2f}")
PY
