//! OCI images: what users name (`reference`), opening it (`source`), the documents typed by
//! oci-spec (`document`), choosing an image for a platform (`image`), layouts and archives on
//! disk (`layout`, `write`), and layer compression (`compress`).

pub mod compress;
pub mod document;
pub mod image;
pub mod layout;
pub mod reference;
pub mod source;
pub mod write;
