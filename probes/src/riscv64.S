/* binfmtctl probe for riscv64: write(1, msg, len); exit(0) via ecall, nr in a7. No libc.
 * The message comes first so that len is a known constant where "li" uses it. */
	.text
msg:
	.ascii	"binfmtctl-probe riscv64\n"
	.equ	len, . - msg
	.balign	4
	.globl	_start
_start:
	li	a0, 1			/* fd = stdout */
	lla	a1, msg			/* buf (pc-relative) */
	li	a2, len			/* count */
	li	a7, 64			/* __NR_write */
	ecall
	li	a0, 0			/* status = 0 */
	li	a7, 93			/* __NR_exit */
	ecall
