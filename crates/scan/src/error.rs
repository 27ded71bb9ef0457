//! The one error type of image analysis.

use berth_oci::Digest;

/// Why an image could not be analysed. Problems inside one file (a malformed package database, a
/// corrupt binary) are not errors: they become [`crate::Warning`]s and the analysis goes on.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error(
        "layer {digest} has media type {media_type:?}, which is not a tar layer this analyser can read"
    )]
    UnsupportedMediaType { digest: Digest, media_type: String },
    #[error("layer {digest}: {message}")]
    Layer { digest: Digest, message: String },
    #[error("blob {digest} does not match its digest (got {actual})")]
    DigestMismatch { digest: Digest, actual: Digest },
    #[error("manifest: {0}")]
    Manifest(String),
    #[error("{0} not found in the image source")]
    NotFound(String),
    #[error("image source: {0}")]
    Source(String),
    #[error("registry: {0}")]
    Registry(String),
    #[error("no image for platform {0} in the index")]
    NoPlatform(String),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}
