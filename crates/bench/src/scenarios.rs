//! The registry scenarios. Each one does its (untimed) setup, then brackets
//! exactly the measured phase with a [`Meter`].

use std::cell::Cell;
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use bytes::Bytes;
use futures::future::try_join_all;
use http::Method;

use crate::BenchArgs;
use crate::blob::{BlobSpec, SplitMix64};
use crate::client::{Body, Http, MANIFEST_ACCEPT, next_link, sha256_digest};
use crate::hot::{HotSpec, hammer};
use crate::procfs::Proc;
use crate::report::{Meter, ScenarioResult, dur_us, latencies, median};

pub struct Ctx {
    pub args: BenchArgs,
    pub http: Http,
    pub run_id: String,
    pub server: Option<Proc>,
    seeds: SplitMix64,
    /// The blob pushed by push-mono, reused by pull.
    pulled: Option<(String, BlobSpec, String)>,
    image: Option<Image>,
    /// Tags `t00000..t{tags}` exist on the image repository.
    tags: usize,
}

struct Image {
    repo: String,
    manifest: Bytes,
}

impl Ctx {
    pub fn new(args: BenchArgs, http: Http, run_id: String, server: Option<Proc>) -> Self {
        let mut seed = 0xcbf2_9ce4_8422_2325u64;
        for b in run_id.bytes() {
            seed = (seed ^ b as u64).wrapping_mul(0x100_0000_01b3);
        }
        Self {
            args,
            http,
            run_id,
            server,
            seeds: SplitMix64::new(seed),
            pulled: None,
            image: None,
            tags: 0,
        }
    }

    fn repo(&self, leaf: &str) -> String {
        format!("{}/{}/{}", self.args.repo_prefix, self.run_id, leaf)
    }

    /// Makes `n` distinct blob recipes of `size` and their digests (untimed).
    fn blobs(&mut self, n: usize, size: u64) -> Vec<(BlobSpec, String)> {
        if n * size as usize >= 256 << 20 {
            eprintln!("  hashing {} blob(s) of {} MiB ...", n, size >> 20);
        }
        (0..n)
            .map(|_| {
                let s = BlobSpec::new(self.seeds.next_u64(), size);
                let d = s.digest();
                (s, d)
            })
            .collect()
    }

    pub async fn run(&mut self, name: &str, r: &mut ScenarioResult) -> Result<()> {
        match name {
            "push-mono" => self.push_mono(r).await,
            "push-chunked" => self.push_chunked(r).await,
            "pull" => self.pull(r).await,
            "push-concurrent" => self.push_concurrent(r).await,
            "manifest-get" => self.manifest_hot(r, Method::GET).await,
            "manifest-head" => self.manifest_hot(r, Method::HEAD).await,
            "manifest-get-public" => self.manifest_public(r).await,
            "manifest-get-bearer" => self.manifest_bearer(r).await,
            "token-issue" => self.token_issue(r).await,
            "tag-create" => self.tag_create(r).await,
            "tag-list" => self.tag_list(r).await,
            "catalog" => self.catalog(r).await,
            "idle-rss" | "idle-rss-after" => self.idle_rss(r).await,
            other => bail!("unknown scenario {other}"),
        }
    }

    async fn push_mono(&mut self, r: &mut ScenarioResult) -> Result<()> {
        let repo = self.repo("mono");
        let blobs = self.blobs(self.args.repeat, self.args.blob_size);
        let m = Meter::start(&self.server);
        let mut samples = Vec::new();
        for (spec, digest) in &blobs {
            let t = Instant::now();
            self.http.push_monolithic(&repo, spec, digest).await?;
            samples.push(spec.size() as f64 / 1e6 / t.elapsed().as_secs_f64());
        }
        let secs = m.stop(r);
        r.transfer(self.args.blob_size * blobs.len() as u64, secs);
        r.metric = median(&samples);
        r.samples = samples;
        let (spec, digest) = blobs.into_iter().last().expect("repeat >= 1");
        self.pulled = Some((repo, spec, digest));
        Ok(())
    }

