//! `machine-ingest`: the `push-concurrent` scenario, same client, against the least any registry
//! must do for a monolithic push. The receiver runs in this process: one thread per connection
//! reads each request body into a reused 256 KiB buffer, hashes it (SHA-256, the sha2 crate),
//! writes it to a file in the scratch directory (starting writeback every 8 MiB) and fsyncs it
//! before answering `201`; an upload
//! session is a counter, and nothing else happens (no metadata, no rename, no HTTP library).
//!
//! It is a reference, not a bound: it reads, hashes and writes one after another on one thread
//! per connection, where a registry may overlap them. A registry's `push-concurrent` read
//! against it says how much its own costs (HTTP, scheduling, metadata) take from the machine.
//!
//! Hand-written because it must be nothing more than that: any HTTP server library would add
//! its own costs to the reference. It understands exactly the requests the benchmark client
//! sends (`Content-Length` bodies, keep-alive) and refuses anything else.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use berth_storage::start_writeback;
use sha2::Digest as _;

use crate::blob::BlobSpec;
use crate::client::Http;
use crate::report::{Meter, ScenarioResult, median};
use crate::scenarios::push_in_rounds;

const BUFFER: usize = 256 << 10;
const MAX_HEAD: usize = 16 << 10;

/// Writeback of each window of this many bytes starts as soon as it is written, so the fsync
/// at the end finds little left to do (what the kernel would otherwise only start at the fsync).
const WRITEBACK_WINDOW: u64 = 8 << 20;

/// The reference receiver, listening on loopback until dropped.
struct Receiver {
    addr: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
    acceptor: Option<std::thread::JoinHandle<()>>,
    dir: PathBuf,
}

impl Receiver {
    fn start(scratch: &Path, run_id: &str) -> Result<Receiver> {
        let dir = scratch.join(format!(".berth-bench-ingest-{run_id}"));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let ids = Arc::new(AtomicU64::new(0));
        let acceptor = {
            let (stop, dir) = (stop.clone(), dir.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let Ok(conn) = conn else { continue };
                    let (dir, ids) = (dir.clone(), ids.clone());
                    std::thread::spawn(move || {
                        if let Err(e) = serve(conn, &dir, &ids) {
                            eprintln!("  machine-ingest receiver: {e:#}");
                        }
                    });
                }
            })
        };
        Ok(Receiver {
            addr,
            stop,
            acceptor: Some(acceptor),
            dir,
        })
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the acceptor so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One connection: requests one after another until the client closes it.
fn serve(mut conn: TcpStream, dir: &Path, ids: &AtomicU64) -> Result<()> {
    conn.set_nodelay(true)?;
    let mut buf = vec![0u8; BUFFER];
    let mut filled = 0usize;
    loop {
        let head_len = loop {
            if let Some(i) = buf[..filled].windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if filled >= MAX_HEAD {
                bail!("request head over {MAX_HEAD} bytes");
            }
            match conn.read(&mut buf[filled..])? {
                0 if filled == 0 => return Ok(()),
                0 => bail!("connection closed inside a request head"),
                n => filled += n,
            }
        };
        let head = std::str::from_utf8(&buf[..head_len]).context("request head is not UTF-8")?;
        let mut lines = head.split("\r\n");
        let mut first = lines.next().unwrap_or_default().split(' ');
        let (method, target) = (
            first.next().unwrap_or_default().to_owned(),
            first.next().unwrap_or_default().to_owned(),
        );
        let mut len = 0u64;
        for l in lines {
            let Some((k, v)) = l.split_once(':') else {
                continue;
            };
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().context("bad Content-Length")?;
            } else if k.eq_ignore_ascii_case("transfer-encoding") {
                bail!("only Content-Length bodies are understood");
            }
        }
        buf.copy_within(head_len..filled, 0);
        filled -= head_len;

        let (answer, rest) = match method.as_str() {
            "POST" => {
                let id = ids.fetch_add(1, Ordering::Relaxed);
                let path = target.split('?').next().unwrap_or_default();
                let rest = receive(&mut conn, &mut buf, filled, len, None)?.1;
                let answer = format!(
                    "HTTP/1.1 202 Accepted\r\nLocation: {path}{id}\r\nContent-Length: 0\r\n\r\n"
                );
                (answer, rest)
            }
            "PUT" => {
                let id: u64 = target
                    .split('?')
                    .next()
                    .and_then(|p| p.rsplit('/').next())
                    .and_then(|s| s.parse().ok())
                    .context("PUT to an unknown upload")?;
                let want = target
                    .split_once("digest=")
                    .map(|(_, d)| d.replace("%3A", ":").replace("%3a", ":"))
                    .context("PUT without ?digest=")?;
                let path = dir.join(id.to_string());
                let mut file = std::fs::File::create(&path)?;
                let (got, rest) = receive(&mut conn, &mut buf, filled, len, Some(&mut file))?;
                file.sync_all()?;
                drop(file);
                let _ = std::fs::remove_file(&path);
                let answer = if got == want {
                    format!(
                        "HTTP/1.1 201 Created\r\nDocker-Content-Digest: {got}\r\nContent-Length: 0\r\n\r\n"
                    )
                } else {
                    "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n".to_owned()
                };
                (answer, rest)
            }
            "GET" => {
                let rest = receive(&mut conn, &mut buf, filled, len, None)?.1;
                (
                    "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_owned(),
                    rest,
                )
            }
            m => bail!("unexpected method {m}"),
        };
        filled = rest;
        conn.write_all(answer.as_bytes())?;
    }
}

