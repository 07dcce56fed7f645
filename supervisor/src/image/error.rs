//! Image errors: each names the blob, file or reference it is about.

use super::digest::Digest;
use std::path::PathBuf;

/// Why an image operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A file or directory operation failed.
    #[error("{what} {}: {source}", path.display())]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
    /// A blob's content does not hash to the digest that names it: tampered or corrupt.
    #[error("blob {expected} from {origin}: content hashes to {actual}; refusing the image (tampered or corrupt)")]
    DigestMismatch { expected: Digest, actual: Digest, origin: String },
    /// A blob's length is not the one its descriptor gives.
    #[error("blob {digest} from {origin}: {actual} bytes, its descriptor says {expected}")]
    SizeMismatch { digest: Digest, expected: u64, actual: u64, origin: String },
    /// An uncompressed layer does not hash to its diff_id from the image config.
    #[error("layer {blob}: uncompressed content hashes to {actual}, the image config says {expected}; refusing the image")]
    DiffIdMismatch { blob: Digest, expected: Digest, actual: Digest },
    /// A blob the image needs is not there.
    #[error("blob {digest} is missing from {origin}")]
    MissingBlob { digest: Digest, origin: String },
    /// A JSON document is malformed.
    #[error("{what} {origin}: {message}")]
    Json { what: &'static str, origin: String, message: String },
    /// A layer entry was refused or could not be written.
    #[error("layer {blob}: {source}")]
    Layer { blob: Digest, source: super::layer::LayerError },
    /// A layer went over a limit of [`super::limits::ImageLimits`] (at `entry`, or
    /// `(tar)` in the stream); nothing of the import is kept.
    #[error("layer {blob}: entry {entry}: {limit}; refusing the image")]
    LayerLimit { blob: Digest, entry: String, limit: super::limits::LimitExceeded },
    /// A manifest, index or config is larger than the document limit.
    #[error("{what} {origin}: {limit}; refusing the image")]
    DocumentTooLarge { what: &'static str, origin: String, limit: super::limits::LimitExceeded },
    /// Another process (an import in a worker) holds the store's lock.
    #[error("the image store is busy (an import holds {}); try again when it ends", path.display())]
    Busy { path: PathBuf },
    /// The image is not usable here, or the reference is unknown.
    #[error("{reference}: {message}")]
    Invalid { reference: String, message: String },
}

/// Whether an error text comes from a full filesystem (ENOSPC), so a caller can say
/// "no space left" plainly and free what the failed work wrote.
pub fn is_no_space(text: &str) -> bool {
    text.contains("os error 28") || text.contains("No space left on device")
}

impl ImageError {
    /// An [`ImageError::Io`] builder for `map_err`.
    pub fn io(what: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ImageError {
        let path = path.into();
        move |source| ImageError::Io { what, path, source }
    }

    /// An [`ImageError::Invalid`].
    pub fn invalid(reference: impl std::fmt::Display, message: impl Into<String>) -> ImageError {
        ImageError::Invalid { reference: reference.to_string(), message: message.into() }
    }
}
