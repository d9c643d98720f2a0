/* binfmtctl probe for sparc32plus (32-bit SPARC ABI on a V9 CPU, "v8plus"): write(1, msg, len);
 * write(1, argv[0], strlen(argv[0])); write(1, "\n", 1); exit(0) via ta 0x10, nr in %g1.
 * No libc.
 * "rd %pc" is a V9-only instruction: gas marks the object v8plus (e_machine EM_SPARC32PLUS = 18)
 * only when such an instruction is actually used; with -Av8plus alone it stays EM_SPARC.
 * At _start the 16-word register-window save area is at [%sp], so [%sp + 64] = argc and
 * [%sp + 68] = argv[0] (32-bit ABI: 4-byte slots, no stack bias). A NULL argv[0]
 * (argc == 0) skips the middle write: the second line is then empty. Branch delay slots
 * are filled by hand. */
	.text
	.globl	_start
_start:
	mov	1, %o0			/* fd = stdout */
1:	rd	%pc, %o1		/* buf (pc-relative, V9) */
	add	%o1, msg - 1b, %o1
	mov	len, %o2		/* count */
	mov	4, %g1			/* __NR_write */
	ta	0x10
	ld	[%sp + 68], %o1		/* buf = argv[0] */
	cmp	%o1, 0
	be	2f			/* argv[0] == NULL: only the newline */
	 clr	%o2			/* delay slot: count = 0 */
3:	ldub	[%o1 + %o2], %o3	/* count = strlen(argv[0]) */
	cmp	%o3, 0
	bne,a	3b
	 add	%o2, 1, %o2		/* delay slot, annulled when the branch is not taken */
	mov	1, %o0			/* fd = stdout */
	mov	4, %g1			/* __NR_write */
	ta	0x10
2:	mov	1, %o0			/* fd = stdout */
4:	rd	%pc, %o1		/* buf = the message's final "\n" */
	add	%o1, nl - 4b, %o1
	mov	1, %o2			/* count */
	mov	4, %g1			/* __NR_write */
	ta	0x10
	mov	0, %o0			/* status = 0 */
	mov	1, %g1			/* __NR_exit */
	ta	0x10
msg:
	.ascii	"binfmtctl-probe sparc32plus\n"
	.equ	len, . - msg
	.equ	nl, . - 1
