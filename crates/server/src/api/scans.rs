//! The image analysis and vulnerability endpoints of the management API: per image (scan
//! status and on-demand scans, the SBOM, the vulnerability report in JSON or SARIF), the
//! events re-matching records, and scanning/pull policies with allow-lists per organisation
//! and per repository.
//!
//! Repository names contain slashes, so a repository's sub-resources follow a `/-/` separator
//! (a path component that no repository name can have):
//! `/api/v1/repositories/acme/app/-/images/sha256:.../vulnerabilities`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use berth_auth::Role;
use berth_meta::scans::{AllowedVuln, ScanPolicy};
use berth_oci::{Digest, RepoName};
use berth_registry::scan::{org_scope, repo_scope};
use berth_registry::{RegistryError, ScanService};
use http::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ApiErr, ApiResult, Caller, repo_for};
use crate::AppState;

impl From<RegistryError> for ApiErr {
    fn from(e: RegistryError) -> ApiErr {
        match e {
            RegistryError::ManifestUnknown(m) => ApiErr::not_found(format!("manifest {m}")),
            RegistryError::Unsupported(m) => ApiErr::new(StatusCode::CONFLICT, "conflict", m),
            // Logged where it arose (`RegistryError::from`).
            RegistryError::StorageFull => ApiErr::storage_full(),
            RegistryError::Unavailable(m) => {
                tracing::error!(error = %m, "storage or database unavailable");
                ApiErr::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "a backend is unavailable",
                )
            }
            e => {
                tracing::error!(error = %e, "image analysis API error");
                ApiErr::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error",
                )
            }
        }
    }
}

fn scans(state: &AppState) -> ApiResult<&Arc<ScanService>> {
    state
        .scans
        .as_ref()
        .ok_or_else(|| ApiErr::not_found("image scanning"))
}

/// A scope's scanning and pull policy. `null` inherits (a repository from its organisation,
/// an organisation from the server's configuration).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PolicyBody {
    /// Whether pushed images are analysed.
    #[serde(default)]
    pub scan_on_push: Option<bool>,
    /// Pulls of images with findings at or above this severity are refused: `critical`,
    /// `high`, `medium`, `low`, `negligible` or `unknown`.
    #[serde(default)]
    pub block_severity: Option<String>,
    /// Read only (ignored in requests): when and by whom it was last changed.
    #[serde(default)]
    #[schema(read_only)]
    pub updated_at: Option<i64>,
    #[serde(default)]
    #[schema(read_only)]
    pub updated_by: Option<String>,
}

