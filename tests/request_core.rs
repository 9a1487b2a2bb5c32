//! The request core seen from outside: REST and gRPC Predicts leave the same metric series
//! (checked through a real Prometheus scrape), and health and readiness follow the
//! repository when a model loses its last version, fails to load, or is removed.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use candle_serving::proto::tensorflow::serving::model_server_config::Config;
use candle_serving::proto::tensorflow::serving::{ModelConfig, ModelConfigList, ModelServerConfig, ReloadConfigRequest};
use common::*;
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn temp(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("candle-serving-core-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    dir
}

/// Runs an instant query and returns the single sample's value, if any.
async fn query(port: u16, promql: &str) -> Option<f64> {
    let url = format!("http://127.0.0.1:{port}/api/v1/query");
    let body: serde_json::Value = reqwest::Client::new().get(url).query(&[("query", promql)]).send().await.ok()?.json().await.ok()?;
    let value = body["data"]["result"].get(0)?["value"].get(1)?.as_str()?.to_string();
    value.parse().ok()
}

async fn expect_queries(web: u16, checks: &[(String, f64)]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    for (promql, want) in checks {
        loop {
            let got = query(web, promql).await;
            if got == Some(*want) {
                break;
            }
            assert!(Instant::now() < deadline, "{promql}: got {got:?}, want {want}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

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
    let binary = which("prometheus").expect("the prometheus binary is required: bash tests/run.sh installs it");
    let dir = temp("prom");
    let (server, rest) = Server::start_with_rest(&["--model_name=mnist_cnn", "--model_base_path=models/mnist_cnn"], "mnist_cnn").await;
    let config = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: pod\n    metrics_path: /metrics\n    static_configs:\n      - targets: ['127.0.0.1:{rest}']\n"
    );
    std::fs::write(dir.join("prometheus.yml"), config).expect("write config");
    let web = free_port();
    let _prometheus = Prometheus(
        Command::new(binary)
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{web}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus"),
    );

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
    expect_queries(web, &checks).await;

    let mut client = server.predict_client().await;
    for _ in 0..7 {
        client.predict(predict_request("mnist_cnn", "image", float_tensor(&dims, input.clone()))).await.expect("gRPC predict");
    }
    let mut checks = series("Predict", "GRPC", 7.0);
    checks.extend(series("predict", "REST", 5.0));
    checks.push(("sum(candle_serving_queue_duration_seconds_count{model=\"mnist_cnn\"})".into(), 12.0));
    checks.push(("sum(candle_serving_compute_duration_seconds_count{model=\"mnist_cnn\"})".into(), 12.0));
    checks.push(("sum({__name__=\":tensorflow:serving:request_count\",model_name=\"mnist_cnn\",status=\"OK\"})".into(), 12.0));
    expect_queries(web, &checks).await;

    // Failures count alike too: an unknown model over both.
    client.predict(predict_request("nope", "image", float_tensor(&dims, input.clone()))).await.expect_err("unknown model");
    let reply = http.post(format!("http://127.0.0.1:{rest}/v1/models/nope:predict")).body(body.clone()).send().await.expect("REST");
    assert_eq!(reply.status(), 404);
    let checks = vec![
        ("sum(candle_serving_requests_total{model=\"nope\",method=\"Predict\",code=\"NOT_FOUND\"})".to_string(), 1.0),
        ("sum(candle_serving_requests_total{model=\"nope\",method=\"predict\",code=\"NOT_FOUND\"})".to_string(), 1.0),
        ("sum({__name__=\":tensorflow:serving:request_count\",model_name=\"nope\",status=\"NOT_FOUND\"})".to_string(), 2.0),
    ];
    expect_queries(web, &checks).await;
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

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| Path::new(d).join(name)).find(|p| p.is_file())
}

fn add_version(base: &Path, version: i64) {
    let dir = base.join(version.to_string());
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::copy(repo_root().join("models/mnist_cnn/1/model.onnx"), dir.join("model.onnx")).expect("copy model");
}

fn model_config(name: &str, base: &Path) -> ModelConfig {
    ModelConfig { name: name.into(), base_path: base.display().to_string(), model_platform: "onnx".into(), ..Default::default() }
}

fn config_of(models: Vec<ModelConfig>) -> ModelServerConfig {
    ModelServerConfig { config: Some(Config::ModelConfigList(ModelConfigList { config: models })) }
}

/// What the probes say: gRPC health for "", and for `models`, and REST `/v1/health/ready`.
struct Probes {
    grpc: Channel,
    rest: u16,
}

impl Probes {
    async fn grpc(&self, service: &str) -> Result<ServingStatus, Code> {
        let reply = HealthClient::new(self.grpc.clone()).check(HealthCheckRequest { service: service.into() }).await;
        reply.map(|r| r.into_inner().status()).map_err(|s| s.code())
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
    let dir = temp("ready");
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
    let probes = Probes { grpc: Channel::from_shared(server.url()).expect("url").connect().await.expect("connect"), rest };
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
