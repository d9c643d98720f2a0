/* binfmtctl probe for riscv64: write(1, msg, len); write(1, argv[0], strlen(argv[0]));
 * write(1, "\n", 1); exit(0) via ecall, nr in a7. No libc.
 * At _start 0(sp) = argc, 8(sp) = argv[0] (8-byte slots). A NULL argv[0] (argc == 0)
 * skips the middle write: the second line is then empty.
 * The message comes first so that len is a known constant where "li" uses it. */
	.text
msg:
	.ascii	"binfmtctl-probe riscv64\n"
	.equ	len, . - msg
	.equ	nl, . - 1
	.balign	4
	.globl	_start
_start:
	li	a0, 1			/* fd = stdout */
	lla	a1, msg			/* buf (pc-relative) */
	li	a2, len			/* count */
	li	a7, 64			/* __NR_write */
	ecall
	ld	a1, 8(sp)		/* buf = argv[0] */
	li	a2, 0			/* count = 0 */
	beqz	a1, 2f			/* argv[0] == NULL: only the newline */
1:	add	t0, a1, a2		/* count = strlen(argv[0]) */
	lbu	t0, 0(t0)
	beqz	t0, 3f
	addi	a2, a2, 1
	j	1b
3:	li	a0, 1			/* fd = stdout */
	li	a7, 64			/* __NR_write */
	ecall
2:	li	a0, 1			/* fd = stdout */
	lla	a1, nl			/* buf = the message's final "\n" */
	li	a2, 1			/* count */
	li	a7, 64			/* __NR_write */
	ecall
	li	a0, 0			/* status = 0 */
	li	a7, 93			/* __NR_exit */
	ecall
