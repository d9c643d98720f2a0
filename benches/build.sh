#!/usr/bin/env bash
# `emubuild build` against `buildah build`, the same Containerfile for linux/arm64 and
# linux/arm/v7, in one run, medians of N rounds:
#
# * cold: a fresh store (buildah: fresh storage), two RUN steps that each write 300 files and
#   20 MB, and a COPY; emubuild writes an OCI layout (-t oci:), buildah builds with
#   `--manifest` and pushes the list to an OCI layout (`buildah manifest push --all`);
# * cached: the same build again on the same store (goal: at most 0.05x of the cold build).
#
#   benches/build.sh [ROUNDS]
#
# Needs root (it drops the page cache before each run), buildah, and handlers for aarch64 and
# arm with F (`binfmtctl install aarch64 arm`); the base is tests/run.sh's busybox fixture
# (target/test-fixtures/images/oci-umoci:multi). Prints each median and the ratios; asserts
# nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}"
base="$PWD/target/test-fixtures/images/oci-umoci"
[ -d "$base" ] || { echo "benches/build.sh: $base missing; run tests/run.sh first" >&2; exit 2; }
command -v buildah >/dev/null || { echo "benches/build.sh: buildah is missing" >&2; exit 2; }
cargo build --release -q --bin emubuild
emubuild="$PWD/target/release/emubuild"
work="$(mktemp -d /tmp/emukit-bench-build.XXXXXX)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/ctx"
head -c 1000000 /dev/urandom > "$work/ctx/payload.bin"
cat > "$work/ctx/Containerfile" <<EOF
FROM oci:$base:multi
RUN mkdir -p /one && for i in \$(seq 300); do echo \$i > /one/f\$i; done && dd if=/dev/urandom of=/one/big bs=1M count=20 2>/dev/null
COPY payload.bin /payload.bin
RUN mkdir -p /two && for i in \$(seq 300); do echo \$i > /two/f\$i; done && dd if=/dev/urandom of=/two/big bs=1M count=20 2>/dev/null
EOF
now() { date +%s.%N; }
cold() { sync; echo 3 > /proc/sys/vm/drop_caches; }
platforms=linux/arm64,linux/arm/v7
t_cold=(); t_warm=(); t_bcold=(); t_bwarm=()
for r in $(seq "$rounds"); do
  cold; s=$(now)
  "$emubuild" --store "$work/store-$r" -q build --platform "$platforms" -t "oci:$work/ours-$r:v1" "$work/ctx" >/dev/null
  t_cold+=("$(echo "$(now) - $s" | bc)")
  cold; s=$(now)
  "$emubuild" --store "$work/store-$r" -q build --platform "$platforms" -t "oci:$work/ours-$r:v2" "$work/ctx" >/dev/null
  t_warm+=("$(echo "$(now) - $s" | bc)")
  b=(buildah --root "$work/buildah-$r" --runroot "$work/buildah-run-$r" --storage-driver vfs)
  cold; s=$(now)
  "${b[@]}" build -q --isolation chroot --platform "$platforms" --manifest "bench-$r" -f "$work/ctx/Containerfile" "$work/ctx" >/dev/null
  "${b[@]}" manifest push -q --all "bench-$r" "oci:$work/buildah-out-$r:v1" >/dev/null
  t_bcold+=("$(echo "$(now) - $s" | bc)")
  cold; s=$(now)
  "${b[@]}" build -q --isolation chroot --platform "$platforms" --manifest "bench2-$r" -f "$work/ctx/Containerfile" "$work/ctx" >/dev/null
  "${b[@]}" manifest push -q --all "bench2-$r" "oci:$work/buildah-out-$r:v2" >/dev/null
  t_bwarm+=("$(echo "$(now) - $s" | bc)")
done
echo "== a Containerfile (2 RUNs of 300 files + 20 MB, a COPY) for $platforms; medians of $rounds =="
python3 - "${t_cold[*]}" "${t_bcold[*]}" "${t_warm[*]}" "${t_bwarm[*]}" <<'PY'
import statistics, sys
c, bc, w, bw = (statistics.median(float(x) for x in a.split()) for a in sys.argv[1:5])
print(f"cold    emubuild build -t oci:           {c:7.2f} s")
print(f"        buildah build --manifest + push  {bc:7.2f} s")
print(f"        ratio                            {c/bc:7.2f}  (goal <= 0.5)")
print(f"cached  emubuild build again             {w:7.2f} s")
print(f"        ratio to our cold build          {w/c:7.3f}  (goal <= 0.05)")
print(f"        buildah build again (its cache)  {bw:7.2f} s")
PY
