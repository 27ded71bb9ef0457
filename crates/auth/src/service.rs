//! The access-control service: authenticates credentials, decides roles, and issues tokens.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_meta::auth::{Namespace, UserRow};
use berth_meta::{MetaError, MetaStore};

use crate::limiter::LoginLimiter;
use crate::scope::ResourceScope;
use crate::secret;
use crate::token::{SigningKey, TokenService};

/// What a principal may do to a repository. Ordered: each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    None,
    Read,
    Write,
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "read" => Some(Role::Read),
            "write" => Some(Role::Write),
            "admin" | "owner" => Some(Role::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::None => "none",
            Role::Read => "read",
            Role::Write => "write",
            Role::Admin => "admin",
        }
    }

    /// The token actions this role allows.
    pub fn actions(self) -> &'static [&'static str] {
        match self {
            Role::None => &[],
            Role::Read => &["pull"],
            Role::Write => &["pull", "push"],
            Role::Admin => &["pull", "push", "delete"],
        }
    }

    /// The role an action needs.
    pub fn for_action(action: &str) -> Role {
        match action {
            "pull" => Role::Read,
            "push" => Role::Write,
            _ => Role::Admin,
        }
    }
}

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Anonymous,
    User {
        id: i64,
        name: String,
        site_admin: bool,
    },
    Robot {
        id: i64,
        name: String,
        org: String,
    },
    /// A user acting through a personal access token, limited to `max_role`.
    Token {
        id: i64,
        user_id: i64,
        user: String,
        site_admin: bool,
        max_role: Role,
    },
}

impl Principal {
    /// The token subject (`sub` claim).
    pub fn subject(&self) -> String {
        match self {
            Principal::Anonymous => "anonymous".into(),
            Principal::User { name, .. } => format!("user:{name}"),
            Principal::Robot { name, .. } => format!("robot:{name}"),
            Principal::Token { id, user, .. } => format!("token:{id}:{user}"),
        }
    }

    /// The name recorded in the audit log.
    pub fn actor(&self) -> String {
        match self {
            Principal::Anonymous => "anonymous".into(),
            Principal::User { name, .. } => name.clone(),
            Principal::Robot { name, .. } => format!("robot:{name}"),
            Principal::Token { id, user, .. } => format!("{user} (token {id})"),
        }
    }

    pub fn is_site_admin(&self) -> bool {
        matches!(
            self,
            Principal::User {
                site_admin: true,
                ..
            } | Principal::Token {
                site_admin: true,
                max_role: Role::Admin,
                ..
            }
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error("too many failed logins; retry in {} s", .0.as_secs())]
    TooManyAttempts(Duration),
    #[error(transparent)]
    Meta(#[from] MetaError),
}

#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// The `service` that tokens are issued for and checked against.
    pub service: String,
    pub issuer: String,
    pub token_ttl: Duration,
    pub refresh_ttl: Duration,
    /// Whether users other than site admins may create organisations (by pushing into a free
    /// namespace).
    pub users_create_orgs: bool,
    /// How long a successful password login is remembered, so that clients sending Basic
    /// credentials with every request do not pay for an argon2 check each time. A password change
    /// or a disabled user clears it on this replica; other replicas notice within this time.
    pub basic_cache_ttl: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            service: "berth".into(),
            issuer: "berth".into(),
            token_ttl: Duration::from_secs(300),
            refresh_ttl: Duration::from_secs(30 * 24 * 3600),
            users_create_orgs: true,
            basic_cache_ttl: Duration::from_secs(30),
        }
    }
}

pub struct AuthService {
    meta: MetaStore,
    tokens: TokenService,
    config: AuthConfig,
    limiter: LoginLimiter,
    /// Successful Basic logins: SHA-256 of the credentials to the principal and when it was
    /// checked. A hash, never the password, is what stays in memory.
    basic_cache: quick_cache::sync::Cache<String, (Principal, Instant)>,
    /// Repository visibility, remembered for `PUBLIC_TTL` so that anonymous pulls of public
    /// repositories cost no database query. A change made here clears it at once; other
    /// replicas see it within the TTL.
    public_cache: quick_cache::sync::Cache<String, (bool, Instant)>,
}

