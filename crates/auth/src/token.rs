//! Docker registry bearer tokens: short-lived ES256 JWTs whose `access` claim lists what the
//! bearer may do. Refresh tokens (for `docker login`'s OAuth2 flow) are JWTs of another type.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::scope::ResourceScope;

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the token is malformed, expired, or not signed by this registry")]
    Invalid,
    #[error("the signing key could not be loaded: {0}")]
    Key(String),
}

/// The claims of a Berth token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub iss: String,
    /// The subject: `user:<name>`, `robot:<name>` or `token:<id>` (a personal access token).
    pub sub: String,
    pub aud: String,
    pub exp: u64,
    pub nbf: u64,
    pub iat: u64,
    pub jti: String,
    #[serde(default)]
    pub access: Vec<ResourceScope>,
    /// `refresh` for refresh tokens; absent for access tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub typ: Option<String>,
}

/// A signing key and its identifier.
pub struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl SigningKey {
    /// A new P-256 key. Returns it with its PKCS#8 PEM, to be persisted.
    pub fn generate() -> (SigningKey, String) {
        let secret = loop {
            let mut bytes = [0u8; 32];
            rand::rng().fill_bytes(&mut bytes);
            // Almost every 32-byte string is a valid scalar; retry the rare ones that are not.
            if let Ok(k) = p256::SecretKey::from_slice(&bytes) {
                break k;
            }
        };
        let pem = secret
            .to_pkcs8_pem(LineEnding::LF)
            .expect("a P-256 key encodes as PKCS#8")
            .to_string();
        let key = SigningKey::from_pem(&pem).expect("a freshly generated key loads");
        (key, pem)
    }

    /// Loads a PKCS#8 PEM private key.
    pub fn from_pem(pem: &str) -> Result<SigningKey, TokenError> {
        use p256::pkcs8::DecodePrivateKey;
        let secret =
            p256::SecretKey::from_pkcs8_pem(pem).map_err(|e| TokenError::Key(e.to_string()))?;
        let public_der = secret
            .public_key()
            .to_public_key_der()
            .map_err(|e| TokenError::Key(e.to_string()))?;
        let public_pem = secret
            .public_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| TokenError::Key(e.to_string()))?;
        let kid = hex::encode(&sha2::Sha256::digest(public_der.as_bytes())[..16]);
        let encoding =
            EncodingKey::from_ec_pem(pem.as_bytes()).map_err(|e| TokenError::Key(e.to_string()))?;
        let decoding = DecodingKey::from_ec_pem(public_pem.as_bytes())
            .map_err(|e| TokenError::Key(e.to_string()))?;
        Ok(SigningKey {
            kid,
            encoding,
            decoding,
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Issues and verifies tokens for one service.
pub struct TokenService {
    key: SigningKey,
    issuer: String,
    service: String,
    ttl: Duration,
    refresh_ttl: Duration,
    /// Verified tokens, so that a token used for many requests is checked once. Entries are
    /// keyed by the whole token string: a tampered token is a different key and is verified.
    verified: quick_cache::sync::Cache<String, Arc<Claims>>,
    /// Recently signed tokens by subject and access, handed out again for a few seconds: a CI
    /// fleet asks for the same token over and over, and an ES256 signature is the dearest part
    /// of issuing one. A reused token is the same grant for the same subject, only a little
    /// older.
    recent: quick_cache::sync::Cache<String, (String, Claims)>,
}

/// How long a signed token is handed out again for identical requests.
const REUSE_SECS: u64 = 10;

impl TokenService {
    pub fn new(
        key: SigningKey,
        issuer: &str,
        service: &str,
        ttl: Duration,
        refresh_ttl: Duration,
    ) -> TokenService {
        TokenService {
            key,
            issuer: issuer.into(),
            service: service.into(),
            ttl,
            refresh_ttl,
            verified: quick_cache::sync::Cache::new(10_000),
            recent: quick_cache::sync::Cache::new(10_000),
        }
    }

    pub fn service(&self) -> &str {
        &self.service
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn sign(
        &self,
        sub: &str,
        access: Vec<ResourceScope>,
        ttl: Duration,
        typ: Option<&str>,
    ) -> (String, Claims) {
        let iat = now();
        let mut jti = [0u8; 16];
        rand::rng().fill_bytes(&mut jti);
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: sub.into(),
            aud: self.service.clone(),
            exp: iat + ttl.as_secs(),
            nbf: iat.saturating_sub(1),
            iat,
            jti: hex::encode(jti),
            access,
            typ: typ.map(str::to_owned),
        };
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.key.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &self.key.encoding)
            .expect("ES256 signing does not fail");
        (token, claims)
    }

    /// An access token for `sub` granting `access`: a fresh one, or one signed for the same
    /// request within the last few seconds.
    pub fn issue(&self, sub: &str, access: Vec<ResourceScope>) -> (String, Claims) {
        let key = format!(
            "{sub}\n{}",
            serde_json::to_string(&access).unwrap_or_default()
        );
        if let Some((token, claims)) = self.recent.get(&key)
            && now().saturating_sub(claims.iat) < REUSE_SECS
            && claims.exp > now() + REUSE_SECS
        {
            return (token, claims);
        }
        let (token, claims) = self.sign(sub, access, self.ttl, None);
        self.recent.insert(key, (token.clone(), claims.clone()));
        (token, claims)
    }

    /// A refresh token for `sub`.
    pub fn issue_refresh(&self, sub: &str) -> String {
        self.sign(sub, Vec::new(), self.refresh_ttl, Some("refresh"))
            .0
    }

    fn decode(&self, token: &str) -> Result<Claims, TokenError> {
        if token.len() > 16 * 1024 {
            return Err(TokenError::Invalid);
        }
        let mut v = Validation::new(Algorithm::ES256);
        v.set_audience(&[&self.service]);
        v.set_issuer(&[&self.issuer]);
        v.leeway = 5;
        v.validate_nbf = true;
        v.set_required_spec_claims(&["exp", "nbf", "iat", "aud", "iss", "sub"]);
        let data = jsonwebtoken::decode::<Claims>(token, &self.key.decoding, &v)
            .map_err(|_| TokenError::Invalid)?;
        Ok(data.claims)
    }

    /// Verifies an access token: signature, issuer, audience, times and type.
    pub fn verify(&self, token: &str) -> Result<Arc<Claims>, TokenError> {
        if let Some(c) = self.verified.get(token) {
            return if c.exp > now() {
                Ok(c)
            } else {
                Err(TokenError::Invalid)
            };
        }
        let claims = self.decode(token)?;
        if claims.typ.is_some() {
            return Err(TokenError::Invalid);
        }
        let claims = Arc::new(claims);
        self.verified.insert(token.to_owned(), claims.clone());
        Ok(claims)
    }

    /// Verifies a refresh token and returns its subject.
    pub fn verify_refresh(&self, token: &str) -> Result<String, TokenError> {
        let claims = self.decode(token)?;
        if claims.typ.as_deref() != Some("refresh") {
            return Err(TokenError::Invalid);
        }
        Ok(claims.sub)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service() -> TokenService {
        let (key, _) = SigningKey::generate();
        TokenService::new(
            key,
            "berth",
            "registry.test",
            Duration::from_secs(300),
            Duration::from_secs(3600),
        )
    }

    #[test]
    fn round_trip_and_rejections() {
        let s = service();
        let (t, _) = s.issue(
            "user:alice",
            vec![ResourceScope::repository("acme/app", &["pull"])],
        );
        let c = s.verify(&t).unwrap();
        assert_eq!(c.sub, "user:alice");
        assert_eq!(c.access[0].name, "acme/app");
        // Tampered payload.
        let mut parts: Vec<String> = t.split('.').map(str::to_owned).collect();
        parts[1] = parts[1].chars().rev().collect();
        assert!(s.verify(&parts.join(".")).is_err());
        // Another key.
        let other = service();
        let (t2, _) = other.issue("user:alice", vec![]);
        assert!(s.verify(&t2).is_err());
        // Another service.
        let (key, _) = SigningKey::generate();
        let elsewhere = TokenService::new(
            key,
            "berth",
            "other.service",
            Duration::from_secs(300),
            Duration::from_secs(3600),
        );
        let (t3, _) = elsewhere.issue("user:alice", vec![]);
        assert!(s.verify(&t3).is_err());
        // A refresh token is not an access token, and the other way round.
        let r = s.issue_refresh("user:alice");
        assert!(s.verify(&r).is_err());
        assert_eq!(s.verify_refresh(&r).unwrap(), "user:alice");
        assert!(s.verify_refresh(&t).is_err());
        // Garbage.
        for junk in ["", "a.b.c", "Bearer x", &"x".repeat(20_000)] {
            assert!(s.verify(junk).is_err());
        }
    }

    #[test]
    fn expired_tokens_are_refused() {
        let (key, _) = SigningKey::generate();
        let s = TokenService::new(
            key,
            "berth",
            "svc",
            Duration::from_secs(0),
            Duration::from_secs(0),
        );
        let (t, c) = s.sign("user:a", vec![], Duration::from_secs(0), None);
        assert!(c.exp <= now());
        // Leeway is 5 s; a token that expired longer ago than that is refused.
        let mut old = c.clone();
        old.exp = now() - 60;
        old.nbf = now() - 120;
        old.iat = now() - 120;
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(s.key.kid.clone());
        let stale = jsonwebtoken::encode(&header, &old, &s.key.encoding).unwrap();
        assert!(s.verify(&stale).is_err());
        let _ = t;
    }

    #[test]
    fn identical_requests_share_a_recent_signature() {
        let s = service();
        let pull = vec![ResourceScope::repository("acme/app", &["pull"])];
        let (a, _) = s.issue("user:alice", pull.clone());
        let (b, _) = s.issue("user:alice", pull.clone());
        assert_eq!(a, b);
        let (c, _) = s.issue("user:bob", pull);
        assert_ne!(a, c, "another subject gets its own token");
        let (d, _) = s.issue(
            "user:alice",
            vec![ResourceScope::repository("acme/app", &["pull", "push"])],
        );
        assert_ne!(a, d, "other access gets its own token");
        assert_eq!(s.verify(&d).unwrap().access[0].actions, ["pull", "push"]);
    }

    #[test]
    fn keys_persist() {
        let (k, pem) = SigningKey::generate();
        let again = SigningKey::from_pem(&pem).unwrap();
        assert_eq!(k.kid(), again.kid());
        assert!(
            SigningKey::from_pem("-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")
                .is_err()
        );
    }
}
