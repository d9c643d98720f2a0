/* binfmtctl probe for sparc32plus (32-bit SPARC ABI on a V9 CPU, "v8plus"): write(1, msg, len);
 * exit(0) via ta 0x10, nr in %g1. No libc.
 * "rd %pc" is a V9-only instruction: gas marks the object v8plus (e_machine EM_SPARC32PLUS = 18)
 * only when such an instruction is actually used; with -Av8plus alone it stays EM_SPARC. */
	.text
	.globl	_start
_start:
	mov	1, %o0			/* fd = stdout */
1:	rd	%pc, %o1		/* buf (pc-relative, V9) */
	add	%o1, msg - 1b, %o1
	mov	len, %o2		/* count */
	mov	4, %g1			/* __NR_write */
	ta	0x10
	mov	0, %o0			/* status = 0 */
	mov	1, %g1			/* __NR_exit */
	ta	0x10
msg:
	.ascii	"binfmtctl-probe sparc32plus\n"
	.equ	len, . - msg
