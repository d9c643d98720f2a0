/* binfmtctl probe for i386: write(1, msg, len); write(1, argv[0], strlen(argv[0]));
 * write(1, "\n", 1); exit(0) via int $0x80. No libc.
 * At _start (%esp) = argc, 4(%esp) = argv[0]. int $0x80 changes only eax, so ecx/edx
 * survive it. A NULL argv[0] (argc == 0) skips the middle write: the second line is then
 * empty. */
	.text
	.globl	_start
_start:
	movl	$4, %eax		/* __NR_write */
	movl	$1, %ebx		/* fd = stdout */
	movl	$msg, %ecx		/* buf */
	movl	$len, %edx		/* count */
	int	$0x80
	movl	4(%esp), %ecx		/* buf = argv[0] */
	xorl	%edx, %edx		/* count = 0 */
	testl	%ecx, %ecx
	jz	2f			/* argv[0] == NULL: only the newline */
1:	cmpb	$0, (%ecx,%edx)		/* count = strlen(argv[0]) */
	je	3f
	incl	%edx
	jmp	1b
3:	movl	$4, %eax		/* __NR_write */
	movl	$1, %ebx		/* fd = stdout */
	int	$0x80
2:	movl	$4, %eax		/* __NR_write */
	movl	$1, %ebx		/* fd = stdout */
	movl	$nl, %ecx		/* buf = the message's final "\n" */
	movl	$1, %edx		/* count */
	int	$0x80
	movl	$1, %eax		/* __NR_exit */
	xorl	%ebx, %ebx		/* status = 0 */
	int	$0x80
msg:
	.ascii	"binfmtctl-probe i386\n"
	.equ	len, . - msg
	.equ	nl, . - 1
