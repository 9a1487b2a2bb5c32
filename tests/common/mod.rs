//! Shared harness: start the real `candle-serving` binary on a free loopback port and talk to
//! it with a tonic client generated from proto/.
#![allow(dead_code, unreachable_pub)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use candle_core::Tensor;
use candle_serving::proto::tensorflow::serving::model_service_client::ModelServiceClient;
use candle_serving::proto::tensorflow::serving::prediction_service_client::PredictionServiceClient;
use candle_serving::proto::tensorflow::serving::model_version_status::State;
use candle_serving::proto::tensorflow::serving::{GetModelStatusRequest, ModelSpec, PredictRequest};
use candle_serving::proto::tensorflow::{DataType, TensorProto, TensorShapeProto, tensor_shape_proto};
use tonic::transport::Channel;

pub const BIN: &str = env!("CARGO_BIN_EXE_candle-serving");

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(path: &str) -> PathBuf {
    repo_root().join("tests/fixtures").join(path)
}

/// A free TCP port on loopback (bound and released; the kernel does not hand it out again soon).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// A running server process, killed when dropped.
pub struct Server {
    child: Child,
    pub port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts the binary with `args` plus `--port=<free>` and waits until `model` is AVAILABLE.
    pub async fn start(args: &[&str], model: &str) -> Server {
        let port = free_port();
        let mut cmd = Command::new(BIN);
        cmd.args(args).arg(format!("--port={port}")).current_dir(repo_root()).stdout(Stdio::null()).stderr(Stdio::inherit());
        let child = cmd.spawn().expect("spawn candle-serving");
        let mut server = Server { child, port };
        server.wait_available(model).await;
        server
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Waits until `model` has an AVAILABLE version (models load one after another, so a test
    /// that uses several waits for each).
    pub async fn wait_available(&mut self, model: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("server exited during startup with {status}");
            }
            if let Ok(channel) = Channel::from_shared(self.url()).expect("url").connect().await {
                let mut client = ModelServiceClient::new(channel);
                let request = GetModelStatusRequest { model_spec: Some(spec(model)) };
                let available = client.get_model_status(request).await.is_ok_and(|r| {
                    r.into_inner().model_version_status.iter().any(|v| v.state == State::Available as i32)
                });
                if available {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "server did not become ready within 60s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The server process id, to read its descriptors and memory from /proc.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub async fn predict_client(&self) -> PredictionServiceClient<Channel> {
        PredictionServiceClient::connect(self.url()).await.expect("connect")
    }

    pub async fn model_client(&self) -> ModelServiceClient<Channel> {
        ModelServiceClient::connect(self.url()).await.expect("connect")
    }
}

/// Runs the binary to completion (for start-up failures) and returns (exit code, stderr).
pub fn run_to_exit(args: &[&str], cwd: &Path) -> (i32, String) {
    let out = Command::new(BIN).args(args).current_dir(cwd).output().expect("run candle-serving");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
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

impl Server {
    /// Starts the binary like [`Server::start`] with the REST API on another free port, which
    /// it returns with the server.
    pub async fn start_with_rest(args: &[&str], model: &str) -> (Server, u16) {
        let rest_port = free_port();
        let flag = format!("--rest_api_port={rest_port}");
        let mut all: Vec<&str> = args.to_vec();
        all.push(&flag);
        (Server::start(&all, model).await, rest_port)
    }
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
