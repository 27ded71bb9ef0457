//! Images in a registry, over the Docker Registry HTTP API v2 / OCI distribution spec: anonymous,
//! Basic, or Bearer tokens obtained from the realm of a `WWW-Authenticate` challenge (with Basic
//! credentials when given).

use std::sync::Mutex;

use berth_oci::Digest;
use futures::TryStreamExt;
use reqwest::{RequestBuilder, Response, StatusCode, header};

use crate::error::ScanError;
use crate::source::{BlobReader, FetchedManifest, ImageSource, MAX_MANIFEST, verified_manifest};

/// A user name and password (or token) for a registry.
#[derive(Clone)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// One repository of a registry.
pub struct RegistrySource {
    client: reqwest::Client,
    /// `https://host[:port]` (or `http://` for plain-HTTP registries).
    base: String,
    repository: String,
    credentials: Option<Credentials>,
    /// The bearer token of the last challenge answered; reused until a request is refused.
    token: Mutex<Option<String>>,
}

impl RegistrySource {
    /// `base` is the registry's URL (`https://registry.example.com`, `http://127.0.0.1:5000`).
    pub fn new(
        base: &str,
        repository: &str,
        credentials: Option<Credentials>,
    ) -> Result<RegistrySource, ScanError> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("berth-scan/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ScanError::Registry(e.to_string()))?;
        Ok(RegistrySource {
            client,
            base: base.trim_end_matches('/').to_owned(),
            repository: repository.to_owned(),
            credentials,
            token: Mutex::new(None),
        })
    }

    /// Splits `host[:port]/repo[:tag|@digest]` into a source and the reference to analyse.
    /// Docker Hub names (`alpine`, `docker.io/library/alpine`) go to `registry-1.docker.io`.
    /// `plain_http` talks HTTP instead of HTTPS.
    pub fn from_image_ref(
        image: &str,
        credentials: Option<Credentials>,
        plain_http: bool,
    ) -> Result<(RegistrySource, String), ScanError> {
        let (name, reference) = match image.split_once('@') {
            Some((n, d)) => (n, d.to_owned()),
            None => match image.rsplit_once(':') {
                Some((n, t)) if !t.contains('/') => (n, t.to_owned()),
                _ => (image, "latest".to_owned()),
            },
        };
        let (host, repo) = match name.split_once('/') {
            Some((h, r)) if h.contains('.') || h.contains(':') || h == "localhost" => {
                (h.to_owned(), r.to_owned())
            }
            _ => ("docker.io".to_owned(), name.to_owned()),
        };
        let (host, repo) = if host == "docker.io" {
            let repo = if repo.contains('/') {
                repo
            } else {
                format!("library/{repo}")
            };
            ("registry-1.docker.io".to_owned(), repo)
        } else {
            (host, repo)
        };
        let scheme = if plain_http { "http" } else { "https" };
        Ok((
            RegistrySource::new(&format!("{scheme}://{host}"), &repo, credentials)?,
            reference,
        ))
    }

    /// `<base>/<repository>`, for messages and tests.
    pub fn base_url(&self) -> String {
        format!("{}/{}", self.base, self.repository)
    }

