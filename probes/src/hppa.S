/* binfmtctl probe for hppa: write(1, msg, len); exit(0) via the gateway page
 * (ble 0x100(%sr2, %r0)), nr in %r20 (set in the branch delay slot). No libc.
 * The message comes first so that len is a known constant where "ldi" uses it. */
	.text
msg:
	.ascii	"binfmtctl-probe hppa\n"
	.set	len, . - msg
	.balign	4
	.globl	_start
_start:
	ldi	1, %r26			/* fd = stdout */
	ldil	L%msg, %r25		/* buf (absolute) */
	ldo	R%msg(%r25), %r25
	ldi	len, %r24		/* count */
	ble	0x100(%sr2, %r0)
	ldi	4, %r20			/* delay slot: __NR_write */
	ldi	0, %r26			/* status = 0 */
	ble	0x100(%sr2, %r0)
	ldi	1, %r20			/* delay slot: __NR_exit */
