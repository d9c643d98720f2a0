/* binfmtctl probe for ppc64le (ELFv2 ABI): write(1, msg, len); exit(0) via sc, nr in r0.
 * ".abiversion 2" marks the ELF as ELFv2 (e_flags = 2): without it e_flags is 0, which
 * loaders read as ELFv1 and then take e_entry as a function descriptor. No libc. */
	.abiversion 2
	.text
	.globl	_start
_start:
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
	.ascii	"binfmtctl-probe ppc64le\n"
	.equ	len, . - msg
