#!/usr/bin/env python3
"""Hand-made probes for the QEMU targets that Debian bookworm has no cross binutils for.

Writes probes/bin/<target> for loongarch64, hexagon, microblaze and xtensaeb: complete
minimal static ELF executables, built byte by byte (ELF header + one PT_LOAD program header
+ code + message), with every instruction encoded here by hand from the architecture
manuals. Each probe does, through the raw system call instruction of its architecture,

    write(1, "binfmtctl-probe <target>\\n", len);
    write(1, argv[0], strlen(argv[0]));      /* nothing when argv[0] is NULL */
    write(1, "\\n", 1);
    exit(0);

like the assembled probes from build.sh: argv[0] is read from the initial process stack
that the kernel (and QEMU's linux-user loader) builds, whose stack pointer points at argc
followed by the argv pointers.

Usage: probes/handmade.py [--verify] [target ...]
    no targets  write all four probes
    --verify    then check each probe: its first bytes match the magic/mask of
                /usr/lib/binfmt.d/qemu-<target>.conf and of no other qemu-*.conf there, and
                for each argv[0] of VERIFY_ARGV0 (a short one, an empty one, one of 300
                bytes) /usr/bin/qemu-<target>-static -0 <argv0> prints exactly
                "binfmtctl-probe <target>\\n<argv0>\\n" and exits 0. Only reads
                /usr/lib/binfmt.d; never touches binfmt_misc.

Python 3 standard library only. The output is deterministic (no timestamps, no randomness):
re-running gives byte-identical files.

File layout, the same for every probe (one R+X PT_LOAD that maps the whole file, from
offset 0, at BASE):

    ELF header | program header (PT_LOAD) | code | message

No section headers, no PT_INTERP, no PT_DYNAMIC, no PT_GNU_STACK. The final newline of the
message doubles as the "\\n" of the third write. Branch targets are labels resolved by
assemble() below, in two passes.
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


def assemble(start, program, size, labels):
    """Lay out `program` at address `start` and return its bytes. `program` is a list of
    label names (str), each naming the address of the instruction that follows it, and of
    instructions, each a function of its own address (pc) that returns its `size` bytes
    and may read `labels`. The first pass fills `labels` (the caller's dict, which the
    instructions close over) with every label's address, plus "end": the first address
    after the code; the second pass encodes."""
    pc = start
    for item in program:
        if isinstance(item, str):
            assert item not in labels
            labels[item] = pc
        else:
            pc += size
    labels["end"] = pc
    code, pc = b"", start
    for item in program:
        if not isinstance(item, str):
            insn = item(pc)
            assert len(insn) == size
            code += insn
            pc += size
    return code


# ---------------------------------------------------------------------------------------
# loongarch64
#
# LoongArch Reference Manual, Volume 1 (base architecture). Fixed 32-bit instructions,
# stored little endian. Linux uses the generic syscall table: write = 64, exit = 93;
# number in a7 (r11), arguments in a0..a2 (r4..r6), trap with `syscall 0`.
# ---------------------------------------------------------------------------------------

LA_ZERO, LA_SP, LA_A0, LA_A1, LA_A2, LA_A7, LA_T0 = 0, 3, 4, 5, 6, 11, 12


def la_ori(rd, rj, ui12):
    """ori rd, rj, ui12 -- 2RI12 format: opcode 0000001110 (bits 31..22) | ui12 (21..10)
    | rj (9..5) | rd (4..0). rd = rj | zero-extended ui12; with rj = r0 it loads a small
    constant (the `li` idiom)."""
    assert 0 <= ui12 < (1 << 12)
    return 0b0000001110 << 22 | ui12 << 10 | rj << 5 | rd


def la_addi_d(rd, rj, si12):
    """addi.d rd, rj, si12 -- 2RI12 format: opcode 0000001011 (bits 31..22) | si12 (21..10)
    | rj (9..5) | rd (4..0). rd = rj + sign-extend(si12), 64 bits."""
    assert fits_signed(si12, 12)
    return 0b0000001011 << 22 | (si12 & 0xFFF) << 10 | rj << 5 | rd


def la_ld_d(rd, rj, si12):
    """ld.d rd, rj, si12 -- 2RI12 format: opcode 0010100011 (bits 31..22) | si12 (21..10)
    | rj (9..5) | rd (4..0). rd = mem64[rj + sign-extend(si12)]."""
    assert fits_signed(si12, 12)
    return 0b0010100011 << 22 | (si12 & 0xFFF) << 10 | rj << 5 | rd


def la_ldx_bu(rd, rj, rk):
    """ldx.bu rd, rj, rk -- 3R format: opcode 00111000001000000 (bits 31..15) | rk (14..10)
    | rj (9..5) | rd (4..0). rd = zero-extend(mem8[rj + rk])."""
    return 0b00111000001000000 << 15 | rk << 10 | rj << 5 | rd


def la_branch_zero(opcode6, rj, offset):
    """beqz/bnez rj, offset -- 1RI21 format: opcode (bits 31..26) | offs[15:0] (25..10)
    | rj (9..5) | offs[20:16] (4..0), offs = offset >> 2; the target is this
    instruction's address + offset (a multiple of 4, +-4 MiB)."""
    assert offset % 4 == 0 and fits_signed(offset >> 2, 21)
    offs = (offset >> 2) & 0x1FFFFF
    return opcode6 << 26 | (offs & 0xFFFF) << 10 | rj << 5 | offs >> 16


