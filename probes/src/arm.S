/* binfmtctl probe for arm (EABI, ARM mode): write(1, msg, len); write(1, argv[0],
 * strlen(argv[0])); write(1, "\n", 1); exit(0) via svc #0, nr in r7. No libc.
 * At _start [sp] = argc, [sp, #4] = argv[0]. A NULL argv[0] (argc == 0) skips the middle
 * write: the second line is then empty. */
	.syntax	unified
	.arm
	.text
	.globl	_start
_start:
	mov	r0, #1			/* fd = stdout */
	adr	r1, msg			/* buf (pc-relative) */
	mov	r2, #len		/* count */
	mov	r7, #4			/* __NR_write */
	svc	#0
	ldr	r1, [sp, #4]		/* buf = argv[0] */
	mov	r2, #0			/* count = 0 */
	cmp	r1, #0
	beq	2f			/* argv[0] == NULL: only the newline */
1:	ldrb	r3, [r1, r2]		/* count = strlen(argv[0]) */
	cmp	r3, #0
	addne	r2, r2, #1
	bne	1b
	mov	r0, #1			/* fd = stdout */
	mov	r7, #4			/* __NR_write */
	svc	#0
2:	mov	r0, #1			/* fd = stdout */
	adr	r1, nl			/* buf = the message's final "\n" */
	mov	r2, #1			/* count */
	mov	r7, #4			/* __NR_write */
	svc	#0
	mov	r0, #0			/* status = 0 */
	mov	r7, #1			/* __NR_exit */
	svc	#0
msg:
	.ascii	"binfmtctl-probe arm\n"
	.equ	len, . - msg
	.equ	nl, . - 1