const ROBOT_SEPARATOR: char = '+';

/// How long a repository's visibility is remembered (see `AuthService::public_cache`).
const PUBLIC_TTL: Duration = Duration::from_secs(2);

impl AuthService {
    /// Loads the signing key from the metadata store (creating it on first start).
    pub async fn start(meta: MetaStore, config: AuthConfig) -> Result<AuthService, AuthError> {
        let (candidate, pem) = SigningKey::generate();
        let stored = meta.signing_key((candidate.kid(), &pem)).await?;
        let key = SigningKey::from_pem(&stored)
            .map_err(|e| AuthError::Meta(MetaError::Conflict(e.to_string())))?;
        let tokens = TokenService::new(
            key,
            &config.issuer,
            &config.service,
            config.token_ttl,
            config.refresh_ttl,
        );
        Ok(AuthService {
            meta,
            tokens,
            config,
            // Per source: enough for a NAT'd CI fleet's honest mistakes; per user and source:
            // ten guesses per five minutes.
            limiter: LoginLimiter::new(Duration::from_secs(300), 100, 10),
            basic_cache: quick_cache::sync::Cache::new(10_000),
            public_cache: quick_cache::sync::Cache::new(10_000),
        })
    }

    pub fn tokens(&self) -> &TokenService {
        &self.tokens
    }

    pub fn service(&self) -> &str {
        &self.config.service
    }

    pub fn meta(&self) -> &MetaStore {
        &self.meta
    }

    /// Creates the first site admin when there are no users. Returns the generated password
    /// when none was given, to be shown once.
    pub async fn bootstrap_admin(
        &self,
        password: Option<&str>,
    ) -> Result<Option<String>, AuthError> {
        if self.meta.user_count().await? > 0 {
            return Ok(None);
        }
        let (password, generated) = match password {
            Some(p) if !p.is_empty() => (p.to_owned(), false),
            _ => (secret::generate_secret(""), true),
        };
        self.meta
            .create_user("admin", &secret::hash_password(&password), true)
            .await?;
        Ok(generated.then_some(password))
    }

    /// Authenticates Basic credentials: a user's password, one of their access tokens, or a
    /// robot account's secret. Failures are throttled and look alike.
    pub async fn authenticate(
        &self,
        username: &str,
        password: &str,
        source: IpAddr,
    ) -> Result<Principal, AuthError> {
        // The throttle comes before the cache of verified logins: otherwise, while the real
        // user's login is cached, a throttled guesser would still learn which guess is right.
        if let Err(wait) = self.limiter.check(username, source) {
            return Err(AuthError::TooManyAttempts(wait));
        }
        let cache_key = secret::hash_secret(&format!("{username}\0{password}"));
        if let Some((p, at)) = self.basic_cache.get(&cache_key)
            && at.elapsed() < self.config.basic_cache_ttl
        {
            return Ok(p);
        }
        let result = self.check_credentials(username, password).await?;
        match result {
            Some(p) => {
                self.limiter.succeeded(username, source);
                // Only password logins are remembered: they cost an argon2 check. Tokens and
                // robot secrets are checked against the database every time, so revoking one
                // takes effect at once on every replica.
                if matches!(p, Principal::User { .. }) {
                    self.basic_cache
                        .insert(cache_key, (p.clone(), Instant::now()));
                }
                Ok(p)
            }
            None => {
                self.limiter.failed(username, source);
                let _ = self
                    .meta
                    .audit(
                        username,
                        "login.failed",
                        "registry",
                        &source.to_string(),
                        None,
                    )
                    .await;
                Err(AuthError::InvalidCredentials)
            }
        }
    }

