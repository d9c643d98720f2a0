#!/usr/bin/env python3
"""Hand-made probes for the QEMU targets that Debian bookworm has no cross binutils for.

Writes probes/bin/<target> for loongarch64, hexagon, microblaze and xtensaeb: complete
minimal static ELF executables, built byte by byte (ELF header + one PT_LOAD program header
+ code + message), with every instruction encoded here by hand from the architecture
manuals. Each probe does, through the raw system call instruction of its architecture,

    write(1, "binfmtctl-probe <target>\\n", len);
    exit(0);

like the assembled probes from build.sh.

Usage: probes/handmade.py [--verify] [target ...]
    no targets  write all four probes
    --verify    then check each probe: its first bytes match the magic/mask of
                /usr/lib/binfmt.d/qemu-<target>.conf and of no other qemu-*.conf there, and
                /usr/bin/qemu-<target>-static prints exactly "binfmtctl-probe <target>\\n"
                and exits 0. Only reads /usr/lib/binfmt.d; never touches binfmt_misc.

Python 3 standard library only. The output is deterministic (no timestamps, no randomness):
re-running gives byte-identical files.

File layout, the same for every probe (one R+X PT_LOAD that maps the whole file, from
offset 0, at BASE):

    ELF header | program header (PT_LOAD) | code | message

No section headers, no PT_INTERP, no PT_DYNAMIC, no PT_GNU_STACK.
"""

import os
import struct
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "bin")
BINFMT_D = "/usr/lib/binfmt.d"

# ---------------------------------------------------------------------------------------
# ELF
# ---------------------------------------------------------------------------------------

ELFCLASS32, ELFCLASS64 = 1, 2
ELFDATA2LSB, ELFDATA2MSB = 1, 2
EV_CURRENT = 1
ET_EXEC = 2
PT_LOAD = 1
PF_X, PF_R = 1, 4


def message(target):
    return b"binfmtctl-probe " + target.encode() + b"\n"


def headers_size(elfclass):
    """Size of ELF header + one program header (52+32 for ELF32, 64+56 for ELF64)."""
    return 52 + 32 if elfclass == ELFCLASS32 else 64 + 56


def elf_file(elfclass, data, machine, flags, base, entry, body):
    """ELF header + one PT_LOAD program header + body (code and message).

    The PT_LOAD maps the whole file (offset 0, headers included) at vaddr `base`,
    read+execute, file size == memory size."""
    end = "<" if data == ELFDATA2LSB else ">"
    size = headers_size(elfclass) + len(body)
    ident = bytes([0x7F, ord("E"), ord("L"), ord("F"),
                   elfclass, data, EV_CURRENT,
                   0,            # EI_OSABI: ELFOSABI_NONE (System V)
                   0])           # EI_ABIVERSION
    ident += bytes(16 - len(ident))  # EI_PAD
    if elfclass == ELFCLASS32:
        ehsize, phentsize = 52, 32
        # e_type e_machine e_version e_entry e_phoff e_shoff e_flags
        # e_ehsize e_phentsize e_phnum e_shentsize e_shnum e_shstrndx
        ehdr = ident + struct.pack(end + "HHIIIIIHHHHHH", ET_EXEC, machine, EV_CURRENT,
                                   entry, ehsize, 0, flags, ehsize, phentsize, 1, 0, 0, 0)
        # p_type p_offset p_vaddr p_paddr p_filesz p_memsz p_flags p_align
        phdr = struct.pack(end + "IIIIIIII", PT_LOAD, 0, base, base, size, size,
                           PF_R | PF_X, 0x10000)
    else:
        ehsize, phentsize = 64, 56
        ehdr = ident + struct.pack(end + "HHIQQQIHHHHHH", ET_EXEC, machine, EV_CURRENT,
                                   entry, ehsize, 0, flags, ehsize, phentsize, 1, 0, 0, 0)
        # p_type p_flags p_offset p_vaddr p_paddr p_filesz p_memsz p_align
        phdr = struct.pack(end + "IIQQQQQQ", PT_LOAD, PF_R | PF_X, 0, base, base, size,
                           size, 0x10000)
    assert len(ehdr) == ehsize and len(phdr) == phentsize
    return ehdr + phdr + body


