/* binfmtctl probe for m68k: write(1, msg, len); exit(0) via trap #0, nr in %d0. No libc. */
	.text
	.globl	_start
_start:
	moveq	#4, %d0			/* __NR_write */
	moveq	#1, %d1			/* fd = stdout */
	lea	msg(%pc), %a0		/* buf (pc-relative) */
	move.l	%a0, %d2
	moveq	#len, %d3		/* count */
	trap	#0
	moveq	#1, %d0			/* __NR_exit */
	moveq	#0, %d1			/* status = 0 */
	trap	#0
msg:
	.ascii	"binfmtctl-probe m68k\n"
	.equ	len, . - msg
