//! A small HTTP/1.1 client on hyper, plus the OCI distribution calls the
//! scenarios need. Every call checks the status code: a non-2xx answer is an
//! error, never a data point.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::blob::{BlobSpec, GenBody};

/// Accept header a container runtime sends when pulling by tag.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
     application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCTET: &str = "application/octet-stream";

/// Request body: nothing, a small buffer, or a generated blob range.
pub enum Body {
    Empty,
    Full(Option<Bytes>),
    Gen(GenBody),
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Body::Empty => Poll::Ready(None),
            Body::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Body::Gen(g) => Pin::new(g).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Empty => true,
            Body::Full(b) => b.is_none(),
            Body::Gen(g) => g.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Empty => SizeHint::with_exact(0),
            Body::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Body::Gen(g) => g.size_hint(),
        }
    }
}

/// A fully read (small) response.
pub struct Small {
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Small {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Pooled keep-alive client bound to one registry.
#[derive(Clone)]
pub struct Http {
    client: Client<HttpConnector, Body>,
    /// `http://host:port`
    base: String,
    /// `host:port`, for the Host header of raw connections.
    pub authority: String,
    /// Resolved address, for raw connections.
    pub addr: SocketAddr,
    /// Bound on one small request (manifests, tags, uploads sessions).
    pub small_timeout: Duration,
    /// Bound on one blob transfer.
    pub big_timeout: Duration,
    /// An `Authorization` value sent with every request that has none of its own.
    pub auth: Option<String>,
}

impl Http {
    pub async fn new(registry: &str, big_timeout: Duration) -> Result<Self> {
        let uri: Uri = registry
            .trim_end_matches('/')
            .parse()
            .with_context(|| format!("bad --registry URL {registry:?}"))?;
        if uri.scheme_str() != Some("http") {
            bail!("--registry must be an http:// URL (TLS is not supported by the benchmark)");
        }
        let authority = uri
            .authority()
            .ok_or_else(|| anyhow!("--registry needs host:port"))?
            .to_string();
        let host_port = if uri.port().is_some() {
            authority.clone()
        } else {
            format!("{authority}:80")
        };
        let addr = tokio::net::lookup_host(host_port.as_str())
            .await?
            .next()
            .ok_or_else(|| anyhow!("cannot resolve {authority}"))?;
        let mut conn = HttpConnector::new();
        conn.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(256)
            .pool_idle_timeout(Duration::from_secs(30))
            .build(conn);
        Ok(Self {
            client,
            base: format!("http://{authority}"),
            authority,
            addr,
            small_timeout: Duration::from_secs(60),
            big_timeout,
            auth: None,
        })
    }

    fn uri(&self, path_and_query: &str) -> Result<Uri> {
        Ok(format!("{}{}", self.base, path_and_query).parse()?)
    }

    /// Sends a request and returns the response with its body unread.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Body,
        timeout: Duration,
    ) -> Result<Response<Incoming>> {
        let mut req = Request::builder()
            .method(method.clone())
            .uri(self.uri(path)?);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(a) = &self.auth
            && !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        {
            req = req.header(header::AUTHORIZATION, a.as_str());
        }
        let len = http_body::Body::size_hint(&body).exact();
        if let Some(len) = len
            && method != Method::GET
            && method != Method::HEAD
            && !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        {
            req = req.header(header::CONTENT_LENGTH, len);
        }
        let req = req.body(body)?;
        tokio::time::timeout(timeout, self.client.request(req))
            .await
            .map_err(|_| anyhow!("{method} {path}: no response within {timeout:?}"))?
            .with_context(|| format!("{method} {path}"))
    }

    /// Sends a small request, reads the whole answer, and checks the status
    /// is one of `expect`.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Body,
        expect: &[u16],
    ) -> Result<Small> {
        self.call_timeout(method, path, headers, body, expect, self.small_timeout)
            .await
    }

    pub async fn call_timeout(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Body,
        expect: &[u16],
        timeout: Duration,
    ) -> Result<Small> {
        let resp = self
            .send(method.clone(), path, headers, body, timeout)
            .await?;
        let status = resp.status();
        let (parts, body) = resp.into_parts();
        let body = tokio::time::timeout(timeout, body.collect())
            .await
            .map_err(|_| anyhow!("{method} {path}: body not read within {timeout:?}"))?
            .with_context(|| format!("{method} {path}: reading body"))?
            .to_bytes();
        if !expect.contains(&status.as_u16()) {
            bail!(
                "{method} {path} -> {status} (expected {expect:?}): {}",
                snippet(&body)
            );
        }
        Ok(Small {
            headers: parts.headers,
            body,
        })
    }

