/* binfmtctl probe for aarch64: write(1, msg, len); exit(0) via svc #0, nr in x8. No libc. */
	.text
	.globl	_start
_start:
	mov	x0, #1			/* fd = stdout */
	adr	x1, msg			/* buf (pc-relative) */
	mov	x2, #len		/* count */
	mov	x8, #64			/* __NR_write */
	svc	#0
	mov	x0, #0			/* status = 0 */
	mov	x8, #93			/* __NR_exit */
	svc	#0
msg:
	.ascii	"binfmtctl-probe aarch64\n"
	.equ	len, . - msg
