//! Shared harness: the server in-process ([`Server`]) or as the real binary ([`BinaryServer`]),
//! tonic clients generated from proto/, fixtures, and the helpers several test files use.
#![allow(dead_code, unreachable_pub)]

mod binary;
mod in_process;
mod prometheus;

// Not every test binary uses each of these.
#[allow(unused_imports)]
pub use binary::{BinaryServer, run_to_exit};
#[allow(unused_imports)]
pub use in_process::Server;
#[allow(unused_imports)]
pub use prometheus::Prometheus;

use std::future::Future;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use candle_core::Tensor;
use candle_serving::proto::tensorflow::serving::model_service_client::ModelServiceClient;
use candle_serving::proto::tensorflow::serving::model_spec::VersionChoice;
use candle_serving::proto::tensorflow::serving::prediction_service_client::PredictionServiceClient;
use candle_serving::proto::tensorflow::serving::model_version_status::State;
use candle_serving::proto::tensorflow::serving::{GetModelStatusRequest, ModelSpec, PredictRequest};
use candle_serving::proto::tensorflow::{DataType, TensorProto, TensorShapeProto, tensor_shape_proto};
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

pub const BIN: &str = env!("CARGO_BIN_EXE_candle-serving");

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(path: &str) -> PathBuf {
    repo_root().join("tests/fixtures").join(path)
}

/// A fresh, empty directory under the system temp dir, unique to this process and call.
pub fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!("candle-serving-{tag}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst)));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// A server's gRPC port, whether it runs in-process or as the binary.
pub trait Grpc {
    fn grpc_port(&self) -> u16;

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc_port())
    }

    fn predict_client(&self) -> impl Future<Output = PredictionServiceClient<Channel>> + Send {
        let url = self.url();
        async move { PredictionServiceClient::connect(url).await.expect("connect") }
    }

    fn model_client(&self) -> impl Future<Output = ModelServiceClient<Channel>> + Send {
        let url = self.url();
        async move { ModelServiceClient::connect(url).await.expect("connect") }
    }
}

/// Polls GetModelStatus until `model` has an AVAILABLE version. `stopped` says why the server
/// is gone, if it is: start-up errors then fail the test at once with the reason.
pub async fn wait_model(url: &str, model: &str, mut stopped: impl FnMut() -> Option<String>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(why) = stopped() {
            panic!("the server stopped before {model} became AVAILABLE: {why}");
        }
        if let Ok(channel) = Channel::from_shared(url.to_string()).expect("url").connect().await {
            let mut client = ModelServiceClient::new(channel);
            let request = GetModelStatusRequest { model_spec: Some(spec(model)) };
            let available = client
                .get_model_status(request)
                .await
                .is_ok_and(|r| r.into_inner().model_version_status.iter().any(|v| v.state == State::Available as i32));
            if available {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{model} did not become AVAILABLE within 60s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One grpc.health.v1 Check on loopback `port`; `Err` says why there was no answer.
pub async fn grpc_health(port: u16, service: &str) -> Result<ServingStatus, String> {
    grpc_health_check(port, service).await.map_err(|s| s.to_string())
}

/// [`grpc_health`] keeping the server's status code (NOT_FOUND for a service it does not
/// know); a connection that fails is UNAVAILABLE.
pub async fn grpc_health_check(port: u16, service: &str) -> Result<ServingStatus, tonic::Status> {
    let unavailable = |e: tonic::transport::Error| tonic::Status::unavailable(e.to_string());
    let channel = Channel::from_shared(format!("http://127.0.0.1:{port}"))
        .map_err(|e| tonic::Status::invalid_argument(e.to_string()))?
        .connect()
        .await
        .map_err(unavailable)?;
    let reply = HealthClient::new(channel).check(HealthCheckRequest { service: service.into() }).await?;
    Ok(reply.into_inner().status())
}

/// What [`ChildLogs::wait_for`] saw.
pub enum Waited<T> {
    Found(T),
    Exited(ExitStatus),
    TimedOut,
}

/// A child's stderr, read line by line on a thread of its own: each line is forwarded to the
/// test's stderr as it arrives (so the log shows with the test's output) and kept for reading.
pub struct ChildLogs {
    lines: Arc<Mutex<Vec<String>>>,
    incoming: mpsc::Receiver<String>,
    reader: Option<JoinHandle<()>>,
}

impl ChildLogs {
    /// Takes over `child`'s stderr, which must be piped.
    pub fn capture(child: &mut Child) -> ChildLogs {
        let stderr = child.stderr.take().expect("the child's stderr is piped");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, incoming) = mpsc::channel();
        let kept = Arc::clone(&lines);
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("{line}");
                kept.lock().expect("log lines").push(line.clone());
                let _ = tx.send(line);
            }
        });
        ChildLogs { lines, incoming, reader: Some(reader) }
    }

    /// Waits for the first line (from here on) that `find` accepts, while `child` runs.
    pub fn wait_for<T>(&mut self, child: &mut Child, within: Duration, mut find: impl FnMut(&str) -> Option<T>) -> Waited<T> {
        let deadline = Instant::now() + within;
        loop {
            match self.incoming.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => {
                    if let Some(found) = find(&line) {
                        return Waited::Found(found);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => return Waited::TimedOut,
                // End of stderr: the process has exited (or is about to).
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = child.wait().expect("wait for the child");
                    self.finish();
                    return Waited::Exited(status);
                }
            }
        }
    }

    /// Waits for the reader to reach the end of stderr; call once the process has exited.
    pub fn finish(&mut self) {
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }

    /// Every line so far.
    pub fn text(&self) -> String {
        self.lines.lock().expect("log lines").join("\n")
    }
}