/// A vulnerability the pull policy lets through.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AllowBody {
    /// The vulnerability id or any alias (`CVE-...`, `GHSA-...`).
    pub id: String,
    pub reason: String,
    /// Unix milliseconds after which the entry no longer applies.
    #[serde(default)]
    pub expires_at: Option<i64>,
    #[serde(default)]
    #[schema(read_only)]
    pub created_by: Option<String>,
    #[serde(default)]
    #[schema(read_only)]
    pub created_at: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ScanEventBody {
    pub id: i64,
    pub digest: String,
    /// `appeared` or `resolved`.
    pub kind: String,
    pub vulnerability: String,
    pub package: String,
    pub severity: String,
    pub db_version: String,
    pub at: i64,
    /// The repositories that hold the image.
    pub repositories: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ScanEventPage {
    pub items: Vec<ScanEventBody>,
    /// Pass as `after` for the next page.
    pub next: Option<i64>,
}

fn policy_body(p: Option<ScanPolicy>) -> PolicyBody {
    let p = p.unwrap_or_default();
    PolicyBody {
        scan_on_push: p.scan_on_push,
        block_severity: p.block_level,
        updated_at: (p.updated_at > 0).then_some(p.updated_at),
        updated_by: (!p.updated_by.is_empty()).then_some(p.updated_by),
    }
}

fn allow_body(a: AllowedVuln) -> AllowBody {
    AllowBody {
        id: a.vuln_id,
        reason: a.reason,
        expires_at: a.expires_at,
        created_by: Some(a.created_by),
        created_at: Some(a.created_at),
    }
}

async fn put_policy(
    c: &Caller,
    state: &AppState,
    scope: &str,
    body: &[u8],
) -> ApiResult<Json<PolicyBody>> {
    let s = scans(state)?;
    let b: PolicyBody = serde_json::from_slice(body)
        .map_err(|e| ApiErr::invalid(format!("the policy is not valid JSON: {e}")))?;
    if let Some(l) = &b.block_severity {
        berth_assess::parse_level(l).map_err(ApiErr::invalid)?;
    }
    let p = ScanPolicy {
        scan_on_push: b.scan_on_push,
        block_level: b.block_severity.map(|l| l.to_ascii_lowercase()),
        updated_at: berth_meta::now_millis(),
        updated_by: c.principal.actor(),
    };
    c.auth.meta().put_scan_policy(scope, &p).await?;
    s.policies_changed();
    c.audit("scan.policy", scope).await;
    Ok(Json(policy_body(Some(p))))
}

async fn allowlist(
    c: &Caller,
    state: &AppState,
    method: &Method,
    scope: &str,
    id: Option<&str>,
    body: &[u8],
) -> ApiResult<Response> {
    let s = scans(state)?;
    let meta = c.auth.meta();
    match (method, id) {
        (&Method::GET, None) => {
            let items: Vec<AllowBody> = meta
                .scan_allowlist(scope)
                .await?
                .into_iter()
                .map(allow_body)
                .collect();
            Ok(Json(items).into_response())
        }
        (&Method::POST, None) => {
            let b: AllowBody = serde_json::from_slice(body)
                .map_err(|e| ApiErr::invalid(format!("the entry is not valid JSON: {e}")))?;
            let id = b.id.trim();
            if id.is_empty() || id.len() > 200 || id.chars().any(char::is_whitespace) {
                return Err(ApiErr::invalid("`id` must be a vulnerability id"));
            }
            if b.reason.trim().is_empty() || b.reason.len() > 2000 {
                return Err(ApiErr::invalid(
                    "`reason` is required (at most 2000 characters)",
                ));
            }
            let a = AllowedVuln {
                vuln_id: id.to_string(),
                reason: b.reason,
                expires_at: b.expires_at,
                created_by: c.principal.actor(),
                created_at: berth_meta::now_millis(),
            };
            meta.put_allowed_vuln(scope, &a).await?;
            s.policies_changed();
            c.audit("scan.allow", &format!("{scope} {id}")).await;
            Ok((StatusCode::CREATED, Json(allow_body(a))).into_response())
        }
        (&Method::DELETE, Some(id)) => {
            if !meta.delete_allowed_vuln(scope, id).await? {
                return Err(ApiErr::not_found(format!("allow-list entry {id}")));
            }
            s.policies_changed();
            c.audit("scan.disallow", &format!("{scope} {id}")).await;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        _ => Err(method_not_allowed()),
    }
}

fn method_not_allowed() -> ApiErr {
    ApiErr::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid",
        "method not allowed here",
    )
}

async fn events(
    c: &Caller,
    digests: Option<Vec<String>>,
    q: &HashMap<String, String>,
) -> ApiResult<Json<ScanEventPage>> {
    let after = q
        .get("after")
        .map(|a| a.parse::<i64>())
        .transpose()
        .map_err(|_| ApiErr::invalid("`after` is an event id"))?
        .unwrap_or(0);
    let limit = q
        .get("limit")
        .map(|a| a.parse::<i64>())
        .transpose()
        .map_err(|_| ApiErr::invalid("`limit` is a number"))?
        .unwrap_or(100)
        .clamp(1, 1000);
    let meta = c.auth.meta();
    let rows = meta.scan_events(after, digests.as_deref(), limit).await?;
    let next = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|e| e.id))
        .flatten();
    let mut items = Vec::with_capacity(rows.len());
    for e in rows {
        let repositories = meta.repositories_with_manifest(&e.digest).await?;
        items.push(ScanEventBody {
            id: e.id,
            digest: e.digest,
            kind: e.kind,
            vulnerability: e.vuln_id,
            package: e.package,
            severity: e.level,
            db_version: e.db_version,
            at: e.at,
            repositories,
        });
    }
    Ok(Json(ScanEventPage { items, next }))
}