def la_beqz(rj, offset):
    """beqz rj, offset -- opcode 010000: branch if rj == 0."""
    return la_branch_zero(0b010000, rj, offset)


def la_bnez(rj, offset):
    """bnez rj, offset -- opcode 010001: branch if rj != 0."""
    return la_branch_zero(0b010001, rj, offset)


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
    """At _start 0($sp) = argc and 8($sp) = argv[0] (8-byte slots), as glibc's start.S
    reads them. The kernel's syscall may change the temporaries t0-t8 but keeps sp, so
    argv[0] is read after the first write and t0 is used only between two syscalls."""
    msg = message(target)
    L = {}

    def w(f):                               # one instruction: 32 bits, little endian
        return lambda pc: struct.pack("<I", f(pc))

    program = [
        w(lambda pc: la_ori(LA_A0, LA_ZERO, 1)),        # ori a0, zero, 1   fd = stdout
        w(lambda pc: la_pcaddi(LA_A1, (L["end"] - pc) // 4)),
                                                        # pcaddi a1, msg    buf
        w(lambda pc: la_ori(LA_A2, LA_ZERO, len(msg))), # ori a2, zero, len count
        w(lambda pc: la_ori(LA_A7, LA_ZERO, 64)),       # ori a7, zero, 64  __NR_write
        w(lambda pc: la_syscall(0)),                    # syscall 0
        w(lambda pc: la_ld_d(LA_A1, LA_SP, 8)),         # ld.d a1, sp, 8    buf = argv[0]
        w(lambda pc: la_ori(LA_A2, LA_ZERO, 0)),        # ori a2, zero, 0   count = 0
        w(lambda pc: la_beqz(LA_A1, L["newline"] - pc)),
                                                        # beqz a1, newline  argv[0] == NULL
        "strlen",
        w(lambda pc: la_ldx_bu(LA_T0, LA_A1, LA_A2)),   # ldx.bu t0, a1, a2 t0 = argv[0][count]
        w(lambda pc: la_addi_d(LA_A2, LA_A2, 1)),       # addi.d a2, a2, 1  count++
        w(lambda pc: la_bnez(LA_T0, L["strlen"] - pc)), # bnez t0, strlen
        w(lambda pc: la_addi_d(LA_A2, LA_A2, -1)),      # addi.d a2, a2, -1 count = strlen
        w(lambda pc: la_ori(LA_A0, LA_ZERO, 1)),        # ori a0, zero, 1   fd = stdout
        w(lambda pc: la_ori(LA_A7, LA_ZERO, 64)),       # ori a7, zero, 64  __NR_write
        w(lambda pc: la_syscall(0)),                    # syscall 0
        "newline",
        w(lambda pc: la_ori(LA_A0, LA_ZERO, 1)),        # ori a0, zero, 1   fd = stdout
        w(lambda pc: la_pcaddi(LA_A1, (L["end"] - pc) // 4)),
                                                        # pcaddi a1, msg    (4-byte steps,
        w(lambda pc: la_addi_d(LA_A1, LA_A1, len(msg) - 1)),
                                                        # addi.d a1, a1, len-1: its "\n")
        w(lambda pc: la_ori(LA_A2, LA_ZERO, 1)),        # ori a2, zero, 1   count
        w(lambda pc: la_ori(LA_A7, LA_ZERO, 64)),       # ori a7, zero, 64  __NR_write
        w(lambda pc: la_syscall(0)),                    # syscall 0
        w(lambda pc: la_ori(LA_A0, LA_ZERO, 0)),        # ori a0, zero, 0   status = 0
        w(lambda pc: la_ori(LA_A7, LA_ZERO, 93)),       # ori a7, zero, 93  __NR_exit
        w(lambda pc: la_syscall(0)),                    # syscall 0
    ]
    code = assemble(start, program, 4, L)   # the message follows the code, at L["end"]
    return code + msg, start                # entry = first instruction


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


def hex_addi(rd, rs, s16):
    """Rd = add(Rs, #s16) (A2_addi) -- 1011 iiii iiis ssss PPii iiii iiid dddd:
    s16[15:9] -> bits 27..21, rs -> bits 20..16, s16[8:0] -> bits 13..5, rd -> bits 4..0."""
    assert fits_signed(s16, 16)
    i = s16 & 0xFFFF
    return 0b1011 << 28 | (i >> 9) << 21 | rs << 16 | HEX_END_OF_PACKET | (i & 0x1FF) << 5 | rd


def hex_add(rd, rs, rt):
    """Rd = add(Rs, Rt) (A2_add) -- 1111 0011 000s ssss PP-t tttt ---d dddd."""
    return 0b11110011000 << 21 | rs << 16 | HEX_END_OF_PACKET | rt << 8 | rd


def hex_load_io(uuu, shift, rd, rs, offset):
    """Rd = mem*(Rs + #s11:shift) (L2_load*_io) -- 1001 0ii1 UUUs ssss PPii iiii iiid dddd:
    UUU (bits 23..21) selects the access; the offset, in units of the access size
    (offset >> shift, 11 bits signed), has its bits 10..9 in bits 26..25 and its bits
    8..0 in bits 13..5."""
    assert offset % (1 << shift) == 0 and fits_signed(offset >> shift, 11)
    i = (offset >> shift) & 0x7FF
    return (0b1001 << 28 | (i >> 9) << 25 | 1 << 24 | uuu << 21 | rs << 16
            | HEX_END_OF_PACKET | (i & 0x1FF) << 5 | rd)


def hex_memw(rd, rs, offset):
    """Rd = memw(Rs + #s11:2) (L2_loadri_io): UUU = 100, a 32-bit load."""
    return hex_load_io(0b100, 2, rd, rs, offset)


def hex_memub(rd, rs, offset):
    """Rd = memub(Rs + #s11:0) (L2_loadrub_io): UUU = 001, a zero-extended byte load."""
    return hex_load_io(0b001, 0, rd, rs, offset)


def hex_jump_if_reg(cond, taken_hint, rs, offset):
    """if (Rs <cond> #0) jump:<hint> target (J2_jumprz family) -- 0110 0001 cci sssss
    PPi t iiii iiii iii-: cc (bits 23..22) = 10 for "== #0", 00 for "!= #0"; t (bit 12)
    = 1 for the ":t" (taken) hint, 0 for ":nt". The offset to the target, relative to this
    packet, in words (offset >> 2, 13 bits signed), has its bit 12 in bit 21, its bit 11
    in bit 13 and its bits 10..0 in bits 11..1."""
    assert offset % 4 == 0 and fits_signed(offset >> 2, 13)
    i = (offset >> 2) & 0x1FFF
    return (0b01100001 << 24 | cond << 22 | (i >> 12) << 21 | rs << 16 | HEX_END_OF_PACKET
            | ((i >> 11) & 1) << 13 | taken_hint << 12 | (i & 0x7FF) << 1)


def hex_if_zero_jump_nt(rs, offset):
    """if (Rs == #0) jump:nt target."""
    return hex_jump_if_reg(0b10, 0, rs, offset)


def hex_if_nonzero_jump_t(rs, offset):
    """if (Rs != #0) jump:t target."""
    return hex_jump_if_reg(0b00, 1, rs, offset)


def hex_trap0(u8):
    """trap0(#u8) (J2_trap0) -- 0101 0100 00-- ---- PP-i iiii ---i ii--:
    u8[7:3] -> bits 12..8, u8[2:0] -> bits 4..2."""
    assert 0 <= u8 < 256
    return 0b0101010000 << 22 | HEX_END_OF_PACKET | (u8 >> 3) << 8 | (u8 & 7) << 2


def hexagon(target, start):
    """At _start memw(r29) = argc and memw(r29 + #4) = argv[0] (r29 is the stack pointer;
    musl's crt_arch.h passes r29 to _start_c as the argc/argv block). trap0 changes only
    r0, so the start address is kept in r16 and the message addressed from it (the u6 of
    add(pc, #u6) would not reach it)."""
    msg = message(target)
    L = {}

    def w(f):                               # one single-instruction packet, little endian
        return lambda pc: struct.pack("<I", f(pc))

    program = [
        "start",
        w(lambda pc: hex_addipc(16, 0)),                # { r16 = add(pc, #0) }  r16 = start
        w(lambda pc: hex_tfrsi(0, 1)),                  # { r0 = #1 }  fd = stdout
        w(lambda pc: hex_addi(1, 16, L["end"] - L["start"])),
                                                        # { r1 = add(r16, #msg-start) }  buf
        w(lambda pc: hex_tfrsi(2, len(msg))),           # { r2 = #len }  count
        w(lambda pc: hex_tfrsi(6, 64)),                 # { r6 = #64 }  __NR_write
        w(lambda pc: hex_trap0(1)),                     # { trap0(#1) }  system call
        w(lambda pc: hex_memw(1, 29, 4)),               # { r1 = memw(r29 + #4) }  argv[0]
        w(lambda pc: hex_tfrsi(2, 0)),                  # { r2 = #0 }  count = 0
        w(lambda pc: hex_if_zero_jump_nt(1, L["newline"] - pc)),
                                                        # { if (r1 == #0) jump:nt newline }
        "strlen",
        w(lambda pc: hex_add(3, 1, 2)),                 # { r3 = add(r1, r2) }
        w(lambda pc: hex_memub(3, 3, 0)),               # { r3 = memub(r3 + #0) }
        w(lambda pc: hex_addi(2, 2, 1)),                # { r2 = add(r2, #1) }  count++
        w(lambda pc: hex_if_nonzero_jump_t(3, L["strlen"] - pc)),
                                                        # { if (r3 != #0) jump:t strlen }
        w(lambda pc: hex_addi(2, 2, -1)),               # { r2 = add(r2, #-1) }  = strlen
        w(lambda pc: hex_tfrsi(0, 1)),                  # { r0 = #1 }  fd = stdout
        w(lambda pc: hex_tfrsi(6, 64)),                 # { r6 = #64 }  __NR_write
        w(lambda pc: hex_trap0(1)),                     # { trap0(#1) }
        "newline",
        w(lambda pc: hex_tfrsi(0, 1)),                  # { r0 = #1 }  fd = stdout
        w(lambda pc: hex_addi(1, 16, L["end"] + len(msg) - 1 - L["start"])),
                                                        # { r1 = add(r16, #...) }  the "\n"
        w(lambda pc: hex_tfrsi(2, 1)),                  # { r2 = #1 }  count
        w(lambda pc: hex_tfrsi(6, 64)),                 # { r6 = #64 }  __NR_write
        w(lambda pc: hex_trap0(1)),                     # { trap0(#1) }
        w(lambda pc: hex_tfrsi(0, 0)),                  # { r0 = #0 }  status
        w(lambda pc: hex_tfrsi(6, 93)),                 # { r6 = #93 }  __NR_exit
        w(lambda pc: hex_trap0(1)),                     # { trap0(#1) }
    ]
    code = assemble(start, program, 4, L)   # the message follows the code, at L["end"]
    return code + msg, start


# ---------------------------------------------------------------------------------------
# microblaze (big endian)
#
# MicroBlaze Processor Reference Guide (UG984), "Instruction Set Architecture". 32-bit
# instructions, stored big endian. Type B: opcode (bits 31..26) | rD (25..21) | rA (20..16)
# | imm16 (15..0). r0 always reads 0. Linux: number in r12, arguments in r5..r7, trap with
# `brki r14, 0x8`; MicroBlaze keeps the old i386-style numbers: write = 4, exit = 1.
# ---------------------------------------------------------------------------------------


def mb_type_a(opcode, rd, ra, rb, low11=0):
    """Type A: opcode (bits 31..26) | rD (25..21) | rA (20..16) | rB (15..11) | 11 more
    opcode bits (10..0)."""
    return opcode << 26 | rd << 21 | ra << 16 | rb << 11 | low11


def mb_type_b(opcode, rd, ra, imm16):
    return opcode << 26 | rd << 21 | ra << 16 | (imm16 & 0xFFFF)


def mb_imm(hi16):
    """imm IMM -- opcode 101100, rD = rA = 0: supplies the upper 16 bits of the next
    instruction's immediate (which then is not sign-extended)."""
    return mb_type_b(0b101100, 0, 0, hi16)


def mb_addik(rd, ra, imm16):
    """addik rD, rA, IMM -- opcode 001100 (add immediate, keep carry): rD = rA + IMM."""
    assert fits_signed(imm16, 16)
    return mb_type_b(0b001100, rd, ra, imm16)


def mb_lwi(rd, ra, imm16):
    """lwi rD, rA, IMM -- opcode 111010 (Type B): rD = mem32[rA + sign-extend(IMM)]."""
    assert fits_signed(imm16, 16)
    return mb_type_b(0b111010, rd, ra, imm16)


def mb_lbu(rd, ra, rb):
    """lbu rD, rA, rB -- opcode 110000 (Type A, low 11 bits 0): rD = mem8[rA + rB],
    zero-extended."""
    return mb_type_a(0b110000, rd, ra, rb)


def mb_branch_imm(cond, ra, offset):
    """b<cond>i rA, IMM -- opcode 101111 (Type B); the rD field holds the condition:
    00000 eq, 00001 ne (bit 4, the delay-slot flag D, is 0: no delay slot). If rA <cond> 0,
    jump to this instruction's address + sign-extend(IMM)."""
    assert fits_signed(offset, 16)
    return mb_type_b(0b101111, cond, ra, offset)


def mb_beqi(ra, offset):
    """beqi rA, IMM -- branch if rA == 0."""
    return mb_branch_imm(0b00000, ra, offset)


def mb_bnei(ra, offset):
    """bnei rA, IMM -- branch if rA != 0."""
    return mb_branch_imm(0b00001, ra, offset)


def mb_brki(rd, imm16):
    """brki rD, IMM -- opcode 101110, rA field 01100: rD = PC, jump to IMM, kernel mode.
    `brki r14, 0x8` is the Linux system call."""
    return mb_type_b(0b101110, rd, 0b01100, imm16)


def microblaze(target, start):
    """At _start mem32[r1] = argc and mem32[r1 + 4] = argv[0] (r1 is the stack pointer; the
    kernel and QEMU set only r1). The syscall returns in r3, which is used only between
    two syscalls; r5-r7 and r12 are set again before each one."""
    msg = message(target)
    L = {}

    def w(f):                               # one instruction: 32 bits, big endian
        return lambda pc: struct.pack(">I", f(pc))

    program = [
        w(lambda pc: mb_addik(5, 0, 1)),                # addik r5, r0, 1    fd = stdout
        w(lambda pc: mb_imm(L["end"] >> 16)),           # imm   hi(msg)
        w(lambda pc: mb_addik(6, 0, L["end"] & 0xFFFF)),# addik r6, r0, lo(msg)  buf
        w(lambda pc: mb_addik(7, 0, len(msg))),         # addik r7, r0, len  count
        w(lambda pc: mb_addik(12, 0, 4)),               # addik r12, r0, 4   __NR_write
        w(lambda pc: mb_brki(14, 0x8)),                 # brki  r14, 0x8     system call
        w(lambda pc: mb_lwi(6, 1, 4)),                  # lwi   r6, r1, 4    buf = argv[0]
        w(lambda pc: mb_addik(7, 0, 0)),                # addik r7, r0, 0    count = 0
        w(lambda pc: mb_beqi(6, L["newline"] - pc)),    # beqi  r6, newline  argv[0] == NULL
        "strlen",
        w(lambda pc: mb_lbu(3, 6, 7)),                  # lbu   r3, r6, r7   argv[0][count]
        w(lambda pc: mb_addik(7, 7, 1)),                # addik r7, r7, 1    count++
        w(lambda pc: mb_bnei(3, L["strlen"] - pc)),     # bnei  r3, strlen
        w(lambda pc: mb_addik(7, 7, -1)),               # addik r7, r7, -1   count = strlen
        w(lambda pc: mb_addik(5, 0, 1)),                # addik r5, r0, 1    fd = stdout
        w(lambda pc: mb_addik(12, 0, 4)),               # addik r12, r0, 4   __NR_write
        w(lambda pc: mb_brki(14, 0x8)),                 # brki  r14, 0x8
        "newline",
        w(lambda pc: mb_addik(5, 0, 1)),                # addik r5, r0, 1    fd = stdout
        w(lambda pc: mb_imm((L["end"] + len(msg) - 1) >> 16)),
                                                        # imm   hi(msg + len - 1)
        w(lambda pc: mb_addik(6, 0, (L["end"] + len(msg) - 1) & 0xFFFF)),
                                                        # addik r6, r0, lo(...)  the "\n"
        w(lambda pc: mb_addik(7, 0, 1)),                # addik r7, r0, 1    count
        w(lambda pc: mb_addik(12, 0, 4)),               # addik r12, r0, 4   __NR_write
        w(lambda pc: mb_brki(14, 0x8)),                 # brki  r14, 0x8
        w(lambda pc: mb_addik(5, 0, 0)),                # addik r5, r0, 0    status
        w(lambda pc: mb_addik(12, 0, 1)),               # addik r12, r0, 1   __NR_exit
        w(lambda pc: mb_brki(14, 0x8)),                 # brki  r14, 0x8
    ]
    code = assemble(start, program, 4, L)   # the message follows the code, at L["end"]
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
#   BRI12 little endian: imm12 s m n op0     (imm12 = bits 23..12, m = 7..6, n = 5..4)
#         big endian:    op0 n m s imm12     (n = bits 19..18, m = 17..16, imm12 = 11..0)
#
# A little-endian core stores the word least significant byte first, a big-endian core most
# significant byte first; so the byte at the instruction's address always holds op0 (low
# nibble on LE, high nibble on BE), which is what the decoder needs to find the length.
# Multi-bit fields keep their own bit order (imm8/imm16/imm12 are not bit-reversed); the
# two 2-bit fields m and n that share the t nibble trade places too (checked with
# qemu-xtensaeb's disassembler: BEQZ, n = 01 m = 00, is op0 nibble 0110 then 0100 on BE).
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


def xt_bri12(big, op0, n, m, s, imm12):
    if big:
        return op0 << 20 | n << 18 | m << 16 | s << 12 | imm12
    return imm12 << 12 | s << 8 | m << 6 | n << 4 | op0


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


def xt_l32i(big, at, as_, offset):
    """L32I at, as, offset -- RRI8: op0 = 0010 (LSAI), r = 0010 (L32I), t = at, s = as,
    imm8 = offset >> 2. at = mem32[as + offset], offset 0..1020, a multiple of 4."""
    assert offset % 4 == 0 and 0 <= offset >> 2 < 256
    return xt_bytes(big, xt_rri8(big, 0b0010, 0b0010, as_, at, offset >> 2))


def xt_l8ui(big, at, as_, offset):
    """L8UI at, as, offset -- RRI8: op0 = 0010 (LSAI), r = 0000 (L8UI), t = at, s = as,
    imm8 = offset (0..255). at = zero-extend(mem8[as + offset])."""
    assert 0 <= offset < 256
    return xt_bytes(big, xt_rri8(big, 0b0010, 0b0000, as_, at, offset))


def xt_addi(big, at, as_, imm8):
    """ADDI at, as, imm8 -- RRI8: op0 = 0010 (LSAI), r = 1100 (ADDI), t = at, s = as,
    imm8 signed. at = as + sign-extend(imm8)."""
    assert fits_signed(imm8, 8)
    return xt_bytes(big, xt_rri8(big, 0b0010, 0b1100, as_, at, imm8 & 0xFF))


def xt_add(big, ar, as_, at):
    """ADD ar, as, at -- RRR: op0 = 0000 (QRST), op1 = 0000 (RST0), op2 = 1000 (ADD),
    r = ar, s = as, t = at. ar = as + at."""
    return xt_bytes(big, xt_rrr(big, 0b0000, 0b0000, 0b1000, ar, as_, at))


def xt_branch_zero(big, m, as_, pc, target):
    """BEQZ/BNEZ as, label -- BRI12: op0 = 0110 (SI), n = 01 (BZ), m = 00 (BEQZ) or
    01 (BNEZ), s = as, imm12 signed: the branch goes to pc + 4 + sign-extend(imm12)."""
    offset = target - (pc + 4)
    assert fits_signed(offset, 12)
    return xt_bytes(big, xt_bri12(big, 0b0110, 0b01, m, as_, offset & 0xFFF))


def xt_beqz(big, as_, pc, target):
    """BEQZ as, label: branch if as == 0."""
    return xt_branch_zero(big, 0b00, as_, pc, target)


def xt_bnez(big, as_, pc, target):
    """BNEZ as, label: branch if as != 0."""
    return xt_branch_zero(big, 0b01, as_, pc, target)


def xt_syscall(big):
    """SYSCALL -- RRR: op0 = 0000 (QRST), op1 = 0000 (RST0), op2 = 0000 (ST0),
    r = 0101 (SYSCALLx), s = 0000, t = 0000."""
    return xt_bytes(big, xt_rrr(big, 0, 0, 0, 0b0101, 0, 0))


def xtensa_body(target, start, big):
    """Literal pool (one word: the message address) | code | message.

    At _start mem32[a1] = argc and mem32[a1 + 4] = argv[0] (a1 is the stack pointer, as in
    glibc's xtensa start.S). syscall changes only a2, the number/result register."""
    msg = message(target)
    assert start % 4 == 0
    lit = start                             # literal: address of the message
    entry = start + 4                       # code starts right after it
    L = {}
    program = [
        lambda pc: xt_movi(big, 2, 13),             # movi a2, 13     __NR_write
        lambda pc: xt_movi(big, 6, 1),              # movi a6, 1      fd = stdout
        lambda pc: xt_l32r(big, 3, pc, lit),        # l32r a3, lit    buf
        lambda pc: xt_movi(big, 4, len(msg)),       # movi a4, len    count
        lambda pc: xt_syscall(big),                 # syscall
        lambda pc: xt_l32i(big, 3, 1, 4),           # l32i a3, a1, 4  buf = argv[0]
        lambda pc: xt_movi(big, 4, 0),              # movi a4, 0      count = 0
        lambda pc: xt_beqz(big, 3, pc, L["newline"]),
                                                    # beqz a3, newline  argv[0] == NULL
        "strlen",
        lambda pc: xt_add(big, 5, 3, 4),            # add a5, a3, a4
        lambda pc: xt_l8ui(big, 5, 5, 0),           # l8ui a5, a5, 0  argv[0][count]
        lambda pc: xt_addi(big, 4, 4, 1),           # addi a4, a4, 1  count++
        lambda pc: xt_bnez(big, 5, pc, L["strlen"]),
                                                    # bnez a5, strlen
        lambda pc: xt_addi(big, 4, 4, -1),          # addi a4, a4, -1 count = strlen
        lambda pc: xt_movi(big, 2, 13),             # movi a2, 13     __NR_write
        lambda pc: xt_movi(big, 6, 1),              # movi a6, 1      fd = stdout
        lambda pc: xt_syscall(big),                 # syscall
        "newline",
        lambda pc: xt_movi(big, 2, 13),             # movi a2, 13     __NR_write
        lambda pc: xt_movi(big, 6, 1),              # movi a6, 1      fd = stdout
        lambda pc: xt_l32r(big, 3, pc, lit),        # l32r a3, lit    msg ...
        lambda pc: xt_addi(big, 3, 3, len(msg) - 1),
                                                    # addi a3, a3, len-1  ... its "\n"
        lambda pc: xt_movi(big, 4, 1),              # movi a4, 1      count
        lambda pc: xt_syscall(big),                 # syscall
        lambda pc: xt_movi(big, 2, 118),            # movi a2, 118    __NR_exit
        lambda pc: xt_movi(big, 6, 0),              # movi a6, 0      status
        lambda pc: xt_syscall(big),                 # syscall
    ]
    code = assemble(entry, program, 3, L)   # the message follows the code, at L["end"]
    literal = L["end"].to_bytes(4, "big" if big else "little")
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
    (opcodes/loongarch-opc.c) and GNU objdump listings of LoongArch code, llvm-mc 14
    -arch=hexagon -show-encoding (which also assembles the whole hexagon program here to
    the same bytes), the MicroBlaze opcode table of GNU binutils (opcodes/microblaze-opc.h),
    xtensa-lx106-elf-as (the little-endian forms), and QEMU's own disassembler
    (qemu-<target>-static -d in_asm), which decodes every instruction of all four probes
    as intended."""
    # loongarch64: binutils/objdump
    assert la_ori(LA_A7, LA_ZERO, 93) == 0x0381740B
    assert la_pcaddi(9, 187) == 0x18001769
    assert la_syscall(0) == 0x002B0000
    assert la_ld_d(5, 3, 8) == 0x28C02065              # ld.d $r5, $r3, 8
    assert la_addi_d(6, 6, -1) == 0x02FFFCC6           # addi.d $r6, $r6, -1
    assert la_ldx_bu(15, 12, 15) == 0x38203D8F         # ldx.bu $r15, $r12, $r15
    assert la_beqz(13, 60) == 0x40003DA0               # beqz $r13, 60
    assert la_bnez(12, -80) == 0x47FFB19F              # bnez $r12, -80
    # hexagon: llvm-mc
    assert hex_tfrsi(3, -2) == 0x78DFFFC3
    assert hex_addipc(2, 63) == 0x6A49DF82
    assert hex_trap0(0x21) == 0x5400C404
    assert hex_memw(1, 29, 4) == 0x919DC021            # r1 = memw(r29+#4)
    assert hex_memub(3, 3, 0) == 0x9123C003            # r3 = memub(r3+#0)
    assert hex_add(3, 1, 2) == 0xF301C203              # r3 = add(r1,r2)
    assert hex_addi(2, 2, -1) == 0xBFE2FFE2            # r2 = add(r2,#-1)
    assert hex_addi(1, 16, 120) == 0xB010CF01          # r1 = add(r16,#120)
    assert hex_if_zero_jump_nt(1, 36) == 0x6181C012    # if (r1==#0) jump:nt .+36
    assert hex_if_nonzero_jump_t(3, -12) == 0x6123FFFA # if (r3!=#0) jump:t .-12
    # microblaze: binutils opcode table, QEMU disassembler
    assert mb_imm(0x40) == 0xB0000040
    assert mb_addik(12, 0, 4) == 0x31800004
    assert mb_brki(14, 0x8) == 0xB9CC0008
    assert mb_lwi(6, 1, 4) == 0xE8C10004               # lwi r6, r1, 4
    assert mb_lbu(3, 6, 7) == 0xC0663800               # lbu r3, r6, r7
    assert mb_beqi(6, 32) == 0xBC060020                # beqi r6, 32
    assert mb_bnei(3, -8) == 0xBC23FFF8                # bnei r3, -8
    # xtensa: little endian from xtensa-lx106-elf-as, big endian from qemu-xtensaeb
    assert xt_movi(False, 2, 118) == bytes.fromhex("22a076")
    assert xt_l32r(False, 3, 0x40000A, 0x400000) == bytes.fromhex("31fdff")
    assert xt_syscall(False) == bytes.fromhex("005000")
    assert xt_l32i(False, 3, 1, 4) == bytes.fromhex("322101")
    assert xt_l8ui(False, 5, 5, 0) == bytes.fromhex("520500")
    assert xt_addi(False, 4, 4, -1) == bytes.fromhex("42c4ff")
    assert xt_add(False, 5, 3, 4) == bytes.fromhex("405380")
    assert xt_beqz(False, 3, 0x12, 0x1A) == bytes.fromhex("164300")
    assert xt_bnez(False, 5, 0x15, 0x0) == bytes.fromhex("5675fe")
    assert xt_movi(True, 2, 118) == bytes.fromhex("220a76")
    assert xt_l32r(True, 3, 0x40000A, 0x400000) == bytes.fromhex("13fffd")
    assert xt_syscall(True) == bytes.fromhex("000500")
    assert xt_l32i(True, 3, 1, 4) == bytes.fromhex("231201")
    assert xt_l8ui(True, 5, 5, 0) == bytes.fromhex("255000")
    assert xt_addi(True, 4, 4, -1) == bytes.fromhex("244cff")
    assert xt_add(True, 5, 3, 4) == bytes.fromhex("043508")
    assert xt_beqz(True, 3, 0x40006D, 0x400088) == bytes.fromhex("643017")
    assert xt_bnez(True, 5, 0x400079, 0x400070) == bytes.fromhex("655ff3")


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


# The argv[0] values --verify runs each probe with (qemu's -0 sets the guest's argv[0]): a
# plain one, an empty one (second line empty) and one longer than 255 bytes.
VERIFY_ARGV0 = ["binfmtctl-verify-argv0", "", "/" + "x" * 299]


def expected_output(target, argv0):
    """What a probe must print: its first line, then its own argv[0] on a line."""
    return message(target) + argv0.encode() + b"\n"


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
    for argv0 in VERIFY_ARGV0:
        run = subprocess.run([emulator, "-0", argv0, path], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, timeout=30)
        want = expected_output(target, argv0)
        if run.stdout != want or run.returncode != 0:
            problems.append("%s -0 %r printed %r (stderr %r), exit status %d; wanted %r and 0"
                            % (emulator, argv0, run.stdout, run.stderr, run.returncode, want))
    if problems:
        print("BAD %s: %s" % (target, "; ".join(problems)), file=sys.stderr)
        return False
    print("ok %s: %s + argv[0] for %d argv[0]s (%d bytes; matches %s/%s.conf only)"
          % (target, message(target).decode().rstrip("\n"), len(VERIFY_ARGV0), len(image),
             BINFMT_D, own))
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
