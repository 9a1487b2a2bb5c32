//! What Kubernetes and grpcurl touch: gRPC health across start-up, load and SIGTERM, server
//! reflection, draining on shutdown, and connection recycling by maximum age.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use candle_serving::proto::onnx::tensor_proto::DataType as OnnxType;
use candle_serving::proto::onnx::{GraphProto, NodeProto, TensorProto as OnnxTensor};
use candle_serving::proto::tensorflow::serving::prediction_service_client::PredictionServiceClient;
use common::*;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;

async fn health(port: u16, service: &str) -> Option<ServingStatus> {
    grpc_health(port, service).await.ok()
}

async fn http_ready(port: u16) -> Option<u16> {
    let response = reqwest::get(format!("http://127.0.0.1:{port}/v2/health/ready")).await.ok()?;
    Some(response.status().as_u16())
}

/// A model that takes a while to load (a 96 MiB initializer), so "loading" is observable.
fn write_slow_model(dir: &Path) {
    let count = 24 << 20;
    let big = OnnxTensor {
        name: "big".into(),
        dims: vec![count],
        data_type: OnnxType::Float as i32,
        raw_data: vec![0u8; count as usize * 4].into(),
        ..Default::default()
    };
    let graph = GraphProto {
        node: vec![NodeProto { op_type: "Relu".into(), name: "r".into(), input: vec!["x".into()], output: vec!["y".into()], ..Default::default() }],
        initializer: vec![big],
        input: vec![onnx_value("x", &[None, Some(4)])],
        output: vec![onnx_value("y", &[None, Some(4)])],
        ..Default::default()
    };
    std::fs::create_dir_all(dir.join("1")).expect("mkdir");
    std::fs::write(dir.join("1/model.onnx"), onnx_model_bytes(graph)).expect("write");
}

/// The binary: SIGTERM, the exit status and the JSON log lines are what is tested.
#[tokio::test]
async fn health_goes_not_serving_serving_not_serving_across_load_and_sigterm() {
    let dir = temp_dir("slow");
    write_slow_model(&dir.join("slow"));
    let base_path = format!("--model_base_path={}", dir.join("slow").display());
    let args = ["--log_format=json", "--model_name=slow", &base_path, "--shutdown_delay_seconds=1"];
    let mut server = BinaryServer::spawn(|| BinaryServer::command(&args), true);
    let (port, rest) = (server.port, server.rest.expect("REST port"));
    let mut seen = Vec::new();
    let mut http_seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Some(code) = http_ready(rest).await && http_seen.last() != Some(&code) {
            http_seen.push(code);
        }
        if let Some(status) = health(port, "").await {
            if seen.last() != Some(&status) {
                seen.push(status);
            }
            if status == ServingStatus::Serving {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(seen, vec![ServingStatus::NotServing, ServingStatus::Serving], "start-up sequence");
    assert_eq!(http_seen.first(), Some(&503), "HTTP readiness while loading: {http_seen:?}");
    assert_eq!(http_ready(rest).await, Some(200));
    assert_eq!(reqwest::get(format!("http://127.0.0.1:{rest}/v1/health/live")).await.map(|r| r.status().as_u16()).ok(), Some(200));
    for service in ["tensorflow.serving.PredictionService", "PredictionService", "ModelService", "tensorflow.serving.ModelService"] {
        assert_eq!(health(port, service).await, Some(ServingStatus::Serving), "{service}");
    }

    server.sigterm();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(health(port, "").await, Some(ServingStatus::NotServing), "after SIGTERM, during the delay");
    assert_eq!(http_ready(rest).await, Some(503), "HTTP readiness after SIGTERM");
    let status = server.exited(Duration::from_secs(30)).await;
    assert!(status.success(), "exit status {status}");
    let logs = server.logs();
    let events: Vec<serde_json::Value> =
        logs.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("--log_format=json line is not JSON ({e}): {l}"))).collect();
    let transition = events
        .iter()
        .find(|e| e["fields"]["state"] == "AVAILABLE")
        .unwrap_or_else(|| panic!("no AVAILABLE transition logged: {logs}"));
    assert_eq!(transition["fields"]["model"], "slow");
    assert_eq!(transition["fields"]["version"], 1);
    assert!(transition["fields"]["duration_ms"].is_u64(), "{transition}");
    assert!(events.iter().any(|e| e["fields"]["message"] == "shutdown signal received"), "{logs}");
    std::fs::remove_dir_all(&dir).ok();
}

