/* binfmtctl probe for mips64el (MIPS n64): write(1, msg, len); exit(0) via syscall, nr in $v0.
 * n64 syscall numbers: write = 5001, exit = 5058. No libc. */
	.text
	.set	noreorder
	.globl	_start
_start:
	bal	1f			/* $ra = address of 1: (pc-relative, no GOT) */
	li	$a0, 1			/* delay slot: fd = stdout */
1:	daddiu	$a1, $ra, msg - 1b	/* buf (64-bit add: the image is linked above 4 GiB) */
	li	$a2, len		/* count */
	li	$v0, 5001		/* __NR_write */
	syscall
	li	$a0, 0			/* status = 0 */
	li	$v0, 5058		/* __NR_exit */
	syscall
msg:
	.ascii	"binfmtctl-probe mips64el\n"
	.equ	len, . - msg
