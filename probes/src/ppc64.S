/* binfmtctl probe for ppc64 (big endian, ELFv1 ABI): write(1, msg, len); exit(0) via sc.
 * Under ELFv1 the loader (kernel and QEMU alike) treats e_entry as the address of a
 * function descriptor { code address, TOC, env }, so _start is a descriptor that points
 * at the real code (.L.start). It lives in .text: the loader only reads it. No libc. */
	.text
	.globl	_start
	.balign	8
_start:
	.quad	.L.start, 0, 0		/* entry, TOC (unused), environment (unused) */
.L.start:
	bcl	20, 31, 1f		/* lr = address of 1: */
1:	mflr	4
	addi	4, 4, msg - 1b		/* buf (pc-relative) */
	li	3, 1			/* fd = stdout */
	li	5, len			/* count */
	li	0, 4			/* __NR_write */
	sc
	li	3, 0			/* status = 0 */
	li	0, 1			/* __NR_exit */
	sc
msg:
	.ascii	"binfmtctl-probe ppc64\n"
	.equ	len, . - msg
