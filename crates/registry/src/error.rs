//! The service layer's errors: what went wrong in registry terms. The HTTP edge maps each to an
//! OCI error code and status; nothing here knows about either.

use berth_meta::MetaError;
use berth_storage::StorageError;

#[derive(Debug, Clone, thiserror::Error)]
pub enum RegistryError {
    #[error("{0}")]
    NameInvalid(String),
    #[error("repository {0} is not known")]
    NameUnknown(String),
    #[error("blob {0} is not known in this repository")]
    BlobUnknown(String),
    #[error("upload {0} is not known")]
    UploadUnknown(String),
    #[error("{0}")]
    UploadInvalid(String),
    /// A chunk did not start where the upload stands; the client should resume from `offset`.
    #[error("the chunk starts at {got}, but the upload has {offset} bytes")]
    RangeInvalid { offset: u64, got: u64 },
    #[error("{0}")]
    DigestInvalid(String),
    #[error("{0}")]
    SizeInvalid(String),
    #[error("{0}")]
    ManifestInvalid(String),
    #[error("manifest references {0}, which is not in the repository")]
    ManifestBlobUnknown(String),
    #[error("manifest {0} is not known")]
    ManifestUnknown(String),
    #[error("the manifest is {size} bytes; the limit is {limit}")]
    ManifestTooLarge { size: usize, limit: usize },
    #[error("{0}")]
    Unsupported(String),
    #[error("storage is full")]
    StorageFull,
    /// A delete of a blob or manifest that a manifest of the repository still references.
    #[error("{digest} is referenced by manifest {by}; delete that manifest first")]
    Referenced { digest: String, by: String },
    #[error("a backing service is unavailable: {0}")]
    Unavailable(String),
    #[error("the request body ended early: {0}")]
    BodyIncomplete(String),
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T> = std::result::Result<T, RegistryError>;

impl From<MetaError> for RegistryError {
    fn from(e: MetaError) -> Self {
        match e {
            MetaError::BlobUnknown(d) | MetaError::ManifestUnknown(d) => {
                RegistryError::ManifestBlobUnknown(d)
            }
            MetaError::Unavailable(e) => RegistryError::Unavailable(e.to_string()),
            MetaError::Full(e) => {
                tracing::error!(error = %e, "the metadata database's disk is full");
                RegistryError::StorageFull
            }
            MetaError::Referenced { digest, by } => RegistryError::Referenced { digest, by },
            e => RegistryError::Internal(e.to_string()),
        }
    }
}

impl From<StorageError> for RegistryError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::DigestMismatch { .. } => RegistryError::DigestInvalid(e.to_string()),
            StorageError::TooLarge { .. } => RegistryError::SizeInvalid(e.to_string()),
            StorageError::OffsetMismatch { expected, got } => RegistryError::RangeInvalid {
                offset: expected,
                got,
            },
            StorageError::UploadUnknown(id) => RegistryError::UploadUnknown(id),
            StorageError::Body(e) => RegistryError::BodyIncomplete(e.to_string()),
            StorageError::Full => {
                tracing::error!("blob storage is full");
                RegistryError::StorageFull
            }
            StorageError::Io(e) => RegistryError::Internal(format!("storage: {e}")),
            StorageError::Unavailable(e) => RegistryError::Unavailable(format!("storage: {e}")),
            StorageError::Config(e) => RegistryError::Internal(format!("storage: {e}")),
        }
    }
}
