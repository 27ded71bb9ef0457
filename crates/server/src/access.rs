//! The authorization hook that sits in front of every route. Each request is reduced to the
//! access it needs before any handler runs; the authorizer says who is asking and whether they
//! may, or answers with the challenge or refusal.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

use axum::extract::ConnectInfo;
use base64::Engine as _;
use berth_auth::{AuthError, AuthService, Principal, ResourceScope};
use berth_oci::ErrorCode;
use http::HeaderValue;
use http::request::Parts;

use crate::error::ApiError;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Read blobs, manifests, tags and referrers.
    Pull,
    /// Upload blobs and manifests, create and move tags.
    Push,
    /// Delete blobs, manifests and tags.
    Delete,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
        }
    }
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

/// Who made a request, as far as the authorizer established it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// Authentication is off.
    Open,
    /// Authenticated (or anonymous) with the principal resolved.
    Principal(Principal),
    /// A bearer token's subject, resolved to a principal only when a handler needs one.
    Subject(String),
}

impl Caller {
    pub fn actor(&self) -> String {
        match self {
            Caller::Open => "anonymous (open registry)".into(),
            Caller::Principal(p) => p.actor(),
            Caller::Subject(s) => s.clone(),
        }
    }
}

pub trait Authorizer: Send + Sync + 'static {
    /// Who the caller is, if the request may go ahead; otherwise the error to answer with.
    fn authorize<'a>(
        &'a self,
        parts: &'a Parts,
        access: &'a Access,
    ) -> BoxFuture<'a, Result<Caller, ApiError>>;

    /// Those of `repos` that the caller may know exist (catalog filtering), in order.
    fn visible<'a>(&'a self, caller: &'a Caller, repos: Vec<String>) -> BoxFuture<'a, Vec<String>>;

    /// Records an event in the audit trail.
    fn audit<'a>(
        &'a self,
        caller: &'a Caller,
        action: &'a str,
        target: &'a str,
        source: IpAddr,
    ) -> BoxFuture<'a, ()>;

    /// Whether the caller administers the repository (site administrators, and repository or
    /// organisation admins): they are exempt from the vulnerability pull policy.
    fn is_admin<'a>(&'a self, caller: &'a Caller, repo: &'a str) -> BoxFuture<'a, bool>;
}

/// Lets every request through: the open registry, for local experiments only.
pub struct AllowAll;

impl Authorizer for AllowAll {
    fn authorize<'a>(
        &'a self,
        _parts: &'a Parts,
        _access: &'a Access,
    ) -> BoxFuture<'a, Result<Caller, ApiError>> {
        Box::pin(async { Ok(Caller::Open) })
    }

    fn visible<'a>(
        &'a self,
        _caller: &'a Caller,
        repos: Vec<String>,
    ) -> BoxFuture<'a, Vec<String>> {
        Box::pin(async { repos })
    }

    fn audit<'a>(
        &'a self,
        _caller: &'a Caller,
        _action: &'a str,
        _target: &'a str,
        _source: IpAddr,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }

    /// Nobody is known in an open registry, so nobody is exempt from policies.
    fn is_admin<'a>(&'a self, _caller: &'a Caller, _repo: &'a str) -> BoxFuture<'a, bool> {
        Box::pin(async { false })
    }
}

