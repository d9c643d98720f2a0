/* binfmtctl probe for sparc64: write(1, msg, len); exit(0) via ta 0x6d, nr in %g1. No libc. */
	.text
	.globl	_start
_start:
	mov	1, %o0			/* fd = stdout */
	sethi	%hi(msg), %o1		/* buf (absolute; the image is linked below 4 GiB) */
	or	%o1, %lo(msg), %o1
	mov	len, %o2		/* count */
	mov	4, %g1			/* __NR_write */
	ta	0x6d
	mov	0, %o0			/* status = 0 */
	mov	1, %g1			/* __NR_exit */
	ta	0x6d
msg:
	.ascii	"binfmtctl-probe sparc64\n"
	.equ	len, . - msg
