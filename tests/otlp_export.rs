//! OpenTelemetry export end to end: `Tracer` sends over OTLP/gRPC to a real receiver, and the
//! spans that arrive carry the client's trace, the request's timestamps and the model.

#[path = "otlp/receiver.rs"]
mod otlp_receiver;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use candle_serving::config::{ModelSource, ServerConfig};
use candle_serving::telemetry::{RequestSpan, Tracer};
use candle_serving::{Listeners, serve};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::Span;
use otlp_receiver::OtlpReceiver;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";
const WAIT: Duration = Duration::from_secs(10);

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
}

fn nanos(t: SystemTime) -> u64 {
    u64::try_from(t.duration_since(UNIX_EPOCH).expect("after 1970").as_nanos()).expect("fits u64")
}

fn attr<'a>(span: &'a Span, key: &str) -> Option<&'a Value> {
    span.attributes.iter().find(|kv| kv.key == key).and_then(|kv| kv.value.as_ref()).and_then(|v| v.value.as_ref())
}

fn string(s: &str) -> Option<Value> {
    Some(Value::StringValue(s.to_string()))
}

/// Odd nanosecond values, so a rounding to micro- or milliseconds anywhere would show.
fn at(offset_ns: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789 + offset_ns)
}

fn request<'a>(traceparent: Option<&'a str>) -> RequestSpan<'a> {
    RequestSpan {
        name: "Predict",
        traceparent,
        tracestate: Some("vendor=abc"),
        start: at(0),
        end: at(9_000_501),
        queue: Some((at(10_003), at(2_000_007))),
        compute: Some((at(2_000_007), at(8_999_999))),
        model: "resnet",
        version: Some(3),
        entrypoint: "GRPC",
        code: "OK",
        error: None,
    }
}

fn named<'a>(spans: &'a [Span], name: &str) -> &'a Span {
    spans.iter().find(|s| s.name == name).unwrap_or_else(|| panic!("no span {name} in {spans:#?}"))
}

