//! What a connection is doing, seen from its service: whether a request has ever arrived, how
//! many responses are still open, and when the last one ended. The accept loop's watchdog reads
//! it to close connections that never send a complete request (slow or stalled clients) and
//! connections that sit idle, which hyper alone cannot tell apart from busy ones.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body::{Body, Frame, SizeHint};
use tokio::sync::Notify;
use tokio::time::Instant;

/// Shared between one connection's service clones and its watchdog.
pub(super) struct Activity {
    opened: Instant,
    seen_request: AtomicBool,
    /// Wakes the watchdog out of its handshake wait when the first request arrives.
    first_request: Notify,
    open_responses: AtomicUsize,
    /// Nanoseconds after `opened` at which the last response ended.
    last_end_nanos: AtomicU64,
}

/// Why the watchdog gave up on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stalled {
    /// No complete request (TLS handshake, HTTP/2 preface or request headers) within the
    /// handshake timeout.
    Handshake,
    /// No request open and none started for the idle timeout.
    Idle,
}

impl Activity {
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Self {
            opened: Instant::now(),
            seen_request: AtomicBool::new(false),
            first_request: Notify::new(),
            open_responses: AtomicUsize::new(0),
            last_end_nanos: AtomicU64::new(0),
        })
    }

    /// A request's headers have arrived; the returned guard ends it when dropped.
    fn begin(self: &Arc<Self>) -> ResponseGuard {
        self.open_responses.fetch_add(1, Ordering::AcqRel);
        if !self.seen_request.swap(true, Ordering::AcqRel) {
            self.first_request.notify_one();
        }
        ResponseGuard(Arc::clone(self))
    }

    /// Whether any request has arrived on the connection.
    pub(super) fn seen_request(&self) -> bool {
        self.seen_request.load(Ordering::Acquire)
    }

    pub(super) fn age(&self) -> Duration {
        self.opened.elapsed()
    }

    fn last_end(&self) -> Instant {
        self.opened + Duration::from_nanos(self.last_end_nanos.load(Ordering::Relaxed))
    }

    /// Resolves when the connection has stalled: no complete request within `handshake` of
    /// opening, or (with `idle`) nothing open for `idle` after the last response ended.
    pub(super) async fn stalled(&self, handshake: Duration, idle: Option<Duration>) -> Stalled {
        loop {
            if !self.seen_request.load(Ordering::Acquire) {
                let deadline = self.opened + handshake;
                if Instant::now() >= deadline {
                    return Stalled::Handshake;
                }
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => {}
                    _ = self.first_request.notified() => {}
                }
                continue;
            }
            let Some(idle) = idle else { return std::future::pending().await };
            if self.open_responses.load(Ordering::Acquire) > 0 {
                tokio::time::sleep(idle).await;
                continue;
            }
            let deadline = self.last_end() + idle;
            if Instant::now() >= deadline && self.open_responses.load(Ordering::Acquire) == 0 {
                return Stalled::Idle;
            }
            tokio::time::sleep_until(deadline.max(Instant::now() + Duration::from_millis(1))).await;
        }
    }
}

/// One open response; dropping it (the body finished, or the request was abandoned) records
/// the end.
pub(super) struct ResponseGuard(Arc<Activity>);

impl Drop for ResponseGuard {
    fn drop(&mut self) {
        let a = &self.0;
        let since = a.opened.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64;
        a.last_end_nanos.store(since, Ordering::Relaxed);
        a.open_responses.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A service wrapper that reports each request to the connection's [`Activity`].
#[derive(Clone)]
pub(super) struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> Tracked<S> {
    pub(super) fn new(inner: S, activity: Arc<Activity>) -> Self {
        Self { inner, activity }
    }
}

impl<S, Req, B> tower::Service<Req> for Tracked<S>
where
    S: tower::Service<Req, Response = http::Response<B>>,
{
    type Response = http::Response<TrackedBody<B>>;
    type Error = S::Error;
    type Future = TrackedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let guard = self.activity.begin();
        TrackedFuture { inner: self.inner.call(request), guard: Some(guard) }
    }
}

pin_project_lite::pin_project! {
    /// The response future; the guard moves into the body once the headers are ready.
    pub(super) struct TrackedFuture<F> {
        #[pin]
        inner: F,
        guard: Option<ResponseGuard>,
    }
}

impl<F, B, E> std::future::Future for TrackedFuture<F>
where
    F: std::future::Future<Output = Result<http::Response<B>, E>>,
{
    type Output = Result<http::Response<TrackedBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = std::task::ready!(this.inner.poll(cx))?;
        let guard = this.guard.take();
        Poll::Ready(Ok(response.map(|inner| TrackedBody { inner, _guard: guard })))
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its request open until hyper drops it (fully sent, or the
    /// stream was reset), so long server-streaming calls such as health `Watch` are not idle.
    pub(super) struct TrackedBody<B> {
        #[pin]
        inner: B,
        _guard: Option<ResponseGuard>,
    }
}

impl<B: Body> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_connection_without_a_request_stalls_at_the_handshake_timeout() {
        let activity = Activity::new();
        let started = Instant::now();
        let why = activity.stalled(Duration::from_secs(5), Some(Duration::from_secs(60))).await;
        assert_eq!(why, Stalled::Handshake);
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_response_is_never_idle_and_idleness_counts_from_its_end() {
        let activity = Activity::new();
        let guard = activity.begin();
        let watch = {
            let activity = Arc::clone(&activity);
            tokio::spawn(async move { activity.stalled(Duration::from_secs(1), Some(Duration::from_secs(10))).await })
        };
        tokio::time::sleep(Duration::from_secs(25)).await;
        assert!(!watch.is_finished(), "a connection with an open response was closed");
        drop(guard);
        let ended = Instant::now();
        assert_eq!(watch.await.ok(), Some(Stalled::Idle));
        let waited = ended.elapsed();
        assert!(waited >= Duration::from_secs(10) && waited < Duration::from_secs(11), "idle after {waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn idleness_is_watched_from_the_first_request_not_from_the_handshake_deadline() {
        let activity = Activity::new();
        let watch = {
            let activity = Arc::clone(&activity);
            tokio::spawn(async move { activity.stalled(Duration::from_secs(10), Some(Duration::from_millis(500))).await })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(activity.begin());
        let ended = Instant::now();
        assert_eq!(watch.await.ok(), Some(Stalled::Idle));
        assert!(ended.elapsed() < Duration::from_secs(1), "idle close after {:?}", ended.elapsed());
    }

    #[tokio::test(start_paused = true)]
    async fn without_an_idle_timeout_a_served_connection_stays() {
        let activity = Activity::new();
        drop(activity.begin());
        let stalled = tokio::time::timeout(Duration::from_secs(3600), activity.stalled(Duration::from_secs(1), None)).await;
        assert!(stalled.is_err());
    }
}
