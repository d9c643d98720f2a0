/* binfmtctl probe for aarch64: write(1, msg, len); write(1, argv[0], strlen(argv[0]));
 * write(1, "\n", 1); exit(0) via svc #0, nr in x8. No libc.
 * At _start [sp] = argc, [sp, #8] = argv[0] (8-byte slots). A NULL argv[0] (argc == 0)
 * skips the middle write: the second line is then empty. */
	.text
	.globl	_start
_start:
	mov	x0, #1			/* fd = stdout */
	adr	x1, msg			/* buf (pc-relative) */
	mov	x2, #len		/* count */
	mov	x8, #64			/* __NR_write */
	svc	#0
	ldr	x1, [sp, #8]		/* buf = argv[0] */
	mov	x2, #0			/* count = 0 */
	cbz	x1, 2f			/* argv[0] == NULL: only the newline */
1:	ldrb	w3, [x1, x2]		/* count = strlen(argv[0]) */
	cbz	w3, 3f
	add	x2, x2, #1
	b	1b
3:	mov	x0, #1			/* fd = stdout */
	mov	x8, #64			/* __NR_write */
	svc	#0
2:	mov	x0, #1			/* fd = stdout */
	adr	x1, nl			/* buf = the message's final "\n" */
	mov	x2, #1			/* count */
	mov	x8, #64			/* __NR_write */
	svc	#0
	mov	x0, #0			/* status = 0 */
	mov	x8, #93			/* __NR_exit */
	svc	#0
msg:
	.ascii	"binfmtctl-probe aarch64\n"
	.equ	len, . - msg
	.equ	nl, . - 1
