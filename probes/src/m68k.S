/* binfmtctl probe for m68k: write(1, msg, len); write(1, argv[0], strlen(argv[0]));
 * write(1, "\n", 1); exit(0) via trap #0, nr in %d0. No libc.
 * At _start (%sp) = argc, 4(%sp) = argv[0]. A NULL argv[0] (argc == 0) skips the middle
 * write: the second line is then empty. */
	.text
	.globl	_start
_start:
	moveq	#4, %d0			/* __NR_write */
	moveq	#1, %d1			/* fd = stdout */
	lea	msg(%pc), %a0		/* buf (pc-relative) */
	move.l	%a0, %d2
	moveq	#len, %d3		/* count */
	trap	#0
	move.l	4(%sp), %d2		/* buf = argv[0] (move to a data register sets Z) */
	beq.s	2f			/* argv[0] == NULL: only the newline */
	move.l	%d2, %a0
1:	tst.b	(%a0)+			/* count = strlen(argv[0]) */
	bne.s	1b
	move.l	%a0, %d3
	sub.l	%d2, %d3		/* one past the NUL ... */
	subq.l	#1, %d3			/* ... minus one */
	moveq	#4, %d0			/* __NR_write */
	moveq	#1, %d1			/* fd = stdout */
	trap	#0
2:	moveq	#4, %d0			/* __NR_write */
	moveq	#1, %d1			/* fd = stdout */
	lea	nl(%pc), %a0		/* buf = the message's final "\n" */
	move.l	%a0, %d2
	moveq	#1, %d3			/* count */
	trap	#0
	moveq	#1, %d0			/* __NR_exit */
	moveq	#0, %d1			/* status = 0 */
	trap	#0
msg:
	.ascii	"binfmtctl-probe m68k\n"
	.equ	len, . - msg
	.equ	nl, . - 1