/// The binary: SIGTERM and the exit status are what is tested.
#[tokio::test]
async fn sigterm_during_slow_requests_loses_none() {
    let mut server = BinaryServer::spawn(|| BinaryServer::command(&["--drain_timeout_seconds=60"]), false);
    let deadline = Instant::now() + Duration::from_secs(60);
    while health(server.port, "").await != Some(ServingStatus::Serving) {
        assert!(Instant::now() < deadline, "not serving");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, image) = npy(&fixture("mnist_cnn/input_b1.npy"));
    let batch = 512;
    let input: Vec<f32> = image.iter().copied().cycle().take(batch * 784).collect();
    let channel = Channel::from_shared(server.url()).expect("url").connect().await.expect("connect");
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let mut client = PredictionServiceClient::new(channel.clone());
        let request = predict_request("mnist_cnn", "image", float_tensor(&[batch, 28, 28, 1], input.clone()));
        tasks.push(tokio::spawn(async move { client.predict(request).await }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.sigterm();
    let mut ok = 0;
    for task in tasks {
        let response = task.await.expect("join").expect("in-flight request must finish during drain");
        assert_eq!(response.into_inner().outputs["probabilities"].float_val.len(), batch * 10);
        ok += 1;
    }
    assert_eq!(ok, 8);
    let status = server.exited(Duration::from_secs(60)).await;
    assert!(status.success(), "exit status {status}");
}

#[tokio::test]
async fn reflection_lists_the_services() {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;

    let server = Server::start(&[], "mnist_cnn").await;
    let channel = Channel::from_shared(server.url()).expect("url").connect().await.expect("connect");
    let mut client = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest { host: String::new(), message_request: Some(MessageRequest::ListServices(String::new())) };
    let mut stream = client.server_reflection_info(tokio_stream::iter(vec![request])).await.expect("reflection").into_inner();
    let response = stream.message().await.expect("message").expect("one response");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else { panic!("unexpected response") };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in [
        "tensorflow.serving.PredictionService",
        "tensorflow.serving.ModelService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
    ] {
        assert!(names.iter().any(|n| n == expected), "{expected} missing from {names:?}");
    }
}

#[tokio::test]
async fn connections_are_recycled_by_max_age_without_failed_requests() {
    let (server, rest) =
        Server::start_with_rest(&["--grpc_max_connection_age_ms=300", "--grpc_max_connection_age_grace_ms=5000"], "mnist_cnn").await;
    let (dims, input) = npy(&fixture("mnist_cnn/input_b1.npy"));
    let mut client = server.predict_client().await;
    let started = Instant::now();
    let (mut ok, mut failed, mut never_sent) = (0, 0, 0);
    while started.elapsed() < Duration::from_secs(2) {
        // A request the client queued on a connection that then went away was never sent, and
        // gRPC clients (grpc-core, grpc-go, grpc-java) retry those transparently; tonic does not,
        // so the test does it. Anything the server accepted must succeed, which the server-side
        // counters below confirm.
        let mut attempts = 0;
        loop {
            attempts += 1;
            match client.predict(predict_request("mnist_cnn", "image", float_tensor(&dims, input.clone()))).await {
                Ok(_) => {
                    ok += 1;
                    break;
                }
                Err(status) if attempts < 3 && was_never_sent(&status) => never_sent += 1,
                Err(status) => {
                    failed += 1;
                    eprintln!("failed: {status:?}");
                    break;
                }
            }
        }
    }
    assert_eq!(failed, 0, "{failed} failed of {} ({never_sent} never sent and retried)", ok + failed);
    let metrics = scrape(rest).await;
    let accepted = metric_value(&metrics, "candle_serving_connections_accepted_total{transport=\"grpc\"}").expect("connection counter");
    assert!(accepted >= 4.0, "expected the client to reconnect several times, saw {accepted} connections");
    let served_ok = metric_value(&metrics, ":tensorflow:serving:request_count{model_name=\"mnist_cnn\",status=\"OK\"}").expect("request counter");
    assert_eq!(served_ok, f64::from(ok), "server counted a different number of successful predictions");
    let not_ok: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with(":tensorflow:serving:request_count{") && !l.contains("status=\"OK\""))
        .collect();
    assert!(not_ok.is_empty(), "the server failed requests while recycling connections: {not_ok:?}");
}

/// True for errors that mean the request never reached the server: the client's connection
/// closed before the request was written (hyper's `Canceled`), or the server refused the stream
/// after GOAWAY (`REFUSED_STREAM`). HTTP/2 (RFC 9113 §8.7) makes both safe to retry.
fn was_never_sent(status: &tonic::Status) -> bool {
    let detail = format!("{status:?}");
    matches!(status.code(), tonic::Code::Cancelled | tonic::Code::Unavailable)
        && (detail.contains("Canceled") || detail.contains("REFUSED_STREAM"))
}
