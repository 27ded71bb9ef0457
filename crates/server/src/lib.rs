//! The HTTP edge. The only crate that knows HTTP: it parses requests into typed values, asks the
//! authorizer, makes one service call, and turns the result (or error) into an OCI response.

mod access;
mod api;
mod body;
mod error;
mod token;
mod v2;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use berth_registry::Registry;

pub use access::{Access, Action, AllowAll, Authorizer, Caller, TokenAuthorizer};
pub use error::ApiError;

/// Requests received since the process started, and those whose handler has not finished (an
/// upload's handler runs until its body has been stored).
static REQUESTS: AtomicU64 = AtomicU64::new(0);
static IN_FLIGHT: AtomicU64 = AtomicU64::new(0);

/// How many requests this process has received, and how many are still being handled: cheap
/// signs of activity for work that should wait until the server is idle.
pub fn requests_received() -> (u64, u64) {
    (
        REQUESTS.load(Ordering::Relaxed),
        IN_FLIGHT.load(Ordering::Relaxed),
    )
}

/// Counts a request as in flight until dropped (also when the connection goes away mid-request).
struct InFlight;

impl InFlight {
    fn enter() -> InFlight {
        REQUESTS.fetch_add(1, Ordering::Relaxed);
        IN_FLIGHT.fetch_add(1, Ordering::Relaxed);
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What every handler can reach. Built once at start-up.
#[derive(Clone)]
pub struct AppState {
    pub registry: Arc<Registry>,
    pub authorizer: Arc<dyn Authorizer>,
    /// The access-control service, when authentication is on (it serves `/auth/token`).
    pub auth: Option<Arc<berth_auth::AuthService>>,
    /// The vulnerability database (`/api/v1/vulndb`), when the server has one.
    pub vulndb: Option<Arc<berth_registry::VulnDbService>>,
    /// Image analysis, vulnerability reports and pull policy, when the server has them.
    pub scans: Option<Arc<berth_registry::ScanService>>,
    /// The longest a request body may pause between two frames before the upload is abandoned.
    /// An idle timeout, not a whole-request one: a large blob over a slow link is fine as long
    /// as it keeps moving.
    pub body_idle_timeout: Duration,
}

/// The whole HTTP application.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/v2", any(v2::dispatch_root))
        .route("/v2/", any(v2::dispatch_root))
        .route("/v2/{*rest}", any(v2::dispatch))
        .route("/auth/token", any(token::token))
        .merge(api::router())
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .layer(axum::middleware::from_fn(log_request))
        .with_state(state)
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.registry.ready().await {
        Ok(()) => "ready".into_response(),
        Err(e) => (
            http::StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {e}\n"),
        )
            .into_response(),
    }
}

/// One log line per request. The query string is left out: it can carry tokens and digests
/// that belong to no log.
async fn log_request(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let response = next.run(req).await;
    tracing::info!(
        target: "berth::http",
        %method,
        path,
        status = response.status().as_u16(),
        micros = start.elapsed().as_micros() as u64,
    );
    response
}

/// Serves `app` on `listener` until `shutdown` resolves, then finishes the requests in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::server::graceful::GracefulShutdown;

    let mut builder = Builder::new(TokioExecutor::new());
    // hyper reads a body into a buffer that grows up to this size, and each body chunk handed
    // on keeps its buffer alive until written: the cap bounds memory per upload (a few chunks
    // are in flight). It also bounds how much response body hyper queues before writing.
    builder.http1().max_buf_size(BUFFER_MAX);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::error!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let app = app.clone();
        // The peer address is part of every request: throttling and the audit log need it.
        let service = hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
            let in_flight = InFlight::enter();
            req.extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
            let answer = tower::ServiceExt::oneshot(app.clone(), req.map(axum::body::Body::new));
            async move {
                let _in_flight = in_flight;
                answer.await
            }
        });
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
        let conn = graceful.watch(conn.into_owned());
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
        });
    }
    drop(listener);
    // Requests in progress run to their end; idle connections are closed.
    graceful.shutdown().await;
    Ok(())
}

/// The most hyper buffers from a connection at once, each way (see `serve`). With hyper's
/// default (~400 KiB) 8 concurrent uploads peaked at 36-40 MiB resident; 128 KiB gave 27 MiB
/// and 256 KiB 32 MiB, with half as many reads and writes.
const BUFFER_MAX: usize = 256 << 10;