// Multi-thread: `shutdown` blocks while the runtime drives the export's gRPC connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_continues_the_clients_trace_with_queue_and_compute_children() {
    let mut receiver = OtlpReceiver::start().await;
    let tracer = Tracer::otlp(&receiver.endpoint).expect("exporter");
    assert!(tracer.is_enabled());
    let traceparent = format!("00-{TRACE_ID}-{PARENT_ID}-01");
    let recorded = request(Some(&traceparent));
    tracer.record(&recorded);
    tracer.shutdown();

    let spans = receiver.spans(3, WAIT).await;
    assert_eq!(spans.len(), 3, "{spans:#?}");
    let server = named(&spans, "Predict");
    assert_eq!(server.kind, SpanKind::Server as i32);
    assert_eq!(server.trace_id, hex(TRACE_ID));
    assert_eq!(server.parent_span_id, hex(PARENT_ID));
    assert_eq!(server.span_id.len(), 8);
    assert_eq!(server.trace_state, "vendor=abc");
    assert_eq!((server.start_time_unix_nano, server.end_time_unix_nano), (nanos(recorded.start), nanos(recorded.end)));
    assert_eq!(server.status.as_ref().map_or(0, |s| s.code), StatusCode::Unset as i32);
    assert_eq!(attr(server, "rpc.system").cloned(), string("grpc"));
    assert_eq!(attr(server, "rpc.method").cloned(), string("Predict"));
    assert_eq!(attr(server, "serving.entrypoint").cloned(), string("GRPC"));
    assert_eq!(attr(server, "model.name").cloned(), string("resnet"));
    assert_eq!(attr(server, "model.version").cloned(), Some(Value::IntValue(3)));
    assert_eq!(attr(server, "status.code").cloned(), string("OK"));
    assert_eq!(attr(server, "error.type"), None);

    for (name, (start, end)) in [("queue", recorded.queue), ("compute", recorded.compute)].map(|(n, i)| (n, i.expect("interval"))) {
        let child = named(&spans, name);
        assert_eq!(child.trace_id, hex(TRACE_ID), "{name}");
        assert_eq!(child.parent_span_id, server.span_id, "{name}");
        assert_ne!(child.span_id, server.span_id, "{name}");
        assert_eq!(child.kind, SpanKind::Internal as i32, "{name}");
        assert_eq!((child.start_time_unix_nano, child.end_time_unix_nano), (nanos(start), nanos(end)), "{name}");
        let duration = end.duration_since(start).expect("ordered");
        assert_eq!(u128::from(child.end_time_unix_nano - child.start_time_unix_nano), duration.as_nanos(), "{name}");
    }
    assert_eq!(server.end_time_unix_nano - server.start_time_unix_nano, 9_000_501);

    let resource = receiver.requests[0].resource_spans[0].resource.as_ref().expect("resource");
    let service = resource.attributes.iter().find(|kv| kv.key == "service.name").and_then(|kv| kv.value.clone());
    let expected = std::env::var("OTEL_SERVICE_NAME").ok().filter(|s| !s.is_empty()).unwrap_or_else(|| "candle-serving".into());
    assert_eq!(service.and_then(|v| v.value), string(&expected));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_valid_traceparent_the_request_starts_a_new_trace() {
    let mut receiver = OtlpReceiver::start().await;
    let tracer = Tracer::otlp(&receiver.endpoint).expect("exporter");
    let malformed = format!("00-{TRACE_ID}-{PARENT_ID}");
    let none = RequestSpan { name: "GetModelMetadata", queue: None, compute: None, ..request(None) };
    let bad = RequestSpan { name: "predict", entrypoint: "REST", version: None, queue: None, compute: None, ..request(Some(&malformed)) };
    tracer.record(&none);
    tracer.record(&bad);
    tracer.shutdown();

    let spans = receiver.spans(2, WAIT).await;
    assert_eq!(spans.len(), 2, "{spans:#?}");
    for span in &spans {
        assert!(span.parent_span_id.is_empty(), "{span:#?}");
        assert_eq!(span.trace_id.len(), 16);
        assert_ne!(span.trace_id, hex(TRACE_ID));
        assert_ne!(span.trace_id, vec![0; 16]);
        assert_eq!(span.trace_state, "", "tracestate without a traceparent is dropped");
        assert_eq!(span.kind, SpanKind::Server as i32);
    }
    assert_ne!(spans[0].trace_id, spans[1].trace_id);
    let rest = named(&spans, "predict");
    assert_eq!(attr(rest, "rpc.system"), None);
    assert_eq!(attr(rest, "serving.entrypoint").cloned(), string("REST"));
    assert_eq!(attr(rest, "model.version"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_request_is_an_error_span() {
    let mut receiver = OtlpReceiver::start().await;
    // Through the flag path of `from_config`, as the server starts it.
    let tracer = Tracer::from_config(Some(&receiver.endpoint)).expect("exporter");
    let failed = RequestSpan {
        code: "NOT_FOUND",
        error: Some("Servable not found for request: Latest(nope)"),
        model: "nope",
        version: None,
        queue: None,
        compute: None,
        ..request(None)
    };
    tracer.record(&failed);
    tracer.shutdown();

    let spans = receiver.spans(1, WAIT).await;
    assert_eq!(spans.len(), 1, "{spans:#?}");
    let status = spans[0].status.as_ref().expect("status");
    assert_eq!(status.code, StatusCode::Error as i32);
    assert_eq!(status.message, "Servable not found for request: Latest(nope)");
    assert_eq!(attr(&spans[0], "status.code").cloned(), string("NOT_FOUND"));
    assert_eq!(attr(&spans[0], "error.type").cloned(), string("NOT_FOUND"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsampled_client_trace_is_not_recorded() {
    let mut receiver = OtlpReceiver::start().await;
    let tracer = Tracer::otlp(&receiver.endpoint).expect("exporter");
    let unsampled = format!("00-{TRACE_ID}-{PARENT_ID}-00");
    tracer.record(&request(Some(&unsampled)));
    let sampled = format!("00-{TRACE_ID}-{PARENT_ID}-01");
    tracer.record(&RequestSpan { queue: None, compute: None, ..request(Some(&sampled)) });
    tracer.shutdown();
    // Exactly the sampled request's span: the unsampled one and its children never left.
    let spans = receiver.spans(2, Duration::from_secs(2)).await;
    assert_eq!(spans.len(), 1, "{spans:#?}");
}

#[test]
fn the_disabled_tracer_is_a_no_op() {
    // Outside any runtime: the disabled tracer needs none.
    let tracer = Tracer::disabled();
    assert!(!tracer.is_enabled());
    let traceparent = format!("00-{TRACE_ID}-{PARENT_ID}-01");
    tracer.record(&request(Some(&traceparent)));
    tracer.record(&request(Some("not a traceparent")));
    tracer.clone().shutdown();
}

#[test]
fn no_endpoint_anywhere_means_disabled() {
    // Only reads the environment (no test in this binary changes it); where CI itself sets an
    // OTLP endpoint, the check does not apply.
    let vars = ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"];
    if let Some(set) = vars.iter().find(|v| std::env::var(v).is_ok_and(|s| !s.trim().is_empty())) {
        eprintln!("skipped: {set} is set in this environment");
        return;
    }
    assert!(!Tracer::from_config(None).expect("disabled").is_enabled());
    assert!(!Tracer::from_config(Some("")).expect("disabled").is_enabled());
}

#[tokio::test]
async fn a_bad_endpoint_stops_start_up_with_a_clear_message() {
    let config = ServerConfig {
        otlp_endpoint: Some("https://collector:4317".into()),
        // Never loaded: start-up stops before the models.
        models: ModelSource::Single { name: "m".into(), base_path: "/nonexistent/m".into() },
        ..ServerConfig::default()
    };
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let err = serve(config, Listeners { grpc, rest: None }, std::future::pending()).await.expect_err("bad endpoint");
    let message = err.to_string();
    assert!(message.contains("https://collector:4317") && message.contains("--otlp_endpoint"), "{message}");
}
