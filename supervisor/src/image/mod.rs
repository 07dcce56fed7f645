//! Container images: references, the OCI image format, a content-addressed store, and
//! unpacking layers into overlayfs lower directories.
//!
//! A container declared with `image = "oci-archive:/…"` (or `oci:`, `docker-archive:`)
//! is imported into the [`store::Store`] at its first start: every blob is checked
//! against its sha256, linux/amd64 is picked from an index, each layer is unpacked once
//! (by diff_id, so images sharing a layer share its directory) with whiteouts turned into
//! overlayfs whiteouts, and the container's root is an overlay of those read-only layers
//! with its own upper directory in /var.
//!
//! Limits: registry pull is not here (a registry client hands verified blobs to
//! [`store::Store::put_blob`] and calls [`store::Store::import_manifest`]); zstd layers
//! are refused; device nodes in layers are refused; the overlay's lowerdir option must fit
//! in a page (about 60 layers, with the layer directories named relative to the store);
//! what an image may put on the host is bounded by [`limits::ImageLimits`].

pub mod defaults;
pub mod digest;
pub mod docker;
pub mod entry;
pub mod error;
pub mod fsat;
pub mod import;
pub mod inspect;
pub mod layer;
pub mod limits;
pub mod observe;
pub mod oci;
pub mod reference;
pub mod run;
pub mod store;

pub use digest::Digest;
pub use error::ImageError;
pub use limits::ImageLimits;
pub use reference::ImageSource;
pub use store::Store;
