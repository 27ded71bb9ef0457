//! The authorization hook that sits in front of every route. Each request is reduced to the
//! access it needs before any handler runs; the authorizer says yes or no.

use http::request::Parts;

use crate::error::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Read blobs, manifests, tags and referrers.
    Pull,
    /// Upload blobs and manifests, create and move tags.
    Push,
    /// Delete blobs, manifests and tags.
    Delete,
}

/// What a request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// `GET /v2/`: only that the caller is authenticated (when authentication is on).
    Base,
    /// Listing repositories.
    Catalog,
    Repository {
        name: String,
        actions: Vec<Action>,
    },
}

pub trait Authorizer: Send + Sync + 'static {
    /// `Ok` if the request may go ahead; otherwise the error to answer with.
    fn authorize(&self, parts: &Parts, access: &Access) -> Result<(), ApiError>;
}

/// Lets every request through: the open registry that runs until authentication is configured.
pub struct AllowAll;

impl Authorizer for AllowAll {
    fn authorize(&self, _parts: &Parts, _access: &Access) -> Result<(), ApiError> {
        Ok(())
    }
}