/// Takes a `len`-byte body: `filled` bytes of it already in `buf`, the rest from `conn`. With a
/// file, hashes and writes it. Returns the digest and how many bytes of the next request are
/// left at the start of `buf`.
fn receive(
    conn: &mut TcpStream,
    buf: &mut [u8],
    mut filled: usize,
    len: u64,
    mut file: Option<&mut std::fs::File>,
) -> Result<(String, usize)> {
    let mut hasher = sha2::Sha256::new();
    let mut left = len;
    let (mut written, mut started) = (0u64, 0u64);
    loop {
        let take = (filled as u64).min(left) as usize;
        if take > 0 {
            if let Some(f) = file.as_mut() {
                hasher.update(&buf[..take]);
                f.write_all(&buf[..take])?;
                written += take as u64;
                if written - started >= WRITEBACK_WINDOW {
                    start_writeback(f, started, written - started);
                    started = written;
                }
            }
            buf.copy_within(take..filled, 0);
            filled -= take;
            left -= take as u64;
        }
        if left == 0 {
            break;
        }
        match conn.read(&mut buf[filled..])? {
            0 => bail!("connection closed with {left} body bytes to come"),
            n => filled += n,
        }
    }
    Ok((format!("sha256:{}", hex::encode(hasher.finalize())), filled))
}

/// `concurrency` monolithic pushes of `size`-byte blobs at once, `repeat` times, against the
/// reference receiver; the headline is the median aggregate rate, as in `push-concurrent`.
pub async fn concurrent(
    r: &mut ScenarioResult,
    scratch: &Path,
    run_id: &str,
    concurrency: usize,
    size: u64,
    repeat: usize,
) -> Result<()> {
    let receiver = Receiver::start(scratch, run_id)?;
    let http = Http::new(
        &format!("http://{}", receiver.addr),
        Duration::from_secs(600),
    )
    .await?;
    let n = concurrency.max(1);
    let blobs: Vec<(BlobSpec, String)> = (0..n * repeat.max(1))
        .map(|i| {
            let s = BlobSpec::new(0x1_6e57 + i as u64, size);
            let d = s.digest();
            (s, d)
        })
        .collect();
    let meter = Meter::start(&None);
    let t0 = Instant::now();
    let samples = push_in_rounds(&http, "ingest", &blobs, n).await?;
    meter.stop(r);
    r.transfer(size * blobs.len() as u64, t0.elapsed().as_secs_f64());
    r.metric = median(&samples);
    r.samples = samples;
    r.extra.insert("concurrency".into(), n.into());
    r.extra.insert("blob_bytes".into(), size.into());
    r.extra
        .insert("dir".into(), scratch.display().to_string().into());
    drop(http);
    drop(receiver);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_reference_receiver_checks_what_it_is_sent() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = ScenarioResult::new("machine-ingest", None, "t");
        concurrent(&mut r, dir.path(), "t", 3, (1 << 20) + 17, 2)
            .await
            .unwrap();
        assert_eq!(r.samples.len(), 2);
        assert_eq!(r.bytes, Some(6 * ((1 << 20) + 17)));
        // Nothing is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

        // A body that does not match its digest is refused.
        let receiver = Receiver::start(dir.path(), "u").unwrap();
        let http = Http::new(
            &format!("http://{}", receiver.addr),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        let spec = BlobSpec::new(1, 1000);
        let other = BlobSpec::new(2, 1000).digest();
        assert!(http.push_monolithic("x", &spec, &other).await.is_err());
        http.push_monolithic("x", &spec, &spec.digest())
            .await
            .unwrap();
    }
}
