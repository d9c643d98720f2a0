//! Root file systems: safe path resolution inside a root (`within`), overlayfs's on-disk format
//! (`overlay`), layer unpacking into overlayfs lower directories (`unpack`), lookups in a stack
//! of them (`stack`), a step's changes as a layer tar (`snapshot`), and the tree walk the
//! copying snapshotter diffs with (`walkdiff`).

pub mod overlay;
pub mod snapshot;
pub mod stack;
pub mod unpack;
pub mod walkdiff;
pub mod within;