pub fn spec(name: &str) -> ModelSpec {
    ModelSpec { name: name.to_string(), ..Default::default() }
}

pub fn shape(dims: &[usize]) -> TensorShapeProto {
    TensorShapeProto {
        dim: dims.iter().map(|&d| tensor_shape_proto::Dim { size: d as i64, name: String::new() }).collect(),
        unknown_rank: false,
    }
}

pub fn float_tensor(dims: &[usize], values: Vec<f32>) -> TensorProto {
    TensorProto { dtype: DataType::DtFloat as i32, tensor_shape: Some(shape(dims)), float_val: values, ..Default::default() }
}

/// Loads a float32 .npy fixture as (dims, values).
pub fn npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let t = Tensor::read_npy(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let dims = t.dims().to_vec();
    let values = t.flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("f32 npy");
    (dims, values)
}

pub fn predict_request(model: &str, input: &str, tensor: TensorProto) -> PredictRequest {
    PredictRequest { model_spec: Some(spec(model)), inputs: [(input.to_string(), tensor)].into_iter().collect(), ..Default::default() }
}

pub fn assert_close(got: &[f32], want: &[f32], atol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let worst = got.iter().zip(want).map(|(g, w)| (g - w).abs()).fold(0f32, f32::max);
    assert!(worst <= atol, "{what}: max |diff| {worst} > {atol}");
}

/// Predicts the `fixtures` golden batch of `batch` images on `model` (latest version, or
/// `version` with the signature named) and checks the answer against onnxruntime's output.
pub async fn check_golden(client: &mut PredictionServiceClient<Channel>, model: &str, fixtures: &str, batch: usize, version: Option<i64>) {
    let (dims, input) = npy(&fixture(&format!("{fixtures}/input_b{batch}.npy")));
    let (out_dims, want) = npy(&fixture(&format!("{fixtures}/output_b{batch}.npy")));
    let mut request = predict_request(model, "image", float_tensor(&dims, input));
    if let Some(v) = version {
        let spec = request.model_spec.as_mut().expect("spec");
        spec.version_choice = Some(VersionChoice::Version(v));
        spec.signature_name = "serving_default".into();
    }
    let response = client.predict(request).await.expect("predict").into_inner();
    let spec = response.model_spec.expect("response model_spec");
    assert_eq!(spec.name, model);
    assert_eq!(spec.signature_name, "serving_default");
    assert_eq!(spec.version_choice, Some(VersionChoice::Version(1)));
    let out = &response.outputs["probabilities"];
    assert_eq!(out.dtype, DataType::DtFloat as i32);
    let got_dims: Vec<usize> = out.tensor_shape.as_ref().expect("shape").dim.iter().map(|d| d.size as usize).collect();
    assert_eq!(got_dims, out_dims);
    assert!(out.tensor_content.is_empty(), "typed fields by default");
    assert_close(&out.float_val, &want, 1e-5, &format!("{model} batch {batch}"));
}

