/* binfmtctl probe for i386: write(1, msg, len); exit(0) via int $0x80. No libc. */
	.text
	.globl	_start
_start:
	movl	$4, %eax		/* __NR_write */
	movl	$1, %ebx		/* fd = stdout */
	movl	$msg, %ecx		/* buf */
	movl	$len, %edx		/* count */
	int	$0x80
	movl	$1, %eax		/* __NR_exit */
	xorl	%ebx, %ebx		/* status = 0 */
	int	$0x80
msg:
	.ascii	"binfmtctl-probe i386\n"
	.equ	len, . - msg
