/* binfmtctl probe for sh4: write(1, msg, len); write(1, argv[0], strlen(argv[0]));
 * write(1, "\n", 1); exit(0) via trapa, nr in r3. No libc.
 * At _start @r15 = argc, @(4,r15) = argv[0] (r15 is the stack pointer). A NULL argv[0]
 * (argc == 0) skips the middle write: the second line is then empty. */
	.text
	.globl	_start
_start:
	mov	#4, r3			/* __NR_write */
	mov	#1, r4			/* fd = stdout */
	mova	msg, r0			/* buf (pc-relative, msg is 4-aligned) */
	mov	r0, r5
	mov	#len, r6		/* count */
	trapa	#0x13			/* syscall with 3 arguments */
	mov.l	@(4,r15), r5		/* buf = argv[0] */
	tst	r5, r5
	bt	2f			/* argv[0] == NULL: only the newline */
	mov	r5, r1
1:	mov.b	@r1+, r2		/* count = strlen(argv[0]) */
	tst	r2, r2
	bf	1b
	mov	r1, r6
	sub	r5, r6			/* one past the NUL ... */
	add	#-1, r6			/* ... minus one */
	mov	#4, r3			/* __NR_write */
	mov	#1, r4			/* fd = stdout */
	trapa	#0x13
2:	mov	#4, r3			/* __NR_write */
	mov	#1, r4			/* fd = stdout */
	mova	msg, r0			/* buf = the message's final "\n" (mova needs */
	add	#len - 1, r0		/* a 4-aligned target, so msg + len - 1) */
	mov	r0, r5
	mov	#1, r6			/* count */
	trapa	#0x13
	mov	#1, r3			/* __NR_exit */
	mov	#0, r4			/* status = 0 */
	trapa	#0x11			/* syscall with 1 argument */
	.balign	4
msg:
	.ascii	"binfmtctl-probe sh4\n"
	.equ	len, . - msg
