/* binfmtctl probe for alpha: write(1, msg, len); write(1, argv[0], strlen(argv[0]));
 * write(1, "\n", 1); exit(0) via callsys, nr in $0 (v0). No libc.
 * At _start 0($30) = argc, 8($30) = argv[0] (8-byte slots; $30 is the stack pointer).
 * callsys may change $0, $19 and the temporaries, so the base address is kept in the
 * callee-saved $9 (s0). Bytes are read with ldq_u + extbl (no BWX extension needed).
 * A NULL argv[0] (argc == 0) skips the middle write: the second line is then empty.
 * The message comes first so that len is a known constant where it is used (a forward
 * reference would make gas load it from the GOT). */
	.text
	.set	noreorder
	.set	noat
msg:
	.ascii	"binfmtctl-probe alpha\n"
	.equ	len, . - msg
	.equ	nl, . - 1
	.balign	4
	.globl	_start
_start:
	br	$9, 1f			/* $9 (s0) = address of 1: (pc-relative) */
1:	lda	$17, msg - 1b($9)	/* buf */
	lda	$16, 1($31)		/* fd = stdout */
	lda	$18, len($31)		/* count */
	lda	$0, 4($31)		/* __NR_write */
	callsys
	ldq	$17, 8($30)		/* buf = argv[0] */
	mov	$31, $18		/* count = 0 */
	beq	$17, 2f			/* argv[0] == NULL: only the newline */
3:	addq	$17, $18, $1		/* count = strlen(argv[0]) */
	ldq_u	$2, 0($1)		/* the aligned quadword holding the byte ... */
	extbl	$2, $1, $2		/* ... and the byte itself */
	beq	$2, 4f
	addq	$18, 1, $18
	br	$31, 3b
4:	lda	$16, 1($31)		/* fd = stdout */
	lda	$0, 4($31)		/* __NR_write */
	callsys
2:	lda	$16, 1($31)		/* fd = stdout */
	lda	$17, nl - 1b($9)	/* buf = the message's final "\n" */
	lda	$18, 1($31)		/* count */
	lda	$0, 4($31)		/* __NR_write */
	callsys
	mov	$31, $16		/* status = 0 */
	lda	$0, 1($31)		/* __NR_exit */
	callsys
