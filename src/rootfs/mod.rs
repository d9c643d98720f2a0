//! Root file systems: safe path resolution inside a root (`within`), layer unpacking into
//! overlayfs lower directories (`unpack`), lookups in a stack of them (`stack`), a step's changes
//! as a layer tar (`snapshot`), and the copying snapshotter for kernels without overlayfs
//! (`walkdiff`).

pub mod snapshot;
pub mod stack;
pub mod unpack;
pub mod walkdiff;
pub mod within;
