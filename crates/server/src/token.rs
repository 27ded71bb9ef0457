//! `/auth/token`: the Docker token protocol. `GET` with Basic credentials (a password, an access
//! token or a robot secret) or none; `POST` with an OAuth2 form (`grant_type=password` or
//! `refresh_token`), as `docker login` uses. The access granted is the requested scopes narrowed
//! to what the caller may do; asking for more never fails, it just yields less.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use berth_auth::{AuthService, Principal};
use berth_oci::ErrorCode;
use http::{Method, StatusCode};

use crate::AppState;
use crate::access::{Credentials, auth_failure, credentials, parse_scopes, source};
use crate::error::ApiError;

const MAX_FORM: usize = 64 * 1024;

pub async fn token(State(state): State<AppState>, req: Request) -> Response {
    let Some(auth) = state.auth.clone() else {
        return ApiError::new(
            ErrorCode::Unsupported,
            "authentication is off on this registry",
        )
        .with_status(StatusCode::NOT_FOUND)
        .into_response();
    };
    match handle(auth, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

fn pairs(text: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(text.as_bytes())
        .into_owned()
        .collect()
}

fn get<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn unauthorized() -> ApiError {
    ApiError::new(ErrorCode::Unauthorized, "invalid credentials")
        .with_header(http::header::WWW_AUTHENTICATE, "Basic realm=\"berth\"")
}

async fn handle(auth: Arc<AuthService>, req: Request) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let query = pairs(parts.uri.query().unwrap_or(""));
    let src = source(&parts);
    let (principal, params, offline) = match parts.method {
        Method::GET => {
            let p = match credentials(&parts)? {
                Credentials::None => Principal::Anonymous,
                Credentials::Basic { user, password } => auth
                    .authenticate(&user, &password, src)
                    .await
                    .map_err(|e| match e {
                        berth_auth::AuthError::InvalidCredentials => unauthorized(),
                        e => auth_failure(e),
                    })?,
                Credentials::Bearer(_) => return Err(unauthorized()),
            };
            let offline = get(&query, "offline_token") == Some("true");
            (p, query, offline)
        }
        Method::POST => {
            let bytes = crate::body::read_limited(Body::new(body), MAX_FORM)
                .await
                .map_err(|_| {
                    ApiError::new(
                        ErrorCode::Unsupported,
                        "the form is too large or incomplete",
                    )
                    .with_status(StatusCode::BAD_REQUEST)
                })?;
            let form = pairs(&String::from_utf8_lossy(&bytes));
            let p = match get(&form, "grant_type") {
                Some("password") => {
                    let (Some(user), Some(password)) =
                        (get(&form, "username"), get(&form, "password"))
                    else {
                        return Err(bad_request("username and password are required"));
                    };
                    auth.authenticate(user, password, src)
                        .await
                        .map_err(|e| match e {
                            berth_auth::AuthError::InvalidCredentials => unauthorized(),
                            e => auth_failure(e),
                        })?
                }
                Some("refresh_token") => {
                    let Some(rt) = get(&form, "refresh_token") else {
                        return Err(bad_request("refresh_token is required"));
                    };
                    let sub = auth
                        .tokens()
                        .verify_refresh(rt)
                        .map_err(|_| unauthorized())?;
                    auth.principal_for_subject(&sub)
                        .await
                        .map_err(auth_failure)?
                        .ok_or_else(unauthorized)?
                }
                _ => return Err(bad_request("grant_type must be password or refresh_token")),
            };
            let offline = get(&form, "access_type") == Some("offline")
                || get(&form, "grant_type") == Some("password");
            (p, form, offline)
        }
        _ => {
            return Err(ApiError::new(ErrorCode::Unsupported, "use GET or POST")
                .with_status(StatusCode::METHOD_NOT_ALLOWED));
        }
    };
    if let Some(service) = get(&params, "service")
        && service != auth.service()
    {
        return Err(bad_request(&format!(
            "this registry issues tokens for the service {:?}",
            auth.service()
        )));
    }
    let requested = parse_scopes(
        params
            .iter()
            .filter(|(k, _)| k == "scope")
            .map(|(_, v)| v.as_str()),
    );
    let granted = auth
        .grant(&principal, &requested)
        .await
        .map_err(auth_failure)?;
    let issued = auth.issue(&principal, granted, offline);
    let issued_at = chrono_like(issued.issued_at);
    let mut body = serde_json::json!({
        "token": issued.token,
        "access_token": issued.token,
        "expires_in": issued.expires_in,
        "issued_at": issued_at,
    });
    if let Some(r) = issued.refresh_token {
        body["refresh_token"] = serde_json::Value::String(r);
    }
    let mut resp = (
        StatusCode::OK,
        [(http::header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    resp.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    Ok(resp)
}

fn bad_request(msg: &str) -> ApiError {
    ApiError::new(ErrorCode::Unsupported, msg).with_status(StatusCode::BAD_REQUEST)
}

/// RFC 3339 for a Unix time, without pulling in a date crate for one field.
fn chrono_like(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if mo <= 2 { y + 1 } else { y };
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}Z")
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339() {
        assert_eq!(super::chrono_like(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::chrono_like(1_795_000_000), "2026-11-18T11:06:40Z");
        assert_eq!(super::chrono_like(951_782_400), "2000-02-29T00:00:00Z");
    }
}
