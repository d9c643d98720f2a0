#!/usr/bin/env bash
# Rebuild the tiny static probe programs: probes/src/<target>.S -> probes/bin/<target>.
#
# Usage: probes/build.sh [--verify] [target ...]
#   no targets  build every target listed below
#   --verify    after building, check each probe:
#                 - <triplet>-readelf: ET_EXEC, no PT_INTERP, no PT_DYNAMIC;
#                 - its first bytes match Debian's /usr/share/binfmts/qemu-<target>
#                   magic/mask, when qemu-user-static ships such a file;
#                 - run it with /usr/bin/qemu-<target>-static -0 <argv0> (x86_64
#                   natively, with bash's exec -a <argv0>) for each argv[0] of
#                   VERIFY_ARGV0 below (a plain one, an empty one, one of 300 bytes):
#                   it must print exactly "binfmtctl-probe <target>\n<argv0>\n" and
#                   exit 0 (compared byte for byte).
#               Only reads /usr/share/binfmts; never touches binfmt_misc.
#
# Tools: Debian's cross binutils, <triplet>-as and <triplet>-ld. A missing tool is
# reported with the package that provides it; the exit status is then non-zero.
#
# loongarch64, hexagon, microblaze and xtensaeb are not built here (bookworm has no binutils
# for them): probes/handmade.py [--verify] [target ...] writes those four byte by byte.
set -eu
export LC_ALL=C

here=$(cd "$(dirname "$0")" && pwd)
src=$here/src
out=$here/bin

# Flags common to every link: static, stripped, no build-id note, no page alignment of
# the text (-n, "NMAGIC": one small read-only+exec PT_LOAD, no padding), non-exec stack.
LDFLAGS_COMMON="-static -s -n --build-id=none -z noexecstack -e _start"

# target | binutils triplet | Debian package | extra as flags | extra ld flags
TABLE='
aarch64     | aarch64-linux-gnu        | binutils-aarch64-linux-gnu        |                          |
aarch64_be  | aarch64-linux-gnu        | binutils-aarch64-linux-gnu        | -EB                      | -EB
alpha       | alpha-linux-gnu          | binutils-alpha-linux-gnu          |                          |
arm         | arm-linux-gnueabi        | binutils-arm-linux-gnueabi        | -march=armv5te           |
armeb       | arm-linux-gnueabi        | binutils-arm-linux-gnueabi        | -EB -march=armv7-a       | -EB --be8
hppa        | hppa-linux-gnu           | binutils-hppa-linux-gnu           |                          |
i386        | x86_64-linux-gnu         | binutils-x86-64-linux-gnu         | --32                     | -m elf_i386
m68k        | m68k-linux-gnu           | binutils-m68k-linux-gnu           |                          |
mips        | mips-linux-gnu           | binutils-mips-linux-gnu           |                          |
mipsel      | mipsel-linux-gnu         | binutils-mipsel-linux-gnu         |                          |
mips64      | mips64-linux-gnuabi64    | binutils-mips64-linux-gnuabi64    |                          |
mips64el    | mips64el-linux-gnuabi64  | binutils-mips64el-linux-gnuabi64  |                          |
mipsn32     | mips64-linux-gnuabi64    | binutils-mips64-linux-gnuabi64    | -n32                     | -m elf32btsmipn32
mipsn32el   | mips64el-linux-gnuabi64  | binutils-mips64el-linux-gnuabi64  | -n32                     | -m elf32ltsmipn32
ppc         | powerpc-linux-gnu        | binutils-powerpc-linux-gnu        |                          |
ppc64       | powerpc64-linux-gnu      | binutils-powerpc64-linux-gnu      |                          |
ppc64le     | powerpc64le-linux-gnu    | binutils-powerpc64le-linux-gnu    |                          |
riscv32     | riscv64-linux-gnu        | binutils-riscv64-linux-gnu        | -march=rv32i -mabi=ilp32 | -m elf32lriscv
riscv64     | riscv64-linux-gnu        | binutils-riscv64-linux-gnu        |                          |
s390x       | s390x-linux-gnu          | binutils-s390x-linux-gnu          |                          |
sh4         | sh4-linux-gnu            | binutils-sh4-linux-gnu            |                          |
sh4eb       | sh4-linux-gnu            | binutils-sh4-linux-gnu            | -big                     | -EB
sparc       | sparc64-linux-gnu        | binutils-sparc64-linux-gnu        | -32 -Av8                 | -m elf32_sparc
sparc32plus | sparc64-linux-gnu        | binutils-sparc64-linux-gnu        | -32 -Av8plus             | -m elf32_sparc
sparc64     | sparc64-linux-gnu        | binutils-sparc64-linux-gnu        | -64 -Av9                 | -m elf64_sparc
x86_64      | x86_64-linux-gnu         | binutils-x86-64-linux-gnu         |                          |
xtensa      | xtensa-lx106-elf         | binutils-xtensa-lx106             | --text-section-literals  |
'

