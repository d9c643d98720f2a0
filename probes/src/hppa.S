/* binfmtctl probe for hppa: write(1, msg, len); write(1, argv[0], strlen(argv[0]));
 * write(1, "\n", 1); exit(0) via the gateway page (ble 0x100(%sr2, %r0)), nr in %r20 (set
 * in the branch delay slot). No libc.
 * The hppa stack grows upwards and argc/argv are not found from %sp: at _start the kernel
 * (and QEMU) pass argc in %r25 and argv in %r24, as glibc's start.S documents. %r24 is
 * copied to the callee-saved %r3, which the system calls keep. A NULL argv[0]
 * (argc == 0) skips the middle write: the second line is then empty.
 * The message comes first so that len is a known constant where "ldi" uses it. */
	.text
msg:
	.ascii	"binfmtctl-probe hppa\n"
	.set	len, . - msg
	.set	nl, . - 1
	.balign	4
	.globl	_start
_start:
	copy	%r24, %r3		/* %r3 = argv */
	ldi	1, %r26			/* fd = stdout */
	ldil	L%msg, %r25		/* buf (absolute) */
	ldo	R%msg(%r25), %r25
	ldi	len, %r24		/* count */
	ble	0x100(%sr2, %r0)
	ldi	4, %r20			/* delay slot: __NR_write */
	ldw	0(%r3), %r25		/* buf = argv[0] */
	cmpib,=	0, %r25, 2f		/* argv[0] == NULL: only the newline */
	ldi	0, %r24			/* delay slot: count = 0 */
1:	ldbx	%r24(%r25), %r5		/* count = strlen(argv[0]) */
	cmpib,<>,n 0, %r5, 1b
	ldo	1(%r24), %r24		/* delay slot, nullified when the (backward) branch is not taken */
	ldi	1, %r26			/* fd = stdout */
	ble	0x100(%sr2, %r0)
	ldi	4, %r20			/* delay slot: __NR_write */
2:	ldi	1, %r26			/* fd = stdout */
	ldil	L%nl, %r25		/* buf = the message's final "\n" */
	ldo	R%nl(%r25), %r25
	ldi	1, %r24			/* count */
	ble	0x100(%sr2, %r0)
	ldi	4, %r20			/* delay slot: __NR_write */
	ldi	0, %r26			/* status = 0 */
	ble	0x100(%sr2, %r0)
	ldi	1, %r20			/* delay slot: __NR_exit */
