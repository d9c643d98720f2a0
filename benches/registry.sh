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
. benches/common.sh
make_large_image "$work/image"
start_registry

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