    /// Sends a request, answering one authentication challenge if the registry makes one.
    async fn send(&self, build: impl Fn() -> RequestBuilder) -> Result<Response, ScanError> {
        let token = self.token.lock().ok().and_then(|t| t.clone());
        let first = match &token {
            Some(t) => build().bearer_auth(t),
            None => build(),
        };
        let resp = first.send().await.map_err(reg)?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        let challenge = resp
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let retry = if challenge.to_ascii_lowercase().starts_with("bearer") {
            let t = self.fetch_token(&challenge).await?;
            if let Ok(mut slot) = self.token.lock() {
                *slot = Some(t.clone());
            }
            build().bearer_auth(t)
        } else if let Some(c) = &self.credentials {
            build().basic_auth(&c.username, Some(&c.password))
        } else {
            return Err(ScanError::Registry(
                "authentication required and no credentials given".into(),
            ));
        };
        let resp = retry.send().await.map_err(reg)?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            return Err(ScanError::Registry(
                "the registry refused the credentials".into(),
            ));
        }
        Ok(resp)
    }

    /// Asks the challenge's realm for a token with its service and scope.
    async fn fetch_token(&self, challenge: &str) -> Result<String, ScanError> {
        let params = parse_challenge(challenge);
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let realm = get("realm")
            .ok_or_else(|| ScanError::Registry("bearer challenge without realm".into()))?;
        let mut query = Vec::new();
        if let Some(s) = get("service") {
            query.push(("service", s));
        }
        query.push((
            "scope",
            get("scope").unwrap_or_else(|| format!("repository:{}:pull", self.repository)),
        ));
        let mut req = self.client.get(&realm).query(&query);
        if let Some(c) = &self.credentials {
            req = req.basic_auth(&c.username, Some(&c.password));
        }
        let resp = req.send().await.map_err(reg)?;
        if !resp.status().is_success() {
            return Err(ScanError::Registry(format!(
                "token endpoint answered {}",
                resp.status()
            )));
        }
        let body: serde_json::Value = resp.json().await.map_err(reg)?;
        body["token"]
            .as_str()
            .or_else(|| body["access_token"].as_str())
            .map(str::to_owned)
            .ok_or_else(|| ScanError::Registry("token response without a token".into()))
    }
}

fn reg(e: reqwest::Error) -> ScanError {
    ScanError::Registry(e.to_string())
}

/// Parses `Bearer realm="...",service="...",scope="..."` into its parameters.
pub fn parse_challenge(challenge: &str) -> Vec<(String, String)> {
    let rest = challenge.split_once(' ').map(|(_, r)| r).unwrap_or("");
    let mut out = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value = chars.by_ref().take_while(|c| *c != ',').collect();
        }
        out.push((key.trim().to_owned(), value));
    }
    out
}

impl ImageSource for RegistrySource {
    async fn manifest(&self, reference: &str) -> Result<FetchedManifest, ScanError> {
        let reference = if reference.is_empty() {
            "latest"
        } else {
            reference
        };
        let url = format!("{}/v2/{}/manifests/{reference}", self.base, self.repository);
        let resp = self
            .send(|| self.client.get(&url).header(header::ACCEPT, ACCEPT))
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Err(ScanError::NotFound(format!(
                "{}:{reference}",
                self.repository
            )));
        }
        if !resp.status().is_success() {
            return Err(ScanError::Registry(format!(
                "manifest {reference}: HTTP {}",
                resp.status()
            )));
        }
        let media_type = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if resp.content_length().is_some_and(|l| l > MAX_MANIFEST) {
            return Err(ScanError::Registry("manifest too large".into()));
        }
        let mut bytes = Vec::new();
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.try_next().await.map_err(reg)? {
            bytes.extend_from_slice(&chunk);
            if bytes.len() as u64 > MAX_MANIFEST {
                return Err(ScanError::Registry("manifest too large".into()));
            }
        }
        match reference.parse::<Digest>() {
            Ok(d) => verified_manifest(bytes, media_type, &d),
            Err(_) => Ok(FetchedManifest {
                digest: Digest::sha256_of(&bytes),
                bytes,
                media_type,
            }),
        }
    }

    async fn blob(&self, digest: &Digest) -> Result<BlobReader, ScanError> {
        let url = format!("{}/v2/{}/blobs/{digest}", self.base, self.repository);
        let resp = self.send(|| self.client.get(&url)).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Err(ScanError::NotFound(digest.to_string()));
        }
        if !resp.status().is_success() {
            return Err(ScanError::Registry(format!(
                "blob {digest}: HTTP {}",
                resp.status()
            )));
        }
        let stream = resp.bytes_stream().map_err(std::io::Error::other);
        Ok(Box::pin(tokio_util::io::StreamReader::new(stream)))
    }
}
