//! One accept loop for both transports, so they share what Kubernetes and an open pod network
//! need: optional TLS, a cap on open connections, timeouts that close stalled and idle
//! connections, HTTP/2 keepalive and stream limits, a per-connection maximum age (with jitter,
//! so clients behind a Service re-balance without reconnecting in lockstep) and a bounded drain
//! on shutdown.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;

use super::activity::{Activity, Stalled, Tracked};
use super::coalesce::Coalesce;
use super::refuse;
use crate::metrics::ConnectionMetrics;

/// How connections on one port are kept in check (from `config::NetworkOptions`, which holds
/// the defaults).
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// `--grpc_max_connection_age_ms`: close (GOAWAY) after this age, ±10%.
    pub max_age: Option<Duration>,
    pub max_age_grace: Option<Duration>,
    /// From accept to a complete first request (TLS handshake, HTTP/2 preface, headers); also
    /// hyper's header-read timeout for later HTTP/1 requests on the connection.
    pub handshake_timeout: Duration,
    /// Close a connection with no request open for this long.
    pub idle_timeout: Option<Duration>,
    pub keepalive_interval: Option<Duration>,
    pub keepalive_timeout: Duration,
    pub max_concurrent_streams: u32,
}

/// HTTP/2 streams a client may reset before the server has answered them, and streams the
/// server may reset for protocol errors, before the connection is closed with GOAWAY: the
/// protection against rapid-reset floods (CVE-2023-44487).
const MAX_PENDING_RESETS: usize = 20;
const MAX_LOCAL_ERROR_RESETS: usize = 256;

/// One listening port.
pub struct Endpoint {
    pub name: &'static str,
    pub listener: TcpListener,
    /// The live TLS configuration, when the port speaks TLS.
    pub tls: Option<watch::Receiver<Arc<rustls::ServerConfig>>>,
    pub limits: ConnectionLimits,
    /// Connection slots shared by every port (`--max_connections`).
    pub slots: Arc<Semaphore>,
    pub metrics: ConnectionMetrics,
}

/// ±10% around `age`, derived from the clock and a per-connection counter (no RNG needed:
/// spreading matters, unpredictability does not).
fn jittered(age: Duration, seed: u64) -> Duration {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let mixed = (u64::from(nanos) ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let unit = (mixed >> 11) as f64 / (1u64 << 53) as f64; // [0, 1)
    age.mul_f64(0.9 + 0.2 * unit)
}

fn http_builder(limits: &ConnectionLimits) -> Builder<TokioExecutor> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.handshake_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.keepalive_interval)
        .keep_alive_timeout(limits.keepalive_timeout)
        .max_concurrent_streams(limits.max_concurrent_streams)
        .max_pending_accept_reset_streams(MAX_PENDING_RESETS)
        .max_local_error_reset_streams(MAX_LOCAL_ERROR_RESETS);
    builder
}

