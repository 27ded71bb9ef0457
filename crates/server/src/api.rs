//! `/api/v1/`: the management API for users, organisations, teams, grants, repositories, robot
//! accounts, access tokens, the audit log and the vulnerability database. JSON in and out; every error is
//! `{"error":{"code","message"}}`; lists are paged with `after` and `limit` and say where the next
//! page starts. Authenticated with Basic credentials (a password or an access token) or
//! `Authorization: Bearer <access token>`. The OpenAPI 3.1 document is generated from these
//! handlers (`/api/v1/openapi.json`), and `/api/v1/docs` serves an interactive page from the
//! binary.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use berth_auth::{AuthError, AuthService, Principal, Role, secret};
use berth_meta::MetaError;
use berth_meta::auth::{AuditQuery, Subject};
use berth_registry::vulndb::{ImportFormat, VulnDbError, VulnDbService};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::AppState;
use crate::access::{Credentials, credentials, source};

mod metrics;
mod scans;
use scans::ScanPaths;

// ---- errors ----

#[derive(Debug)]
pub struct ApiErr {
    status: StatusCode,
    code: &'static str,
    message: String,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable machine-readable code: `unauthorized`, `forbidden`, `not_found`, `conflict`,
    /// `invalid`, `too_large`, `bad_signature`, `too_many_requests`, `unavailable`, `internal`.
    code: String,
    message: String,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorResponse {
    error: ErrorDetail,
}

impl ApiErr {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiErr {
        ApiErr {
            status,
            code,
            message: message.into(),
        }
    }
    fn unauthorized() -> ApiErr {
        ApiErr::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "authentication required",
        )
    }
    fn forbidden() -> ApiErr {
        ApiErr::new(StatusCode::FORBIDDEN, "forbidden", "you may not do this")
    }
    fn not_found(what: impl std::fmt::Display) -> ApiErr {
        ApiErr::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} does not exist"),
        )
    }
    /// 507: the disk under the database or the blobs is full (the cause is logged where the
    /// error is converted).
    fn storage_full() -> ApiErr {
        ApiErr::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "storage_full",
            "the registry's storage is full",
        )
    }

    fn invalid(message: impl Into<String>) -> ApiErr {
        ApiErr::new(StatusCode::BAD_REQUEST, "invalid", message)
    }
}

impl From<AuthError> for ApiErr {
    fn from(e: AuthError) -> ApiErr {
        match e {
            AuthError::InvalidCredentials => ApiErr::unauthorized(),
            AuthError::TooManyAttempts(_) => ApiErr::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_requests",
                "too many failed logins",
            ),
            AuthError::Meta(e) => e.into(),
        }
    }
}

impl From<MetaError> for ApiErr {
    fn from(e: MetaError) -> ApiErr {
        match e {
            MetaError::Conflict(m) => ApiErr::new(StatusCode::CONFLICT, "conflict", m),
            MetaError::Full(_) => {
                tracing::error!(error = %e, "metadata database's disk is full");
                ApiErr::storage_full()
            }
            MetaError::Unavailable(_) => {
                tracing::error!(error = %e, "metadata database unavailable");
                ApiErr::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the database is unavailable",
                )
            }
            e => {
                tracing::error!(error = %e, "management API error");
                ApiErr::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error",
                )
            }
        }
    }
}

impl From<VulnDbError> for ApiErr {
    fn from(e: VulnDbError) -> ApiErr {
        let message = e.to_string();
        match e {
            VulnDbError::Invalid(_) => ApiErr::invalid(message),
            VulnDbError::TooLarge { .. } => {
                ApiErr::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message)
            }
            VulnDbError::Signature(_) => {
                ApiErr::new(StatusCode::BAD_REQUEST, "bad_signature", message)
            }
            VulnDbError::NotFound(_) => ApiErr::new(StatusCode::NOT_FOUND, "not_found", message),
            VulnDbError::Busy => ApiErr::new(StatusCode::CONFLICT, "conflict", message),
            VulnDbError::Full(_) => {
                tracing::error!(error = %e, "vulnerability database: storage is full");
                ApiErr::storage_full()
            }
            VulnDbError::Fetch(_) | VulnDbError::Unavailable(_) => {
                tracing::error!(error = %e, "vulnerability database unavailable");
                ApiErr::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "a backing service is unavailable",
                )
            }
            VulnDbError::Internal(_) => {
                tracing::error!(error = %e, "vulnerability database error");
                ApiErr::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error",
                )
            }
        }
    }
}

impl IntoResponse for ApiErr {
    fn into_response(self) -> Response {
        let body = ErrorResponse {
            error: ErrorDetail {
                code: self.code.into(),
                message: self.message,
            },
        };
        let mut r = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Basic realm=\"berth\""),
            );
        }
        r
    }
}

type ApiResult<T> = Result<T, ApiErr>;

// ---- the caller ----

/// The authenticated caller of a management request.
pub struct Caller {
    auth: Arc<AuthService>,
    principal: Principal,
    source: std::net::IpAddr,
}

impl axum::extract::FromRequestParts<AppState> for Caller {
    type Rejection = ApiErr;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Caller, ApiErr> {
        let auth = state
            .auth
            .clone()
            .ok_or_else(|| ApiErr::not_found("the management API (authentication is off)"))?;
        let src = source(parts);
        let principal = match credentials(parts).map_err(|_| ApiErr::unauthorized())? {
            Credentials::Basic { user, password } => {
                auth.authenticate(&user, &password, src).await?
            }
            Credentials::Bearer(token) if token.starts_with("berth_pat_") => {
                auth.authenticate_token(&token, src).await?
            }
            Credentials::None => match session_cookie(parts) {
                Some(secret) => {
                    // A cookie is sent by the browser on its own; a state-changing request must
                    // also carry a header that another site's page cannot add without CORS.
                    let safe =
                        parts.method == http::Method::GET || parts.method == http::Method::HEAD;
                    if !safe && !parts.headers.contains_key(CSRF_HEADER) {
                        return Err(ApiErr::new(
                            StatusCode::FORBIDDEN,
                            "forbidden",
                            format!(
                                "session requests that change something need the {CSRF_HEADER} header"
                            ),
                        ));
                    }
                    auth.session(&secret).await?
                }
                None => return Err(ApiErr::unauthorized()),
            },
            _ => return Err(ApiErr::unauthorized()),
        };
        Ok(Caller {
            auth,
            principal,
            source: src,
        })
    }
}

