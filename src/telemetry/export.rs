//! The OTLP/gRPC exporter behind an enabled [`Tracer`](super::Tracer): an SDK tracer provider
//! with a batch span processor, so recording a span only queues it and the export happens on
//! the processor's own thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};

use super::{RequestSpan, TelemetryError, context};

const DEFAULT_SERVICE_NAME: &str = "candle-serving";

/// Bounds how long stopping the server waits for the last batch when the collector is slow or
/// gone; the spans are lost after that, the server still exits.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) struct Exporter {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    stopped: AtomicBool,
}

impl Exporter {
    pub(super) fn start(endpoint: &str, origin: Option<&'static str>) -> Result<Self, TelemetryError> {
        let bad = |reason: String| TelemetryError::BadEndpoint { endpoint: endpoint.to_string(), origin, reason };
        check_endpoint(endpoint).map_err(bad)?;
        // The tonic channel spawns its connection task on the current runtime; without one
        // `connect_lazy` would panic.
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(TelemetryError::NoRuntime);
        }
        let exporter =
            SpanExporter::builder().with_tonic().with_endpoint(endpoint).build().map_err(|e| bad(e.to_string()))?;
        let provider =
            SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource()).build();
        let scope = InstrumentationScope::builder(DEFAULT_SERVICE_NAME).with_version(env!("CARGO_PKG_VERSION")).build();
        let tracer = provider.tracer_with_scope(scope);
        tracing::info!(endpoint, origin = origin.unwrap_or("Tracer::otlp"), "exporting OpenTelemetry traces over OTLP/gRPC");
        Ok(Self { provider, tracer, stopped: AtomicBool::new(false) })
    }

    pub(super) fn record(&self, request: &RequestSpan<'_>) {
        let parent = context::parent(request.traceparent, request.tracestate);
        let mut span = self
            .tracer
            .span_builder(request.name.to_string())
            .with_kind(SpanKind::Server)
            .with_start_time(request.start)
            .with_attributes(attributes(request))
            .start_with_context(&self.tracer, &parent);
        if let Some(message) = request.error {
            span.set_status(Status::error(message.to_string()));
        }
        let cx = parent.with_span(span);
        for (name, interval) in [("queue", request.queue), ("compute", request.compute)] {
            if let Some((start, end)) = interval {
                let mut child = self
                    .tracer
                    .span_builder(name)
                    .with_kind(SpanKind::Internal)
                    .with_start_time(start)
                    .start_with_context(&self.tracer, &cx);
                child.end_with_timestamp(end);
            }
        }
        cx.span().end_with_timestamp(request.end);
    }

    pub(super) fn shutdown(&self) {
        if self.stopped.swap(true, Ordering::AcqRel) {
            return;
        }
        let stop = || {
            if let Err(err) = self.provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT) {
                tracing::warn!(%err, "OpenTelemetry: the last spans may not have been exported");
            }
        };
        // The export runs on the processor's thread but its gRPC connection is driven by this
        // runtime, so a runtime worker must not simply block here.
        match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(stop),
            _ => stop(),
        }
    }
}

/// An early return from the server (a model that fails to load) still flushes, and the SDK's
/// own drop-time shutdown would block a runtime worker without `block_in_place`.
impl Drop for Exporter {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Only plain `http://` is accepted: the exporter is built without TLS (a collector is normally
/// a sidecar or in-cluster service), and failing at start-up beats spans silently never arriving.
fn check_endpoint(endpoint: &str) -> Result<(), String> {
    let uri: http::Uri = endpoint.parse().map_err(|e| format!("not a URI: {e}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err("https is not supported (built without TLS); use http://host:port of a local or in-cluster collector".into());
        }
        Some(other) => return Err(format!("unsupported scheme '{other}'; expected http://host:port")),
        None => return Err("expected http://host:port".into()),
    }
    match uri.host() {
        Some(host) if !host.is_empty() => Ok(()),
        _ => Err("no host; expected http://host:port".into()),
    }
}

/// The SDK's default resource (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, telemetry.sdk.*),
/// with this server's name in place of the SDK's `unknown_service` when neither variable names one.
fn resource() -> Resource {
    let version = KeyValue::new("service.version", env!("CARGO_PKG_VERSION"));
    let detected = Resource::builder().with_attribute(version.clone()).build();
    let named = detected
        .get(&opentelemetry::Key::from_static_str("service.name"))
        .is_some_and(|name| !name.as_str().starts_with("unknown_service"));
    if named { detected } else { Resource::builder().with_service_name(DEFAULT_SERVICE_NAME).with_attribute(version).build() }
}

fn attributes(request: &RequestSpan<'_>) -> Vec<KeyValue> {
    let mut attributes = Vec::with_capacity(7);
    if request.entrypoint == "GRPC" {
        attributes.push(KeyValue::new("rpc.system", "grpc"));
    }
    attributes.push(KeyValue::new("rpc.method", request.name.to_string()));
    attributes.push(KeyValue::new("serving.entrypoint", request.entrypoint.to_string()));
    attributes.push(KeyValue::new("model.name", request.model.to_string()));
    if let Some(version) = request.version {
        attributes.push(KeyValue::new("model.version", version));
    }
    attributes.push(KeyValue::new("status.code", request.code.to_string()));
    if request.error.is_some() {
        attributes.push(KeyValue::new("error.type", request.code.to_string()));
    }
    attributes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_http_endpoints_with_a_host_are_accepted() {
        assert_eq!(check_endpoint("http://127.0.0.1:4317"), Ok(()));
        assert_eq!(check_endpoint("http://otel-collector.monitoring:4317"), Ok(()));
        for bad in ["https://collector:4317", "collector:4317", "grpc://collector:4317", "http://", "not a uri", ""] {
            assert!(check_endpoint(bad).is_err(), "{bad}");
        }
    }
}
