/* binfmtctl probe for mips64 (MIPS n64): write(1, msg, len); write(1, argv[0],
 * strlen(argv[0])); write(1, "\n", 1); exit(0) via syscall, nr in $v0.
 * n64 syscall numbers: write = 5001, exit = 5058. No libc.
 * At _start 0($sp) = argc, 8($sp) = argv[0] (8-byte slots). The base address is kept in
 * $s0, which syscall preserves. A NULL argv[0] (argc == 0) skips the middle write: the
 * second line is then empty. Branch and load delay slots are filled by hand (noreorder;
 * the o32 objects are marked MIPS I, whose loads have a delay slot). */
	.text
	.set	noreorder
	.globl	_start
_start:
	bal	1f			/* $ra = address of 1: (pc-relative, no GOT) */
	li	$a0, 1			/* delay slot: fd = stdout */
1:	move	$s0, $ra		/* $s0 = address of 1: (kept across syscall) */
	daddiu	$a1, $s0, msg - 1b	/* buf (64-bit add: the image is linked above 4 GiB) */
	li	$a2, len		/* count */
	li	$v0, 5001		/* __NR_write */
	syscall
	ld	$a1, 8($sp)		/* buf = argv[0] */
	move	$a2, $zero		/* load delay slot: count = 0 */
	beqz	$a1, 2f			/* argv[0] == NULL: only the newline */
	move	$t1, $a1		/* delay slot: $t1 = address of argv[0][0] */
3:	lbu	$t0, 0($t1)		/* count = strlen(argv[0]) */
	addiu	$a2, $a2, 1		/* load delay slot: count++ (one too many at the end) */
	bnez	$t0, 3b
	daddu	$t1, $a1, $a2		/* delay slot: $t1 = address of argv[0][count] */
	addiu	$a2, $a2, -1
	li	$a0, 1			/* fd = stdout */
	li	$v0, 5001		/* __NR_write */
	syscall
2:	li	$a0, 1			/* fd = stdout */
	daddiu	$a1, $s0, nl - 1b	/* buf = the message's final "\n" */
	li	$a2, 1			/* count */
	li	$v0, 5001		/* __NR_write */
	syscall
	li	$a0, 0			/* status = 0 */
	li	$v0, 5058		/* __NR_exit */
	syscall
msg:
	.ascii	"binfmtctl-probe mips64\n"
	.equ	len, . - msg
	.equ	nl, . - 1
