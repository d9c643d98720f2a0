/* binfmtctl probe for xtensa (little endian): write(1, msg, len); exit(0) via syscall.
 * Linux/xtensa ABI: nr in a2, arguments in a6, a3, a4. write = 13, exit = 118. No libc. */
	.text
	.literal_position
	.globl	_start
	.align	4
_start:
	movi	a2, 13			/* __NR_write */
	movi	a6, 1			/* fd = stdout */
	movi	a3, msg			/* buf (assembled as l32r from the literal pool above) */
	movi	a4, len			/* count */
	syscall
	movi	a2, 118			/* __NR_exit */
	movi	a6, 0			/* status = 0 */
	syscall
msg:
	.ascii	"binfmtctl-probe xtensa\n"
	.equ	len, . - msg
