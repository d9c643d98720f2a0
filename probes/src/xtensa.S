/* binfmtctl probe for xtensa (little endian): write(1, msg, len); write(1, argv[0],
 * strlen(argv[0])); write(1, "\n", 1); exit(0) via syscall.
 * Linux/xtensa ABI: nr in a2, arguments in a6, a3, a4. write = 13, exit = 118. No libc.
 * At _start 0(a1) = argc, 4(a1) = argv[0] (a1 is the stack pointer). A NULL argv[0]
 * (argc == 0) skips the middle write: the second line is then empty.
 * The message comes first so that len is a known constant where movi/addi use it. */
	.text
msg:
	.ascii	"binfmtctl-probe xtensa\n"
	.equ	len, . - msg
	.literal_position
	.globl	_start
	.align	4
_start:
	movi	a2, 13			/* __NR_write */
	movi	a6, 1			/* fd = stdout */
	movi	a3, msg			/* buf (assembled as l32r from the literal pool above) */
	movi	a4, len			/* count */
	syscall
	l32i	a3, a1, 4		/* buf = argv[0] */
	movi	a4, 0			/* count = 0 */
	beqz	a3, 2f			/* argv[0] == NULL: only the newline */
1:	add	a5, a3, a4		/* count = strlen(argv[0]) */
	l8ui	a5, a5, 0
	addi	a4, a4, 1		/* count++ (one too many at the end) */
	bnez	a5, 1b
	addi	a4, a4, -1
	movi	a2, 13			/* __NR_write */
	movi	a6, 1			/* fd = stdout */
	syscall
2:	movi	a2, 13			/* __NR_write */
	movi	a6, 1			/* fd = stdout */
	movi	a3, msg			/* buf = the message's final "\n" */
	addi	a3, a3, len - 1
	movi	a4, 1			/* count */
	syscall
	movi	a2, 118			/* __NR_exit */
	movi	a6, 0			/* status = 0 */
	syscall
