//! Capabilities: the command keeps the set Docker gives containers by default, nothing more.

use caps::{CapSet, Capability};

/// Docker's default capability set.
pub const DEFAULT: &[Capability] = &[
    Capability::CAP_CHOWN,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_FSETID,
    Capability::CAP_FOWNER,
    Capability::CAP_MKNOD,
    Capability::CAP_NET_RAW,
    Capability::CAP_SETGID,
    Capability::CAP_SETUID,
    Capability::CAP_SETFCAP,
    Capability::CAP_SETPCAP,
    Capability::CAP_NET_BIND_SERVICE,
    Capability::CAP_SYS_CHROOT,
    Capability::CAP_KILL,
    Capability::CAP_AUDIT_WRITE,
];

/// Cuts the bounding set (and the inheritable and ambient sets) to [`DEFAULT`]. Must run while
/// CAP_SETPCAP is still held, before changing user.
pub fn restrict_to_default() -> Result<(), caps::errors::CapsError> {
    for cap in caps::all() {
        if !DEFAULT.contains(&cap) {
            // One prctl each; dropping a capability already absent is not an error.
            caps::drop(None, CapSet::Bounding, cap)?;
        }
    }
    let keep: caps::CapsHashSet = caps::read(None, CapSet::Inheritable)?
        .into_iter()
        .filter(|c| DEFAULT.contains(c))
        .collect();
    caps::set(None, CapSet::Inheritable, &keep)?;
    caps::clear(None, CapSet::Ambient)?;
    Ok(())
}

/// Drops the effective and permitted sets beyond [`DEFAULT`] too (for the init process).
pub fn drop_extra_effective() {
    for cap in caps::all() {
        if !DEFAULT.contains(&cap) {
            let _ = caps::drop(None, CapSet::Effective, cap);
            let _ = caps::drop(None, CapSet::Permitted, cap);
        }
    }
}
