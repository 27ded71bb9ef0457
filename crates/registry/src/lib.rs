//! The registry's services: pushing and pulling blobs and manifests, upload sessions, tags,
//! catalog and referrers, and the background expiry of abandoned uploads.
//!
//! Layers only call down: the HTTP edge calls these services, the services call the metadata
//! store and blob storage, and neither store calls back up. This crate knows no HTTP.

mod background;
pub mod bundle;
mod cache;
mod coalesce;
mod error;
mod expiry;
pub mod scan;
mod service;
pub mod vulndb;

pub use berth_meta::MetaStore;
pub use berth_storage::{BlobReader, BlobStore, ByteStream, FsStore, S3Config, S3Store};
pub use error::{RegistryError, Result};
pub use expiry::UploadExpiry;
pub use scan::{ScanConfig, ScanService, ScanWorker};
pub use service::{
    CachedManifest, MAX_PAGE, PushedManifest, Referrer, Registry, RegistryConfig, TagPage,
    UploadProgress,
};
pub use vulndb::{VulnDbService, VulnDbWorker};