/// The cookie that carries a web session.
const SESSION_COOKIE: &str = "berth_session";
/// The header a session-authenticated request that changes something must carry.
const CSRF_HEADER: &str = "x-berth-csrf";

fn session_cookie(parts: &Parts) -> Option<String> {
    parts
        .headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            v.split(';').find_map(|c| {
                c.trim()
                    .strip_prefix(SESSION_COOKIE)
                    .and_then(|r| r.strip_prefix('='))
                    .map(str::to_owned)
            })
        })
}

#[derive(Deserialize, ToSchema)]
pub struct Login {
    username: String,
    password: String,
}

/// Logs in with a password and starts a web session (the `berth_session` cookie: HttpOnly,
/// SameSite=Strict, 12 hours). Requests that change something with a session must also send
/// `X-Berth-CSRF: 1`.
#[utoipa::path(post, path = "/api/v1/session", tag = "users", request_body = Login, responses((status = 201, body = Me), (status = 401, body = ErrorResponse)))]
async fn login(
    axum::extract::State(state): axum::extract::State<AppState>,
    axum::extract::ConnectInfo(addr): axum::extract::ConnectInfo<std::net::SocketAddr>,
    Json(l): Json<Login>,
) -> ApiResult<Response> {
    let auth = state
        .auth
        .clone()
        .ok_or_else(|| ApiErr::not_found("the management API (authentication is off)"))?;
    let p = auth
        .authenticate(&l.username, &l.password, addr.ip())
        .await?;
    let (secret, ttl) = auth
        .start_session(&p)
        .await
        .map_err(|_| ApiErr::forbidden())?;
    auth.audit(
        &p,
        "session.start",
        &l.username,
        &addr.ip().to_string(),
        None,
    )
    .await;
    let cookie = format!(
        "{SESSION_COOKIE}={secret}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        ttl.as_secs()
    );
    let me = Me {
        kind: "user".into(),
        name: l.username,
        site_admin: p.is_site_admin(),
    };
    let mut r = (StatusCode::CREATED, Json(me)).into_response();
    if let Ok(v) = http::HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(http::header::SET_COOKIE, v);
    }
    Ok(r)
}

/// Ends the web session.
#[utoipa::path(delete, path = "/api/v1/session", tag = "users", responses((status = 204)))]
async fn logout(
    axum::extract::State(state): axum::extract::State<AppState>,
    parts: Parts,
) -> ApiResult<Response> {
    let auth = state
        .auth
        .clone()
        .ok_or_else(|| ApiErr::not_found("the management API (authentication is off)"))?;
    if let Some(secret) = session_cookie(&parts) {
        auth.end_session(&secret).await?;
    }
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut().insert(
        http::header::SET_COOKIE,
        http::HeaderValue::from_static(
            "berth_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0",
        ),
    );
    Ok(r)
}

impl Caller {
    fn require_site_admin(&self) -> ApiResult<()> {
        if self.principal.is_site_admin() {
            Ok(())
        } else {
            Err(ApiErr::forbidden())
        }
    }

    async fn require_org_manager(&self, org: &str) -> ApiResult<i64> {
        let Some(id) = self.auth.meta().org_id(org).await? else {
            return Err(ApiErr::not_found(format!("organisation {org}")));
        };
        if self.auth.manages_org(&self.principal, org).await? {
            Ok(id)
        } else {
            Err(ApiErr::forbidden())
        }
    }

    /// The user behind the caller (a user, or a user acting through an access token).
    fn user_name(&self) -> Option<&str> {
        match &self.principal {
            Principal::User { name, .. } => Some(name),
            Principal::Token { user, .. } => Some(user),
            _ => None,
        }
    }

    async fn audit(&self, action: &str, target: &str) {
        self.auth
            .audit(
                &self.principal,
                action,
                target,
                &self.source.to_string(),
                None,
            )
            .await;
    }
}

// ---- shapes ----

#[derive(Serialize, ToSchema)]
pub struct Me {
    /// `user`, `robot` or `token`.
    kind: String,
    name: String,
    site_admin: bool,
}

#[derive(Serialize, ToSchema)]
pub struct User {
    name: String,
    site_admin: bool,
    disabled: bool,
    /// Milliseconds since the Unix epoch.
    created_at: i64,
}

#[derive(Serialize, ToSchema)]
pub struct UserPage {
    items: Vec<User>,
    /// Pass as `after` for the next page; absent on the last page.
    next: Option<String>,
}

#[derive(Deserialize, IntoParams)]
pub struct PageParams {
    /// Return items after this name.
    after: Option<String>,
    /// At most this many items (default 100, at most 1000).
    limit: Option<i64>,
}

impl PageParams {
    fn limit(&self) -> i64 {
        self.limit.unwrap_or(100).clamp(1, 1000)
    }
}

#[derive(Deserialize, ToSchema)]
pub struct NewUser {
    name: String,
    password: String,
    #[serde(default)]
    site_admin: bool,
}

#[derive(Deserialize, ToSchema)]
pub struct UserUpdate {
    password: Option<String>,
    site_admin: Option<bool>,
    disabled: Option<bool>,
}

#[derive(Serialize, ToSchema)]
pub struct NamePage {
    items: Vec<String>,
    next: Option<String>,
}

#[derive(Deserialize, ToSchema)]
pub struct NewName {
    name: String,
}

