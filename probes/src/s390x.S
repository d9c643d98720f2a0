/* binfmtctl probe for s390x: write(1, msg, len); exit(0) via svc <nr>. No libc. */
	.text
	.globl	_start
_start:
	lghi	%r2, 1			/* fd = stdout */
	larl	%r3, msg		/* buf (pc-relative) */
	lghi	%r4, len		/* count */
	svc	4			/* __NR_write */
	lghi	%r2, 0			/* status = 0 */
	svc	1			/* __NR_exit */
msg:
	.ascii	"binfmtctl-probe s390x\n"
	.equ	len, . - msg
