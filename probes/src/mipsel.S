/* binfmtctl probe for mipsel (MIPS o32): write(1, msg, len); exit(0) via syscall, nr in $v0.
 * o32 syscall numbers: write = 4004, exit = 4001. No libc. */
	.text
	.set	noreorder
	.globl	_start
_start:
	bal	1f			/* $ra = address of 1: (pc-relative, no GOT) */
	li	$a0, 1			/* delay slot: fd = stdout */
1:	addiu	$a1, $ra, msg - 1b	/* buf */
	li	$a2, len		/* count */
	li	$v0, 4004		/* __NR_write */
	syscall
	li	$a0, 0			/* status = 0 */
	li	$v0, 4001		/* __NR_exit */
	syscall
msg:
	.ascii	"binfmtctl-probe mipsel\n"
	.equ	len, . - msg
