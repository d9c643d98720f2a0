#!/usr/bin/env bash
# The multi-arch index workflow against its peers, on one local registry (Debian's
# docker-registry on 127.0.0.1, plain HTTP), in one run, medians of N rounds:
#
# * promoting a 3-platform tag (the large image of benches/common.sh, about 180 MB of blobs):
#   `emubuild tag REPO:v1 REPO:rN` and into another repository, against
#   `skopeo copy --all` of the same tag to the same places (goal: at most 0.2x, since no
#   blob moves);
# * creating and pushing a 3-entry list from digests: `emubuild manifest create` +
#   `manifest push`, against `docker manifest create --insecure` + `docker manifest push
#   --insecure` (each with a store or config of its own per round).
#
#   benches/lists.sh [ROUNDS]
#
# Every run but the "programs in page cache" pair starts with the page cache dropped (so it
# also loads its program from disk: about 30 ms for emubuild, 45 ms for skopeo here).
# Needs root (it drops the page cache before each run), docker-registry, skopeo, docker (the
# CLI; its manifest commands need no engine), python3, gzip, and tests/run.sh's fixtures.
# Prints each median and the ratios; asserts nothing. skopeo gets a fresh blob-info cache per
# round, and emubuild a fresh store.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-5}"
images="$PWD/target/test-fixtures/images"
for f in debian-arm64.tar rootfs-busybox-arm64.tar rootfs-busybox-armhf.tar rootfs-busybox-s390x.tar; do
  [ -e "$images/$f" ] || { echo "benches/lists.sh: $images/$f missing; run tests/run.sh first" >&2; exit 2; }
done
for t in docker-registry skopeo docker python3 gzip jq; do
  command -v "$t" >/dev/null || { echo "benches/lists.sh: $t is missing" >&2; exit 2; }
done
. benches/common.sh
make_large_image "$work/image"
start_registry

# Setup (not timed): the 3-platform tag, and its three images by digest.
sk "$work/sk-setup" copy -q --all --preserve-digests --dest-tls-verify=false \
  "oci:$work/image:multi" "docker://$host/bench/app:v1"
index_digest="sha256:$(sha256sum "$work/image/blobs/sha256/$(jq -r '.manifests[0].digest' "$work/image/index.json" | cut -d: -f2)" | cut -d' ' -f1)"
mapfile -t digests < <(jq -r '.manifests[].digest' "$work/image/blobs/sha256/${index_digest#sha256:}")
size=$(du -sm "$work/image/blobs" | cut -f1)

t_tag=(); t_sk_tag=(); t_tag_w=(); t_sk_tag_w=(); t_tag_x=(); t_sk_tag_x=(); t_list=(); t_docker=()
for r in $(seq "$rounds"); do
  # Within the repository.
  cold; s=$(now)
  "$emubuild" --store "$work/store-tag-$r" -q tag "$host/bench/app:v1" "$host/bench/app:ours-$r" >/dev/null
  t_tag+=("$(echo "$(now) - $s" | bc)")
  cold; s=$(now)
  sk "$work/sk-tag-$r" copy -q --all --preserve-digests --src-tls-verify=false --dest-tls-verify=false \
    "docker://$host/bench/app:v1" "docker://$host/bench/app:skopeo-$r"
  t_sk_tag+=("$(echo "$(now) - $s" | bc)")
  # The same with the programs' files in the page cache (as on a CI runner that just ran them).
  s=$(now)
  "$emubuild" --store "$work/store-tagw-$r" -q tag "$host/bench/app:v1" "$host/bench/app:oursw-$r" >/dev/null
  t_tag_w+=("$(echo "$(now) - $s" | bc)")
  s=$(now)
  sk "$work/sk-tagw-$r" copy -q --all --preserve-digests --src-tls-verify=false --dest-tls-verify=false \
    "docker://$host/bench/app:v1" "docker://$host/bench/app:skopeow-$r"
  t_sk_tag_w+=("$(echo "$(now) - $s" | bc)")
  # Into another repository (a release repository).
  cold; s=$(now)
  "$emubuild" --store "$work/store-tagx-$r" -q tag "$host/bench/app:v1" "$host/bench/release-ours-$r:v1" >/dev/null
  t_tag_x+=("$(echo "$(now) - $s" | bc)")
  cold; s=$(now)
  sk "$work/sk-tagx-$r" copy -q --all --preserve-digests --src-tls-verify=false --dest-tls-verify=false \
    "docker://$host/bench/app:v1" "docker://$host/bench/release-skopeo-$r:v1"
  t_sk_tag_x+=("$(echo "$(now) - $s" | bc)")

  # A list from the three digests.
  refs=()
  for d in "${digests[@]}"; do refs+=("$host/bench/app@$d"); done
  cold; s=$(now)
  "$emubuild" --store "$work/store-list-$r" -q manifest create "$host/bench/app:list-ours-$r" "${refs[@]}" >/dev/null
  "$emubuild" --store "$work/store-list-$r" -q manifest push "$host/bench/app:list-ours-$r" >/dev/null
  t_list+=("$(echo "$(now) - $s" | bc)")
  cold; s=$(now)
  DOCKER_CONFIG="$work/docker-$r" docker manifest create --insecure "$host/bench/app:list-docker-$r" "${refs[@]}" >/dev/null
  DOCKER_CONFIG="$work/docker-$r" docker manifest push --insecure "$host/bench/app:list-docker-$r" >/dev/null
  t_docker+=("$(echo "$(now) - $s" | bc)")
done
# The promoted tags name the source's digest.
for t in ours-1 skopeo-1; do
  got="sha256:$(sk "$work/sk-check" inspect --raw --tls-verify=false "docker://$host/bench/app:$t" | sha256sum | cut -d' ' -f1)"
  [ "$got" = "$index_digest" ] || echo "benches/lists.sh: bench/app:$t names $got, not $index_digest" >&2
done
echo "== a 3-platform tag ($size MB of blobs) and a 3-entry list, on a local registry; medians of $rounds =="
python3 - "${t_tag[*]}" "${t_sk_tag[*]}" "${t_tag_x[*]}" "${t_sk_tag_x[*]}" "${t_list[*]}" "${t_docker[*]}" "${t_tag_w[*]}" "${t_sk_tag_w[*]}" <<'PY'
import statistics, sys
t, st, tx, stx, l, d, tw, stw = (statistics.median(float(x) for x in a.split()) for a in sys.argv[1:9])
print(f"promote, same repository  emubuild tag:            {t:7.3f} s")
print(f"                          skopeo copy --all:       {st:7.3f} s")
print(f"                          ratio                    {t/st:7.3f}  (goal <= 0.2)")
print(f"  programs in page cache  emubuild tag:            {tw:7.3f} s")
print(f"                          skopeo copy --all:       {stw:7.3f} s")
print(f"                          ratio                    {tw/stw:7.3f}  (goal <= 0.2)")
print(f"promote, other repository emubuild tag:            {tx:7.3f} s")
print(f"                          skopeo copy --all:       {stx:7.3f} s")
print(f"                          ratio                    {tx/stx:7.3f}  (goal <= 0.2)")
print(f"list of 3 digests         emubuild manifest create + push: {l:7.3f} s")
print(f"                          docker manifest create + push:   {d:7.3f} s")
print(f"                          ratio                            {l/d:7.3f}")
PY
