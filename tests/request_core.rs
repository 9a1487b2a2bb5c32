//! The request core seen from outside: REST and gRPC Predicts leave the same metric series
//! (checked through a real Prometheus scrape), and health and readiness follow the
//! repository when a model loses its last version, fails to load, or is removed.

mod common;
#[path = "otlp/receiver.rs"]
mod otlp_receiver;

use std::time::{Duration, Instant};

use candle_serving::proto::tensorflow::serving::model_server_config::Config;
use candle_serving::proto::tensorflow::serving::{ModelConfig, ModelConfigList, ModelServerConfig, ReloadConfigRequest};
use common::*;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use otlp_receiver::OtlpReceiver;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

/// The series each Predict must leave, per entrypoint: request count and latency, and the
/// queue, compute and runtime latency of its execution. `api` is TF's label value (the RPC
/// name for gRPC, the URL verb for REST).
fn series(api: &str, entrypoint: &str, count: f64) -> Vec<(String, f64)> {
    vec![
        (format!("sum(candle_serving_requests_total{{model=\"mnist_cnn\",method=\"{api}\",code=\"OK\"}})"), count),
        (format!("sum(candle_serving_request_duration_seconds_count{{model=\"mnist_cnn\",method=\"{api}\"}})"), count),
        (
            format!("sum({{__name__=\":tensorflow:serving:request_latency_count\",model_name=\"mnist_cnn\",API=\"{api}\",entrypoint=\"{entrypoint}\"}})"),
            count,
        ),
        (format!("sum({{__name__=\":tensorflow:serving:runtime_latency_count\",model_name=\"mnist_cnn\",API=\"{api}\"}})"), count),
    ]
}

