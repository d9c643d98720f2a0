//! Root file systems: safe path resolution inside a root (`within`) and layer unpacking into
//! overlayfs lower directories (`unpack`).

pub mod snapshot;
pub mod stack;
pub mod unpack;
pub mod within;