    async fn check_credentials(
        &self,
        username: &str,
        password: &str,
    ) -> Result<Option<Principal>, AuthError> {
        if username.len() > 256 || password.len() > 4096 {
            secret::verify_password_against_nothing(password);
            return Ok(None);
        }
        let now = berth_meta::now_millis();
        if password.starts_with("berth_pat_") {
            let Some(t) = self
                .meta
                .access_token_by_hash(&secret::hash_secret(password))
                .await?
            else {
                return Ok(None);
            };
            let live =
                t.revoked_at.is_none() && t.expires_at.is_none_or(|e| e > now) && !t.user.disabled;
            if !live || t.user.name != username {
                return Ok(None);
            }
            return Ok(Some(Principal::Token {
                id: t.id,
                user_id: t.user.id,
                user: t.user.name,
                site_admin: t.user.site_admin,
                max_role: Role::parse(&t.max_role).unwrap_or(Role::Read),
            }));
        }
        if username.contains(ROBOT_SEPARATOR) {
            let Some(r) = self.meta.robot_by_name(username).await? else {
                return Ok(None);
            };
            let live = r.revoked_at.is_none() && r.expires_at.is_none_or(|e| e > now);
            if !live || !secret::secret_matches(password, &r.secret_hash) {
                return Ok(None);
            }
            return Ok(Some(Principal::Robot {
                id: r.id,
                name: r.name,
                org: r.org,
            }));
        }
        let user = self.meta.user_by_name(username).await?;
        let password = password.to_owned();
        // argon2 is deliberately slow: keep it off the async workers.
        let verified = tokio::task::spawn_blocking(move || match user {
            Some(u) if secret::verify_password(&password, &u.password_hash) => Some(u),
            Some(_) => None,
            None => {
                secret::verify_password_against_nothing(&password);
                None
            }
        })
        .await
        .unwrap_or(None);
        Ok(verified.filter(|u| !u.disabled).map(user_principal))
    }

    async fn is_public(&self, repo: &str) -> Result<bool, MetaError> {
        if let Some((public, at)) = self.public_cache.get(repo)
            && at.elapsed() < PUBLIC_TTL
        {
            return Ok(public);
        }
        let public = self.meta.is_public(repo).await?;
        self.public_cache
            .insert(repo.to_owned(), (public, Instant::now()));
        Ok(public)
    }

    /// Changes a repository's visibility.
    pub async fn set_public(&self, repo: &str, public: bool) -> Result<(), AuthError> {
        self.meta.set_public(repo, public).await?;
        self.public_cache.remove(repo);
        Ok(())
    }

    /// Starts a web session for a user who logged in with a password. Returns the session
    /// secret (for a cookie) and its lifetime.
    pub async fn start_session(&self, p: &Principal) -> Result<(String, Duration), AuthError> {
        let Principal::User { id, .. } = p else {
            return Err(AuthError::InvalidCredentials);
        };
        let secret = secret::generate_secret("berth_sess_");
        let ttl = Duration::from_secs(12 * 3600);
        let expires = berth_meta::now_millis() + ttl.as_millis() as i64;
        self.meta
            .create_session(&secret::hash_secret(&secret), *id, expires)
            .await?;
        Ok((secret, ttl))
    }

    /// The user of a live session.
    pub async fn session(&self, secret: &str) -> Result<Principal, AuthError> {
        if secret.len() > 128 {
            return Err(AuthError::InvalidCredentials);
        }
        match self.meta.session_user(&secret::hash_secret(secret)).await? {
            Some(u) if !u.disabled => Ok(user_principal(u)),
            _ => Err(AuthError::InvalidCredentials),
        }
    }

    pub async fn end_session(&self, secret: &str) -> Result<(), AuthError> {
        self.meta
            .delete_session(&secret::hash_secret(secret))
            .await?;
        Ok(())
    }

    /// Forgets remembered password logins, after a password change or a user being disabled.
    pub fn forget_cached_logins(&self) {
        self.basic_cache.clear();
    }

