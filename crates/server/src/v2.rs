//! `/v2/`: the OCI Distribution API. One catch-all route; `berth_oci::parse_v2_path` names the
//! endpoint, the authorizer checks the access it needs, then one handler runs.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use berth_oci::range::{parse_content_range, parse_range};
use berth_oci::{
    Digest, ErrorCode, RangeError, Reference, RepoName, V2Route, media, parse_v2_path,
};
use http::header::{ACCEPT, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION, RANGE};
use http::{HeaderMap, HeaderValue, Method, StatusCode};

use crate::AppState;
use crate::access::{Access, Action, Caller, source};
use crate::body;
use crate::error::ApiError;

const API_VERSION: (&str, &str) = ("docker-distribution-api-version", "registry/2.0");
const DIGEST_HEADER: &str = "docker-content-digest";
const UPLOAD_UUID: &str = "docker-upload-uuid";

type Result<T> = std::result::Result<T, ApiError>;

pub async fn dispatch_root(state: State<AppState>, req: Request) -> Response {
    dispatch(state, req).await
}

pub async fn dispatch(State(state): State<AppState>, req: Request) -> Response {
    let mut resp = match route(&state, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    resp.headers_mut()
        .insert(API_VERSION.0, HeaderValue::from_static(API_VERSION.1));
    resp
}

/// The query string as a map (last value wins); `None` values are absent keys.
fn query(req: &Request) -> HashMap<String, String> {
    req.uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

fn repo(name: &str) -> Result<RepoName> {
    name.parse()
        .map_err(|e: berth_oci::NameError| ApiError::new(ErrorCode::NameInvalid, e.to_string()))
}

fn digest(s: &str) -> Result<Digest> {
    s.parse()
        .map_err(|e: berth_oci::DigestError| ApiError::new(ErrorCode::DigestInvalid, e.to_string()))
}

fn unsupported_method() -> ApiError {
    ApiError::new(
        ErrorCode::Unsupported,
        "method not allowed on this endpoint",
    )
    .with_status(StatusCode::METHOD_NOT_ALLOWED)
}

/// The access a request needs, decided from its endpoint and method alone.
fn required_access(route: &V2Route<'_>, method: &Method, q: &HashMap<String, String>) -> Access {
    let Some(name) = route.name() else {
        return match route {
            V2Route::Catalog => Access::Catalog,
            _ => Access::Base,
        };
    };
    let actions = match (route, method) {
        (_, &Method::GET | &Method::HEAD) => match route {
            // Reading an upload's status is part of pushing.
            V2Route::Upload { .. } => vec![Action::Push],
            _ => vec![Action::Pull],
        },
        (V2Route::Manifest { .. } | V2Route::Blob { .. }, &Method::DELETE) => vec![Action::Delete],
        _ => vec![Action::Push],
    };
    // A cross-repository mount also reads the source; that is checked in the handler, where a
    // refusal quietly becomes an ordinary upload rather than an error.
    let _ = q;
    Access::Repository {
        name: name.to_owned(),
        actions,
    }
}

async fn route(state: &AppState, req: Request) -> Result<Response> {
    let path = req.uri().path();
    let rest = path.strip_prefix("/v2").unwrap_or(path);
    let rest = rest.strip_prefix('/').unwrap_or(rest).to_owned();
    let Some(route) = parse_v2_path(&rest) else {
        return Err(ApiError::new(ErrorCode::Unsupported, "no such endpoint")
            .with_status(StatusCode::NOT_FOUND));
    };
    let q = query(&req);
    let (parts, body) = req.into_parts();
    let body = body::draining(body, state.body_idle_timeout);
    let access = required_access(&route, &parts.method, &q);
    let caller = state.authorizer.authorize(&parts, &access).await?;
    let m = &parts.method;
    let h = &parts.headers;
    match route {
        V2Route::Base => match *m {
            Method::GET | Method::HEAD => Ok(json_response(StatusCode::OK, b"{}".to_vec())),
            _ => Err(unsupported_method()),
        },
        V2Route::Catalog => match *m {
            Method::GET => catalog(state, &caller, &q).await,
            _ => Err(unsupported_method()),
        },
        V2Route::Tags { name } => match *m {
            Method::GET => tags(state, &repo(name)?, &q).await,
            _ => Err(unsupported_method()),
        },
        V2Route::Manifest { name, reference } => {
            let name = repo(name)?;
            let reference = parse_reference(reference, m)?;
            match *m {
                Method::GET => get_manifest(state, &caller, &name, &reference, h, true).await,
                Method::HEAD => get_manifest(state, &caller, &name, &reference, h, false).await,
                Method::PUT => {
                    let resp = put_manifest(state, &name, &reference, h, body).await?;
                    let digest = resp
                        .headers()
                        .get(DIGEST_HEADER)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("");
                    let target = format!("{name}:{reference}@{digest}");
                    state
                        .authorizer
                        .audit(&caller, "manifest.push", &target, source(&parts))
                        .await;
                    Ok(resp)
                }
                Method::DELETE => {
                    state.registry.delete_manifest(&name, &reference).await?;
                    let target = format!("{name}:{reference}");
                    state
                        .authorizer
                        .audit(&caller, "manifest.delete", &target, source(&parts))
                        .await;
                    Ok(StatusCode::ACCEPTED.into_response())
                }
                _ => Err(unsupported_method()),
            }
        }
        V2Route::Blob { name, digest: d } => {
            let name = repo(name)?;
            let d = digest(d)?;
            match *m {
                Method::GET => get_blob(state, &name, &d, h, true).await,
                Method::HEAD => get_blob(state, &name, &d, h, false).await,
                Method::DELETE => {
                    state.registry.delete_blob(&name, &d).await?;
                    state
                        .authorizer
                        .audit(
                            &caller,
                            "blob.delete",
                            &format!("{name}@{d}"),
                            source(&parts),
                        )
                        .await;
                    Ok(StatusCode::ACCEPTED.into_response())
                }
                _ => Err(unsupported_method()),
            }
        }
        V2Route::UploadStart { name } => match *m {
            Method::POST => start_upload(state, &repo(name)?, &q, &parts, body).await,
            _ => Err(unsupported_method()),
        },
        V2Route::Upload { name, id } => {
            let name = repo(name)?;
            match *m {
                Method::GET => {
                    let p = state.registry.upload_status(&name, id).await?;
                    Ok(upload_response(StatusCode::NO_CONTENT, &name, &p))
                }
                Method::PATCH => patch_upload(state, &name, id, h, body).await,
                Method::PUT => finish_upload(state, &name, id, &q, h, body).await,
                Method::DELETE => {
                    state.registry.cancel_upload(&name, id).await?;
                    Ok(StatusCode::NO_CONTENT.into_response())
                }
                _ => Err(unsupported_method()),
            }
        }
        V2Route::Referrers { name, digest: d } => match *m {
            Method::GET => referrers(state, &repo(name)?, &digest(d)?, &q).await,
            _ => Err(unsupported_method()),
        },
    }
}

fn parse_reference(s: &str, method: &Method) -> Result<Reference> {
    s.parse().map_err(|e: berth_oci::NameError| match e {
        berth_oci::NameError::Digest(d) => ApiError::new(ErrorCode::DigestInvalid, d.to_string()),
        e if method == Method::PUT => ApiError::new(ErrorCode::ManifestInvalid, e.to_string()),
        e => ApiError::new(ErrorCode::ManifestUnknown, e.to_string()),
    })
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    (status, [(CONTENT_TYPE, "application/json")], body).into_response()
}

fn header(resp: &mut Response, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().insert(name, v);
    }
}

/// `n` and `last` of a listing. An `n` that is not a number is refused; `n=0` returns nothing.
fn page_params(q: &HashMap<String, String>) -> Result<(Option<usize>, Option<&str>)> {
    let n = match q.get("n") {
        None => None,
        Some(v) => Some(v.parse::<usize>().map_err(|_| {
            ApiError::new(ErrorCode::Unsupported, format!("n={v:?} is not a count"))
                .with_status(StatusCode::BAD_REQUEST)
        })?),
    };
    Ok((
        n,
        q.get("last").map(String::as_str).filter(|s| !s.is_empty()),
    ))
}

fn link_next(resp: &mut Response, path: &str, n: Option<usize>, next: Option<&str>) {
    if let Some(last) = next {
        let n = n
            .unwrap_or(berth_registry::MAX_PAGE)
            .min(berth_registry::MAX_PAGE);
        let last: String = form_urlencoded::byte_serialize(last.as_bytes()).collect();
        header(
            resp,
            "link",
            &format!("<{path}?n={n}&last={last}>; rel=\"next\""),
        );
    }
}

/// The catalog, showing only repositories the caller may see.
async fn catalog(
    state: &AppState,
    caller: &Caller,
    q: &HashMap<String, String>,
) -> Result<Response> {
    const BATCH: usize = 1000;
    let (n, last) = page_params(q)?;
    let want = n
        .unwrap_or(berth_registry::MAX_PAGE)
        .min(berth_registry::MAX_PAGE);
    let mut repos: Vec<String> = Vec::new();
    let mut cursor = last.map(str::to_owned);
    while repos.len() < want {
        let page = state
            .registry
            .catalog(Some(BATCH), cursor.as_deref())
            .await?;
        let exhausted = page.next.is_none();
        cursor = page.tags.last().cloned();
        for r in state.authorizer.visible(caller, page.tags).await {
            if repos.len() == want {
                break;
            }
            repos.push(r);
        }
        if exhausted {
            break;
        }
    }
    // A full page may have a successor (also when the client asked for everything and met the
    // cap): say so with `Link` rather than cut the list off silently.
    let next = (repos.len() == want)
        .then(|| repos.last().cloned())
        .flatten();
    let body =
        serde_json::to_vec(&serde_json::json!({ "repositories": repos })).unwrap_or_default();
    let mut resp = json_response(StatusCode::OK, body);
    link_next(&mut resp, "/v2/_catalog", n, next.as_deref());
    Ok(resp)
}

async fn tags(state: &AppState, name: &RepoName, q: &HashMap<String, String>) -> Result<Response> {
    let (n, last) = page_params(q)?;
    let page = state.registry.list_tags(name, n, last).await?;
    let body = serde_json::to_vec(&serde_json::json!({ "name": name.as_str(), "tags": page.tags }))
        .unwrap_or_default();
    let mut resp = json_response(StatusCode::OK, body);
    link_next(
        &mut resp,
        &format!("/v2/{name}/tags/list"),
        n,
        page.next.as_deref(),
    );
    Ok(resp)
}

/// Whether an `Accept` header admits `media_type`. No header, or one that names no manifest
/// type at all, admits everything, as clients that predate a type expect.
fn accepts(headers: &HeaderMap, media_type: &str) -> bool {
    let mut any = false;
    for value in headers.get_all(ACCEPT) {
        let Ok(v) = value.to_str() else { continue };
        for item in v.split(',') {
            let t = media::essence(item);
            if t.is_empty() {
                continue;
            }
            any = true;
            if t == media_type || t == "*/*" || t == "application/*" || t == "application/json" {
                return true;
            }
        }
    }
    !any
}

async fn get_manifest(
    state: &AppState,
    caller: &Caller,
    name: &RepoName,
    reference: &Reference,
    headers: &HeaderMap,
    with_body: bool,
) -> Result<Response> {
    let m = state.registry.get_manifest(name, reference).await?;
    // The vulnerability policy refuses the image's content, so a HEAD (no content) passes.
    if with_body
        && let Some(scans) = &state.scans
        && let Err(refusal) = scans.check_pull(name.as_str(), &m.digest).await?
        && !state.authorizer.is_admin(caller, name.as_str()).await
    {
        return Err(ApiError::new(ErrorCode::Denied, refusal.message));
    }
    // Asking by digest names exact bytes: serve them whatever Accept says. By tag, honour it.
    if matches!(reference, Reference::Tag(_)) && !accepts(headers, &m.media_type) {
        return Err(ApiError::new(
            ErrorCode::ManifestUnknown,
            format!(
                "the manifest is {}, which the Accept header does not admit",
                m.media_type
            ),
        ));
    }
    let len = m.content.len();
    let body = if with_body {
        Body::from(m.content.clone())
    } else {
        Body::empty()
    };
    let mut resp = (StatusCode::OK, body).into_response();
    header(&mut resp, "content-type", &m.media_type);
    header(&mut resp, "content-length", &len.to_string());
    header(&mut resp, DIGEST_HEADER, &m.digest);
    header(&mut resp, "etag", &format!("\"{}\"", m.digest));
    Ok(resp)
}

async fn put_manifest(
    state: &AppState,
    name: &RepoName,
    reference: &Reference,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response> {
    let limit = state.registry.config().max_manifest_size;
    let bytes = match body::read_limited(body, limit).await {
        Ok(b) => b,
        Err(body::ReadError::TooLarge) => {
            return Err(ApiError::new(
                ErrorCode::SizeInvalid,
                format!("manifests are limited to {limit} bytes"),
            )
            .with_status(StatusCode::PAYLOAD_TOO_LARGE));
        }
        Err(body::ReadError::Body(e)) => return Err(ApiError::new(ErrorCode::ManifestInvalid, e)),
    };
    let content_type = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let pushed = state
        .registry
        .put_manifest(name, reference, content_type, bytes)
        .await?;
    if let Some(scans) = &state.scans
        && let Err(e) = scans.on_push(name, &pushed.digest, pushed.is_image).await
    {
        // The manifest is stored: the push succeeded. Its analysis can be asked for again.
        tracing::warn!(repository = %name, digest = %pushed.digest, error = %e, "could not queue the image's analysis");
    }
    let (d, subject) = (pushed.digest, pushed.subject);
    let mut resp = StatusCode::CREATED.into_response();
    header(&mut resp, "location", &format!("/v2/{name}/manifests/{d}"));
    header(&mut resp, DIGEST_HEADER, &d.to_string());
    if let Some(s) = subject {
        header(&mut resp, "oci-subject", &s.to_string());
    }
    Ok(resp)
}

async fn get_blob(
    state: &AppState,
    name: &RepoName,
    d: &Digest,
    headers: &HeaderMap,
    with_body: bool,
) -> Result<Response> {
    if with_body && let Some((_, url)) = state.registry.blob_redirect(name, d).await? {
        // The bytes come from the object store itself; the client repeats its Range there.
        let mut resp = StatusCode::TEMPORARY_REDIRECT.into_response();
        header(&mut resp, "location", url.as_str());
        header(&mut resp, DIGEST_HEADER, &d.to_string());
        return Ok(resp);
    }
    let reader = state.registry.open_blob(name, d).await?;
    let len = reader.len();
    let range = match headers.get(RANGE).and_then(|v| v.to_str().ok()) {
        None => None,
        Some(v) => match parse_range(v, len) {
            Ok(r) => r,
            Err(RangeError::Unsatisfiable) => {
                return Err(ApiError::new(
                    ErrorCode::SizeInvalid,
                    "requested range is not satisfiable",
                )
                .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
                .with_header(CONTENT_RANGE, &format!("bytes */{len}")));
            }
            // A malformed Range header is ignored (RFC 9110): the whole blob is sent.
            Err(RangeError::Malformed(_)) => None,
        },
    };
    let (status, body_len) = match range {
        Some(r) => (StatusCode::PARTIAL_CONTENT, r.len()),
        None => (StatusCode::OK, len),
    };
    let body = if with_body {
        Body::from_stream(reader.stream(range))
    } else {
        Body::empty()
    };
    let mut resp = (status, body).into_response();
    header(&mut resp, "content-type", "application/octet-stream");
    header(&mut resp, "content-length", &body_len.to_string());
    header(&mut resp, "accept-ranges", "bytes");
    header(&mut resp, DIGEST_HEADER, &d.to_string());
    header(&mut resp, "etag", &format!("\"{d}\""));
    if let Some(r) = range {
        header(
            &mut resp,
            "content-range",
            &format!("bytes {}-{}/{len}", r.start, r.end),
        );
    }
    Ok(resp)
}

fn upload_response(
    status: StatusCode,
    name: &RepoName,
    p: &berth_registry::UploadProgress,
) -> Response {
    let mut resp = status.into_response();
    header(
        &mut resp,
        "location",
        &format!("/v2/{name}/blobs/uploads/{}", p.id),
    );
    header(
        &mut resp,
        "range",
        &format!("0-{}", p.offset.saturating_sub(1)),
    );
    header(&mut resp, UPLOAD_UUID, &p.id);
    header(&mut resp, "content-length", "0");
    resp
}

fn blob_created(name: &RepoName, d: &Digest) -> Response {
    let mut resp = StatusCode::CREATED.into_response();
    header(&mut resp, "location", &format!("/v2/{name}/blobs/{d}"));
    header(&mut resp, DIGEST_HEADER, &d.to_string());
    header(&mut resp, "content-length", "0");
    resp
}

async fn start_upload(
    state: &AppState,
    name: &RepoName,
    q: &HashMap<String, String>,
    parts: &http::request::Parts,
    body: Body,
) -> Result<Response> {
    if let Some(mount) = q.get("mount") {
        let d = digest(mount)?;
        // An unusable `from` is not an error: the spec's answer is an ordinary upload session.
        if let Some(from) = q.get("from").and_then(|f| f.parse::<RepoName>().ok()) {
            let from_access = Access::Repository {
                name: from.to_string(),
                actions: vec![Action::Pull],
            };
            let allowed = state
                .authorizer
                .authorize(parts, &from_access)
                .await
                .is_ok();
            if allowed && state.registry.mount_blob(name, &from, &d).await?.is_some() {
                return Ok(blob_created(name, &d));
            }
        }
    } else if let Some(d) = q.get("digest") {
        let d = digest(d)?;
        state
            .registry
            .put_blob(name, &d, body::stream(body, state.body_idle_timeout))
            .await?;
        return Ok(blob_created(name, &d));
    }
    let p = state.registry.start_upload(name).await?;
    Ok(upload_response(StatusCode::ACCEPTED, name, &p))
}

/// The start offset a chunk claims in its `Content-Range`, if it has one.
fn chunk_start(headers: &HeaderMap) -> Result<Option<u64>> {
    let Some(v) = headers.get(CONTENT_RANGE) else {
        return Ok(None);
    };
    let v = v
        .to_str()
        .map_err(|_| ApiError::new(ErrorCode::BlobUploadInvalid, "Content-Range is not text"))?;
    let r = parse_content_range(v).map_err(|e| {
        ApiError::new(ErrorCode::BlobUploadInvalid, e.to_string())
            .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
    })?;
    // If the client also sent Content-Length, the two must agree.
    if let Some(len) = content_length(headers)?
        && len != r.len()
    {
        return Err(ApiError::new(
            ErrorCode::SizeInvalid,
            format!(
                "Content-Range covers {} bytes but Content-Length is {len}",
                r.len()
            ),
        )
        .with_status(StatusCode::RANGE_NOT_SATISFIABLE));
    }
    Ok(Some(r.start))
}

fn content_length(headers: &HeaderMap) -> Result<Option<u64>> {
    match headers.get(CONTENT_LENGTH) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.parse().ok())
            .map(Some)
            .ok_or_else(|| ApiError::new(ErrorCode::SizeInvalid, "Content-Length is not a number")),
    }
}

