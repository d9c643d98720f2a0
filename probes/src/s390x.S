/* binfmtctl probe for s390x: write(1, msg, len); write(1, argv[0], strlen(argv[0]));
 * write(1, "\n", 1); exit(0) via svc <nr>. No libc.
 * At _start 0(%r15) = argc, 8(%r15) = argv[0] (8-byte slots; %r15 is the stack pointer).
 * svc changes only %r2, so %r3/%r4 survive it. A NULL argv[0] (argc == 0) skips the
 * middle write: the second line is then empty. */
	.text
	.globl	_start
_start:
	lghi	%r2, 1			/* fd = stdout */
	larl	%r3, msg		/* buf (pc-relative) */
	lghi	%r4, len		/* count */
	svc	4			/* __NR_write */
	lg	%r3, 8(%r15)		/* buf = argv[0] */
	lghi	%r4, 0			/* count = 0 */
	ltgr	%r3, %r3
	jz	2f			/* argv[0] == NULL: only the newline */
1:	la	%r1, 0(%r4,%r3)		/* count = strlen(argv[0]) */
	cli	0(%r1), 0
	je	3f
	aghi	%r4, 1
	j	1b
3:	lghi	%r2, 1			/* fd = stdout */
	svc	4			/* __NR_write */
2:	lghi	%r2, 1			/* fd = stdout */
	larl	%r3, msg		/* buf = the message's final "\n" (larl needs an */
	la	%r3, len - 1(%r3)	/* even target, so msg + len - 1) */
	lghi	%r4, 1			/* count */
	svc	4			/* __NR_write */
	lghi	%r2, 0			/* status = 0 */
	svc	1			/* __NR_exit */
msg:
	.ascii	"binfmtctl-probe s390x\n"
	.equ	len, . - msg
