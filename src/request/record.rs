//! The one record of a finished request, and everything produced from it: the request and
//! execution metrics, the log line and (when enabled) the trace.

use std::time::Instant;

use crate::error::{ErrorKind, ServingError};
use crate::metrics::{Entrypoint, Metrics, RequestRecord};
use crate::servable::Timeline;

/// W3C trace context headers as the client sent them (gRPC metadata or HTTP headers); parsed
/// only when tracing is on.
#[derive(Debug, Clone, Default)]
pub struct TraceHeaders {
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
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

pub(super) fn record(metrics: &Metrics, meta: &ResponseMetadata, outcome: Result<(), &dyn Reportable>) {
    let elapsed = meta.started.elapsed();
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
    match outcome {
        Ok(()) => tracing::debug!(
            model = %meta.model,
            api = meta.api,
            entrypoint = meta.entrypoint.label(),
            version = meta.version,
            code,
            duration_us = elapsed.as_micros() as u64,
            "request"
        ),
        Err(error) => tracing::debug!(
            model = %meta.model,
            api = meta.api,
            entrypoint = meta.entrypoint.label(),
            version = meta.version,
            code,
            duration_us = elapsed.as_micros() as u64,
            %error,
            "request failed"
        ),
    }
}
