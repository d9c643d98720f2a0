/* binfmtctl probe for ppc64le (ELFv2 ABI): write(1, msg, len); write(1, argv[0],
 * strlen(argv[0])); write(1, "\n", 1); exit(0) via sc, nr in r0.
 * ".abiversion 2" marks the ELF as ELFv2 (e_flags = 2): without it e_flags is 0, which
 * loaders read as ELFv1 and then take e_entry as a function descriptor. No libc.
 * At _start 0(r1) = argc, 8(r1) = argv[0] (8-byte slots; r1 is the stack pointer).
 * sc may change r0 and r3-r12, so the base address is kept in the non-volatile r30.
 * A NULL argv[0] (argc == 0) skips the middle write: the second line is then empty. */
	.abiversion 2
	.text
	.globl	_start
_start:
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
	.ascii	"binfmtctl-probe ppc64le\n"
	.equ	len, . - msg
	.equ	nl, . - 1
