/* binfmtctl probe for x86_64: write(1, msg, len); write(1, argv[0], strlen(argv[0]));
 * write(1, "\n", 1); exit(0). No libc.
 * At _start (%rsp) = argc, 8(%rsp) = argv[0] (8-byte slots). syscall clobbers only
 * rax, rcx and r11, so rsi/rdx survive it. A NULL argv[0] (argc == 0) skips the middle
 * write: the second line is then empty. */
	.text
	.globl	_start
_start:
	movl	$1, %eax		/* __NR_write */
	movl	$1, %edi		/* fd = stdout */
	leaq	msg(%rip), %rsi		/* buf */
	movl	$len, %edx		/* count */
	syscall
	movq	8(%rsp), %rsi		/* buf = argv[0] */
	xorl	%edx, %edx		/* count = 0 */
	testq	%rsi, %rsi
	jz	2f			/* argv[0] == NULL: only the newline */
1:	cmpb	$0, (%rsi,%rdx)		/* count = strlen(argv[0]) */
	je	3f
	incq	%rdx
	jmp	1b
3:	movl	$1, %eax		/* __NR_write */
	movl	$1, %edi		/* fd = stdout */
	syscall
2:	movl	$1, %eax		/* __NR_write */
	movl	$1, %edi		/* fd = stdout */
	leaq	nl(%rip), %rsi		/* buf = the message's final "\n" */
	movl	$1, %edx		/* count */
	syscall
	movl	$60, %eax		/* __NR_exit */
	xorl	%edi, %edi		/* status = 0 */
	syscall
msg:
	.ascii	"binfmtctl-probe x86_64\n"
	.equ	len, . - msg
	.equ	nl, . - 1