verify=0
if [ "${1:-}" = "--verify" ]; then verify=1; shift; fi

trim() { printf '%s' "$1" | sed 's/^[[:space:]]*//; s/[[:space:]]*$//'; }

all_targets=$(printf '%s\n' "$TABLE" | sed -n 's/^\([a-z0-9_]*\)[[:space:]]*|.*/\1/p')
targets=${*:-$all_targets}

mkdir -p "$out"
missing_pkgs=
failed=
built=

for t in $targets; do
    row=$(printf '%s\n' "$TABLE" | grep -E "^$t[[:space:]]+\|" || true)
    if [ -z "$row" ]; then
        echo "unknown target: $t" >&2
        failed="$failed $t"
        continue
    fi
    triplet=$(trim "$(printf '%s' "$row" | cut -d'|' -f2)")
    pkg=$(trim "$(printf '%s' "$row" | cut -d'|' -f3)")
    asflags=$(trim "$(printf '%s' "$row" | cut -d'|' -f4)")
    ldflags=$(trim "$(printf '%s' "$row" | cut -d'|' -f5)")

    if ! command -v "$triplet-as" >/dev/null 2>&1 || ! command -v "$triplet-ld" >/dev/null 2>&1; then
        echo "skip $t: $triplet-as/$triplet-ld not found (apt-get install $pkg)" >&2
        case " $missing_pkgs " in *" $pkg "*) ;; *) missing_pkgs="$missing_pkgs $pkg" ;; esac
        failed="$failed $t"
        continue
    fi

    tmp=$(mktemp -d)
    # shellcheck disable=SC2086  # flag lists are meant to be split
    if "$triplet-as" $asflags -o "$tmp/$t.o" "$src/$t.S" &&
       "$triplet-ld" $LDFLAGS_COMMON $ldflags -o "$out/$t" "$tmp/$t.o"; then
        echo "built $t: $(wc -c < "$out/$t") bytes ($triplet-as${asflags:+ $asflags}; $triplet-ld $LDFLAGS_COMMON${ldflags:+ $ldflags})"
        built="$built $t"
    else
        echo "FAILED to build $t" >&2
        failed="$failed $t"
    fi
    rm -rf "$tmp"
done

# The argv[0] values --verify runs each probe with: a plain one, an empty one (the second
# line is then empty) and one longer than 255 bytes.
VERIFY_ARGV0=("binfmtctl-verify-argv0" "" "/$(printf '%0299d' 0 | tr 0 x)")