    /// The principal named by a token subject, as it is now (a disabled user or a revoked robot
    /// is refused even with a token that has not expired yet).
    pub async fn principal_for_subject(&self, sub: &str) -> Result<Option<Principal>, AuthError> {
        let now = berth_meta::now_millis();
        if sub == "anonymous" {
            return Ok(Some(Principal::Anonymous));
        }
        if let Some(name) = sub.strip_prefix("user:") {
            return Ok(self
                .meta
                .user_by_name(name)
                .await?
                .filter(|u| !u.disabled)
                .map(user_principal));
        }
        if let Some(name) = sub.strip_prefix("robot:") {
            let r = self.meta.robot_by_name(name).await?;
            return Ok(r
                .filter(|r| r.revoked_at.is_none() && r.expires_at.is_none_or(|e| e > now))
                .map(|r| Principal::Robot {
                    id: r.id,
                    name: r.name,
                    org: r.org,
                }));
        }
        // Tokens issued for access tokens name the user; their scope was fixed at issuance.
        if let Some(rest) = sub.strip_prefix("token:")
            && let Some((_, user)) = rest.split_once(':')
        {
            return Ok(self
                .meta
                .user_by_name(user)
                .await?
                .filter(|u| !u.disabled)
                .map(user_principal));
        }
        Ok(None)
    }

    /// The role `p` holds on repository `repo`.
    pub async fn role(&self, p: &Principal, repo: &str) -> Result<Role, AuthError> {
        let ns = repo.split('/').next().unwrap_or(repo);
        let public = || self.is_public(repo);
        let role = match p {
            Principal::Anonymous => Role::None,
            Principal::User {
                site_admin: true, ..
            } => Role::Admin,
            Principal::User { id, name, .. } => self.user_role(*id, name, ns, repo).await?,
            Principal::Token {
                user_id,
                user,
                site_admin,
                max_role,
                ..
            } => {
                let r = if *site_admin {
                    Role::Admin
                } else {
                    self.user_role(*user_id, user, ns, repo).await?
                };
                r.min(*max_role)
            }
            Principal::Robot { id, org, .. } => {
                if org != ns {
                    Role::None
                } else {
                    best(self.meta.robot_roles(*id, ns, repo).await?)
                }
            }
        };
        if role < Role::Read && public().await? {
            return Ok(Role::Read);
        }
        Ok(role)
    }

    async fn user_role(
        &self,
        id: i64,
        name: &str,
        ns: &str,
        repo: &str,
    ) -> Result<Role, AuthError> {
        if ns == name {
            return Ok(Role::Admin);
        }
        Ok(best(self.meta.user_roles(id, ns, repo).await?))
    }

    /// Grants what can be granted of `requested` actions on `repo`. Pushing into a namespace
    /// that nobody owns creates an organisation owned by the pusher, if the pusher may.
    pub async fn allowed_actions(
        &self,
        p: &Principal,
        repo: &str,
        requested: &[String],
    ) -> Result<Vec<String>, AuthError> {
        let mut role = self.role(p, repo).await?;
        let wants_push = requested.iter().any(|a| a == "push" || a == "delete");
        if wants_push && role < Role::Write {
            role = role.max(self.claim_namespace(p, repo).await?);
        }
        Ok(requested
            .iter()
            .filter(|a| role >= Role::for_action(a))
            .cloned()
            .collect())
    }