def fits_signed(value, bits):
    return -(1 << (bits - 1)) <= value < (1 << (bits - 1))


# ---------------------------------------------------------------------------------------
# loongarch64
#
# LoongArch Reference Manual, Volume 1 (base architecture). Fixed 32-bit instructions,
# stored little endian. Linux uses the generic syscall table: write = 64, exit = 93;
# number in a7 (r11), arguments in a0..a2 (r4..r6), trap with `syscall 0`.
# ---------------------------------------------------------------------------------------

LA_ZERO, LA_A0, LA_A1, LA_A2, LA_A7 = 0, 4, 5, 6, 11


def la_ori(rd, rj, ui12):
    """ori rd, rj, ui12 -- 2RI12 format: opcode 0000001110 (bits 31..22) | ui12 (21..10)
    | rj (9..5) | rd (4..0). rd = rj | zero-extended ui12; with rj = r0 it loads a small
    constant (the `li` idiom)."""
    assert 0 <= ui12 < (1 << 12)
    return 0b0000001110 << 22 | ui12 << 10 | rj << 5 | rd


def la_pcaddi(rd, si20):
    """pcaddi rd, si20 -- 1RI20 format: opcode 0001100 (bits 31..25) | si20 (24..5)
    | rd (4..0). rd = PC + sign-extend(si20 << 2), PC being this instruction's address."""
    assert fits_signed(si20, 20)
    return 0b0001100 << 25 | (si20 & 0xFFFFF) << 5 | rd


def la_syscall(code):
    """syscall code -- opcode 00000000001010110 (bits 31..15) | code (14..0)."""
    assert 0 <= code < (1 << 15)
    return 0b00000000001010110 << 15 | code