    // ---- OCI distribution calls -------------------------------------------

    /// `POST /v2/<repo>/blobs/uploads/` → the session's Location (path+query).
    pub async fn start_upload(&self, repo: &str) -> Result<String> {
        let r = self
            .call(
                Method::POST,
                &format!("/v2/{repo}/blobs/uploads/"),
                &[],
                Body::Empty,
                &[202],
            )
            .await?;
        location(&r.headers).context("upload session without Location")
    }

    /// Monolithic push: POST, then one PUT `?digest=` carrying the whole blob.
    pub async fn push_monolithic(&self, repo: &str, spec: &BlobSpec, digest: &str) -> Result<()> {
        let loc = self.start_upload(repo).await?;
        let put = with_digest(&loc, digest);
        let r = self
            .call_timeout(
                Method::PUT,
                &put,
                &[("content-type", OCTET)],
                Body::Gen(spec.body(0, spec.size())),
                &[201],
                self.big_timeout,
            )
            .await?;
        check_digest(&r, digest)
    }

    /// Chunked push: POST, PATCH chunks with Content-Range, PUT `?digest=`.
    /// Returns each PATCH's latency and the closing PUT's.
    pub async fn push_chunked(
        &self,
        repo: &str,
        spec: &BlobSpec,
        digest: &str,
        chunk: u64,
    ) -> Result<(Vec<Duration>, Duration)> {
        let mut loc = self.start_upload(repo).await?;
        let mut lat = Vec::new();
        let mut off = 0;
        while off < spec.size() {
            let end = (off + chunk).min(spec.size());
            let range = format!("{}-{}", off, end - 1);
            let t = std::time::Instant::now();
            let r = self
                .call_timeout(
                    Method::PATCH,
                    &loc,
                    &[("content-type", OCTET), ("content-range", &range)],
                    Body::Gen(spec.body(off, end)),
                    &[202],
                    self.big_timeout,
                )
                .await?;
            lat.push(t.elapsed());
            if let Some(l) = location(&r.headers) {
                loc = l;
            }
            off = end;
        }
        let t = std::time::Instant::now();
        let r = self
            .call_timeout(
                Method::PUT,
                &with_digest(&loc, digest),
                &[],
                Body::Empty,
                &[201],
                self.big_timeout,
            )
            .await?;
        let commit = t.elapsed();
        check_digest(&r, digest)?;
        Ok((lat, commit))
    }

    /// Pushes a small in-memory blob (POST + PUT); returns its digest.
    pub async fn push_small(&self, repo: &str, data: Bytes) -> Result<String> {
        let digest = sha256_digest(&data);
        let loc = self.start_upload(repo).await?;
        let r = self
            .call(
                Method::PUT,
                &with_digest(&loc, &digest),
                &[("content-type", OCTET)],
                Body::Full(Some(data)),
                &[201],
            )
            .await?;
        check_digest(&r, &digest)?;
        Ok(digest)
    }

    pub async fn put_manifest(&self, repo: &str, reference: &str, manifest: &Bytes) -> Result<()> {
        let r = self
            .call(
                Method::PUT,
                &format!("/v2/{repo}/manifests/{reference}"),
                &[("content-type", OCI_MANIFEST)],
                Body::Full(Some(manifest.clone())),
                &[201],
            )
            .await?;
        check_digest(&r, &sha256_digest(manifest))
    }

