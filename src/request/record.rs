//! The one record of a finished request, and everything produced from it: the request and
//! execution metrics, the log line and (when enabled) the trace.

use std::time::{Instant, SystemTime};

use crate::error::{ErrorKind, ServingError};
use crate::metrics::{Entrypoint, Metrics, RequestRecord};
use crate::servable::Timeline;
use crate::telemetry::{RequestSpan, Tracer};

/// W3C trace context headers as the client sent them (gRPC metadata or HTTP headers); parsed
/// only when tracing is on.
#[derive(Debug, Clone, Default)]
pub struct TraceHeaders {
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
}

impl TraceHeaders {
    /// The W3C headers of an HTTP request, or of gRPC metadata (`MetadataMap::as_ref`).
    pub fn read(headers: &http::HeaderMap) -> Self {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        Self { traceparent: header("traceparent"), tracestate: header("tracestate") }
    }
}

/// What is known about a request when it finishes.
#[derive(Debug)]
pub struct ResponseMetadata {
    pub entrypoint: Entrypoint,
    pub api: &'static str,
    pub model: String,
    /// The version that answered, once one was resolved.
    pub version: Option<i64>,
    pub started: Instant,
    /// `started` on the wall clock, taken only when traces are exported.
    pub started_wall: Option<SystemTime>,
    /// Set when the request reached the model.
    pub timeline: Option<Timeline>,
    pub trace: TraceHeaders,
}

/// A failure a transport hands to [`Request::finish`](super::Request::finish): its kind
/// decides the status label, its text the log line.
pub trait Reportable: std::fmt::Display {
    fn kind(&self) -> ErrorKind;
}

impl Reportable for ServingError {
    fn kind(&self) -> ErrorKind {
        ServingError::kind(self)
    }
}

pub(super) fn record(metrics: &Metrics, tracer: &Tracer, meta: &ResponseMetadata, outcome: Result<(), &dyn Reportable>) {
    let now = Instant::now();
    let elapsed = now - meta.started;
    let code = outcome.as_ref().err().map(|e| e.kind());
    metrics.observe_request(&RequestRecord {
        model: &meta.model,
        version: meta.version,
        api: meta.api,
        entrypoint: meta.entrypoint,
        outcome: code.map_or(Ok(()), Err),
        elapsed,
        execution: meta.timeline.map(|t| (t.queued, t.computed)),
    });
    let code = code.map_or("OK", ErrorKind::label);
    let error = outcome.err().map(ToString::to_string);
    tracing::debug!(
        model = %meta.model,
        api = meta.api,
        entrypoint = meta.entrypoint.label(),
        version = meta.version,
        code,
        duration_us = elapsed.as_micros() as u64,
        error = error.as_deref(),
        "request"
    );
    if let Some(started_wall) = meta.started_wall {
        trace(tracer, meta, started_wall, now, code, error.as_deref());
    }
}

/// The request span, with queue and compute children placed from the execution's timeline.
fn trace(tracer: &Tracer, meta: &ResponseMetadata, started_wall: SystemTime, now: Instant, code: &str, error: Option<&str>) {
    let wall = |at: Instant| started_wall + at.saturating_duration_since(meta.started);
    let queue = meta.timeline.map(|t| (wall(t.submitted), wall(t.submitted + t.queued)));
    let compute = meta.timeline.map(|t| (wall(t.submitted + t.queued), wall(t.submitted + t.queued + t.computed)));
    tracer.record(&RequestSpan {
        name: meta.api,
        traceparent: meta.trace.traceparent.as_deref(),
        tracestate: meta.trace.tracestate.as_deref(),
        start: started_wall,
        end: wall(now),
        queue,
        compute,
        model: &meta.model,
        version: meta.version,
        entrypoint: meta.entrypoint.label(),
        code,
        error,
    });
}
