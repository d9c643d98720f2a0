/* binfmtctl probe for sh4eb: write(1, msg, len); exit(0) via trapa, nr in r3. No libc. */
	.text
	.globl	_start
_start:
	mov	#4, r3			/* __NR_write */
	mov	#1, r4			/* fd = stdout */
	mova	msg, r0			/* buf (pc-relative, msg is 4-aligned) */
	mov	r0, r5
	mov	#len, r6		/* count */
	trapa	#0x13			/* syscall with 3 arguments */
	mov	#1, r3			/* __NR_exit */
	mov	#0, r4			/* status = 0 */
	trapa	#0x11			/* syscall with 1 argument */
	.balign	4
msg:
	.ascii	"binfmtctl-probe sh4eb\n"
	.equ	len, . - msg