    async fn push_chunked(&mut self, r: &mut ScenarioResult) -> Result<()> {
        let repo = self.repo("chunked");
        let blobs = self.blobs(self.args.repeat, self.args.blob_size);
        let m = Meter::start(&self.server);
        let mut samples = Vec::new();
        let mut lat = Vec::new();
        let mut commits = Vec::new();
        for (spec, digest) in &blobs {
            let t = Instant::now();
            let (l, c) = self
                .http
                .push_chunked(&repo, spec, digest, self.args.chunk_size)
                .await?;
            samples.push(spec.size() as f64 / 1e6 / t.elapsed().as_secs_f64());
            lat.extend(l.into_iter().map(dur_us));
            commits.push(c.as_secs_f64() * 1000.0);
        }
        let secs = m.stop(r);
        r.transfer(self.args.blob_size * blobs.len() as u64, secs);
        r.metric = median(&samples);
        r.samples = samples;
        r.requests = Some(lat.len() as u64);
        // Latencies here are per PATCH of one chunk.
        latencies(r, &mut lat);
        r.extra
            .insert("chunk_bytes".into(), self.args.chunk_size.into());
        // The closing PUT ?digest= alone (a server that re-reads the blob shows here).
        r.extra
            .insert("commit_ms".into(), median(&commits).unwrap_or(0.0).into());
        Ok(())
    }

    async fn pull(&mut self, r: &mut ScenarioResult) -> Result<()> {
        if self.pulled.is_none() {
            let repo = self.repo("pull");
            let (spec, digest) = self.blobs(1, self.args.blob_size).pop().expect("one");
            eprintln!("  pushing the blob to pull ...");
            self.http.push_monolithic(&repo, &spec, &digest).await?;
            self.pulled = Some((repo, spec, digest));
        }
        let (repo, spec, digest) = self.pulled.clone().expect("set above");
        let m = Meter::start(&self.server);
        let mut samples = Vec::new();
        for _ in 0..self.args.repeat {
            let t = Instant::now();
            self.http
                .pull_blob(&repo, &digest, spec.size(), self.args.verify_pull)
                .await?;
            samples.push(spec.size() as f64 / 1e6 / t.elapsed().as_secs_f64());
        }
        let secs = m.stop(r);
        r.transfer(spec.size() * self.args.repeat as u64, secs);
        r.metric = median(&samples);
        r.samples = samples;
        r.extra
            .insert("verified".into(), self.args.verify_pull.into());
        Ok(())
    }

    async fn push_concurrent(&mut self, r: &mut ScenarioResult) -> Result<()> {
        let repo = self.repo("concurrent");
        let n = self.args.concurrency;
        let size = self.args.concurrent_blob_size;
        let blobs = self.blobs(n * self.args.repeat, size);
        let m = Meter::start(&self.server);
        let samples = push_in_rounds(&self.http, &repo, &blobs, n).await?;
        let secs = m.stop(r);
        r.transfer(size * blobs.len() as u64, secs);
        r.metric = median(&samples);
        r.samples = samples;
        r.extra.insert("concurrency".into(), n.into());
        r.extra.insert("blob_bytes".into(), size.into());
        Ok(())
    }

    /// Pushes a small image (config + one 64 KiB layer + manifest `bench`).
    async fn ensure_image(&mut self) -> Result<()> {
        if self.image.is_some() {
            return Ok(());
        }
        let repo = self.repo("image");
        let manifest = push_image(&self.http, &repo, self.seeds.next_u64()).await?;
        self.http.put_manifest(&repo, "bench", &manifest).await?;
        self.image = Some(Image { repo, manifest });
        Ok(())
    }

    async fn manifest_hot(&mut self, r: &mut ScenarioResult, method: Method) -> Result<()> {
        self.ensure_image().await?;
        let img = self.image.as_ref().expect("ensured");
        let path = format!("/v2/{}/manifests/bench", img.repo);
        let len = img.manifest.len();
        let mut headers = vec![("accept".to_owned(), MANIFEST_ACCEPT.to_owned())];
        if let Some(a) = &self.http.auth {
            headers.push(("authorization".into(), a.clone()));
        }
        self.hot(r, method, path, headers, Some(len)).await
    }