/// `/api/v1/repositories/{name}/-/{rest}`.
pub(super) async fn repository_resource(
    c: Caller,
    state: &AppState,
    method: &Method,
    name: &str,
    rest: &str,
    q: &HashMap<String, String>,
    body: &[u8],
) -> ApiResult<Response> {
    let parts: Vec<&str> = rest.split('/').collect();
    let need = match (method, parts.as_slice()) {
        (&Method::GET, _) => Role::Read,
        (&Method::POST, ["images", _, "scan"]) => Role::Write,
        _ => Role::Admin,
    };
    let repo = repo_for(&c, name, need).await?;
    let repo_name: RepoName = repo
        .parse()
        .map_err(|_| ApiErr::invalid("not a repository name"))?;
    let s = scans(state)?;
    match parts.as_slice() {
        ["images", digest, what] => {
            let digest: Digest = digest
                .parse()
                .map_err(|_| ApiErr::invalid(format!("{digest:?} is not a digest")))?;
            if !c
                .auth
                .meta()
                .manifest_exists(&repo, &digest.to_string())
                .await?
            {
                return Err(ApiErr::not_found(format!("manifest {digest} in {repo}")));
            }
            image_resource(s, method, &repo_name, &digest, what, q).await
        }
        ["scan-policy"] => match *method {
            Method::GET => Ok(Json(policy_body(
                c.auth.meta().scan_policy(&repo_scope(&repo)).await?,
            ))
            .into_response()),
            Method::PUT => Ok(put_policy(&c, state, &repo_scope(&repo), body)
                .await?
                .into_response()),
            _ => Err(method_not_allowed()),
        },
        ["scan-policy", "allowlist"] => {
            allowlist(&c, state, method, &repo_scope(&repo), None, body).await
        }
        ["scan-policy", "allowlist", id] => {
            allowlist(&c, state, method, &repo_scope(&repo), Some(id), body).await
        }
        ["events"] if *method == Method::GET => {
            let digests = c
                .auth
                .meta()
                .repository_manifest_digests(&repo, 10_000)
                .await?;
            Ok(events(&c, Some(digests), q).await?.into_response())
        }
        _ => Err(ApiErr::not_found("that resource")),
    }
}

async fn image_resource(
    s: &ScanService,
    method: &Method,
    repo: &RepoName,
    digest: &Digest,
    what: &str,
    q: &HashMap<String, String>,
) -> ApiResult<Response> {
    let not_analysed = || {
        ApiErr::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{digest} has not been analysed (POST .../scan to analyse it)"),
        )
    };
    match (method, what) {
        (&Method::GET, "scan") => Ok(Json(s.status(repo, digest).await?).into_response()),
        (&Method::POST, "scan") => {
            let queued = s.enqueue(repo, digest).await?;
            Ok((
                StatusCode::ACCEPTED,
                Json(serde_json::json!({"queued": queued, "digest": digest.to_string()})),
            )
                .into_response())
        }
        (&Method::GET, "sbom") => {
            let report = s.sbom(digest).await?.ok_or_else(not_analysed)?;
            let format = q.get("format").map_or("cyclonedx", String::as_str);
            let (doc, content_type) = match format {
                "cyclonedx" => (
                    berth_scan::output::to_cyclonedx(&report),
                    "application/vnd.cyclonedx+json",
                ),
                "spdx" => (
                    berth_scan::output::to_spdx(&report, (berth_meta::now_millis() / 1000) as u64),
                    "application/spdx+json",
                ),
                "berth" | "json" => (berth_scan::output::to_json(&report), "application/json"),
                other => {
                    return Err(ApiErr::invalid(format!(
                        "unknown SBOM format {other:?}: use cyclonedx, spdx or berth"
                    )));
                }
            };
            Ok(([(http::header::CONTENT_TYPE, content_type)], Json(doc)).into_response())
        }
        (&Method::GET, "vulnerabilities") => {
            let report = s
                .vulnerabilities(repo, digest)
                .await?
                .ok_or_else(not_analysed)?;
            match q.get("format").map_or("json", String::as_str) {
                "json" => Ok(Json(berth_assess::json::to_json(&report)).into_response()),
                "sarif" => Ok((
                    [(http::header::CONTENT_TYPE, "application/sarif+json")],
                    Json(berth_assess::sarif::to_sarif(
                        &[report],
                        &berth_assess::gate::IgnoreList::default(),
                    )),
                )
                    .into_response()),
                other => Err(ApiErr::invalid(format!(
                    "unknown report format {other:?}: use json or sarif"
                ))),
            }
        }
        _ => Err(method_not_allowed()),
    }
}

