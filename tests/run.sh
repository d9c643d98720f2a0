#!/usr/bin/env bash
# The test command: installs what the tests need on a Debian machine (as root), fetches the
# foreign programs they run, then runs the whole suite. A test whose prerequisites are missing
# fails here with `cannot run: <why>` (EMUKIT_TEST_STRICT=1) instead of being reported as
# ignored (see tests/integration/main.rs).
#
#   tests/run.sh              # everything
#   tests/run.sh arch_table   # extra arguments go to `cargo test`
set -euo pipefail
cd "$(dirname "$0")/.."

fixtures="${EMUKIT_FIXTURES:-$PWD/target/test-fixtures}"
busybox_arches=(amd64 arm64 armhf s390x ppc64el)

need_pkgs=()
have() { [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = 'install ok installed' ]; }
for p in qemu-user-static skopeo umoci buildah oci-image-tool mmdebstrap docker-registry \
         gpgv debian-archive-keyring binutils xz-utils zstd curl ca-certificates util-linux \
         apache2-utils openssl \
         attr jq python3 python3-yaml systemd uidmap passwd; do
  have "$p" || need_pkgs+=("$p")
done
if [ "${#need_pkgs[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "tests/run.sh: missing packages: ${need_pkgs[*]}; run as root or install them" >&2
    exit 2
  fi
  apt-get update -q || echo "tests/run.sh: apt-get update reported errors; going on with the lists it has" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need_pkgs[@]}"
fi

# Foreign static programs: Debian's busybox-static for each architecture the tests run.
missing=()
for a in "${busybox_arches[@]}"; do
  [ -x "$fixtures/busybox/$a/busybox" ] || missing+=("$a")
done
if [ "${#missing[@]}" -gt 0 ]; then
  added=0
  for a in "${missing[@]}"; do
    [ "$a" = "$(dpkg --print-architecture)" ] && continue
    if ! dpkg --print-foreign-architectures | grep -qx "$a"; then
      dpkg --add-architecture "$a"; added=1
    fi
  done
  [ "$added" -eq 0 ] || apt-get update -q || true
  dl="$(mktemp -d)"
  chmod 755 "$dl"
  for a in "${missing[@]}"; do
    (cd "$dl" && apt-get download -q "busybox-static:$a" 2>/dev/null || \
      (cd "$dl" && chown _apt "$dl" 2>/dev/null; apt-get download -q "busybox-static:$a"))
    mkdir -p "$fixtures/busybox/$a"
    dpkg-deb --fsys-tarfile "$dl"/busybox-static_*_"$a".deb | tar -xO ./bin/busybox > "$fixtures/busybox/$a/busybox"
    chmod 755 "$fixtures/busybox/$a/busybox"
  done
  rm -rf "$dl"
fi

# cargo-deb for the Debian package test (pinned: it is the judge of our package metadata).
if ! command -v cargo-deb >/dev/null; then
  cargo install --locked --quiet cargo-deb --version 3.8.0
fi

# Base images for emubuild: busybox roots, OCI layouts by umoci and buildah, malicious layers,
# a Debian arm64 tree (built once; see tests/fixtures/README.md).
EMUKIT_FIXTURES="$fixtures" tests/fixtures/make-images.sh "$fixtures/images" --with-debian

# The Docker tests load and run our images: start the engine when it is installed but down.
if command -v docker >/dev/null && ! docker info >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
  if command -v systemctl >/dev/null && systemctl start docker 2>/dev/null; then :
  elif command -v service >/dev/null && service docker start >/dev/null 2>&1; then :
  elif command -v dockerd >/dev/null; then
    (dockerd >/var/log/emukit-dockerd.log 2>&1 &)
  fi
  for _ in $(seq 30); do docker info >/dev/null 2>&1 && break; sleep 1; done
fi

export EMUKIT_FIXTURES="$fixtures"
export EMUKIT_TEST_STRICT=1
exec cargo test --all-targets "$@"