# Run probe $2 of target $1 with argv[0] $3; print its output and "rc=<exit status>" as hex
# bytes (so that a stray NUL or a missing newline is not lost in a command substitution).
run_probe_hex() {
    local t=$1 probe=$2 argv0=$3 rc=0
    {
        if [ "$t" = x86_64 ] && [ "$(uname -m)" = x86_64 ]; then
            bash -c 'exec -a "$0" "$1"' "$argv0" "$probe" || rc=$?
        else
            "/usr/bin/qemu-$t-static" -0 "$argv0" "$probe" || rc=$?
        fi
        echo "rc=$rc"
    } 2>/dev/null | od -An -v -tx1 | tr -d ' \n'
}

# Does the start of file $2 match the "magic"/"mask"/"offset" of binfmt-support file $1?
hexbytes() { printf '%b' "$1" | od -An -v -tx1 | tr -s ' \n' '  '; }
magic_matches() {
    local offset magic mask m k d i
    offset=$(sed -n 's/^offset //p' "$1"); offset=${offset:-0}
    magic=$(sed -n 's/^magic //p' "$1")
    mask=$(sed -n 's/^mask //p' "$1")
    read -r -a m <<< "$(hexbytes "$magic")"
    if [ -n "$mask" ]; then read -r -a k <<< "$(hexbytes "$mask")"; else k=(); fi
    read -r -a d <<< "$(od -An -v -tx1 -j "$offset" -N "${#m[@]}" "$2" | tr -s ' \n' '  ')"
    [ "${#d[@]}" -eq "${#m[@]}" ] || return 1
    for ((i = 0; i < ${#m[@]}; i++)); do
        [ $(( 0x${d[i]} & 0x${k[i]:-ff} )) -eq $(( 0x${m[i]} & 0x${k[i]:-ff} )) ] || return 1
    done
}

if [ "$verify" = 1 ]; then
    for t in $built; do
        if [ "$t" = x86_64 ] && [ "$(uname -m)" = x86_64 ]; then
            runner=
        else
            runner=/usr/bin/qemu-$t-static
            if [ ! -x "$runner" ]; then
                echo "cannot verify $t: $runner missing (apt-get install qemu-user-static)" >&2
                failed="$failed $t"
                continue
            fi
        fi
        triplet=$(trim "$(printf '%s\n' "$TABLE" | grep -E "^$t[[:space:]]+\|" | cut -d'|' -f2)")
        hdr=$("$triplet-readelf" -h -l "$out/$t")
        if ! printf '%s\n' "$hdr" | grep -Eq '^ +Type: +EXEC ' ||
             printf '%s\n' "$hdr" | grep -Eq '^ +(INTERP|DYNAMIC) '; then
            echo "BAD $t: not a static ET_EXEC (see $triplet-readelf -h -l)" >&2
            failed="$failed $t"
            continue
        fi
        conf=/usr/share/binfmts/qemu-$t
        [ -r "$conf" ] || conf=
        if [ -n "$conf" ] && ! magic_matches "$conf" "$out/$t"; then
            echo "BAD $t: header does not match the magic/mask of $conf" >&2
            failed="$failed $t"
            continue
        fi
        bad=
        for argv0 in "${VERIFY_ARGV0[@]}"; do
            got=$(run_probe_hex "$t" "$out/$t" "$argv0")
            want=$(printf 'binfmtctl-probe %s\n%s\nrc=0\n' "$t" "$argv0" | od -An -v -tx1 | tr -d ' \n')
            if [ "$got" != "$want" ]; then
                echo "BAD $t: with argv[0] \"${argv0:0:40}\" (${#argv0} bytes) got (hex) $got, wanted $want" >&2
                bad=1
            fi
        done
        if [ -z "$bad" ]; then
            echo "ok $t: prints \"binfmtctl-probe $t\" and its argv[0] (${#VERIFY_ARGV0[@]} argv[0]s tried)${conf:+; matches $conf}"
        else
            failed="$failed $t"
        fi
    done
fi

if [ -n "$missing_pkgs" ]; then
    echo "missing packages; install with: apt-get install$missing_pkgs" >&2
fi
if [ -n "$failed" ]; then
    echo "not built/verified:$failed" >&2
    exit 1
fi