/// `/api/v1/orgs/{org}/scan-policy[/allowlist[/{id}]]`.
pub(super) async fn org_policy(
    c: Caller,
    State(state): State<AppState>,
    method: Method,
    Path(path): Path<HashMap<String, String>>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let org = path.get("org").cloned().unwrap_or_default();
    let rest = path.get("rest").cloned().unwrap_or_default();
    if !c.auth.manages_org(&c.principal, &org).await? {
        return Err(ApiErr::forbidden());
    }
    let scope = org_scope(&org);
    let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
    match parts.as_slice() {
        [] => match method {
            Method::GET => {
                Ok(Json(policy_body(c.auth.meta().scan_policy(&scope).await?)).into_response())
            }
            Method::PUT => Ok(put_policy(&c, &state, &scope, &body).await?.into_response()),
            _ => Err(method_not_allowed()),
        },
        ["allowlist"] => allowlist(&c, &state, &method, &scope, None, &body).await,
        ["allowlist", id] => allowlist(&c, &state, &method, &scope, Some(id), &body).await,
        _ => Err(ApiErr::not_found("that resource")),
    }
}

/// `/api/v1/scan-events`: every event, for site administrators.
pub(super) async fn all_events(
    c: Caller,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<ScanEventPage>> {
    c.require_site_admin()?;
    events(&c, None, &q).await
}

/// The OpenAPI description of this module's endpoints. They are reached through dispatchers
/// (repository names contain slashes, so `/-/` separates a repository's sub-resources, and an
/// organisation's policy shares one route), which `#[utoipa::path]` cannot describe: each
/// operation is built here instead, and `openapi_document_and_page` checks they are listed.
pub(super) struct ScanPaths;

mod doc {
    use utoipa::openapi::path::{
        HttpMethod, Operation, OperationBuilder, Parameter, ParameterBuilder, ParameterIn,
    };
    use utoipa::openapi::request_body::RequestBodyBuilder;
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    use utoipa::openapi::{Content, Ref, RefOr, Required, ResponseBuilder, Schema};

    pub fn string(values: &[&str]) -> Schema {
        let mut b = ObjectBuilder::new().schema_type(Type::String);
        if !values.is_empty() {
            b = b.enum_values(Some(values.iter().copied()));
        }
        b.build().into()
    }

    pub fn integer() -> Schema {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .build()
            .into()
    }

    pub fn path(name: &str, description: &str) -> Parameter {
        ParameterBuilder::new()
            .name(name)
            .parameter_in(ParameterIn::Path)
            .required(Required::True)
            .description(Some(description))
            .schema(Some(string(&[])))
            .build()
    }

    pub fn query(name: &str, description: &str, schema: Schema) -> Parameter {
        ParameterBuilder::new()
            .name(name)
            .parameter_in(ParameterIn::Query)
            .required(Required::False)
            .description(Some(description))
            .schema(Some(schema))
            .build()
    }

    pub fn schema(name: &str) -> RefOr<Schema> {
        Ref::from_schema_name(name).into()
    }

    pub fn list_of(name: &str) -> RefOr<Schema> {
        ArrayBuilder::new().items(schema(name)).build().into()
    }

    pub fn object() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .build()
            .into()
    }

    /// A response: status, description, and the body's content types with their schemas.
    pub type Answer<'a> = (&'a str, &'a str, Vec<(&'a str, RefOr<Schema>)>);

    /// One operation: who may call it, its parameters, JSON request body (a schema name), and
    /// responses. Every operation may also answer an error.
    pub struct Op<'a> {
        pub id: &'a str,
        pub summary: &'a str,
        pub access: &'a str,
        pub params: Vec<Parameter>,
        pub body: Option<&'a str>,
        pub responses: Vec<Answer<'a>>,
    }

    impl Op<'_> {
        pub fn build(self) -> Operation {
            let mut b = OperationBuilder::new()
                .tag("scans")
                .operation_id(Some(self.id))
                .summary(Some(self.summary))
                .description(Some(format!("Access: {}.", self.access)))
                .parameters(Some(self.params));
            if let Some(s) = self.body {
                b = b.request_body(Some(
                    RequestBodyBuilder::new()
                        .content("application/json", Content::new(Some(schema(s))))
                        .required(Some(Required::True))
                        .build(),
                ));
            }
            for (status, description, contents) in self.responses {
                let mut r = ResponseBuilder::new().description(description);
                for (ty, s) in contents {
                    r = r.content(ty, Content::new(Some(s)));
                }
                b = b.response(status, r.build());
            }
            b = b.response(
                "default",
                ResponseBuilder::new()
                    .description("an error (invalid input, no access, unknown repository or image, image scanning off)")
                    .content("application/json", Content::new(Some(schema("ErrorResponse"))))
                    .build(),
            );
            b.build()
        }
    }

    pub fn add(doc: &mut utoipa::openapi::OpenApi, path: &str, method: HttpMethod, op: Op<'_>) {
        doc.paths.add_path_operation(path, vec![method], op.build());
    }
}

