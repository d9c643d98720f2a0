/* binfmtctl probe for alpha: write(1, msg, len); exit(0) via callsys, nr in $0 (v0). No libc.
 * The message comes first so that len is a known constant where it is used (a forward
 * reference would make gas load it from the GOT). */
	.text
	.set	noreorder
	.set	noat
msg:
	.ascii	"binfmtctl-probe alpha\n"
	.equ	len, . - msg
	.balign	4
	.globl	_start
_start:
	br	$17, 1f			/* $17 (a1) = address of 1: (pc-relative) */
1:	lda	$17, msg - 1b($17)	/* buf */
	lda	$16, 1($31)		/* fd = stdout */
	lda	$18, len($31)		/* count */
	lda	$0, 4($31)		/* __NR_write */
	callsys
	mov	$31, $16		/* status = 0 */
	lda	$0, 1($31)		/* __NR_exit */
	callsys
