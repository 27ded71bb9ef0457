//! Pure OCI types and parsers. Nothing in this crate performs I/O: it turns untrusted strings and
//! bytes into validated values (or typed errors) so that every other layer can trust what it holds.

pub mod digest;
pub mod error;
pub mod manifest;
pub mod media;
pub mod name;
pub mod path;
pub mod range;

pub use digest::{Algorithm, Digest, DigestError};
pub use error::{ErrorBody, ErrorCode, ErrorInfo};
pub use manifest::{Descriptor, Manifest, ManifestError, ManifestKind};
pub use name::{NameError, Reference, RepoName, Tag};
pub use path::{V2Route, parse_v2_path};
pub use range::{ByteRange, RangeError};
