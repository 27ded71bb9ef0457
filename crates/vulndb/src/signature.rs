//! Detached Ed25519 signatures over database bundles.
//!
//! A bundle (a snapshot file) is signed over its exact bytes; the signature sits next to it in
//! `<bundle>.sig`, either as 64 raw bytes or as 128 hex digits (surrounding white space
//! ignored). When a public key is configured, a bundle without a valid signature is refused.

use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the bundle is not signed, and a signing key is configured")]
    Missing,
    #[error("the signature is malformed (expected 64 bytes or 128 hex digits)")]
    Malformed,
    #[error("the signature does not match the bundle and the configured key")]
    Invalid,
    #[error("the public key is malformed (expected 32 bytes or 64 hex digits)")]
    BadKey,
}

/// Where the detached signature of `bundle` lives.
pub fn signature_path(bundle: &Path) -> PathBuf {
    let mut s = bundle.as_os_str().to_owned();
    s.push(".sig");
    PathBuf::from(s)
}

fn decode(bytes: &[u8], len: usize) -> Option<Vec<u8>> {
    if bytes.len() == len {
        return Some(bytes.to_vec());
    }
    let text = std::str::from_utf8(bytes).ok()?.trim();
    let raw = hex::decode(text).ok()?;
    (raw.len() == len).then_some(raw)
}

/// Parses a public key given as 32 raw bytes or 64 hex digits.
pub fn parse_public_key(bytes: &[u8]) -> Result<VerifyingKey, SignatureError> {
    let raw = decode(bytes, 32).ok_or(SignatureError::BadKey)?;
    let arr: [u8; 32] = raw.try_into().map_err(|_| SignatureError::BadKey)?;
    VerifyingKey::from_bytes(&arr).map_err(|_| SignatureError::BadKey)
}

/// Checks a detached signature over `bundle`. Uses strict verification (no malleable or
/// small-order signatures).
pub fn verify(key: &VerifyingKey, bundle: &[u8], signature: &[u8]) -> Result<(), SignatureError> {
    let raw = decode(signature, 64).ok_or(SignatureError::Malformed)?;
    let arr: [u8; 64] = raw.try_into().map_err(|_| SignatureError::Malformed)?;
    let sig = Signature::from_bytes(&arr);
    key.verify_strict(bundle, &sig)
        .map_err(|_| SignatureError::Invalid)
}

/// Signs a bundle, returning the signature as hex (for the publishing side and tests).
pub fn sign_hex(key: &SigningKey, bundle: &[u8]) -> String {
    hex::encode(key.sign(bundle).to_bytes())
}