def loongarch64(target, start):
    msg = message(target)
    n = 8                                   # instructions, 4 bytes each
    msg_addr = start + 4 * n                # the message follows the code
    insns = [
        la_ori(LA_A0, LA_ZERO, 1),          # ori a0, zero, 1   fd = stdout    0x03800404
        la_pcaddi(LA_A1, (msg_addr - (start + 4)) // 4),
                                            # pcaddi a1, 7  buf = pc + 28    0x180000e5
        la_ori(LA_A2, LA_ZERO, len(msg)),   # ori a2, zero, 28  count          0x03807006
        la_ori(LA_A7, LA_ZERO, 64),         # ori a7, zero, 64  __NR_write     0x0381000b
        la_syscall(0),                      # syscall 0                        0x002b0000
        la_ori(LA_A0, LA_ZERO, 0),          # ori a0, zero, 0   status         0x03800004
        la_ori(LA_A7, LA_ZERO, 93),         # ori a7, zero, 93  __NR_exit      0x0381740b
        la_syscall(0),                      # syscall 0                        0x002b0000
    ]
    assert len(insns) == n
    code = b"".join(struct.pack("<I", i) for i in insns)
    return code + msg, start             # entry = first instruction


# ---------------------------------------------------------------------------------------
# hexagon
#
# Hexagon V67 Programmer's Reference Manual, "Instruction encoding". 32-bit instruction
# words, little endian, grouped into packets. Bits 15..14 of each word are the parse
# field; 0b11 marks the last word of a packet, so every instruction here is a packet of
# its own. Linux: generic syscall table (write = 64, exit = 93), number in r6, arguments
# in r0..r5, trap with `trap0(#1)`.
# ---------------------------------------------------------------------------------------

HEX_END_OF_PACKET = 0b11 << 14


def hex_tfrsi(rd, s16):
    """Rd = #s16 (A2_tfrsi) -- 0111 1000 ii-i iiii PPii iiii iiid dddd:
    s16[15:14] -> bits 23..22, s16[13:9] -> bits 20..16, s16[8:0] -> bits 13..5,
    rd -> bits 4..0, PP = parse bits 15..14."""
    assert fits_signed(s16, 16)
    i = s16 & 0xFFFF
    return (0b01111000 << 24 | (i >> 14) << 22 | ((i >> 9) & 0x1F) << 16
            | HEX_END_OF_PACKET | (i & 0x1FF) << 5 | rd)


def hex_addipc(rd, u6):
    """Rd = add(pc, #u6) (C4_addipc) -- 0110 1010 0100 1001 PP-i iiii i--d dddd:
    u6 -> bits 12..7, rd -> bits 4..0. pc is the address of this packet."""
    assert 0 <= u6 < 64
    return 0b0110101001001001 << 16 | HEX_END_OF_PACKET | u6 << 7 | rd


def hex_trap0(u8):
    """trap0(#u8) (J2_trap0) -- 0101 0100 00-- ---- PP-i iiii ---i ii--:
    u8[7:3] -> bits 12..8, u8[2:0] -> bits 4..2."""
    assert 0 <= u8 < 256
    return 0b0101010000 << 22 | HEX_END_OF_PACKET | (u8 >> 3) << 8 | (u8 & 7) << 2


def hexagon(target, start):
    msg = message(target)
    n = 8                                   # single-instruction packets, 4 bytes each
    msg_addr = start + 4 * n
    insns = [
        hex_tfrsi(0, 1),                    # { r0 = #1 }  fd = stdout        0x7800c020
        hex_addipc(1, msg_addr - (start + 4)),
                                            # { r1 = add(pc, #28) }  buf      0x6a49ce01
        hex_tfrsi(2, len(msg)),             # { r2 = #24 }  count             0x7800c302
        hex_tfrsi(6, 64),                   # { r6 = #64 }  __NR_write        0x7800c806
        hex_trap0(1),                       # { trap0(#1) }  system call      0x5400c004
        hex_tfrsi(0, 0),                    # { r0 = #0 }  status             0x7800c000
        hex_tfrsi(6, 93),                   # { r6 = #93 }  __NR_exit         0x7800cba6
        hex_trap0(1),                       # { trap0(#1) }                   0x5400c004
    ]
    assert len(insns) == n
    code = b"".join(struct.pack("<I", i) for i in insns)
    return code + msg, start


# ---------------------------------------------------------------------------------------
# microblaze (big endian)
#
# MicroBlaze Processor Reference Guide (UG984), "Instruction Set Architecture". 32-bit
# instructions, stored big endian. Type B: opcode (bits 31..26) | rD (25..21) | rA (20..16)
# | imm16 (15..0). r0 always reads 0. Linux: number in r12, arguments in r5..r7, trap with
# `brki r14, 0x8`; MicroBlaze keeps the old i386-style numbers: write = 4, exit = 1.
# ---------------------------------------------------------------------------------------


def mb_type_b(opcode, rd, ra, imm16):
    return opcode << 26 | rd << 21 | ra << 16 | (imm16 & 0xFFFF)


def mb_imm(hi16):
    """imm IMM -- opcode 101100, rD = rA = 0: supplies the upper 16 bits of the next
    instruction's immediate (which then is not sign-extended)."""
    return mb_type_b(0b101100, 0, 0, hi16)


def mb_addik(rd, ra, imm16):
    """addik rD, rA, IMM -- opcode 001100 (add immediate, keep carry): rD = rA + IMM."""
    return mb_type_b(0b001100, rd, ra, imm16)


def mb_brki(rd, imm16):
    """brki rD, IMM -- opcode 101110, rA field 01100: rD = PC, jump to IMM, kernel mode.
    `brki r14, 0x8` is the Linux system call."""
    return mb_type_b(0b101110, rd, 0b01100, imm16)


def microblaze(target, start):
    msg = message(target)
    n = 9
    msg_addr = start + 4 * n
    assert fits_signed(len(msg), 16)
    insns = [
        mb_addik(5, 0, 1),                  # addik r5, r0, 1  fd = stdout    0x30a00001
        mb_imm(msg_addr >> 16),             # imm   hi(msg)                   0xb0000040
        mb_addik(6, 0, msg_addr & 0xFFFF),  # addik r6, r0, lo(msg)  buf      0x30c00078
        mb_addik(7, 0, len(msg)),           # addik r7, r0, 27  count         0x30e0001b
        mb_addik(12, 0, 4),                 # addik r12, r0, 4  __NR_write    0x31800004
        mb_brki(14, 0x8),                   # brki  r14, 0x8  system call     0xb9cc0008
        mb_addik(5, 0, 0),                  # addik r5, r0, 0  status         0x30a00000
        mb_addik(12, 0, 1),                 # addik r12, r0, 1  __NR_exit     0x31800001
        mb_brki(14, 0x8),                   # brki  r14, 0x8                  0xb9cc0008
    ]
    assert len(insns) == n
    code = b"".join(struct.pack(">I", i) for i in insns)
    return code + msg, start


# ---------------------------------------------------------------------------------------
# xtensaeb (big endian)
#
# Xtensa Instruction Set Architecture Reference Manual, "Instruction Formats". Core
# instructions are 24 bits wide; the same fields exist in both byte orders, but their
# positions in the 24-bit word are mirrored (in units of fields, not bits):
#
#   RRR   little endian: op2 op1 r s t op0   (bits 23..20, 19..16, 15..12, 11..8, 7..4, 3..0)
#         big endian:    op0 t s r op1 op2
#   RRI8  little endian: imm8 r s t op0      (imm8 = bits 23..16)
#         big endian:    op0 t s r imm8      (imm8 = bits 7..0)
#   RI16  little endian: imm16 t op0         (imm16 = bits 23..8)
#         big endian:    op0 t imm16         (imm16 = bits 15..0)
#
# A little-endian core stores the word least significant byte first, a big-endian core most
# significant byte first; so the byte at the instruction's address always holds op0 (low
# nibble on LE, high nibble on BE), which is what the decoder needs to find the length.
# Multi-bit fields keep their own bit order (imm8/imm16 are not bit-reversed).
#
# Linux/xtensa: number in a2, arguments in a6, a3, a4; `syscall`; write = 13, exit = 118.
# ---------------------------------------------------------------------------------------


def xt_rrr(big, op0, op1, op2, r, s, t):
    if big:
        return op0 << 20 | t << 16 | s << 12 | r << 8 | op1 << 4 | op2
    return op2 << 20 | op1 << 16 | r << 12 | s << 8 | t << 4 | op0


def xt_rri8(big, op0, r, s, t, imm8):
    if big:
        return op0 << 20 | t << 16 | s << 12 | r << 8 | imm8
    return imm8 << 16 | r << 12 | s << 8 | t << 4 | op0


def xt_ri16(big, op0, t, imm16):
    if big:
        return op0 << 20 | t << 16 | imm16
    return imm16 << 8 | t << 4 | op0


def xt_bytes(big, word):
    return word.to_bytes(3, "big" if big else "little")


def xt_movi(big, at, imm12):
    """MOVI at, imm12 -- RRI8: op0 = 0010 (LSAI), r = 1010 (MOVI), t = at,
    s = imm12[11:8], imm8 = imm12[7:0]. at = sign-extend(imm12)."""
    assert fits_signed(imm12, 12)
    i = imm12 & 0xFFF
    return xt_bytes(big, xt_rri8(big, 0b0010, 0b1010, i >> 8, at, i & 0xFF))


def xt_l32r(big, at, pc, literal):
    """L32R at, label -- RI16: op0 = 0001, t = at, imm16.
    at = mem32[((pc + 3) & ~3) + (sign-extend(1...1 || imm16) << 2)]: the literal must lie
    before the instruction, at a 4-byte-aligned address."""
    offset = literal - ((pc + 3) & ~3)
    assert literal % 4 == 0 and -(1 << 18) <= offset < 0
    return xt_bytes(big, xt_ri16(big, 0b0001, at, (offset >> 2) & 0xFFFF))


def xt_syscall(big):
    """SYSCALL -- RRR: op0 = 0000 (QRST), op1 = 0000 (RST0), op2 = 0000 (ST0),
    r = 0101 (SYSCALLx), s = 0000, t = 0000."""
    return xt_bytes(big, xt_rrr(big, 0, 0, 0, 0b0101, 0, 0))


def xtensa_body(target, start, big):
    """Literal pool (one word: the message address) | code | message."""
    msg = message(target)
    assert start % 4 == 0
    lit = start                             # literal: address of the message
    entry = start + 4                       # code starts right after it
    code = b""
    code += xt_movi(big, 2, 13)             # movi a2, 13   __NR_write        BE 22 0a 0d
    code += xt_movi(big, 6, 1)              # movi a6, 1    fd = stdout       BE 26 0a 01
    code += xt_l32r(big, 3, entry + len(code), lit)
                                            # l32r a3, lit  buf               BE 13 ff fd
    code += xt_movi(big, 4, len(msg))       # movi a4, 25   count             BE 24 0a 19
    code += xt_syscall(big)                 # syscall                         BE 00 05 00
    code += xt_movi(big, 2, 118)            # movi a2, 118  __NR_exit         BE 22 0a 76
    code += xt_movi(big, 6, 0)              # movi a6, 0    status            BE 26 0a 00
    code += xt_syscall(big)                 # syscall                         BE 00 05 00
    msg_addr = entry + len(code)
    literal = msg_addr.to_bytes(4, "big" if big else "little")
    return literal + code + msg, entry


def xtensaeb(target, start):
    return xtensa_body(target, start, big=True)


# ---------------------------------------------------------------------------------------
# Targets
# ---------------------------------------------------------------------------------------

EF_LOONGARCH_ABI_DOUBLE_FLOAT = 0x3     # lp64d, what Debian's loongarch64 toolchain emits;
EF_LOONGARCH_OBJABI_V1 = 0x40           # qemu-loongarch64 7.2 itself ignores e_flags
EF_HEXAGON_MACH_V67 = 0x67              # qemu-hexagon 7.2 runs only e_flags 0x4, 0x5, 0x60,
                                        # 0x61, 0x62, 0x65, 0x66, 0x67 (as its "v67" CPU);
                                        # 0, 0x68, 0x73 ...: "unable to find CPU model"
EM_LOONGARCH = 258                      # 0x102
EM_QDSP6 = 164                          # 0xa4, Hexagon
EM_MICROBLAZE_OLD = 0xBAAB              # what Debian's qemu-microblaze magic matches (QEMU
                                        # itself also runs EM_MICROBLAZE = 189 = 0xbd)
EM_XTENSA = 94                          # 0x5e

# target: (ELF class, data, e_machine, e_flags, load address, body builder)
# Load addresses: 0x120000000 is GNU ld's default for loongarch64; 0x400000 for the 32-bit
# ones (above mmap_min_addr, 64 KiB aligned, so fine for 4K/16K/64K target pages).
TARGETS = {
    "loongarch64": (ELFCLASS64, ELFDATA2LSB, EM_LOONGARCH,
                    EF_LOONGARCH_OBJABI_V1 | EF_LOONGARCH_ABI_DOUBLE_FLOAT,
                    0x120000000, loongarch64),
    "hexagon": (ELFCLASS32, ELFDATA2LSB, EM_QDSP6, EF_HEXAGON_MACH_V67,
                0x400000, hexagon),
    "microblaze": (ELFCLASS32, ELFDATA2MSB, EM_MICROBLAZE_OLD, 0,
                   0x400000, microblaze),
    "xtensaeb": (ELFCLASS32, ELFDATA2MSB, EM_XTENSA, 0,
                 0x400000, xtensaeb),
}


def check_encoders():
    """Encodings cross-checked with independent tools when this script was written, kept
    as a guard against editing mistakes: the LoongArch opcode table of GNU binutils
    (opcodes/loongarch-opc.c), llvm-mc 14 -arch=hexagon -show-encoding, the MicroBlaze
    opcode table of GNU binutils (opcodes/microblaze-opc.h), xtensa-lx106-elf-as (the
    little-endian forms), and QEMU's own disassembler (qemu-<target>-static -d in_asm)."""
    assert la_ori(LA_A7, LA_ZERO, 93) == 0x0381740B
    assert la_pcaddi(9, 187) == 0x18001769
    assert la_syscall(0) == 0x002B0000
    assert hex_tfrsi(3, -2) == 0x78DFFFC3
    assert hex_addipc(2, 63) == 0x6A49DF82
    assert hex_trap0(0x21) == 0x5400C404
    assert mb_imm(0x40) == 0xB0000040
    assert mb_addik(12, 0, 4) == 0x31800004
    assert mb_brki(14, 0x8) == 0xB9CC0008
    assert xt_movi(False, 2, 118) == bytes.fromhex("22a076")
    assert xt_l32r(False, 3, 0x40000A, 0x400000) == bytes.fromhex("31fdff")
    assert xt_syscall(False) == bytes.fromhex("005000")
    assert xt_movi(True, 2, 118) == bytes.fromhex("220a76")
    assert xt_l32r(True, 3, 0x40000A, 0x400000) == bytes.fromhex("13fffd")
    assert xt_syscall(True) == bytes.fromhex("000500")


def build(target):
    check_encoders()
    elfclass, data, machine, flags, base, body_fn = TARGETS[target]
    start = base + headers_size(elfclass)   # vaddr of the first byte after the headers
    body, entry = body_fn(target, start)
    image = elf_file(elfclass, data, machine, flags, base, entry, body)
    assert len(image) < 1024
    return image


# ---------------------------------------------------------------------------------------
# Verification (reads /usr/lib/binfmt.d and runs qemu-user-static; never binfmt_misc)
# ---------------------------------------------------------------------------------------


def unescape(field):
    """binfmt_misc unescaping: \\xHH is a byte, \\\\ a backslash, anything else literal."""
    out, i = bytearray(), 0
    while i < len(field):
        if field.startswith("\\x", i):
            out.append(int(field[i + 2:i + 4], 16))
            i += 4
        elif field.startswith("\\\\", i):
            out.append(0x5C)
            i += 2
        else:
            out.append(ord(field[i]))
            i += 1
    return bytes(out)


def binfmt_entries():
    """{name: (offset, magic, mask)} for every M-type entry in /usr/lib/binfmt.d/qemu-*.conf."""
    entries = {}
    for name in sorted(os.listdir(BINFMT_D)):
        if not (name.startswith("qemu-") and name.endswith(".conf")):
            continue
        with open(os.path.join(BINFMT_D, name)) as f:
            for line in f:
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                fields = line[1:].split(line[0])   # the first character is the separator
                entry, kind, offset, magic, mask = fields[:5]
                if kind != "M":
                    continue
                magic = unescape(magic)
                mask = unescape(mask) if mask else b"\xff" * len(magic)
                entries[entry] = (int(offset or 0), magic, mask)
    return entries


def magic_matches(image, offset, magic, mask):
    """The kernel's test: (byte ^ magic) & mask == 0 for each magic byte."""
    head = image[offset:offset + len(magic)]
    return len(head) == len(magic) and all(
        (b ^ m) & k == 0 for b, m, k in zip(head, magic, mask))


def verify(target, path):
    with open(path, "rb") as f:
        image = f.read()
    problems = []
    entries = binfmt_entries()
    own = "qemu-" + target
    if own not in entries:
        problems.append("no %s entry in %s" % (own, BINFMT_D))
    elif not magic_matches(image[:128], *entries[own]):
        problems.append("does not match the magic/mask of %s" % own)
    others = [e for e, spec in entries.items() if e != own and magic_matches(image[:128], *spec)]
    if others:
        problems.append("also matches " + ", ".join(others))
    emulator = "/usr/bin/qemu-%s-static" % target
    run = subprocess.run([emulator, path], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         timeout=30)
    want = message(target)
    if run.stdout != want or run.returncode != 0:
        problems.append("%s printed %r (stderr %r), exit status %d; wanted %r and 0"
                        % (emulator, run.stdout, run.stderr, run.returncode, want))
    if problems:
        print("BAD %s: %s" % (target, "; ".join(problems)), file=sys.stderr)
        return False
    print("ok %s: %s (%d bytes; matches %s/%s.conf only)"
          % (target, run.stdout.decode().rstrip("\n"), len(image), BINFMT_D, own))
    return True


def main(argv):
    do_verify = False
    if argv and argv[0] == "--verify":
        do_verify, argv = True, argv[1:]
    targets = argv or list(TARGETS)
    unknown = [t for t in targets if t not in TARGETS]
    if unknown:
        print("unknown target(s): %s (known: %s)" % (" ".join(unknown), " ".join(TARGETS)),
              file=sys.stderr)
        return 2
    os.makedirs(OUT, exist_ok=True)
    ok = True
    for target in targets:
        path = os.path.join(OUT, target)
        image = build(target)
        with open(path, "wb") as f:
            f.write(image)
        os.chmod(path, 0o755)
        print("wrote %s: %d bytes" % (os.path.relpath(path, os.getcwd()), len(image)))
        if do_verify:
            ok = verify(target, path) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
