//! OpenTelemetry traces: one SERVER span per request, with "queue" and "compute" children,
//! exported over OTLP/gRPC when an endpoint is configured. A request is recorded once it has
//! finished, from the timestamps the request path took anyway, so tracing adds nothing to the
//! request's latency and nothing at all when it is off.

mod context;
mod export;

use std::sync::Arc;
use std::time::SystemTime;

use thiserror::Error;

/// The standard OTLP variables, most specific first; `--otlp_endpoint` wins over both.
const ENDPOINT_VARS: [&str; 2] = ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"];

/// Cheap to clone; the disabled tracer does nothing and allocates nothing.
#[derive(Clone, Default)]
pub struct Tracer {
    inner: Option<Arc<export::Exporter>>,
}

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracer").field("enabled", &self.is_enabled()).finish()
    }
}

impl Tracer {
    pub fn disabled() -> Self {
        Self { inner: None }
    }

    /// Must be called inside a tokio runtime (the gRPC channel's connection task runs on it).
    /// The collector need not be up yet: the connection is made on the first export. The
    /// service name is OTEL_SERVICE_NAME's, else "candle-serving".
    pub fn otlp(endpoint: &str) -> Result<Self, TelemetryError> {
        Self::start(endpoint, None)
    }

    /// `--otlp_endpoint` first, then OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, then
    /// OTEL_EXPORTER_OTLP_ENDPOINT; none of them (or only empty ones) means disabled.
    pub fn from_config(flag: Option<&str>) -> Result<Self, TelemetryError> {
        match resolve_endpoint(flag, |name| std::env::var(name).ok()) {
            None => Ok(Self::disabled()),
            Some((endpoint, origin)) => Self::start(&endpoint, Some(origin)),
        }
    }

    fn start(endpoint: &str, origin: Option<&'static str>) -> Result<Self, TelemetryError> {
        Ok(Self { inner: Some(Arc::new(export::Exporter::start(endpoint, origin)?)) })
    }

    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Records one finished request: a SERVER span (a child of the client's `traceparent` when
    /// it is valid, else a new root) with "queue" and "compute" children for the intervals
    /// given. Only queues the spans; the batch processor exports them on its own thread.
    pub fn record(&self, span: &RequestSpan<'_>) {
        if let Some(exporter) = &self.inner {
            exporter.record(span);
        }
    }

    /// Flushes what is queued and stops the exporter; blocks for at most a few seconds when the
    /// collector does not answer. Call once, at server shutdown; later `record`s are dropped.
    /// On a current-thread runtime the flush cannot progress while this blocks, so call it
    /// from a multi-thread runtime (as the server's) or outside any runtime.
    pub fn shutdown(&self) {
        if let Some(exporter) = &self.inner {
            exporter.shutdown();
        }
    }
}

/// One finished request, as the request path saw it. Borrowed so that building one costs
/// nothing when tracing is off.
#[derive(Debug, Clone, Copy)]
pub struct RequestSpan<'a> {
    /// The RPC ("Predict", "GetModelMetadata") or REST verb ("predict", "metadata").
    pub name: &'a str,
    pub traceparent: Option<&'a str>,
    pub tracestate: Option<&'a str>,
    pub start: SystemTime,
    pub end: SystemTime,
    /// From admission to a compute thread picking the request up.
    pub queue: Option<(SystemTime, SystemTime)>,
    pub compute: Option<(SystemTime, SystemTime)>,
    pub model: &'a str,
    pub version: Option<i64>,
    /// "GRPC" or "REST", as in TF Serving's request metrics.
    pub entrypoint: &'a str,
    /// The gRPC status code name: "OK", "NOT_FOUND", ...
    pub code: &'a str,
    /// The error message; its presence marks the span as failed.
    pub error: Option<&'a str>,
}

#[derive(Debug, Error)]
pub enum TelemetryError {
    #[error("OTLP endpoint '{endpoint}'{}: {reason}", origin.map(|o| format!(" (from {o})")).unwrap_or_default())]
    BadEndpoint { endpoint: String, origin: Option<&'static str>, reason: String },
    #[error("the OTLP exporter must be started inside a tokio runtime")]
    NoRuntime,
}

/// The endpoint to export to and where it came from; empty values count as unset, as an
/// empty variable in a manifest usually means "off".
fn resolve_endpoint(
    flag: Option<&str>,
    env: impl Fn(&str) -> Option<String>,
) -> Option<(String, &'static str)> {
    let flag = flag.map(str::trim).filter(|v| !v.is_empty()).map(|v| (v.to_string(), "--otlp_endpoint"));
    flag.or_else(|| {
        ENDPOINT_VARS.iter().find_map(|&name| {
            env(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty()).map(|v| (v, name))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn the_flag_wins_then_the_traces_variable_then_the_general_one() {
        let both = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://general:4317"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces:4317"),
        ]);
        assert_eq!(resolve_endpoint(Some("http://flag:4317"), &both), Some(("http://flag:4317".into(), "--otlp_endpoint")));
        assert_eq!(
            resolve_endpoint(None, &both),
            Some(("http://traces:4317".into(), "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
        );
        let general = env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://general:4317"), ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", " ")]);
        assert_eq!(resolve_endpoint(Some(""), &general), Some(("http://general:4317".into(), "OTEL_EXPORTER_OTLP_ENDPOINT")));
        assert_eq!(resolve_endpoint(None, env(&[])), None);
        assert_eq!(resolve_endpoint(None, env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "")])), None);
    }

    #[test]
    fn the_disabled_tracer_records_nothing() {
        let tracer = Tracer::disabled();
        assert!(!tracer.is_enabled());
        let now = SystemTime::now();
        tracer.record(&RequestSpan {
            name: "Predict",
            traceparent: Some("garbage"),
            tracestate: None,
            start: now,
            end: now,
            queue: Some((now, now)),
            compute: None,
            model: "m",
            version: Some(1),
            entrypoint: "GRPC",
            code: "OK",
            error: None,
        });
        tracer.shutdown();
        assert_eq!(format!("{tracer:?}"), "Tracer { enabled: false }");
    }

    #[test]
    fn bad_endpoints_and_a_missing_runtime_are_start_up_errors() {
        let err = Tracer::from_config(Some("https://collector:4317")).expect_err("https");
        let message = err.to_string();
        assert!(message.contains("https://collector:4317") && message.contains("--otlp_endpoint"), "{message}");
        assert!(matches!(Tracer::otlp("collector:4317"), Err(TelemetryError::BadEndpoint { origin: None, .. })));
        assert!(matches!(Tracer::otlp("http://127.0.0.1:4317"), Err(TelemetryError::NoRuntime)));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unreachable_collector_does_not_stop_start_up_or_shutdown() {
        // Nothing listens on port 9 of localhost (discard), so every export fails fast.
        let tracer = Tracer::otlp("http://127.0.0.1:9").expect("lazy connection");
        assert!(tracer.is_enabled());
        let now = SystemTime::now();
        tracer.record(&RequestSpan {
            name: "Predict",
            traceparent: None,
            tracestate: None,
            start: now,
            end: now,
            queue: None,
            compute: None,
            model: "m",
            version: None,
            entrypoint: "REST",
            code: "OK",
            error: None,
        });
        let started = std::time::Instant::now();
        tracer.shutdown();
        assert!(started.elapsed() < std::time::Duration::from_secs(8), "{:?}", started.elapsed());
    }
}