impl utoipa::Modify for ScanPaths {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use doc::{Op, add, integer, list_of, object, path, query, schema, string};
        use utoipa::openapi::path::HttpMethod::{Delete, Get, Post, Put};

        const JSON: &str = "application/json";
        let not_found = |description| ("404", description, vec![(JSON, schema("ErrorResponse"))]);
        let not_analysed = || not_found("the image has not been analysed");
        let repo = || path("name", "the repository (slashes included)");
        let digest = || path("digest", "the image manifest's digest");
        let org = || path("org", "the organisation");
        let entry = || path("id", "the vulnerability id of the allow-list entry");
        let page = || {
            vec![
                query(
                    "after",
                    "only events after this id (the previous page's `next`)",
                    integer(),
                ),
                query(
                    "limit",
                    "events per page (default 100; clamped to 1..1000)",
                    integer(),
                ),
            ]
        };
        let image = "/api/v1/repositories/{name}/-/images/{digest}";
        let read = "read access to the repository";

        add(
            openapi,
            &format!("{image}/scan"),
            Get,
            Op {
                id: "scan_status",
                summary: "An image's analysis: queued, running, done or failed, with its findings' counts",
                access: read,
                params: vec![repo(), digest()],
                body: None,
                responses: vec![("200", "the analysis status", vec![(JSON, object())])],
            },
        );
        add(
            openapi,
            &format!("{image}/scan"),
            Post,
            Op {
                id: "scan_image",
                summary: "Queues an analysis of the image",
                access: "write access to the repository",
                params: vec![repo(), digest()],
                body: None,
                responses: vec![(
                    "202",
                    "queued (`queued` is false when it already was)",
                    vec![(JSON, object())],
                )],
            },
        );
        add(
            openapi,
            &format!("{image}/sbom"),
            Get,
            Op {
                id: "image_sbom",
                summary: "The image's software bill of materials",
                access: read,
                params: vec![
                    repo(),
                    digest(),
                    query(
                        "format",
                        "the document's format (default cyclonedx; `json` is `berth`)",
                        string(&["cyclonedx", "spdx", "berth", "json"]),
                    ),
                ],
                body: None,
                responses: vec![
                    (
                        "200",
                        "CycloneDX 1.6, SPDX 2.3 or Berth's own inventory",
                        vec![
                            ("application/vnd.cyclonedx+json", object()),
                            ("application/spdx+json", object()),
                            (JSON, object()),
                        ],
                    ),
                    not_analysed(),
                ],
            },
        );
        add(
            openapi,
            &format!("{image}/vulnerabilities"),
            Get,
            Op {
                id: "image_vulnerabilities",
                summary: "The image's vulnerabilities, matched against the current database",
                access: read,
                params: vec![
                    repo(),
                    digest(),
                    query(
                        "format",
                        "the report's format (default json)",
                        string(&["json", "sarif"]),
                    ),
                ],
                body: None,
                responses: vec![
                    (
                        "200",
                        "the report, or SARIF 2.1.0",
                        vec![(JSON, object()), ("application/sarif+json", object())],
                    ),
                    not_analysed(),
                ],
            },
        );
        add(
            openapi,
            "/api/v1/repositories/{name}/-/events",
            Get,
            Op {
                id: "repository_scan_events",
                summary: "Vulnerabilities that appeared or were resolved in the repository's images when the database changed",
                access: read,
                params: [vec![repo()], page()].concat(),
                body: None,
                responses: vec![(
                    "200",
                    "a page of events",
                    vec![(JSON, schema("ScanEventPage"))],
                )],
            },
        );
        add(
            openapi,
            "/api/v1/scan-events",
            Get,
            Op {
                id: "scan_events",
                summary: "Every repository's scan events",
                access: "site administrators",
                params: page(),
                body: None,
                responses: vec![(
                    "200",
                    "a page of events",
                    vec![(JSON, schema("ScanEventPage"))],
                )],
            },
        );