/// Serves `service` on the endpoint until `stop` turns true, then stops accepting, asks every
/// connection to finish (HTTP/2 GOAWAY; in-flight requests complete) and waits up to `drain`.
pub async fn serve<S, B>(endpoint: Endpoint, service: S, mut stop: watch::Receiver<bool>, drain: Duration)
where
    S: tower::Service<http::Request<Incoming>, Response = http::Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let Endpoint { name, listener, tls, limits, slots, metrics } = endpoint;
    let builder = http_builder(&limits);
    let (closing_tx, closing_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut accepted: u64 = 0;
    loop {
        let result = tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            result = listener.accept() => result,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let (stream, _peer) = match result {
            Ok(pair) => pair,
            Err(err) => {
                // EMFILE and friends: back off instead of spinning on the error.
                tracing::warn!(transport = name, %err, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            metrics.refused.inc();
            refuse::over_capacity(name, stream, tls.is_some());
            continue;
        };
        let _ = stream.set_nodelay(true);
        accepted += 1;
        metrics.accepted.inc();
        let connection = Connection {
            name,
            builder: builder.clone(),
            limits,
            age: limits.max_age.map(|a| jittered(a, accepted)),
            closing: closing_rx.clone(),
            metrics: metrics.clone(),
            _slot: slot,
        };
        let tls = tls.as_ref().map(|rx| tokio_rustls::TlsAcceptor::from(Arc::clone(&rx.borrow())));
        connections.spawn(connection.run(stream, tls, service.clone()));
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

/// One accepted connection and everything that decides when it ends.
struct Connection {
    name: &'static str,
    builder: Builder<TokioExecutor>,
    limits: ConnectionLimits,
    age: Option<Duration>,
    closing: watch::Receiver<bool>,
    metrics: ConnectionMetrics,
    /// Held for the connection's life: its place under `--max_connections`.
    _slot: OwnedSemaphorePermit,
}

impl Connection {
    async fn run<S, B>(self, stream: TcpStream, tls: Option<tokio_rustls::TlsAcceptor>, service: S)
    where
        S: tower::Service<http::Request<Incoming>, Response = http::Response<B>, Error = Infallible> + Clone + Send + 'static,
        S::Future: Send + 'static,
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.metrics.open.inc();
        let activity = Activity::new();
        let service = Tracked::new(service, Arc::clone(&activity));
        match tls {
            None => self.serve_http(stream, service, &activity).await,
            Some(acceptor) => {
                // The handshake counts against the same deadline as the first request.
                match tokio::time::timeout(self.limits.handshake_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => self.serve_http(stream, service, &activity).await,
                    Ok(Err(err)) => {
                        self.metrics.tls_error.inc();
                        tracing::debug!(transport = self.name, %err, "TLS handshake failed");
                    }
                    Err(_) => {
                        self.metrics.handshake_timeout.inc();
                        tracing::debug!(transport = self.name, "TLS handshake timed out");
                    }
                }
            }
        }
        self.metrics.open.dec();
    }

    async fn serve_http<I, S, B>(&self, io: I, service: Tracked<S>, activity: &Activity)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        S: tower::Service<http::Request<Incoming>, Response = http::Response<B>, Error = Infallible> + Clone + Send + 'static,
        S::Future: Send + 'static,
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let connection = self.builder.serve_connection(TokioIo::new(Coalesce::new(io)), TowerToHyperService::new(service));
        tokio::pin!(connection);
        let aged = async {
            match self.age {
                Some(a) => tokio::time::sleep(a).await,
                None => std::future::pending().await,
            }
        };
        let mut closing = self.closing.clone();
        enum End {
            Aged,
            Closing,
            Stalled(Stalled),
        }
        let end = tokio::select! {
            _ = connection.as_mut() => {
                // hyper's own header-read timeout may end a stalled HTTP/1 connection first.
                if !activity.seen_request() && activity.age() >= self.limits.handshake_timeout {
                    self.metrics.handshake_timeout.inc();
                }
                return;
            }
            _ = aged => End::Aged,
            _ = closing.wait_for(|c| *c) => End::Closing,
            why = activity.stalled(self.limits.handshake_timeout, self.limits.idle_timeout) => End::Stalled(why),
        };
        match end {
            End::Stalled(Stalled::Handshake) => {
                // Nothing was asked on it: drop it at once, a GOAWAY would only wait on the peer.
                self.metrics.handshake_timeout.inc();
                tracing::debug!(transport = self.name, "no complete request within the handshake timeout; closing");
            }
            End::Stalled(Stalled::Idle) => {
                self.metrics.idle_timeout.inc();
                connection.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(self.limits.handshake_timeout, connection).await;
            }
            End::Aged => {
                connection.as_mut().graceful_shutdown();
                match self.limits.max_age_grace {
                    Some(g) => {
                        let _ = tokio::time::timeout(g, connection).await;
                    }
                    None => {
                        let _ = connection.await;
                    }
                }
            }
            End::Closing => {
                connection.as_mut().graceful_shutdown();
                let _ = connection.await;
            }
        }
    }
}
