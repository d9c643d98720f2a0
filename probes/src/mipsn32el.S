/* binfmtctl probe for mipsn32el (MIPS n32): write(1, msg, len); exit(0) via syscall, nr in $v0.
 * n32 syscall numbers: write = 6001, exit = 6058. No libc. */
	.text
	.set	noreorder
	.globl	_start
_start:
	bal	1f			/* $ra = address of 1: (pc-relative, no GOT) */
	li	$a0, 1			/* delay slot: fd = stdout */
1:	addiu	$a1, $ra, msg - 1b	/* buf */
	li	$a2, len		/* count */
	li	$v0, 6001		/* __NR_write */
	syscall
	li	$a0, 0			/* status = 0 */
	li	$v0, 6058		/* __NR_exit */
	syscall
msg:
	.ascii	"binfmtctl-probe mipsn32el\n"
	.equ	len, . - msg