#[tokio::test]
async fn rest_and_grpc_predicts_produce_the_same_series() {
    let dir = temp_dir("core-prom");
    let (server, rest) = Server::start_with_rest(&["--model_name=mnist_cnn", "--model_base_path=models/mnist_cnn"], "mnist_cnn").await;
    let prometheus = Prometheus::scraping(&dir, &[("pod", "/metrics", rest)]);

    // REST first, alone: queue and compute (labelled by model only) then count REST alone.
    let (dims, input) = npy(&fixture("mnist_cnn/input_b1.npy"));
    let image: Vec<String> = input.iter().map(|v| v.to_string()).collect();
    let body = format!(r#"{{"inputs": {{"image": [{}]}}}}"#, nest(&dims[1..], &image));
    let http = reqwest::Client::new();
    for _ in 0..5 {
        let reply = http.post(format!("http://127.0.0.1:{rest}/v1/models/mnist_cnn:predict")).body(body.clone()).send().await.expect("REST predict");
        assert_eq!(reply.status(), 200, "{}", reply.text().await.unwrap_or_default());
    }
    let mut checks = series("predict", "REST", 5.0);
    checks.push(("sum(candle_serving_queue_duration_seconds_count{model=\"mnist_cnn\"})".into(), 5.0));
    checks.push(("sum(candle_serving_compute_duration_seconds_count{model=\"mnist_cnn\"})".into(), 5.0));
    checks.push(("sum({__name__=\":tensorflow:serving:request_count\",model_name=\"mnist_cnn\",status=\"OK\"})".into(), 5.0));
    prometheus.expect(&checks).await;

    let mut client = server.predict_client().await;
    for _ in 0..7 {
        client.predict(predict_request("mnist_cnn", "image", float_tensor(&dims, input.clone()))).await.expect("gRPC predict");
    }
    let mut checks = series("Predict", "GRPC", 7.0);
    checks.extend(series("predict", "REST", 5.0));
    checks.push(("sum(candle_serving_queue_duration_seconds_count{model=\"mnist_cnn\"})".into(), 12.0));
    checks.push(("sum(candle_serving_compute_duration_seconds_count{model=\"mnist_cnn\"})".into(), 12.0));
    checks.push(("sum({__name__=\":tensorflow:serving:request_count\",model_name=\"mnist_cnn\",status=\"OK\"})".into(), 12.0));
    prometheus.expect(&checks).await;

    // Failures count alike too: an unknown model over both.
    client.predict(predict_request("nope", "image", float_tensor(&dims, input.clone()))).await.expect_err("unknown model");
    let reply = http.post(format!("http://127.0.0.1:{rest}/v1/models/nope:predict")).body(body.clone()).send().await.expect("REST");
    assert_eq!(reply.status(), 404);
    let checks = vec![
        ("sum(candle_serving_requests_total{model=\"nope\",method=\"Predict\",code=\"NOT_FOUND\"})".to_string(), 1.0),
        ("sum(candle_serving_requests_total{model=\"nope\",method=\"predict\",code=\"NOT_FOUND\"})".to_string(), 1.0),
        ("sum({__name__=\":tensorflow:serving:request_count\",model_name=\"nope\",status=\"NOT_FOUND\"})".to_string(), 2.0),
    ];
    prometheus.expect(&checks).await;
    std::fs::remove_dir_all(&dir).ok();
}

/// `values` laid out as nested JSON arrays of `dims`.
fn nest(dims: &[usize], values: &[String]) -> String {
    match dims {
        [] => values[0].clone(),
        [n, rest @ ..] => {
            let step = values.len() / n;
            let parts: Vec<String> = (0..*n).map(|i| nest(rest, &values[i * step..(i + 1) * step])).collect();
            format!("[{}]", parts.join(","))
        }
    }
}

fn config_of(models: Vec<ModelConfig>) -> ModelServerConfig {
    ModelServerConfig { config: Some(Config::ModelConfigList(ModelConfigList { config: models })) }
}

/// What the probes say: gRPC health for "", and for `models`, and REST `/v1/health/ready`.
struct Probes {
    grpc: u16,
    rest: u16,
}

impl Probes {
    async fn grpc(&self, service: &str) -> Result<ServingStatus, Code> {
        grpc_health_check(self.grpc, service).await.map_err(|s| s.code())
    }

    async fn rest(&self) -> (u16, String) {
        let reply = reqwest::get(format!("http://127.0.0.1:{}/v1/health/ready", self.rest)).await.expect("ready probe");
        (reply.status().as_u16(), reply.text().await.expect("body"))
    }

    /// Waits until the server-wide answer is `ready` on both probes.
    async fn wait_ready(&self, ready: bool, why: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        let want = if ready { ServingStatus::Serving } else { ServingStatus::NotServing };
        loop {
            let grpc = self.grpc("").await;
            let (code, body) = self.rest().await;
            if grpc == Ok(want) && (code == 200) == ready {
                return body;
            }
            assert!(Instant::now() < deadline, "{why}: gRPC health {grpc:?}, REST {code} {body}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test]
async fn readiness_follows_models_that_fail_or_are_removed() {
    let dir = temp_dir("core-ready");
    add_version(&dir.join("a"), 1);
    add_version(&dir.join("b"), 1);
    let config_file = dir.join("models.config");
    std::fs::write(
        &config_file,
        format!(
            "model_config_list {{ config {{ name: 'a' base_path: '{}' }} config {{ name: 'b' base_path: '{}' }} }}\n",
            dir.join("a").display(),
            dir.join("b").display()
        ),
    )
    .expect("write");
    let (mut server, rest) =
        Server::start_with_rest(&[&format!("--model_config_file={}", config_file.display()), "--file_system_poll_wait_seconds=0.2"], "a").await;
    server.wait_available("b").await;
    let probes = Probes { grpc: server.port, rest };
    probes.wait_ready(true, "both models available").await;
    assert_eq!(probes.grpc("a").await, Ok(ServingStatus::Serving));
    assert_eq!(probes.grpc("b").await, Ok(ServingStatus::Serving));

    // b loses its only version: it is unloaded and the server is no longer ready.
    std::fs::remove_dir_all(dir.join("b/1")).expect("remove b/1");
    let body = probes.wait_ready(false, "b's last version was deleted").await;
    assert!(body.contains(r#""model":"b""#) && !body.contains(r#""model":"a""#), "{body}");
    assert_eq!(probes.grpc("b").await, Ok(ServingStatus::NotServing));
    assert_eq!(probes.grpc("a").await, Ok(ServingStatus::Serving));
    let (dims, input) = npy(&fixture("mnist_cnn/input_b1.npy"));
    let mut client = server.predict_client().await;
    client.predict(predict_request("a", "image", float_tensor(&dims, input.clone()))).await.expect("a still serves");
    let status = client.predict(predict_request("b", "image", float_tensor(&dims, input.clone()))).await.expect_err("b is gone");
    assert_eq!(status.code(), Code::NotFound);

    // A version that comes back makes it ready again.
    add_version(&dir.join("b"), 2);
    probes.wait_ready(true, "b has a version again").await;
    assert_eq!(probes.grpc("b").await, Ok(ServingStatus::Serving));

    // A config reload that removes b: b is no longer a service, and the server is ready.
    let mut models = server.model_client().await;
    models.handle_reload_config_request(ReloadConfigRequest { config: Some(config_of(vec![model_config("a", &dir.join("a"))])), ..Default::default() }).await.expect("reload");
    let deadline = Instant::now() + Duration::from_secs(10);
    while probes.grpc("b").await != Err(Code::NotFound) {
        assert!(Instant::now() < deadline, "b is still a health service after its removal: {:?}", probes.grpc("b").await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    probes.wait_ready(true, "b removed").await;

    // A model added by a reload whose only version fails to load: NOT_SERVING, naming it.
    let c = dir.join("c/1");
    std::fs::create_dir_all(&c).expect("mkdir");
    std::fs::write(c.join("model.onnx"), b"not an onnx file").expect("write");
    let status = models
        .handle_reload_config_request(ReloadConfigRequest {
            config: Some(config_of(vec![model_config("a", &dir.join("a")), model_config("c", &dir.join("c"))])),
            ..Default::default()
        })
        .await
        .expect_err("c fails to load");
    assert!(status.message().contains("did not become available"), "{}", status.message());
    let body = probes.wait_ready(false, "c failed to load").await;
    assert!(body.contains(r#""model":"c""#) && body.contains("ONNX"), "{body}");
    assert_eq!(probes.grpc("c").await, Ok(ServingStatus::NotServing));
    // ... and removing the failed model by another reload restores readiness.
    models.handle_reload_config_request(ReloadConfigRequest { config: Some(config_of(vec![model_config("a", &dir.join("a"))])), ..Default::default() }).await.expect("reload");
    probes.wait_ready(true, "c removed").await;
    assert_eq!(probes.grpc("c").await, Err(Code::NotFound));
    std::fs::remove_dir_all(&dir).ok();
}

const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const PARENT_ID: &str = "b7ad6b7169203331";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Multi-thread: the receiver keeps answering on the test's runtime while dropping the server
/// (which flushes the exporter) blocks this thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_trace_continues_into_queue_and_compute_spans() {
    let mut receiver = OtlpReceiver::start().await;
    let endpoint = format!("--otlp_endpoint={}", receiver.endpoint);
    for batching in [false, true] {
        let mut args = vec!["--model_name=mnist_cnn", "--model_base_path=models/mnist_cnn", endpoint.as_str()];
        if batching {
            args.push("--enable_batching");
        }
        let server = Server::start(&args, "mnist_cnn").await;
        let (dims, input) = npy(&fixture("mnist_cnn/input_b1.npy"));
        let mut client = server.predict_client().await;
        let mut request = tonic::Request::new(predict_request("mnist_cnn", "image", float_tensor(&dims, input.clone())));
        request.metadata_mut().insert("traceparent", format!("00-{TRACE_ID}-{PARENT_ID}-01").parse().expect("header"));
        let sent = Instant::now();
        client.predict(request).await.expect("predict");
        let round_trip = sent.elapsed();
        // Spans are exported in batches; shutting the server down flushes them.
        drop(client);
        drop(server);

        let spans = receiver.spans(3, Duration::from_secs(10)).await;
        let ours: Vec<_> = spans.iter().filter(|s| hex(&s.trace_id) == TRACE_ID).collect();
        let request = ours.iter().find(|s| s.name == "Predict").unwrap_or_else(|| panic!("no Predict span among {ours:?}"));
        assert_eq!(hex(&request.parent_span_id), PARENT_ID, "the request span continues the client's span");
        assert_eq!(request.kind, SpanKind::Server as i32);
        let duration = request.end_time_unix_nano - request.start_time_unix_nano;
        assert!(duration > 0 && u128::from(duration) <= round_trip.as_nanos(), "request span {duration} ns, round trip {round_trip:?}");
        for name in ["queue", "compute"] {
            let child = ours.iter().find(|s| s.name == name).unwrap_or_else(|| panic!("no {name} span (batching {batching})"));
            assert_eq!(child.parent_span_id, request.span_id, "{name} is a child of the request span");
            assert!(
                child.start_time_unix_nano >= request.start_time_unix_nano && child.end_time_unix_nano <= request.end_time_unix_nano,
                "{name} lies inside the request span"
            );
        }
        let queue = ours.iter().find(|s| s.name == "queue").expect("queue");
        let compute = ours.iter().find(|s| s.name == "compute").expect("compute");
        assert_eq!(queue.end_time_unix_nano, compute.start_time_unix_nano, "compute starts when the queue wait ends");
        assert!(compute.end_time_unix_nano > compute.start_time_unix_nano, "the model ran for some time");
        println!(
            "batching {batching}: request {} µs, queue {} µs, compute {} µs",
            duration / 1000,
            (queue.end_time_unix_nano - queue.start_time_unix_nano) / 1000,
            (compute.end_time_unix_nano - compute.start_time_unix_nano) / 1000
        );
        receiver.requests.clear();
    }
}