/// The source address of a request.
pub fn source(parts: &Parts) -> IpAddr {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// Where clients get tokens: `auth.external_url` if configured, otherwise derived from the
/// request's Host header.
fn realm(parts: &Parts, external_url: Option<&str>) -> String {
    match external_url {
        Some(u) => format!("{}/auth/token", u.trim_end_matches('/')),
        None => {
            let host = parts
                .headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("localhost");
            format!("http://{host}/auth/token")
        }
    }
}

/// Credentials from an `Authorization` header.
pub enum Credentials {
    None,
    Basic { user: String, password: String },
    Bearer(String),
}

pub fn credentials(parts: &Parts) -> Result<Credentials, ApiError> {
    let Some(value) = parts.headers.get(http::header::AUTHORIZATION) else {
        return Ok(Credentials::None);
    };
    let malformed = || {
        tracing::warn!(source = %source(parts), "malformed Authorization header");
        ApiError::new(ErrorCode::Unauthorized, "malformed Authorization header")
    };
    let v = value.to_str().map_err(|_| malformed())?;
    let (scheme, rest) = v.split_once(' ').ok_or_else(malformed)?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .map_err(|_| malformed())?;
        let text = String::from_utf8(decoded).map_err(|_| malformed())?;
        let (user, password) = text.split_once(':').ok_or_else(malformed)?;
        Ok(Credentials::Basic {
            user: user.to_owned(),
            password: password.to_owned(),
        })
    } else if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() {
        Ok(Credentials::Bearer(rest.to_owned()))
    } else {
        Err(malformed())
    }
}

/// Maps an authentication failure to its response.
pub fn auth_failure(e: AuthError) -> ApiError {
    match e {
        AuthError::InvalidCredentials => {
            ApiError::new(ErrorCode::Unauthorized, "invalid credentials")
        }
        AuthError::TooManyAttempts(wait) => {
            ApiError::new(ErrorCode::TooManyRequests, "too many failed logins").with_header(
                http::header::RETRY_AFTER,
                &wait.as_secs().max(1).to_string(),
            )
        }
        AuthError::Meta(e) => berth_registry::RegistryError::from(e).into(),
    }
}

/// Enforces access control with the Docker token protocol (and plain Basic credentials).
pub struct TokenAuthorizer {
    pub auth: Arc<AuthService>,
    pub external_url: Option<String>,
}

impl TokenAuthorizer {
    fn challenge(&self, parts: &Parts, access: &Access, insufficient: bool) -> ApiError {
        let mut value = format!(
            "Bearer realm=\"{}\",service=\"{}\"",
            realm(parts, self.external_url.as_deref()),
            self.auth.service()
        );
        match access {
            Access::Base => {}
            Access::Catalog => value.push_str(",scope=\"registry:catalog:*\""),
            Access::Repository { name, actions } => {
                let a: Vec<&str> = actions.iter().map(|a| a.as_str()).collect();
                value.push_str(&format!(",scope=\"repository:{name}:{}\"", a.join(",")));
            }
        }
        if insufficient {
            value.push_str(",error=\"insufficient_scope\"");
        }
        let mut e = ApiError::new(ErrorCode::Unauthorized, "authentication required");
        if let Ok(v) = HeaderValue::from_str(&value) {
            e.headers.push((http::header::WWW_AUTHENTICATE, v));
        }
        e
    }

    /// Decides for a known principal (Basic credentials or anonymous).
    async fn decide(
        &self,
        parts: &Parts,
        access: &Access,
        p: Principal,
    ) -> Result<Caller, ApiError> {
        let anonymous = p == Principal::Anonymous;
        match access {
            Access::Base | Access::Catalog if anonymous => {
                Err(self.challenge(parts, access, false))
            }
            Access::Base | Access::Catalog => Ok(Caller::Principal(p)),
            Access::Repository { name, actions } => {
                let wanted: Vec<String> = actions.iter().map(|a| a.as_str().to_owned()).collect();
                let granted = self
                    .auth
                    .allowed_actions(&p, name, &wanted)
                    .await
                    .map_err(auth_failure)?;
                if granted.len() == wanted.len() {
                    return Ok(Caller::Principal(p));
                }
                if anonymous {
                    return Err(self.challenge(parts, access, false));
                }
                // Someone who cannot even see the repository learns nothing about it.
                if !granted.iter().any(|a| a == "pull")
                    && !self.auth.can_see(&p, name).await.map_err(auth_failure)?
                {
                    return Err(ApiError::new(
                        ErrorCode::NameUnknown,
                        format!("repository {name} is not known"),
                    ));
                }
                Err(ApiError::new(
                    ErrorCode::Denied,
                    "requested access to the resource is denied",
                ))
            }
        }
    }
}