    /// Streams a blob, discarding it; returns the bytes read (and checks the
    /// count, and the digest when `verify`).
    pub async fn pull_blob(
        &self,
        repo: &str,
        digest: &str,
        size: u64,
        verify: bool,
    ) -> Result<u64> {
        use sha2::Digest as _;
        let mut path = format!("/v2/{repo}/blobs/{digest}");
        let mut resp = self
            .send(Method::GET, &path, &[], Body::Empty, self.big_timeout)
            .await?;
        // Follow a redirect to the same server (at most 3).
        for _ in 0..3 {
            if !resp.status().is_redirection() {
                break;
            }
            let loc = location(resp.headers()).context("redirect without Location")?;
            if loc.starts_with("http") {
                bail!("GET {path} redirected off this registry to {loc}");
            }
            path = loc;
            resp = self
                .send(Method::GET, &path, &[], Body::Empty, self.big_timeout)
                .await?;
        }
        let status = resp.status();
        if status != StatusCode::OK {
            let body = resp.into_body().collect().await?.to_bytes();
            bail!("GET {path} -> {status}: {}", snippet(&body));
        }
        let mut body = resp.into_body();
        let mut n = 0u64;
        let mut h = verify.then(sha2::Sha256::new);
        let deadline = tokio::time::Instant::now() + self.big_timeout;
        while let Some(frame) = tokio::time::timeout_at(deadline, body.frame())
            .await
            .map_err(|_| anyhow!("GET {path}: body not read within {:?}", self.big_timeout))?
        {
            if let Ok(data) = frame?.into_data() {
                n += data.len() as u64;
                if let Some(h) = h.as_mut() {
                    h.update(&data);
                }
            }
        }
        if n != size {
            bail!("GET {path}: read {n} bytes, expected {size}");
        }
        if let Some(h) = h {
            let got = format!("sha256:{}", hex::encode(h.finalize()));
            if got != digest {
                bail!("GET {path}: content hashes to {got}");
            }
        }
        Ok(n)
    }
}

/// The Location header as path+query (absolute URLs to this server are cut
/// down to their path; the caller rejects other hosts).
pub fn location(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::LOCATION)?.to_str().ok()?;
    if let Some(rest) = v
        .strip_prefix("http://")
        .or_else(|| v.strip_prefix("https://"))
    {
        let i = rest.find('/').unwrap_or(rest.len());
        let p = &rest[i..];
        return Some(if p.is_empty() { "/".into() } else { p.into() });
    }
    Some(v.to_string())
}

/// Appends `digest=<d>` to an upload location.
pub fn with_digest(loc: &str, digest: &str) -> String {
    let sep = if loc.contains('?') { '&' } else { '?' };
    format!("{loc}{sep}digest={}", digest.replace(':', "%3A"))
}

/// When the server names the digest it stored, it must be the one we sent.
fn check_digest(r: &Small, digest: &str) -> Result<()> {
    match r.header("docker-content-digest") {
        Some(d) if d != digest => bail!("server reports digest {d}, expected {digest}"),
        _ => Ok(()),
    }
}

pub fn sha256_digest(data: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

pub fn snippet(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(&body[..body.len().min(300)]);
    s.replace('\n', " ")
}

/// `<url>; rel="next"` from a Link header, as path+query.
pub fn next_link(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::LINK)?.to_str().ok()?;
    for part in v.split(',') {
        if part.contains("rel=\"next\"") || part.contains("rel=next") {
            let s = part.find('<')?;
            let e = part.find('>')?;
            let url = &part[s + 1..e];
            let mut h = HeaderMap::new();
            h.insert(header::LOCATION, HeaderValue::from_str(url).ok()?);
            return location(&h);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        let mut h = HeaderMap::new();
        h.insert(
            header::LOCATION,
            HeaderValue::from_static("http://127.0.0.1:5000/v2/a/blobs/uploads/x?_state=y"),
        );
        assert_eq!(location(&h).unwrap(), "/v2/a/blobs/uploads/x?_state=y");
        h.insert(
            header::LOCATION,
            HeaderValue::from_static("/v2/a/blobs/uploads/x"),
        );
        assert_eq!(location(&h).unwrap(), "/v2/a/blobs/uploads/x");
        assert_eq!(
            with_digest("/u?x=1", "sha256:ab"),
            "/u?x=1&digest=sha256%3Aab"
        );
        assert_eq!(with_digest("/u", "sha256:ab"), "/u?digest=sha256%3Aab");
    }

    #[test]
    fn links() {
        let mut h = HeaderMap::new();
        h.insert(
            header::LINK,
            HeaderValue::from_static("</v2/_catalog?last=b&n=2>; rel=\"next\""),
        );
        assert_eq!(next_link(&h).unwrap(), "/v2/_catalog?last=b&n=2");
    }
}