#[derive(Serialize, ToSchema)]
pub struct Team {
    name: String,
    members: Vec<String>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct Grant {
    /// `user`, `team` or `robot`.
    subject_kind: String,
    /// A user name, a team name of this organisation, or a robot's full name (`org+name`).
    subject: String,
    /// A repository of the organisation; empty or absent for the whole organisation.
    #[serde(default)]
    repo: String,
    /// `read`, `write`, `admin` or `owner`.
    role: String,
}

#[derive(Deserialize, IntoParams)]
pub struct GrantTarget {
    subject_kind: String,
    subject: String,
    #[serde(default)]
    repo: String,
}

#[derive(Deserialize, ToSchema)]
pub struct NewRobot {
    /// The robot's name within the organisation; it logs in as `org+name`.
    name: String,
    /// `read`, `write` or `admin`.
    role: String,
    /// Repositories the role applies to; empty for the whole organisation.
    #[serde(default)]
    repos: Vec<String>,
    expires_days: Option<u64>,
}

#[derive(Serialize, ToSchema)]
pub struct Robot {
    name: String,
    expires_at: Option<i64>,
    revoked: bool,
    created_at: i64,
}

#[derive(Serialize, ToSchema)]
pub struct Secret {
    /// The login name to use with the secret.
    name: String,
    /// Shown only in this response; store it now.
    secret: String,
}

#[derive(Deserialize, ToSchema)]
pub struct NewToken {
    name: String,
    /// The most the token may do: `read`, `write` or `admin`.
    role: String,
    expires_days: Option<u64>,
}

#[derive(Serialize, ToSchema)]
pub struct AccessToken {
    id: i64,
    name: String,
    role: String,
    expires_at: Option<i64>,
    revoked: bool,
    created_at: i64,
}

#[derive(Serialize, ToSchema)]
pub struct Repository {
    name: String,
    public: bool,
    description: Option<String>,
}

#[derive(Deserialize, ToSchema)]
pub struct RepositoryUpdate {
    public: Option<bool>,
    description: Option<String>,
}

#[derive(Deserialize, IntoParams)]
pub struct AuditParams {
    actor: Option<String>,
    target: Option<String>,
    /// Milliseconds since the Unix epoch.
    since: Option<i64>,
    until: Option<i64>,
    /// Entries older than this id (for the next page).
    before: Option<i64>,
    limit: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct AuditEntry {
    id: i64,
    at: i64,
    actor: String,
    action: String,
    target: String,
    source: String,
}

#[derive(Serialize, ToSchema)]
pub struct AuditPage {
    items: Vec<AuditEntry>,
    /// Pass as `before` for older entries.
    next: Option<i64>,
}

fn check_role(role: &str, allowed: &[&str]) -> ApiResult<()> {
    if allowed.contains(&role) {
        Ok(())
    } else {
        Err(ApiErr::invalid(format!(
            "role must be one of {}",
            allowed.join(", ")
        )))
    }
}

fn check_name(name: &str, what: &str) -> ApiResult<()> {
    match name.parse::<berth_oci::RepoName>() {
        Ok(n) if !n.as_str().contains('/') => Ok(()),
        _ => Err(ApiErr::invalid(format!(
            "{what} {name:?} must be lowercase letters, digits and . _ -"
        ))),
    }
}

fn check_password(p: &str) -> ApiResult<()> {
    if p.len() < 8 || p.len() > 1024 {
        Err(ApiErr::invalid("passwords have 8 to 1024 characters"))
    } else {
        Ok(())
    }
}

fn expiry(days: Option<u64>) -> Option<i64> {
    days.map(|d| berth_meta::now_millis() + (d.min(36_500) as i64) * 86_400_000)
}

// ---- handlers ----

#[utoipa::path(get, path = "/api/v1/me", tag = "users", responses((status = 200, body = Me), (status = 401, body = ErrorResponse)))]
async fn me(c: Caller) -> Json<Me> {
    let (kind, name) = match &c.principal {
        Principal::User { name, .. } => ("user", name.clone()),
        Principal::Robot { name, .. } => ("robot", name.clone()),
        Principal::Token { user, .. } => ("token", user.clone()),
        Principal::Anonymous => ("anonymous", String::new()),
    };
    Json(Me {
        kind: kind.into(),
        name,
        site_admin: c.principal.is_site_admin(),
    })
}

#[utoipa::path(get, path = "/api/v1/users", tag = "users", params(PageParams), responses((status = 200, body = UserPage), (status = 403, body = ErrorResponse)))]
async fn list_users(c: Caller, Query(p): Query<PageParams>) -> ApiResult<Json<UserPage>> {
    c.require_site_admin()?;
    let rows = c
        .auth
        .meta()
        .list_users(p.after.as_deref().unwrap_or(""), p.limit())
        .await?;
    let next = (rows.len() as i64 == p.limit())
        .then(|| rows.last().map(|u| u.name.clone()))
        .flatten();
    let items = rows
        .into_iter()
        .map(|u| User {
            name: u.name,
            site_admin: u.site_admin,
            disabled: u.disabled,
            created_at: u.created_at,
        })
        .collect();
    Ok(Json(UserPage { items, next }))
}

#[utoipa::path(post, path = "/api/v1/users", tag = "users", request_body = NewUser, responses((status = 201, body = User), (status = 409, body = ErrorResponse)))]
async fn create_user(c: Caller, Json(u): Json<NewUser>) -> ApiResult<(StatusCode, Json<User>)> {
    c.require_site_admin()?;
    check_name(&u.name, "user name")?;
    check_password(&u.password)?;
    let hash = tokio::task::spawn_blocking(move || secret::hash_password(&u.password))
        .await
        .map_err(|_| ApiErr::invalid("hashing failed"))?;
    c.auth
        .meta()
        .create_user(&u.name, &hash, u.site_admin)
        .await?;
    c.audit("user.create", &u.name).await;
    let row = c
        .auth
        .meta()
        .user_by_name(&u.name)
        .await?
        .ok_or_else(|| ApiErr::not_found(&u.name))?;
    Ok((
        StatusCode::CREATED,
        Json(User {
            name: row.name,
            site_admin: row.site_admin,
            disabled: row.disabled,
            created_at: row.created_at,
        }),
    ))
}

#[utoipa::path(patch, path = "/api/v1/users/{name}", tag = "users", request_body = UserUpdate, responses((status = 204), (status = 403, body = ErrorResponse)))]
async fn update_user(
    c: Caller,
    Path(name): Path<String>,
    Json(u): Json<UserUpdate>,
) -> ApiResult<StatusCode> {
    let own = c.user_name() == Some(name.as_str()) && matches!(c.principal, Principal::User { .. });
    let admin = c.principal.is_site_admin();
    if !(admin || (own && u.site_admin.is_none() && u.disabled.is_none())) {
        return Err(ApiErr::forbidden());
    }
    let row = c
        .auth
        .meta()
        .user_by_name(&name)
        .await?
        .ok_or_else(|| ApiErr::not_found(format!("user {name}")))?;
    if let Some(p) = u.password {
        check_password(&p)?;
        let hash = tokio::task::spawn_blocking(move || secret::hash_password(&p))
            .await
            .map_err(|_| ApiErr::invalid("hashing failed"))?;
        c.auth.meta().set_password(&name, &hash).await?;
        c.auth.forget_cached_logins();
        c.audit("user.password", &name).await;
    }
    if u.site_admin.is_some() || u.disabled.is_some() {
        let site_admin = u.site_admin.unwrap_or(row.site_admin);
        let disabled = u.disabled.unwrap_or(row.disabled);
        c.auth
            .meta()
            .set_user_flags(&name, site_admin, disabled)
            .await?;
        c.auth.forget_cached_logins();
        c.audit(
            "user.update",
            &format!("{name} site_admin={site_admin} disabled={disabled}"),
        )
        .await;
    }
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/orgs", tag = "organisations", params(PageParams), responses((status = 200, body = NamePage)))]
async fn list_orgs(c: Caller, Query(p): Query<PageParams>) -> ApiResult<Json<NamePage>> {
    let items = c
        .auth
        .meta()
        .list_orgs(p.after.as_deref().unwrap_or(""), p.limit())
        .await?;
    let next = (items.len() as i64 == p.limit())
        .then(|| items.last().cloned())
        .flatten();
    Ok(Json(NamePage { items, next }))
}

#[utoipa::path(post, path = "/api/v1/orgs", tag = "organisations", request_body = NewName, responses((status = 201), (status = 409, body = ErrorResponse)))]
async fn create_org(c: Caller, Json(n): Json<NewName>) -> ApiResult<StatusCode> {
    if !c.auth.may_create_orgs(&c.principal) {
        return Err(ApiErr::forbidden());
    }
    check_name(&n.name, "organisation name")?;
    let owner = match &c.principal {
        Principal::User { id, .. } => Some(*id),
        Principal::Token { user_id, .. } => Some(*user_id),
        _ => None,
    };
    c.auth.meta().create_org(&n.name, owner).await?;
    c.audit("organisation.create", &n.name).await;
    Ok(StatusCode::CREATED)
}

#[utoipa::path(get, path = "/api/v1/orgs/{org}/teams", tag = "organisations", responses((status = 200, body = [Team])))]
async fn list_teams(c: Caller, Path(org): Path<String>) -> ApiResult<Json<Vec<Team>>> {
    let id = c.require_org_manager(&org).await?;
    let teams = c.auth.meta().list_teams(id).await?;
    Ok(Json(
        teams
            .into_iter()
            .map(|(name, members)| Team { name, members })
            .collect(),
    ))
}

#[utoipa::path(post, path = "/api/v1/orgs/{org}/teams", tag = "organisations", request_body = NewName, responses((status = 201)))]
async fn create_team(
    c: Caller,
    Path(org): Path<String>,
    Json(n): Json<NewName>,
) -> ApiResult<StatusCode> {
    let id = c.require_org_manager(&org).await?;
    check_name(&n.name, "team name")?;
    if c.auth.meta().team_id(id, &n.name).await?.is_some() {
        return Err(ApiErr::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("team {} exists", n.name),
        ));
    }
    c.auth.meta().create_team(id, &n.name).await?;
    c.audit("team.create", &format!("{org}/{}", n.name)).await;
    Ok(StatusCode::CREATED)
}

async fn team_and_user(c: &Caller, org: &str, team: &str, user: &str) -> ApiResult<(i64, i64)> {
    let id = c.require_org_manager(org).await?;
    let t = c
        .auth
        .meta()
        .team_id(id, team)
        .await?
        .ok_or_else(|| ApiErr::not_found(format!("team {team}")))?;
    let u = c
        .auth
        .meta()
        .user_by_name(user)
        .await?
        .ok_or_else(|| ApiErr::not_found(format!("user {user}")))?;
    Ok((t, u.id))
}

#[utoipa::path(put, path = "/api/v1/orgs/{org}/teams/{team}/members/{user}", tag = "organisations", responses((status = 204)))]
async fn add_member(
    c: Caller,
    Path((org, team, user)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    let (t, u) = team_and_user(&c, &org, &team, &user).await?;
    c.auth.meta().add_team_member(t, u).await?;
    c.audit("team.member.add", &format!("{org}/{team}/{user}"))
        .await;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/api/v1/orgs/{org}/teams/{team}/members/{user}", tag = "organisations", responses((status = 204)))]
async fn remove_member(
    c: Caller,
    Path((org, team, user)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    let (t, u) = team_and_user(&c, &org, &team, &user).await?;
    c.auth.meta().remove_team_member(t, u).await?;
    c.audit("team.member.remove", &format!("{org}/{team}/{user}"))
        .await;
    Ok(StatusCode::NO_CONTENT)
}

async fn subject(c: &Caller, org_id: i64, org: &str, kind: &str, name: &str) -> ApiResult<Subject> {
    let m = c.auth.meta();
    match kind {
        "user" => Ok(Subject::User(
            m.user_by_name(name)
                .await?
                .ok_or_else(|| ApiErr::not_found(format!("user {name}")))?
                .id,
        )),
        "team" => {
            Ok(Subject::Team(m.team_id(org_id, name).await?.ok_or_else(
                || ApiErr::not_found(format!("team {name}")),
            )?))
        }
        "robot" => {
            let r = m
                .robot_by_name(name)
                .await?
                .filter(|r| r.org == org)
                .ok_or_else(|| ApiErr::not_found(format!("robot {name}")))?;
            Ok(Subject::Robot(r.id))
        }
        _ => Err(ApiErr::invalid("subject_kind must be user, team or robot")),
    }
}

fn check_repo_in_org(repo: &str, org: &str) -> ApiResult<()> {
    if repo.is_empty() {
        return Ok(());
    }
    match repo.parse::<berth_oci::RepoName>() {
        Ok(r) if r.namespace() == org && r.as_str().contains('/') => Ok(()),
        _ => Err(ApiErr::invalid(format!(
            "{repo:?} is not a repository of {org}"
        ))),
    }
}

#[utoipa::path(get, path = "/api/v1/orgs/{org}/grants", tag = "organisations", responses((status = 200, body = [Grant])))]
async fn list_grants(c: Caller, Path(org): Path<String>) -> ApiResult<Json<Vec<Grant>>> {
    let id = c.require_org_manager(&org).await?;
    let rows = c.auth.meta().list_grants(id).await?;
    Ok(Json(
        rows.into_iter()
            .map(|g| Grant {
                subject_kind: g.subject_kind,
                subject: g.subject,
                repo: g.repo,
                role: g.role,
            })
            .collect(),
    ))
}

#[utoipa::path(put, path = "/api/v1/orgs/{org}/grants", tag = "organisations", request_body = Grant, responses((status = 204)))]
async fn put_grant(
    c: Caller,
    Path(org): Path<String>,
    Json(g): Json<Grant>,
) -> ApiResult<StatusCode> {
    let id = c.require_org_manager(&org).await?;
    check_role(&g.role, &["read", "write", "admin", "owner"])?;
    check_repo_in_org(&g.repo, &org)?;
    if g.role == "owner" && !g.repo.is_empty() {
        return Err(ApiErr::invalid("owner is a role on a whole organisation"));
    }
    let s = subject(&c, id, &org, &g.subject_kind, &g.subject).await?;
    c.auth.meta().grant(s, id, &g.repo, &g.role).await?;
    c.audit(
        "grant.set",
        &format!(
            "{org}:{}:{}={} ({})",
            g.subject_kind,
            g.subject,
            g.role,
            if g.repo.is_empty() {
                "organisation"
            } else {
                &g.repo
            }
        ),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/api/v1/orgs/{org}/grants", tag = "organisations", params(GrantTarget), responses((status = 204), (status = 404, body = ErrorResponse)))]
async fn delete_grant(
    c: Caller,
    Path(org): Path<String>,
    Query(g): Query<GrantTarget>,
) -> ApiResult<StatusCode> {
    let id = c.require_org_manager(&org).await?;
    let s = subject(&c, id, &org, &g.subject_kind, &g.subject).await?;
    if !c.auth.meta().revoke_grant(s, id, &g.repo).await? {
        return Err(ApiErr::not_found("that grant"));
    }
    c.audit(
        "grant.revoke",
        &format!(
            "{org}:{}:{} ({})",
            g.subject_kind,
            g.subject,
            if g.repo.is_empty() {
                "organisation"
            } else {
                &g.repo
            }
        ),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/orgs/{org}/robots", tag = "robots", responses((status = 200, body = [Robot])))]
async fn list_robots(c: Caller, Path(org): Path<String>) -> ApiResult<Json<Vec<Robot>>> {
    let id = c.require_org_manager(&org).await?;
    let rows = c.auth.meta().list_robots(id).await?;
    Ok(Json(
        rows.into_iter()
            .map(|r| Robot {
                name: r.name,
                expires_at: r.expires_at,
                revoked: r.revoked_at.is_some(),
                created_at: r.created_at,
            })
            .collect(),
    ))
}

#[utoipa::path(post, path = "/api/v1/orgs/{org}/robots", tag = "robots", request_body = NewRobot, responses((status = 201, body = Secret)))]
async fn create_robot(
    c: Caller,
    Path(org): Path<String>,
    Json(r): Json<NewRobot>,
) -> ApiResult<(StatusCode, Json<Secret>)> {
    let id = c.require_org_manager(&org).await?;
    check_name(&r.name, "robot name")?;
    check_role(&r.role, &["read", "write", "admin"])?;
    for repo in &r.repos {
        if repo.is_empty() {
            return Err(ApiErr::invalid("repository names must not be empty"));
        }
        check_repo_in_org(repo, &org)?;
    }
    let full = format!("{org}+{}", r.name);
    let secret = secret::generate_secret("berth_robot_");
    let m = c.auth.meta();
    let robot = m
        .create_robot(
            id,
            &full,
            &secret::hash_secret(&secret),
            expiry(r.expires_days),
        )
        .await?;
    if r.repos.is_empty() {
        m.grant(Subject::Robot(robot), id, "", &r.role).await?;
    }
    for repo in &r.repos {
        m.grant(Subject::Robot(robot), id, repo, &r.role).await?;
    }
    c.audit("robot.create", &full).await;
    Ok((StatusCode::CREATED, Json(Secret { name: full, secret })))
}

#[utoipa::path(delete, path = "/api/v1/orgs/{org}/robots/{name}", tag = "robots", responses((status = 204), (status = 404, body = ErrorResponse)))]
async fn revoke_robot(
    c: Caller,
    Path((org, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    c.require_org_manager(&org).await?;
    let full = if name.contains('+') {
        name
    } else {
        format!("{org}+{name}")
    };
    if !full.starts_with(&format!("{org}+")) || !c.auth.meta().revoke_robot(&full).await? {
        return Err(ApiErr::not_found(format!("robot {full}")));
    }
    c.audit("robot.revoke", &full).await;
    Ok(StatusCode::NO_CONTENT)
}

async fn token_owner(c: &Caller, user: &str) -> ApiResult<i64> {
    // Only the user (by password, not through another token) or a site admin manages tokens.
    let own = matches!(&c.principal, Principal::User { name, .. } if name == user);
    if !(own || c.principal.is_site_admin()) {
        return Err(ApiErr::forbidden());
    }
    Ok(c.auth
        .meta()
        .user_by_name(user)
        .await?
        .ok_or_else(|| ApiErr::not_found(format!("user {user}")))?
        .id)
}

#[utoipa::path(get, path = "/api/v1/users/{name}/tokens", tag = "tokens", responses((status = 200, body = [AccessToken])))]
async fn list_tokens(c: Caller, Path(name): Path<String>) -> ApiResult<Json<Vec<AccessToken>>> {
    let id = token_owner(&c, &name).await?;
    let rows = c.auth.meta().list_access_tokens(id).await?;
    Ok(Json(
        rows.into_iter()
            .map(|t| AccessToken {
                id: t.id,
                name: t.name,
                role: t.max_role,
                expires_at: t.expires_at,
                revoked: t.revoked_at.is_some(),
                created_at: t.created_at,
            })
            .collect(),
    ))
}

#[utoipa::path(post, path = "/api/v1/users/{name}/tokens", tag = "tokens", request_body = NewToken, responses((status = 201, body = Secret)))]
async fn create_token(
    c: Caller,
    Path(name): Path<String>,
    Json(t): Json<NewToken>,
) -> ApiResult<(StatusCode, Json<Secret>)> {
    let id = token_owner(&c, &name).await?;
    check_role(&t.role, &["read", "write", "admin"])?;
    if t.name.is_empty() || t.name.len() > 100 {
        return Err(ApiErr::invalid("token names have 1 to 100 characters"));
    }
    let secret = secret::generate_secret("berth_pat_");
    c.auth
        .meta()
        .create_access_token(
            id,
            &t.name,
            &secret::hash_secret(&secret),
            &t.role,
            expiry(t.expires_days),
        )
        .await?;
    c.audit("token.create", &format!("{name}/{}", t.name)).await;
    Ok((StatusCode::CREATED, Json(Secret { name, secret })))
}

#[utoipa::path(delete, path = "/api/v1/users/{name}/tokens/{id}", tag = "tokens", responses((status = 204), (status = 404, body = ErrorResponse)))]
async fn revoke_token(
    c: Caller,
    Path((name, token)): Path<(String, i64)>,
) -> ApiResult<StatusCode> {
    let id = token_owner(&c, &name).await?;
    if !c.auth.meta().revoke_access_token(id, token).await? {
        return Err(ApiErr::not_found(format!("token {token}")));
    }
    c.audit("token.revoke", &format!("{name}/{token}")).await;
    Ok(StatusCode::NO_CONTENT)
}

async fn repo_for(c: &Caller, name: &str, need: Role) -> ApiResult<String> {
    let repo: berth_oci::RepoName = name
        .parse()
        .map_err(|_| ApiErr::invalid(format!("{name:?} is not a repository name")))?;
    let role = c.auth.role(&c.principal, repo.as_str()).await?;
    if role < Role::Read {
        return Err(ApiErr::not_found(format!("repository {repo}")));
    }
    if role < need {
        return Err(ApiErr::forbidden());
    }
    Ok(repo.to_string())
}

/// `/api/v1/repositories/{name}` and, after a `/-/` separator, the repository's scanning
/// resources (`scans.rs`).
async fn repositories(
    c: Caller,
    State(state): State<AppState>,
    method: http::Method,
    Path(path): Path<String>,
    Query(q): Query<std::collections::HashMap<String, String>>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    if let Some((name, rest)) = path.split_once("/-/") {
        return scans::repository_resource(c, &state, &method, name, rest, &q, &body).await;
    }
    match method {
        http::Method::GET => Ok(get_repo(c, Path(path)).await?.into_response()),
        http::Method::PATCH => {
            let u: RepositoryUpdate = serde_json::from_slice(&body)
                .map_err(|e| ApiErr::invalid(format!("the update is not valid JSON: {e}")))?;
            Ok(update_repo(c, Path(path), Json(u)).await?.into_response())
        }
        _ => Err(ApiErr::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid",
            "method not allowed here",
        )),
    }
}

#[utoipa::path(get, path = "/api/v1/repositories/{name}", tag = "repositories", responses((status = 200, body = Repository), (status = 404, body = ErrorResponse)))]
async fn get_repo(c: Caller, Path(name): Path<String>) -> ApiResult<Json<Repository>> {
    let name = repo_for(&c, &name, Role::Read).await?;
    let (public, description) = c.auth.meta().repo_settings(&name).await?;
    Ok(Json(Repository {
        name,
        public,
        description,
    }))
}

#[utoipa::path(patch, path = "/api/v1/repositories/{name}", tag = "repositories", request_body = RepositoryUpdate, responses((status = 200, body = Repository)))]
async fn update_repo(
    c: Caller,
    Path(name): Path<String>,
    Json(u): Json<RepositoryUpdate>,
) -> ApiResult<Json<Repository>> {
    let name = repo_for(&c, &name, Role::Admin).await?;
    let m = c.auth.meta();
    if let Some(p) = u.public {
        c.auth.set_public(&name, p).await?;
        c.audit(
            if p {
                "repository.public"
            } else {
                "repository.private"
            },
            &name,
        )
        .await;
    }
    if let Some(d) = &u.description {
        if d.len() > 10_000 {
            return Err(ApiErr::invalid(
                "descriptions have at most 10000 characters",
            ));
        }
        m.set_description(&name, Some(d)).await?;
        c.audit("repository.describe", &name).await;
    }
    let (public, description) = m.repo_settings(&name).await?;
    Ok(Json(Repository {
        name,
        public,
        description,
    }))
}

#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(AuditParams), responses((status = 200, body = AuditPage)))]
async fn audit_log(c: Caller, Query(q): Query<AuditParams>) -> ApiResult<Json<AuditPage>> {
    c.require_site_admin()?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let rows = c
        .auth
        .meta()
        .audit_entries(&AuditQuery {
            actor: q.actor,
            target: q.target,
            since: q.since,
            until: q.until,
            before_id: q.before,
            limit,
        })
        .await?;
    let next = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|e| e.id))
        .flatten();
    let items = rows
        .into_iter()
        .map(|e| AuditEntry {
            id: e.id,
            at: e.at,
            actor: e.actor,
            action: e.action,
            target: e.target,
            source: e.source,
        })
        .collect();
    Ok(Json(AuditPage { items, next }))
}

// ---- the vulnerability database ----

fn vulndb(state: &AppState) -> ApiResult<&Arc<VulnDbService>> {
    state
        .vulndb
        .as_ref()
        .ok_or_else(|| ApiErr::not_found("the vulnerability database"))
}

#[derive(Serialize, ToSchema)]
pub struct VulnDbFeed {
    name: String,
    /// The configured URL and format; absent for a feed only imported by hand.
    url: Option<String>,
    format: Option<String>,
    /// Records of this feed in the database this server uses.
    records: u64,
    /// When its records were imported, in Unix seconds.
    imported_at: Option<u64>,
    /// Unix milliseconds of the last update attempt and of the last success (unchanged counts).
    last_attempt: Option<i64>,
    last_success: Option<i64>,
    /// Why the last attempt failed; the previous records stay in use.
    error: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct VulnDbStatus {
    /// The content version (a hash of the records).
    version: String,
    /// The snapshot blob in use.
    digest: Option<String>,
    /// When that snapshot was recorded, in Unix milliseconds.
    created_at: Option<i64>,
    advisories: u64,
    /// Seconds since the least recently confirmed feed was last found current.
    age_secs: Option<u64>,
    /// Older than `vulndb.max_age_secs`, or empty.
    stale: bool,
    feeds: Vec<VulnDbFeed>,
}

impl From<berth_registry::vulndb::VulnDbStatus> for VulnDbStatus {
    fn from(s: berth_registry::vulndb::VulnDbStatus) -> Self {
        VulnDbStatus {
            version: s.version,
            digest: s.digest,
            created_at: s.created_at,
            advisories: s.advisories as u64,
            age_secs: s.age_secs,
            stale: s.stale,
            feeds: s
                .feeds
                .into_iter()
                .map(|f| VulnDbFeed {
                    name: f.name,
                    url: f.url,
                    format: f.format,
                    records: f.records as u64,
                    imported_at: f.imported_at,
                    last_attempt: f.last_attempt,
                    last_success: f.last_success,
                    error: f.error,
                })
                .collect(),
        }
    }
}

#[derive(Deserialize, IntoParams)]
pub struct VulnDbImportParams {
    /// `osv` (one record, or a zip archive of records), `debian-tracker` or `alpine-secdb`.
    format: String,
    /// The feed whose records the upload replaces [default: the format's name].
    feed: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct VulnDbImport {
    feed: String,
    /// Records of the feed now in the database.
    records: u64,
    documents: u64,
    /// Parts of records skipped as unusable.
    warnings: u64,
    version: String,
    digest: String,
}

impl From<berth_registry::vulndb::ImportOutcome> for VulnDbImport {
    fn from(o: berth_registry::vulndb::ImportOutcome) -> Self {
        VulnDbImport {
            feed: o.feed,
            records: o.records as u64,
            documents: o.documents as u64,
            warnings: o.warnings as u64,
            version: o.version,
            digest: o.digest,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct AdvisoryList {
    /// The id or alias asked for.
    id: String,
    /// Every record with that id or alias, from every feed, in the database's JSON form.
    #[schema(value_type = Vec<Object>)]
    advisories: Vec<serde_json::Value>,
}

#[utoipa::path(get, path = "/api/v1/vulndb", tag = "vulnerabilities", responses((status = 200, body = VulnDbStatus), (status = 401, body = ErrorResponse)))]
async fn vulndb_status(_c: Caller, State(state): State<AppState>) -> ApiResult<Json<VulnDbStatus>> {
    Ok(Json(vulndb(&state)?.status().await?.into()))
}

#[utoipa::path(post, path = "/api/v1/vulndb/import", tag = "vulnerabilities", params(VulnDbImportParams), request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "A feed file: JSON, or a zip archive of OSV records"), responses((status = 201, body = VulnDbImport), (status = 400, body = ErrorResponse), (status = 403, body = ErrorResponse), (status = 413, body = ErrorResponse)))]
async fn vulndb_import(
    c: Caller,
    State(state): State<AppState>,
    Query(q): Query<VulnDbImportParams>,
    body: Body,
) -> ApiResult<(StatusCode, Json<VulnDbImport>)> {
    // Wrapped first, so that a refused upload is drained and the client reads the refusal.
    let body = crate::body::stream(body, state.body_idle_timeout);
    c.require_site_admin()?;
    let format: ImportFormat = q.format.parse()?;
    let o = vulndb(&state)?
        .import_upload(body, format, q.feed.as_deref())
        .await?;
    c.audit("vulndb.import", &format!("{} {}", o.feed, o.version))
        .await;
    Ok((StatusCode::CREATED, Json(o.into())))
}

/// The header that carries a bundle's detached signature (128 hex digits).
const SIGNATURE_HEADER: &str = "x-berth-signature";

/// Where a bundle artifact is in this registry.
#[derive(Deserialize, ToSchema)]
pub struct BundleArtifact {
    /// The repository, e.g. `ops/vulndb`.
    repository: String,
    /// A tag or a digest.
    reference: String,
}

#[utoipa::path(post, path = "/api/v1/vulndb/bundle/artifact", tag = "vulnerabilities", request_body = BundleArtifact, responses((status = 201, body = VulnDbImport), (status = 400, body = ErrorResponse), (status = 403, body = ErrorResponse), (status = 404, body = ErrorResponse)))]
async fn vulndb_bundle_artifact(
    c: Caller,
    State(state): State<AppState>,
    Json(b): Json<BundleArtifact>,
) -> ApiResult<(StatusCode, Json<VulnDbImport>)> {
    c.require_site_admin()?;
    let repo: berth_oci::RepoName = b
        .repository
        .parse()
        .map_err(|_| ApiErr::invalid(format!("{:?} is not a repository name", b.repository)))?;
    let reference: berth_oci::Reference = b
        .reference
        .parse()
        .map_err(|_| ApiErr::invalid(format!("{:?} is not a tag or digest", b.reference)))?;
    let (digest, o) = berth_registry::bundle::load_bundle_artifact(
        &state.registry,
        vulndb(&state)?,
        &repo,
        &reference,
    )
    .await?;
    c.audit("vulndb.bundle", &format!("{repo}@{digest} {}", o.version))
        .await;
    Ok((StatusCode::CREATED, Json(o.into())))
}

#[utoipa::path(post, path = "/api/v1/vulndb/bundle", tag = "vulnerabilities", params(("x-berth-signature" = Option<String>, Header, description = "The bundle's detached Ed25519 signature, 128 hex digits; required when vulndb.public_key is set")), request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "A database bundle (snapshot file); it replaces the whole database"), responses((status = 201, body = VulnDbImport), (status = 400, body = ErrorResponse), (status = 403, body = ErrorResponse), (status = 413, body = ErrorResponse)))]
async fn vulndb_bundle(
    c: Caller,
    State(state): State<AppState>,
    headers: http::HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<VulnDbImport>)> {
    let body = crate::body::stream(body, state.body_idle_timeout);
    c.require_site_admin()?;
    let signature = headers.get(SIGNATURE_HEADER).map(|v| v.as_bytes().to_vec());
    let o = vulndb(&state)?
        .import_bundle_upload(body, signature)
        .await?;
    c.audit("vulndb.bundle", &o.version).await;
    Ok((StatusCode::CREATED, Json(o.into())))
}

#[utoipa::path(get, path = "/api/v1/vulndb/advisories/{id}", tag = "vulnerabilities", responses((status = 200, body = AdvisoryList), (status = 404, body = ErrorResponse)))]
async fn vulndb_advisory(
    _c: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<AdvisoryList>> {
    let found = vulndb(&state)?.advisories(&id)?;
    let advisories = found
        .iter()
        .map(|a| serde_json::to_value(a).unwrap_or(serde_json::Value::Null))
        .collect();
    Ok(Json(AdvisoryList { id, advisories }))
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Berth management API",
        description = "Users, organisations, teams, grants, repositories, robot accounts, access tokens, the audit log, the vulnerability database, image analysis and scanning policies."
    ),
    modifiers(&ScanPaths),
    paths(
        me,
        login,
        logout,
        list_users,
        create_user,
        update_user,
        list_orgs,
        create_org,
        list_teams,
        create_team,
        add_member,
        remove_member,
        list_grants,
        put_grant,
        delete_grant,
        list_robots,
        create_robot,
        revoke_robot,
        list_tokens,
        create_token,
        revoke_token,
        get_repo,
        update_repo,
        audit_log,
        vulndb_status,
        vulndb_import,
        vulndb_bundle,
        vulndb_bundle_artifact,
        vulndb_advisory
    ),
    components(schemas(
        Login,
        ErrorResponse,
        ErrorDetail,
        Me,
        User,
        UserPage,
        NewUser,
        UserUpdate,
        NamePage,
        NewName,
        Team,
        Grant,
        NewRobot,
        Robot,
        Secret,
        NewToken,
        AccessToken,
        Repository,
        RepositoryUpdate,
        AuditEntry,
        AuditPage,
        VulnDbStatus,
        VulnDbFeed,
        VulnDbImport,
        BundleArtifact,
        AdvisoryList,
        scans::PolicyBody,
        scans::AllowBody,
        scans::ScanEventBody,
        scans::ScanEventPage
    ))
)]
pub struct ApiDoc;

async fn not_found() -> ApiErr {
    ApiErr::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

/// The management API's routes (merged into the application router).
pub fn router() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/api/v1/me", get(me))
        .route("/api/v1/session", axum::routing::post(login).delete(logout))
        .route("/api/v1/users", get(list_users).post(create_user))
        .route("/api/v1/users/{name}", axum::routing::patch(update_user))
        .route(
            "/api/v1/users/{name}/tokens",
            get(list_tokens).post(create_token),
        )
        .route(
            "/api/v1/users/{name}/tokens/{id}",
            axum::routing::delete(revoke_token),
        )
        .route("/api/v1/orgs", get(list_orgs).post(create_org))
        .route(
            "/api/v1/orgs/{org}/teams",
            get(list_teams).post(create_team),
        )
        .route(
            "/api/v1/orgs/{org}/teams/{team}/members/{user}",
            put(add_member).delete(remove_member),
        )
        .route(
            "/api/v1/orgs/{org}/grants",
            get(list_grants).put(put_grant).delete(delete_grant),
        )
        .route(
            "/api/v1/orgs/{org}/robots",
            get(list_robots).post(create_robot),
        )
        .route(
            "/api/v1/orgs/{org}/robots/{name}",
            axum::routing::delete(revoke_robot),
        )
        .route(
            "/api/v1/repositories/{*name}",
            axum::routing::any(repositories),
        )
        .route(
            "/api/v1/orgs/{org}/scan-policy",
            axum::routing::any(scans::org_policy),
        )
        .route(
            "/api/v1/orgs/{org}/scan-policy/{*rest}",
            axum::routing::any(scans::org_policy),
        )
        .route("/api/v1/scan-events", get(scans::all_events))
        .route("/metrics", get(metrics::metrics))
        .route("/api/v1/audit", get(audit_log))
        .route("/api/v1/vulndb", get(vulndb_status))
        .route("/api/v1/vulndb/import", axum::routing::post(vulndb_import))
        .route("/api/v1/vulndb/bundle", axum::routing::post(vulndb_bundle))
        .route(
            "/api/v1/vulndb/bundle/artifact",
            axum::routing::post(vulndb_bundle_artifact),
        )
        .route("/api/v1/vulndb/advisories/{id}", get(vulndb_advisory))
        .route(
            "/api/v1/openapi.json",
            get(|| async { Json(ApiDoc::openapi()) }),
        )
        .route("/api/v1/{*rest}", axum::routing::any(not_found))
        .merge(utoipa_swagger_ui::SwaggerUi::new("/api/v1/docs"))
}
