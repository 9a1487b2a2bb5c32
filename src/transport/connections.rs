//! One accept loop for both transports, so they share the behaviour Kubernetes needs: a
//! per-connection maximum age (with jitter, so clients behind a Service re-balance without
//! reconnecting in lockstep) and a bounded drain on shutdown.

use std::convert::Infallible;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Connection lifetime settings (`--grpc_max_connection_age_ms`, `..._grace_ms`).
#[derive(Debug, Clone, Copy, Default)]
pub struct ConnectionLimits {
    pub max_age: Option<Duration>,
    pub max_age_grace: Option<Duration>,
}

/// ±10% around `age`, derived from the clock and a per-connection counter (no RNG needed:
/// spreading matters, unpredictability does not).
fn jittered(age: Duration, seed: u64) -> Duration {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let mixed = (u64::from(nanos) ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let unit = (mixed >> 11) as f64 / (1u64 << 53) as f64; // [0, 1)
    age.mul_f64(0.9 + 0.2 * unit)
}

/// Serves `service` on `listener` until `stop` turns true, then stops accepting, asks every
/// connection to finish (HTTP/2 GOAWAY; in-flight requests complete) and waits up to `drain`.
pub async fn serve<S, B>(
    name: &'static str,
    listener: TcpListener,
    service: S,
    limits: ConnectionLimits,
    mut stop: watch::Receiver<bool>,
    drain: Duration,
    on_accept: impl Fn() + Send + 'static,
) where
    S: tower::Service<http::Request<Incoming>, Response = http::Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (closing_tx, closing_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut accepted: u64 = 0;
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            result = listener.accept() => {
                let (stream, _peer) = match result {
                    Ok(pair) => pair,
                    Err(err) => {
                        tracing::warn!(transport = name, %err, "accept failed");
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                accepted += 1;
                on_accept();
                let age = limits.max_age.map(|a| jittered(a, accepted));
                let grace = limits.max_age_grace;
                let service = TowerToHyperService::new(service.clone());
                let mut closing = closing_rx.clone();
                connections.spawn(async move {
                    let builder = Builder::new(TokioExecutor::new());
                    let connection = builder.serve_connection(TokioIo::new(stream), service);
                    tokio::pin!(connection);
                    let aged = async {
                        match age {
                            Some(a) => tokio::time::sleep(a).await,
                            None => std::future::pending().await,
                        }
                    };
                    let by_age = tokio::select! {
                        _ = connection.as_mut() => return,
                        _ = aged => true,
                        _ = closing.wait_for(|c| *c) => false,
                    };
                    connection.as_mut().graceful_shutdown();
                    match grace.filter(|_| by_age) {
                        Some(g) => {
                            let _ = tokio::time::timeout(g, connection).await;
                        }
                        None => {
                            let _ = connection.await;
                        }
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let _ = closing_tx.send(true);
    let open = connections.len();
    tracing::info!(transport = name, open_connections = open, "stopped accepting; draining");
    let drained = tokio::time::timeout(drain, async { while connections.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(transport = name, remaining = connections.len(), "drain timeout reached; closing connections");
        connections.abort_all();
    }
}
