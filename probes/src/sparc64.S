/* binfmtctl probe for sparc64: write(1, msg, len); write(1, argv[0], strlen(argv[0]));
 * write(1, "\n", 1); exit(0) via ta 0x6d, nr in %g1. No libc.
 * At _start %sp is biased by 2047 and the 16-doubleword register-window save area comes
 * first, so [%sp + 2047 + 128] = argc and [%sp + 2047 + 136] = argv[0]. brz/brnz test
 * the whole 64-bit register. A NULL argv[0] (argc == 0) skips the middle write: the
 * second line is then empty. Branch delay slots are filled by hand. */
	.text
	.globl	_start
_start:
	mov	1, %o0			/* fd = stdout */
	sethi	%hi(msg), %o1		/* buf (absolute; the image is linked below 4 GiB) */
	or	%o1, %lo(msg), %o1
	mov	len, %o2		/* count */
	mov	4, %g1			/* __NR_write */
	ta	0x6d
	ldx	[%sp + 2047 + 136], %o1	/* buf = argv[0] */
	brz,pn	%o1, 2f			/* argv[0] == NULL: only the newline */
	 clr	%o2			/* delay slot: count = 0 */
1:	ldub	[%o1 + %o2], %o3	/* count = strlen(argv[0]) */
	brnz,a,pt %o3, 1b
	 add	%o2, 1, %o2		/* delay slot, annulled when the branch is not taken */
	mov	1, %o0			/* fd = stdout */
	mov	4, %g1			/* __NR_write */
	ta	0x6d
2:	mov	1, %o0			/* fd = stdout */
	sethi	%hi(nl), %o1		/* buf = the message's final "\n" */
	or	%o1, %lo(nl), %o1
	mov	1, %o2			/* count */
	mov	4, %g1			/* __NR_write */
	ta	0x6d
	mov	0, %o0			/* status = 0 */
	mov	1, %g1			/* __NR_exit */
	ta	0x6d
msg:
	.ascii	"binfmtctl-probe sparc64\n"
	.equ	len, . - msg
	.equ	nl, . - 1
