//! The hot request loop: N dedicated HTTP/1.1 keep-alive connections, each
//! sending one request at a time for a fixed duration.
//!
//! Uses hyper's connection-level client directly (no pool, no URL parsing per
//! request), so the client spends as little CPU as possible per request.
//! Requests completing during the warm-up are not counted; requests still in
//! flight when the window closes are not counted either. Non-2xx answers and
//! bodies of the wrong length are errors, reported separately.

use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use http::{Method, Request};
use http_body_util::BodyExt as _;
use hyper_util::rt::TokioIo;

use crate::client::Body;

pub struct HotSpec {
    pub addr: std::net::SocketAddr,
    pub authority: String,
    pub method: Method,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub connections: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// Upper bound on requests per connection (a safety bound).
    pub max_per_connection: u64,
    /// Expected body length of a 2xx answer (GET), if known.
    pub expect_len: Option<usize>,
}

#[derive(Default)]
pub struct HotResult {
    /// Successful requests completed inside the measuring window.
    pub ok: u64,
    /// Failed requests (any time, warm-up included).
    pub errors: u64,
    pub first_error: Option<String>,
    /// Latency of each successful request in the window, microseconds.
    pub latencies_us: Vec<u32>,
    pub window: Duration,
}

pub async fn hammer(spec: HotSpec) -> Result<HotResult> {
    let spec = std::sync::Arc::new(spec);
    let start = Instant::now();
    let measure_from = start + spec.warmup;
    let end = measure_from + spec.duration;
    let mut tasks = Vec::new();
    for _ in 0..spec.connections {
        let spec = spec.clone();
        tasks.push(tokio::spawn(async move {
            worker(&spec, measure_from, end).await
        }));
    }
    let mut total = HotResult {
        window: spec.duration,
        ..Default::default()
    };
    for t in tasks {
        let r = t.await.map_err(|e| anyhow!("worker panicked: {e}"))?;
        total.ok += r.ok;
        total.errors += r.errors;
        if total.first_error.is_none() {
            total.first_error = r.first_error;
        }
        total.latencies_us.extend(r.latencies_us);
    }
    Ok(total)
}

async fn worker(spec: &HotSpec, measure_from: Instant, end: Instant) -> HotResult {
    let mut r = HotResult::default();
    let mut sent = 0u64;
    let mut reconnects = 0;
    'conn: while Instant::now() < end && sent < spec.max_per_connection && reconnects < 100 {
        let mut sender = match connect(spec).await {
            Ok(s) => s,
            Err(e) => {
                fail(&mut r, format!("connect: {e}"));
                reconnects += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        loop {
            let t0 = Instant::now();
            if t0 >= end || sent >= spec.max_per_connection {
                break 'conn;
            }
            sent += 1;
            let mut req = Request::builder()
                .method(spec.method.clone())
                .uri(spec.path.as_str())
                .header(http::header::HOST, spec.authority.as_str());
            for (k, v) in &spec.headers {
                req = req.header(k.as_str(), v.as_str());
            }
            let req = req.body(Body::Empty).expect("valid request");
            let outcome = async {
                sender.ready().await?;
                let resp = sender.send_request(req).await?;
                let status = resp.status();
                let mut body = resp.into_body();
                let mut n = 0usize;
                while let Some(f) = body.frame().await {
                    if let Ok(d) = f?.into_data() {
                        n += d.len();
                    }
                }
                anyhow::Ok((status, n))
            };
            let outcome = tokio::time::timeout(Duration::from_secs(30), outcome).await;
            let t1 = Instant::now();
            match outcome {
                Ok(Ok((status, n))) => {
                    if !status.is_success() {
                        fail(&mut r, format!("{} {} -> {status}", spec.method, spec.path));
                    } else if spec.method == Method::GET && spec.expect_len.is_some_and(|l| l != n)
                    {
                        fail(
                            &mut r,
                            format!("{} {}: body {n} bytes", spec.method, spec.path),
                        );
                    } else if t0 >= measure_from && t1 <= end {
                        r.ok += 1;
                        r.latencies_us
                            .push((t1 - t0).as_micros().min(u32::MAX as u128) as u32);
                    }
                }
                Ok(Err(e)) => {
                    fail(&mut r, format!("{} {}: {e}", spec.method, spec.path));
                    reconnects += 1;
                    continue 'conn;
                }
                Err(_) => {
                    fail(&mut r, format!("{} {}: timed out", spec.method, spec.path));
                    reconnects += 1;
                    continue 'conn;
                }
            }
        }
    }
    r
}

fn fail(r: &mut HotResult, msg: String) {
    r.errors += 1;
    if r.first_error.is_none() {
        r.first_error = Some(msg);
    }
}

async fn connect(spec: &HotSpec) -> Result<hyper::client::conn::http1::SendRequest<Body>> {
    let tcp = tokio::net::TcpStream::connect(spec.addr).await?;
    tcp.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}
