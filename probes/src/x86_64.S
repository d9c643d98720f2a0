/* binfmtctl probe for x86_64: write(1, msg, len); exit(0). No libc. */
	.text
	.globl	_start
_start:
	movl	$1, %eax		/* __NR_write */
	movl	$1, %edi		/* fd = stdout */
	leaq	msg(%rip), %rsi		/* buf */
	movl	$len, %edx		/* count */
	syscall
	movl	$60, %eax		/* __NR_exit */
	xorl	%edi, %edi		/* status = 0 */
	syscall
msg:
	.ascii	"binfmtctl-probe x86_64\n"
	.equ	len, . - msg