    /// The user of `--credentials`.
    fn user(&self) -> Result<String> {
        let c = self
            .args
            .credentials
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("this scenario needs --credentials"))?;
        Ok(c.split_once(':').map(|(u, _)| u).unwrap_or(c).to_owned())
    }

    /// Makes the image's repository public (Berth's management API), for anonymous pulls.
    async fn make_public(&mut self) -> Result<String> {
        self.user()?;
        self.ensure_image().await?;
        let repo = self.image.as_ref().expect("ensured").repo.clone();
        let body = Body::Full(Some(Bytes::from_static(br#"{"public":true}"#)));
        self.http
            .call(
                Method::PATCH,
                &format!("/api/v1/repositories/{repo}"),
                &[("content-type", "application/json")],
                body,
                &[200],
            )
            .await?;
        Ok(repo)
    }

    async fn manifest_public(&mut self, r: &mut ScenarioResult) -> Result<()> {
        let repo = self.make_public().await?;
        let len = self.image.as_ref().expect("ensured").manifest.len();
        let headers = vec![("accept".to_owned(), MANIFEST_ACCEPT.to_owned())];
        self.hot(
            r,
            Method::GET,
            format!("/v2/{repo}/manifests/bench"),
            headers,
            Some(len),
        )
        .await
    }

    async fn manifest_bearer(&mut self, r: &mut ScenarioResult) -> Result<()> {
        let repo = self.make_public().await?;
        let len = self.image.as_ref().expect("ensured").manifest.len();
        let t = self
            .http
            .call(
                Method::GET,
                &format!("/auth/token?service=berth&scope=repository:{repo}:pull"),
                &[],
                Body::Empty,
                &[200],
            )
            .await?;
        let v: serde_json::Value = serde_json::from_slice(&t.body)?;
        let token = v["token"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("no token in the answer"))?;
        let headers = vec![
            ("accept".to_owned(), MANIFEST_ACCEPT.to_owned()),
            ("authorization".to_owned(), format!("Bearer {token}")),
        ];
        self.hot(
            r,
            Method::GET,
            format!("/v2/{repo}/manifests/bench"),
            headers,
            Some(len),
        )
        .await
    }

    /// Token issuance for a personal access token (the cheap credential path: no password hash).
    async fn token_issue(&mut self, r: &mut ScenarioResult) -> Result<()> {
        let user = self.user()?;
        self.ensure_image().await?;
        let repo = self.image.as_ref().expect("ensured").repo.clone();
        let body = format!(r#"{{"name":"bench-{}","role":"read"}}"#, self.run_id);
        let t = self
            .http
            .call(
                Method::POST,
                &format!("/api/v1/users/{user}/tokens"),
                &[("content-type", "application/json")],
                Body::Full(Some(Bytes::from(body))),
                &[201],
            )
            .await?;
        let v: serde_json::Value = serde_json::from_slice(&t.body)?;
        let secret = v["secret"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("no secret in the answer"))?;
        use base64::Engine as _;
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}"))
        );
        let headers = vec![("authorization".to_owned(), basic)];
        let path = format!("/auth/token?service=berth&scope=repository:{repo}:pull");
        self.hot(r, Method::GET, path, headers, None).await
    }

    /// Runs the hot loop on one request and records rate, latency and server CPU per request.
    async fn hot(
        &mut self,
        r: &mut ScenarioResult,
        method: Method,
        path: String,
        headers: Vec<(String, String)>,
        expect_len: Option<usize>,
    ) -> Result<()> {
        let spec = HotSpec {
            addr: self.http.addr,
            authority: self.http.authority.clone(),
            method,
            path,
            headers,
            connections: self.args.connections,
            warmup: self.args.warmup,
            duration: self.args.duration,
            max_per_connection: 10_000_000,
            expect_len,
        };
        let m = Meter::start(&self.server);
        let mut h = hammer(spec).await?;
        m.stop(r);
        let secs = h.window.as_secs_f64();
        // The meter also spans the warm-up; CPU per request uses every request
        // the server answered in that span, estimated from the window's rate.
        r.seconds = Some(secs);
        r.requests = Some(h.ok);
        r.errors = Some(h.errors);
        r.requests_per_s = Some(h.ok as f64 / secs);
        r.metric = r.requests_per_s;
        if let Some(c) = r.server_cpu_s {
            let total = (h.ok as f64 / secs) * (secs + self.args.warmup.as_secs_f64());
            if total > 0.0 {
                r.server_cpu_us_per_req = Some(c * 1e6 / total);
            }
        }
        latencies(r, &mut h.latencies_us);
        r.extra
            .insert("connections".into(), self.args.connections.into());
        if h.errors > 0 {
            bail!(
                "{} of {} requests failed; first: {}",
                h.errors,
                h.errors + h.ok,
                h.first_error.unwrap_or_default()
            );
        }
        if h.ok == 0 {
            bail!("no request completed in the window");
        }
        Ok(())
    }

    /// Creates tags `t{from}..t{to}` over `conns` connections, one request at
    /// a time each; returns each PUT's latency.
    async fn create_tags(&mut self, from: usize, to: usize, conns: usize) -> Result<Vec<u32>> {
        self.ensure_image().await?;
        let img = self.image.as_ref().expect("ensured");
        let next = Cell::new(from);
        let http = &self.http;
        let workers = (0..conns.max(1)).map(|_| {
            let next = &next;
            async move {
                let mut lat = Vec::new();
                loop {
                    let i = next.get();
                    if i >= to {
                        break;
                    }
                    next.set(i + 1);
                    let t = Instant::now();
                    http.put_manifest(&img.repo, &format!("t{i:05}"), &img.manifest)
                        .await?;
                    lat.push(dur_us(t.elapsed()));
                }
                anyhow::Ok(lat)
            }
        });
        let all = try_join_all(workers).await?;
        self.tags = self.tags.max(to);
        Ok(all.into_iter().flatten().collect())
    }

    async fn tag_create(&mut self, r: &mut ScenarioResult) -> Result<()> {
        self.ensure_image().await?;
        let from = self.tags;
        let to = from + self.args.tags;
        let m = Meter::start(&self.server);
        let res = self.create_tags(from, to, self.args.tag_connections).await;
        let secs = m.stop(r);
        let mut lat = res?;
        r.seconds = Some(secs);
        r.requests = Some(lat.len() as u64);
        r.metric = Some(lat.len() as f64 / secs);
        r.requests_per_s = r.metric;
        if let Some(c) = r.server_cpu_s {
            r.server_cpu_us_per_req = Some(c * 1e6 / lat.len().max(1) as f64);
        }
        latencies(r, &mut lat);
        r.extra
            .insert("connections".into(), self.args.tag_connections.into());
        Ok(())
    }

    async fn tag_list(&mut self, r: &mut ScenarioResult) -> Result<()> {
        self.ensure_image().await?;
        let want = self.args.list_tags;
        if self.tags < want {
            eprintln!("  creating {} tags ...", want - self.tags);
            let t = Instant::now();
            self.create_tags(self.tags, want, self.args.setup_connections)
                .await
                .context("creating tags")?;
            eprintln!("  ... in {:.1} s", t.elapsed().as_secs_f64());
        }
        let img = self.image.as_ref().expect("ensured");
        let path = format!("/v2/{}/tags/list", img.repo);
        let expect = self.tags + 1; // plus "bench"
        let http = self.http.clone();
        self.timed_listing(r, &path, "tags", expect, &http).await
    }

    async fn catalog(&mut self, r: &mut ScenarioResult) -> Result<()> {
        let n = self.args.repos;
        eprintln!("  creating {n} repositories ...");
        let t = Instant::now();
        let next = Cell::new(0usize);
        let http = &self.http;
        let base = self.repo("cat");
        let seed = self.seeds.next_u64();
        let workers = (0..self.args.setup_connections.max(1)).map(|_| {
            let (next, base) = (&next, &base);
            async move {
                loop {
                    let i = next.get();
                    if i >= n {
                        break;
                    }
                    next.set(i + 1);
                    let repo = format!("{base}/r{i:05}");
                    let m = push_image(http, &repo, seed ^ i as u64).await?;
                    http.put_manifest(&repo, "latest", &m).await?;
                }
                anyhow::Ok(())
            }
        });
        try_join_all(workers)
            .await
            .context("creating repositories")?;
        eprintln!("  ... in {:.1} s", t.elapsed().as_secs_f64());
        let page = 1000;
        let path = format!("/v2/_catalog?n={page}");
        let http = self.http.clone();
        r.extra.insert("n".into(), page.into());
        self.timed_listing(r, &path, "repositories", n.min(page), &http)
            .await
    }

    /// GETs a listing (following `Link: rel="next"` pages only when the key
    /// is "tags", since the catalog is asked for one page of n) `list_repeat`
    /// times; the headline is the median wall time of one complete listing.
    async fn timed_listing(
        &mut self,
        r: &mut ScenarioResult,
        first: &str,
        key: &str,
        at_least: usize,
        http: &Http,
    ) -> Result<()> {
        let follow = key == "tags";
        let m = Meter::start(&self.server);
        let mut samples = Vec::new();
        let mut lat = Vec::new();
        let mut items = 0usize;
        let mut pages = 0usize;
        for _ in 0..self.args.list_repeat.max(1) {
            let t = Instant::now();
            let mut path = Some(first.to_string());
            items = 0;
            pages = 0;
            while let Some(p) = path.take() {
                let resp = http.call(Method::GET, &p, &[], Body::Empty, &[200]).await?;
                let v: serde_json::Value = serde_json::from_slice(&resp.body)
                    .with_context(|| format!("GET {p}: body is not JSON"))?;
                items += v[key].as_array().map_or(0, |a| a.len());
                pages += 1;
                if follow && pages < 10_000 {
                    path = next_link(&resp.headers);
                }
            }
            let el = t.elapsed();
            samples.push(el.as_secs_f64() * 1000.0);
            lat.push(dur_us(el));
        }
        let secs = m.stop(r);
        r.seconds = Some(secs);
        r.requests = Some(samples.len() as u64);
        r.metric = median(&samples);
        latencies(r, &mut lat);
        r.samples = samples;
        r.items = Some(items as u64);
        r.extra.insert("pages".into(), pages.into());
        if items < at_least {
            bail!("{first} returned {items} {key}, expected at least {at_least}");
        }
        Ok(())
    }

    async fn idle_rss(&mut self, r: &mut ScenarioResult) -> Result<()> {
        let Some(p) = &self.server else {
            r.skipped = Some("needs --server-pid".into());
            return Ok(());
        };
        tokio::time::sleep(self.args.idle_settle).await;
        let s = p.sample()?;
        r.metric = Some(s.rss_kib as f64 / 1024.0);
        r.rss_after_mib = r.metric;
        r.extra
            .insert("hwm_mib".into(), (s.hwm_kib as f64 / 1024.0).into());
        r.extra
            .insert("anon_mib".into(), (s.anon_kib as f64 / 1024.0).into());
        r.extra.insert("cpu_s_total".into(), s.cpu_s.into());
        Ok(())
    }
}

/// Pushes a config and one 64 KiB layer to `repo`; returns the manifest bytes
/// referencing them (not yet PUT).
async fn push_image(http: &Http, repo: &str, seed: u64) -> Result<Bytes> {
    let layer_spec = BlobSpec::new(seed, 64 << 10);
    let mut layer = Vec::with_capacity(64 << 10);
    for p in layer_spec.pieces(0, layer_spec.size()) {
        layer.extend_from_slice(&p);
    }
    let layer = Bytes::from(layer);
    let layer_digest = sha256_digest(&layer);
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/bin/true"]},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    });
    let config = Bytes::from(serde_json::to_vec(&config)?);
    let config_digest = http.push_small(repo, config.clone()).await?;
    http.push_small(repo, layer.clone()).await?;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": layer_digest,
            "size": layer.len(),
        }],
    });
    Ok(Bytes::from(serde_json::to_vec(&manifest)?))
}

/// Pushes `blobs` monolithically, `n` at a time (each round ends when its last push is
/// answered); returns each round's aggregate MB/s.
pub(crate) async fn push_in_rounds(
    http: &Http,
    repo: &str,
    blobs: &[(BlobSpec, String)],
    n: usize,
) -> Result<Vec<f64>> {
    let mut samples = Vec::new();
    for round in blobs.chunks(n.max(1)) {
        let bytes: u64 = round.iter().map(|(spec, _)| spec.size()).sum();
        let t = Instant::now();
        try_join_all(
            round
                .iter()
                .map(|(spec, digest)| http.push_monolithic(repo, spec, digest)),
        )
        .await?;
        samples.push(bytes as f64 / 1e6 / t.elapsed().as_secs_f64());
    }
    Ok(samples)
}