/// A float tensor graph input/output for hand-built ONNX models; `None` dims are dynamic.
pub fn onnx_value(name: &str, dims: &[Option<i64>]) -> candle_serving::proto::onnx::ValueInfoProto {
    use candle_serving::proto::onnx::tensor_shape_proto::{Dimension, dimension};
    use candle_serving::proto::onnx::{TensorShapeProto, TypeProto, ValueInfoProto, type_proto};
    let dim = |d: &Option<i64>| Dimension {
        value: Some(match d {
            Some(n) => dimension::Value::DimValue(*n),
            None => dimension::Value::DimParam("N".into()),
        }),
        ..Default::default()
    };
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: candle_serving::proto::onnx::tensor_proto::DataType::Float as i32,
                shape: Some(TensorShapeProto { dim: dims.iter().map(dim).collect() }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Encodes `graph` as an opset-13 ONNX model file.
pub fn onnx_model_bytes(graph: candle_serving::proto::onnx::GraphProto) -> Vec<u8> {
    use candle_serving::proto::onnx::{ModelProto, OperatorSetIdProto};
    use prost::Message;
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 13 }],
        graph: Some(graph),
        ..Default::default()
    }
    .encode_to_vec()
}

/// The Prometheus text of the server's REST port.
pub async fn scrape(rest_port: u16) -> String {
    reqwest::get(format!("http://127.0.0.1:{rest_port}/metrics")).await.expect("metrics").text().await.expect("metrics body")
}

/// The value of one series, `series` being its name and labels exactly as exposed.
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')).and_then(|v| v.trim().parse().ok()))
}

/// Open file descriptors of a process (sockets included).
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or_else(|e| panic!("read /proc/{pid}/fd: {e}"))
}

/// The Python of the official-client venv (target/pyenv), created or refreshed by
/// tests/python/setup_venv.sh on first use (once per test binary: tests run in parallel).
pub fn venv_python() -> PathBuf {
    static READY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    READY
        .get_or_init(|| {
            let venv = repo_root().join("target/pyenv");
            let status = Command::new("bash")
                .arg(repo_root().join("tests/python/setup_venv.sh"))
                .arg(&venv)
                .status()
                .expect("run setup_venv.sh");
            assert!(status.success(), "setting up the Python venv failed");
            venv.join("bin/python")
        })
        .clone()
}

/// The shipped CNN's model file, which lifecycle tests copy into versions of their own.
pub fn cnn_model() -> PathBuf {
    repo_root().join("models/mnist_cnn/1/model.onnx")
}

/// `<base>/<version>/model.onnx`, a copy of the CNN.
pub fn add_version(base: &Path, version: i64) {
    let dir = base.join(version.to_string());
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::copy(cnn_model(), dir.join("model.onnx")).expect("copy model");
}

/// One entry of a `ModelServerConfig` for a reload request.
pub fn model_config(name: &str, base: &Path) -> candle_serving::proto::tensorflow::serving::ModelConfig {
    candle_serving::proto::tensorflow::serving::ModelConfig {
        name: name.into(),
        base_path: base.display().to_string(),
        model_platform: "onnx".into(),
        ..Default::default()
    }
}
