/* binfmtctl probe for ppc64 (big endian, ELFv1 ABI): write(1, msg, len);
 * write(1, argv[0], strlen(argv[0])); write(1, "\n", 1); exit(0) via sc, nr in r0.
 * Under ELFv1 the loader (kernel and QEMU alike) treats e_entry as the address of a
 * function descriptor { code address, TOC, env }, so _start is a descriptor that points
 * at the real code (.L.start). It lives in .text: the loader only reads it. No libc.
 * At _start 0(r1) = argc, 8(r1) = argv[0] (8-byte slots; r1 is the stack pointer).
 * sc may change r0 and r3-r12, so the base address is kept in the non-volatile r30.
 * A NULL argv[0] (argc == 0) skips the middle write: the second line is then empty. */
	.text
	.globl	_start
	.balign	8
_start:
	.quad	.L.start, 0, 0		/* entry, TOC (unused), environment (unused) */
.L.start:
	bcl	20, 31, 1f		/* lr = address of 1: */
1:	mflr	30			/* r30 = address of 1: (kept across sc) */
	addi	4, 30, msg - 1b		/* buf (pc-relative) */
	li	3, 1			/* fd = stdout */
	li	5, len			/* count */
	li	0, 4			/* __NR_write */
	sc
	ld	4, 8(1)			/* buf = argv[0] */
	li	5, 0			/* count = 0 */
	cmpdi	4, 0
	beq	2f			/* argv[0] == NULL: only the newline */
3:	lbzx	6, 4, 5			/* count = strlen(argv[0]) */
	cmpwi	6, 0
	beq	4f
	addi	5, 5, 1
	b	3b
4:	li	3, 1			/* fd = stdout */
	li	0, 4			/* __NR_write */
	sc
2:	addi	4, 30, nl - 1b		/* buf = the message's final "\n" */
	li	3, 1			/* fd = stdout */
	li	5, 1			/* count */
	li	0, 4			/* __NR_write */
	sc
	li	3, 0			/* status = 0 */
	li	0, 1			/* __NR_exit */
	sc
msg:
	.ascii	"binfmtctl-probe ppc64\n"
	.equ	len, . - msg
	.equ	nl, . - 1