        for (scope, param, who, read_access, admin_access) in [
            (
                "/api/v1/repositories/{name}/-/scan-policy",
                repo(),
                "repository",
                read,
                "admin access to the repository",
            ),
            (
                "/api/v1/orgs/{org}/scan-policy",
                org(),
                "organisation",
                "administrators of the organisation (and site administrators)",
                "administrators of the organisation (and site administrators)",
            ),
        ] {
            let id = |verb: &str| format!("{verb}_{who}_scan_policy");
            add(
                openapi,
                scope,
                Get,
                Op {
                    id: &id("get"),
                    summary: "The scanning and pull policy (null fields are inherited)",
                    access: read_access,
                    params: vec![param.clone()],
                    body: None,
                    responses: vec![("200", "the policy", vec![(JSON, schema("PolicyBody"))])],
                },
            );
            add(
                openapi,
                scope,
                Put,
                Op {
                    id: &id("put"),
                    summary: "Sets the scanning and pull policy",
                    access: admin_access,
                    params: vec![param.clone()],
                    body: Some("PolicyBody"),
                    responses: vec![(
                        "200",
                        "the policy as stored",
                        vec![(JSON, schema("PolicyBody"))],
                    )],
                },
            );
            let list = format!("{scope}/allowlist");
            add(
                openapi,
                &list,
                Get,
                Op {
                    id: &id("list_allowed_in"),
                    summary: "The vulnerabilities the pull policy lets through",
                    access: read_access,
                    params: vec![param.clone()],
                    body: None,
                    responses: vec![("200", "the allow-list", vec![(JSON, list_of("AllowBody"))])],
                },
            );
            add(
                openapi,
                &list,
                Post,
                Op {
                    id: &id("allow_in"),
                    summary: "Lets a vulnerability through the pull policy, with a reason and an optional expiry",
                    access: admin_access,
                    params: vec![param.clone()],
                    body: Some("AllowBody"),
                    responses: vec![("201", "the entry", vec![(JSON, schema("AllowBody"))])],
                },
            );
            add(
                openapi,
                &format!("{list}/{{id}}"),
                Delete,
                Op {
                    id: &id("disallow_in"),
                    summary: "Removes an allow-list entry",
                    access: admin_access,
                    params: vec![param, entry()],
                    body: None,
                    responses: vec![("204", "removed", vec![]), not_found("no such entry")],
                },
            );
        }

        add(
            openapi,
            "/metrics",
            Get,
            Op {
                id: "metrics",
                summary: "Prometheus metrics: vulnerability database freshness per feed, the analysis queue, images waiting to be matched again",
                access: "site administrators (a monitoring robot uses a site administrator's access token)",
                params: vec![],
                body: None,
                responses: vec![(
                    "200",
                    "the Prometheus text exposition format",
                    vec![(
                        "text/plain; version=0.0.4; charset=utf-8",
                        string(&[]).into(),
                    )],
                )],
            },
        );
    }
}
