#!/usr/bin/env bash
# One build step that writes 1,000 small files and 50 MB on a Debian arm64 base, then a commit
# to an OCI layout: emubuild (run + commit) against buildah (run + commit + push oci:) and against
# umoci (unpack + the same writes by the host + repack), in one run, medians of N rounds.
#
#   benches/commit.sh [ROUNDS]
#
# Needs root, buildah, umoci, an aarch64 binfmt_misc handler with F (`binfmtctl install
# aarch64`), and the Debian arm64 tree tests/run.sh builds (target/test-fixtures/images/
# debian-arm64.tar). Prints each median and the ratios; it asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}"
base_tar="$PWD/target/test-fixtures/images/debian-arm64.tar"
[ -f "$base_tar" ] || { echo "benches/commit.sh: $base_tar missing; run tests/run.sh first" >&2; exit 2; }
for t in buildah umoci python3; do
  command -v "$t" >/dev/null || { echo "benches/commit.sh: $t is missing" >&2; exit 2; }
done
cargo build --release -q --bin emubuild
emubuild="$PWD/target/release/emubuild"
# Lower case only (image references are): a name of our own instead of mktemp's mixed case.
work="/tmp/emukit-bench-commit.$$.$(date +%s%N)"; mkdir -m 700 "$work"
b=(buildah --root "$work/buildah" --runroot "$work/buildah-run" --storage-driver vfs)
cleanup() { "${b[@]}" rm -a >/dev/null 2>&1 || true; "${b[@]}" rmi -a -f >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT

# 50 MB of random bytes (incompressible: gzip stores them) and of text (compressible: gzip
# works), each in its own series.
payload_random='head -c 52428800 /dev/urandom'
payload_text='yes "emubuild benchmark: a compressible line of text" | head -c 52428800'

# The same base image for everyone, as an OCI layout (setup, not timed).
export EMUBUILD_STORE="$work/setup-store"
"$emubuild" from --name base --platform linux/arm64 "rootfs:$base_tar" >/dev/null 2>&1
"$emubuild" commit --name base "oci:$work/base:debian" >/dev/null 2>&1

now() { date +%s.%N; }
for kind in random text; do
payload_var="payload_$kind"; payload="${!payload_var}"
step="mkdir -p /data && i=0 && while [ \$i -lt 1000 ]; do echo \"file \$i\" > /data/f\$i; i=\$((i+1)); done && $payload > /data/big"
t_ours=(); t_buildah=(); t_umoci=()
for r in $(seq "$rounds"); do
  # emubuild: base imported beforehand (as buildah from), then run + commit.
  export EMUBUILD_STORE="$work/store-$r"
  "$emubuild" from --name w --platform linux/arm64 "oci:$work/base:debian" >/dev/null 2>&1
  sync  # setup I/O is flushed before any clock starts, for every tool
  s=$(now)
  "$emubuild" run --name w -- sh -c "$step" >/dev/null
  "$emubuild" commit --name w "oci:$work/ours-$kind-$r:x" >/dev/null 2>&1
  t_ours+=("$(echo "$(now) - $s" | bc)")

  # buildah: from beforehand, then run + commit + push oci:.
  ctr=$("${b[@]}" from --name "w$r" --arch arm64 "oci:$work/base:debian" 2>/dev/null)
  sync
  s=$(now)
  "${b[@]}" run --isolation chroot "$ctr" -- sh -c "$step" >/dev/null
  "${b[@]}" commit -q "$ctr" "bench-$r" >/dev/null
  "${b[@]}" push -q "bench-$r" "oci:$work/buildah-$kind-$r:x" >/dev/null 2>&1
  t_buildah+=("$(echo "$(now) - $s" | bc)")
  "${b[@]}" rm "$ctr" >/dev/null; "${b[@]}" rmi -f "bench-$r" >/dev/null 2>&1 || true

  # umoci: unpack, the same files written by the host, repack.
  cp -a "$work/base" "$work/umoci-$kind-$r"
  sync
  s=$(now)
  umoci unpack --image "$work/umoci-$kind-$r:debian" "$work/bundle-$r" >/dev/null
  (cd "$work/bundle-$r/rootfs" && mkdir -p data && for i in $(seq 0 999); do echo "file $i" > "data/f$i"; done && sh -c "$payload" > data/big)
  umoci repack --image "$work/umoci-$kind-$r:x" "$work/bundle-$r" >/dev/null
  t_umoci+=("$(echo "$(now) - $s" | bc)")
  rm -rf "$work/bundle-$r" "$work/store-$r" "$work/ours-$kind-$r" "$work/buildah-$kind-$r" "$work/umoci-$kind-$r"
done
echo "== 50 MB of $kind data + 1,000 small files =="
python3 - "${t_ours[*]}" "${t_buildah[*]}" "${t_umoci[*]}" <<'PY'
import statistics, sys
o, b, u = (statistics.median(float(x) for x in a.split()) for a in sys.argv[1:4])
print(f"emubuild run + commit:                      {o:7.2f} s (median)")
print(f"buildah run + commit + push oci:            {b:7.2f} s (median)")
print(f"umoci unpack + host writes + repack:        {u:7.2f} s (median)")
print(f"ratio emubuild / buildah:                   {o/b:7.2f}  (goal <= 0.33)")
print(f"ratio emubuild / umoci:                     {o/u:7.2f}  (goal < 1)")
PY
done
