//! OCI image formats: layouts on disk and archives (`layout`), and the documents in them with
//! platform selection (`image`).

pub mod compress;
pub mod image;
pub mod layout;
pub mod write;