    async fn claim_namespace(&self, p: &Principal, repo: &str) -> Result<Role, AuthError> {
        let ns = repo.split('/').next().unwrap_or(repo);
        let (user_id, may) = match p {
            Principal::User { id, site_admin, .. } => {
                (*id, *site_admin || self.config.users_create_orgs)
            }
            Principal::Token {
                user_id,
                site_admin,
                max_role,
                ..
            } if *max_role >= Role::Write => {
                (*user_id, *site_admin || self.config.users_create_orgs)
            }
            _ => return Ok(Role::None),
        };
        if !may || self.meta.namespace(ns).await? != Namespace::Free {
            return Ok(Role::None);
        }
        match self.meta.create_org(ns, Some(user_id)).await {
            Ok(_) => {
                let _ = self
                    .meta
                    .audit(&p.actor(), "organisation.create", ns, "push", None)
                    .await;
            }
            // Someone else created it in the meantime: fall back to whatever they granted.
            Err(MetaError::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
        self.role(p, repo).await
    }

    /// Authenticates a bare personal access token (`Authorization: Bearer berth_pat_...` on the
    /// management API).
    pub async fn authenticate_token(
        &self,
        token: &str,
        source: IpAddr,
    ) -> Result<Principal, AuthError> {
        let Some(t) = self
            .meta
            .access_token_by_hash(&secret::hash_secret(token))
            .await?
        else {
            self.limiter.failed("token", source);
            return Err(AuthError::InvalidCredentials);
        };
        self.authenticate(&t.user.name, token, source).await
    }

    /// Whether `p` administers organisation `org` (site admins, and owners and admins of the
    /// whole organisation).
    pub async fn manages_org(&self, p: &Principal, org: &str) -> Result<bool, AuthError> {
        if p.is_site_admin() {
            return Ok(true);
        }
        let (user_id, cap) = match p {
            Principal::User { id, .. } => (*id, Role::Admin),
            Principal::Token {
                user_id, max_role, ..
            } => (*user_id, *max_role),
            _ => return Ok(false),
        };
        Ok(
            cap >= Role::Admin
                && best(self.meta.user_roles(user_id, org, "").await?) >= Role::Admin,
        )
    }

    /// Whether `p` may create organisations.
    pub fn may_create_orgs(&self, p: &Principal) -> bool {
        p.is_site_admin() || (self.config.users_create_orgs && matches!(p, Principal::User { .. }))
    }

    /// Whether `p` may see `repo` at all (pull it, or be told it exists).
    pub async fn can_see(&self, p: &Principal, repo: &str) -> Result<bool, AuthError> {
        Ok(self.role(p, repo).await? >= Role::Read)
    }

    /// Answers a token request: the requested scopes, each narrowed to what `p` may do.
    pub async fn grant(
        &self,
        p: &Principal,
        requested: &[ResourceScope],
    ) -> Result<Vec<ResourceScope>, AuthError> {
        let mut out = Vec::new();
        for s in requested {
            match s.kind.as_str() {
                "repository" => {
                    let actions = self.allowed_actions(p, &s.name, &s.actions).await?;
                    out.push(ResourceScope {
                        kind: s.kind.clone(),
                        name: s.name.clone(),
                        actions,
                    });
                }
                "registry" if s.name == "catalog" && *p != Principal::Anonymous => {
                    out.push(s.clone())
                }
                _ => {}
            }
        }
        Ok(out)
    }

    /// Issues an access token for `p` with `access`, and a refresh token if asked.
    pub fn issue(&self, p: &Principal, access: Vec<ResourceScope>, refresh: bool) -> IssuedToken {
        let (token, claims) = self.tokens.issue(&p.subject(), access);
        let refresh_token = (refresh && *p != Principal::Anonymous)
            .then(|| self.tokens.issue_refresh(&p.subject()));
        IssuedToken {
            token,
            // A reused token has less of its lifetime left than a fresh one.
            expires_in: claims.exp.saturating_sub(claims.iat.max(now_secs())),
            issued_at: claims.iat,
            refresh_token,
        }
    }

    /// Records an event in the audit log, never failing the caller.
    pub async fn audit(
        &self,
        p: &Principal,
        action: &str,
        target: &str,
        source: &str,
        detail: Option<&str>,
    ) {
        if let Err(e) = self
            .meta
            .audit(&p.actor(), action, target, source, detail)
            .await
        {
            tracing::warn!(error = %e, action, target, "could not write the audit log");
        }
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A token response.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub token: String,
    pub expires_in: u64,
    pub issued_at: u64,
    pub refresh_token: Option<String>,
}

fn user_principal(u: UserRow) -> Principal {
    Principal::User {
        id: u.id,
        name: u.name,
        site_admin: u.site_admin,
    }
}

fn best(roles: Vec<String>) -> Role {
    roles
        .iter()
        .filter_map(|r| Role::parse(r))
        .max()
        .unwrap_or(Role::None)
}

/// Shared handle.
pub type SharedAuth = Arc<AuthService>;
