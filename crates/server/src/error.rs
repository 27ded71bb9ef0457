//! The one place where errors become HTTP: a status, the OCI error envelope, and any headers
//! the status calls for. The cause is logged here, once.

use axum::response::{IntoResponse, Response};
use berth_oci::{ErrorBody, ErrorCode};
use berth_registry::RegistryError;
use http::{HeaderName, HeaderValue, StatusCode};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
    pub detail: Option<serde_json::Value>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::from_u16(code.status()).unwrap_or(StatusCode::BAD_REQUEST),
            code,
            message: message.into(),
            detail: None,
            headers: Vec::new(),
        }
    }

    pub fn with_status(mut self, status: StatusCode) -> ApiError {
        self.status = status;
        self
    }

    pub fn with_header(mut self, name: HeaderName, value: &str) -> ApiError {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.push((name, v));
        }
        self
    }

    pub fn with_detail(mut self, detail: serde_json::Value) -> ApiError {
        self.detail = Some(detail);
        self
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> ApiError {
        use ErrorCode as C;
        let msg = e.to_string();
        match e {
            RegistryError::NameInvalid(_) => ApiError::new(C::NameInvalid, msg),
            RegistryError::NameUnknown(_) => ApiError::new(C::NameUnknown, msg),
            RegistryError::BlobUnknown(_) => ApiError::new(C::BlobUnknown, msg),
            RegistryError::UploadUnknown(_) => ApiError::new(C::BlobUploadUnknown, msg),
            RegistryError::UploadInvalid(_) | RegistryError::BodyIncomplete(_) => {
                ApiError::new(C::BlobUploadInvalid, msg)
            }
            RegistryError::RangeInvalid { offset, .. } => ApiError::new(C::BlobUploadInvalid, msg)
                .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
                .with_header(
                    http::header::RANGE,
                    &format!("0-{}", offset.saturating_sub(1)),
                ),
            RegistryError::DigestInvalid(_) => ApiError::new(C::DigestInvalid, msg),
            RegistryError::SizeInvalid(_) => ApiError::new(C::SizeInvalid, msg),
            RegistryError::ManifestInvalid(_) => ApiError::new(C::ManifestInvalid, msg),
            RegistryError::ManifestBlobUnknown(ref d) => {
                let detail = serde_json::json!({ "digest": d });
                ApiError::new(C::ManifestBlobUnknown, msg).with_detail(detail)
            }
            RegistryError::ManifestUnknown(_) => ApiError::new(C::ManifestUnknown, msg),
            RegistryError::ManifestTooLarge { .. } => {
                ApiError::new(C::SizeInvalid, msg).with_status(StatusCode::PAYLOAD_TOO_LARGE)
            }
            RegistryError::Unsupported(_) => ApiError::new(C::Unsupported, msg),
            RegistryError::StorageFull => {
                ApiError::new(C::BlobUploadInvalid, "the registry's storage is full")
                    .with_status(StatusCode::INSUFFICIENT_STORAGE)
            }
            // As Zot answers: the registry does support deletes, but not of this one now.
            RegistryError::Referenced { ref digest, ref by } => {
                let detail = serde_json::json!({ "digest": digest, "referencedBy": by });
                ApiError::new(C::Denied, msg)
                    .with_status(StatusCode::METHOD_NOT_ALLOWED)
                    .with_detail(detail)
            }
            RegistryError::Unavailable(_) => {
                tracing::error!(error = %msg, "backing service unavailable");
                ApiError::new(
                    C::Unavailable,
                    "a backing service is unavailable; try again later",
                )
                .with_status(StatusCode::SERVICE_UNAVAILABLE)
                .with_header(http::header::RETRY_AFTER, "5")
            }
            RegistryError::Internal(_) => {
                tracing::error!(error = %msg, "internal error");
                ApiError::new(C::Unknown, "internal error")
                    .with_status(StatusCode::INTERNAL_SERVER_ERROR)
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody::single(self.code, self.message, self.detail);
        let json = serde_json::to_vec(&body).unwrap_or_default();
        let mut resp = (
            self.status,
            [(http::header::CONTENT_TYPE, "application/json")],
            json,
        )
            .into_response();
        for (k, v) in self.headers {
            resp.headers_mut().append(k, v);
        }
        resp
    }
}