impl Authorizer for TokenAuthorizer {
    fn authorize<'a>(
        &'a self,
        parts: &'a Parts,
        access: &'a Access,
    ) -> BoxFuture<'a, Result<Caller, ApiError>> {
        Box::pin(async move {
            match credentials(parts)? {
                Credentials::None => self.decide(parts, access, Principal::Anonymous).await,
                Credentials::Basic { user, password } => {
                    let p = self
                        .auth
                        .authenticate(&user, &password, source(parts))
                        .await
                        .map_err(|e| match e {
                            AuthError::InvalidCredentials => self.challenge(parts, access, false),
                            e => auth_failure(e),
                        })?;
                    self.decide(parts, access, p).await
                }
                Credentials::Bearer(token) => {
                    let claims = match self.auth.tokens().verify(&token) {
                        Ok(c) => c,
                        Err(_) => {
                            tracing::warn!(source = %source(parts), "rejected an invalid or expired bearer token");
                            return Err(self.challenge(parts, access, false));
                        }
                    };
                    let caller = Caller::Subject(claims.sub.clone());
                    let covered = |kind: &str, name: &str, action: &str| {
                        claims
                            .access
                            .iter()
                            .any(|s| s.kind == kind && s.name == name && s.allows(action))
                    };
                    let ok = match access {
                        Access::Base => true,
                        Access::Catalog => covered("registry", "catalog", "*"),
                        Access::Repository { name, actions } => actions
                            .iter()
                            .all(|a| covered("repository", name, a.as_str())),
                    };
                    if ok {
                        Ok(caller)
                    } else {
                        Err(self.challenge(parts, access, true))
                    }
                }
            }
        })
    }

    fn visible<'a>(&'a self, caller: &'a Caller, repos: Vec<String>) -> BoxFuture<'a, Vec<String>> {
        Box::pin(async move {
            let p = match caller {
                Caller::Open => return repos,
                Caller::Principal(p) => Some(p.clone()),
                Caller::Subject(s) => self.auth.principal_for_subject(s).await.ok().flatten(),
            };
            let Some(p) = p else { return Vec::new() };
            if p.is_site_admin() {
                return repos;
            }
            let mut out = Vec::with_capacity(repos.len());
            for r in repos {
                if self.auth.can_see(&p, &r).await.unwrap_or(false) {
                    out.push(r);
                }
            }
            out
        })
    }

    fn audit<'a>(
        &'a self,
        caller: &'a Caller,
        action: &'a str,
        target: &'a str,
        source: IpAddr,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Err(e) = self
                .auth
                .meta()
                .audit(&caller.actor(), action, target, &source.to_string(), None)
                .await
            {
                tracing::warn!(error = %e, action, target, "could not write the audit log");
            }
        })
    }

    fn is_admin<'a>(&'a self, caller: &'a Caller, repo: &'a str) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            let p = match caller {
                Caller::Open => return false,
                Caller::Principal(p) => Some(p.clone()),
                Caller::Subject(s) => self.auth.principal_for_subject(s).await.ok().flatten(),
            };
            let Some(p) = p else { return false };
            p.is_site_admin()
                || self
                    .auth
                    .role(&p, repo)
                    .await
                    .is_ok_and(|r| r == berth_auth::Role::Admin)
        })
    }
}

/// The scopes of a token request, from repeated `scope` parameters (GET) or one
/// space-separated `scope` (POST).
pub fn parse_scopes<'a>(values: impl Iterator<Item = &'a str>) -> Vec<ResourceScope> {
    values
        .flat_map(|v| v.split(' '))
        .filter_map(ResourceScope::parse)
        .take(64)
        .collect()
}
