/* binfmtctl probe for armeb (EABI, ARM mode): write(1, msg, len); exit(0) via svc #0, nr in r7. No libc. */
	.syntax	unified
	.arm
	.text
	.globl	_start
_start:
	mov	r0, #1			/* fd = stdout */
	adr	r1, msg			/* buf (pc-relative) */
	mov	r2, #len		/* count */
	mov	r7, #4			/* __NR_write */
	svc	#0
	mov	r0, #0			/* status = 0 */
	mov	r7, #1			/* __NR_exit */
	svc	#0
msg:
	.ascii	"binfmtctl-probe armeb\n"
	.equ	len, . - msg