async fn patch_upload(
    state: &AppState,
    name: &RepoName,
    id: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response> {
    let start = chunk_start(headers)?;
    let stream = body::stream(body, state.body_idle_timeout);
    match state.registry.append_upload(name, id, start, stream).await {
        Ok(p) => Ok(upload_response(StatusCode::ACCEPTED, name, &p)),
        Err(e @ berth_registry::RegistryError::RangeInvalid { .. }) => {
            Err(ApiError::from(e).with_header(LOCATION, &format!("/v2/{name}/blobs/uploads/{id}")))
        }
        Err(e) => Err(e.into()),
    }
}

async fn finish_upload(
    state: &AppState,
    name: &RepoName,
    id: &str,
    q: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response> {
    let Some(d) = q.get("digest") else {
        return Err(ApiError::new(
            ErrorCode::DigestInvalid,
            "the digest query parameter is required",
        ));
    };
    let d = digest(d)?;
    let start = chunk_start(headers)?;
    // A PUT may carry the last chunk. Without a length it may still stream one (chunked
    // encoding); only an explicit zero says there is none.
    let has_body = content_length(headers)? != Some(0) || start.is_some();
    let stream = has_body.then(|| body::stream(body, state.body_idle_timeout));
    state
        .registry
        .finish_upload(name, id, start, stream, &d)
        .await?;
    Ok(blob_created(name, &d))
}

async fn referrers(
    state: &AppState,
    name: &RepoName,
    subject: &Digest,
    q: &HashMap<String, String>,
) -> Result<Response> {
    let filter = q
        .get("artifactType")
        .map(String::as_str)
        .filter(|s| !s.is_empty());
    let list = state.registry.referrers(name, subject, filter).await?;
    let body = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_INDEX,
        "manifests": list,
    }))
    .unwrap_or_default();
    let mut resp = (StatusCode::OK, [(CONTENT_TYPE, media::OCI_INDEX)], body).into_response();
    if filter.is_some() {
        header(&mut resp, "oci-filters-applied", "artifactType");
    }
    Ok(resp)
}
