//! The admin HTTP server (docs/metrics.md): `/metrics`, `/healthz`, `/readyz`, `/topology` and `/`
//! listing them. Nothing else is served: other paths get 404, other methods 405. It runs on
//! a thread of its own, so a slow scraper never competes with a worker's event loop.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use slotgate_proxy::Status;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Most admin connections served at once; more wait in the kernel's accept queue.
const MAX_CONNECTIONS: usize = 64;
/// A client that has not sent its request headers by then is dropped.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

const ROUTES: &str = "slotgate admin\n\
/metrics   Prometheus metrics (text format)\n\
/healthz   200 while the process runs\n\
/readyz    200 when all 16384 slots are covered and every primary is connected, else 503\n\
/topology  the slot map, nodes and connection states (JSON)\n";

/// Bind the admin address. Done before the proxy starts, so the port accepts connections
/// (queued by the kernel) from the moment the client port answers.
///
/// # Errors
/// When the address cannot be bound.
pub fn bind(addr: SocketAddr) -> anyhow::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(addr)
        .with_context(|| format!("admin.listen: cannot bind {addr}"))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Serve the admin routes on `std_listener` (from [`bind`]) on a new thread until the
/// process exits.
///
/// # Errors
/// When the thread cannot be started.
pub fn spawn(
    std_listener: std::net::TcpListener,
    status: Arc<Status>,
) -> anyhow::Result<SocketAddr> {
    let local = std_listener.local_addr()?;
    std::thread::Builder::new()
        .name("slotgate-admin".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "admin server cannot start");
                    return;
                }
            };
            rt.block_on(serve(std_listener, status));
        })?;
    tracing::info!(admin = %local, "admin server listening");
    Ok(local)
}

async fn serve(std_listener: std::net::TcpListener, status: Arc<Status>) {
    let listener = match TcpListener::from_std(std_listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "admin server cannot start");
            return;
        }
    };
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            return;
        };
        let (stream, _) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "admin accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let status = Arc::clone(&status);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let status = Arc::clone(&status);
                async move { Ok::<_, Infallible>(route(&status, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            drop(permit);
        });
    }
}

async fn route(status: &Status, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    if !matches!(
        path,
        "/" | "/metrics" | "/healthz" | "/readyz" | "/topology"
    ) {
        return text(StatusCode::NOT_FOUND, "not found\n");
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match path {
        "/metrics" => {
            let mut r = Response::new(Full::new(Bytes::from(status.metrics_text().await)));
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" => match status.readiness() {
            Ok(()) => text(StatusCode::OK, "ready\n"),
            Err(reason) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("not ready: {reason}\n"),
            ),
        },
        "/topology" => match serde_json::to_vec_pretty(&status.topology()) {
            Ok(json) => {
                let mut r = Response::new(Full::new(Bytes::from(json)));
                r.headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                r
            }
            Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e}\n")),
        },
        _ => text(StatusCode::OK, ROUTES),
    }
}

fn text(code: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = code;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}
