//! KServe v2 / Open Inference Protocol with NVIDIA's official Triton client (tritonclient) and
//! with the `kserve` Python SDK's own v2 clients against the real binary serving the three
//! shipped models: gRPC `inference.GRPCInferenceService` on the gRPC port, `/v2` on the REST port
//! (tests/python/kserve_v2.py and tests/python/kserve_sdk_v2.py do the talking).
//!
//! Both clients need protobuf 6, which cannot share the TF Serving client's venv (target/pyenv,
//! protobuf 3.20), and their pins differ, so each has its own: target/triton-venv and
//! target/kserve-venv, made on first run by tests/python/setup_venv.sh from
//! tests/python/triton_requirements.txt and tests/python/kserve_requirements.txt.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::*;
use tonic_health::pb::health_check_response::ServingStatus;

const MODELS: [&str; 3] = ["mnist_cnn", "mnist_gru", "mnist_lstm"];

/// Creates or refreshes target/<venv> from tests/python/<requirements>; returns its Python.
fn setup_venv(venv: &str, requirements: &str) -> PathBuf {
    let venv = repo_root().join("target").join(venv);
    let status = Command::new("bash")
        .arg(repo_root().join("tests/python/setup_venv.sh"))
        .arg(&venv)
        .arg(repo_root().join("tests/python").join(requirements))
        .status()
        .expect("run setup_venv.sh");
    assert!(status.success(), "setting up {} from {requirements} failed", venv.display());
    venv.join("bin/python")
}

/// The Python of target/triton-venv, created or refreshed once per test binary (the tests in
/// it run in parallel and must not install into the same venv at once).
fn triton_venv_python() -> PathBuf {
    static READY: OnceLock<PathBuf> = OnceLock::new();
    READY.get_or_init(|| setup_venv("triton-venv", "triton_requirements.txt")).clone()
}

/// The Python of target/kserve-venv (the `kserve` SDK), created or refreshed once per test
/// binary, as [`triton_venv_python`].
fn kserve_venv_python() -> PathBuf {
    static READY: OnceLock<PathBuf> = OnceLock::new();
    READY.get_or_init(|| setup_venv("kserve-venv", "kserve_requirements.txt")).clone()
}

/// Starts the binary as `command` builds it, with REST on, and waits for all three models.
async fn start(command: impl Fn() -> Command) -> BinaryServer {
    let mut server = BinaryServer::spawn(command, true);
    for model in MODELS {
        server.wait_available(model).await;
    }
    server
}

/// `<root>/models/<model>/1/model.onnx` for the shipped models: a repository of the test's own,
/// so that unloading there cannot touch what other tests serve.
fn copy_models(root: &Path) {
    for model in MODELS {
        let dir = root.join("models").join(model).join("1");
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::copy(repo_root().join("models").join(model).join("1/model.onnx"), dir.join("model.onnx")).expect("copy model");
    }
}

/// Waits until the server reports ready: Kubernetes' gRPC probes and grpc-health-probe name
/// the service they check, and readiness is published a moment after the models load.
async fn wait_ready(server: &BinaryServer) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let health = grpc_health(server.port, "inference.GRPCInferenceService").await;
        if health == Ok(ServingStatus::Serving) {
            break;
        }
        assert!(Instant::now() < deadline, "grpc.health.v1 for inference.GRPCInferenceService: {health:?}, want SERVING");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs tests/python/`script` with `python` against `server` with `extra` flags; it must end
/// with "N passed, 0 failed".
fn run_client(python: PathBuf, script: &str, server: &BinaryServer, extra: &[&str]) {
    let rest = server.rest.expect("REST port");
    let output = Command::new(python)
        .arg(repo_root().join("tests/python").join(script))
        .args(["--grpc", &format!("127.0.0.1:{}", server.port), "--http", &format!("127.0.0.1:{rest}")])
        .args(["--models", &MODELS.join(",")])
        .arg("--fixtures")
        .arg(repo_root().join("tests/fixtures"))
        .args(extra)
        .output()
        .unwrap_or_else(|e| panic!("run {script}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{script} failed:\n{stdout}");
    assert!(stdout.lines().last().is_some_and(|l| l.ends_with(" passed, 0 failed")), "{stdout}");
}

/// Health, metadata, inference over gRPC (raw and typed contents) and REST (binary tensor data,
/// flat and nested JSON) against the goldens for every model, and the protocol's error codes.
/// The server is started as the README does it: no model flags, every model under ./models.
#[tokio::test]
async fn tritonclient_grpc_and_http_get_golden_outputs() {
    let server = start(|| BinaryServer::command(&[])).await;
    wait_ready(&server).await;
    run_client(triton_venv_python(), "kserve_v2.py", &server, &[]);
}

/// The `kserve` Python SDK's own v2 clients (InferenceRESTClient, InferenceGRPCClient; the SDK
/// pulls in no deep-learning framework): server live and ready, every model ready, mnist_cnn's
/// metadata, inference at batch 1 and 16 against the goldens with binary and JSON tensors over
/// REST and raw and typed contents over gRPC, and an unknown model refused by name. The server is
/// started as the README does it.
#[tokio::test]
async fn kserve_sdk_v2_client_gets_golden_outputs() {
    let server = start(|| BinaryServer::command(&[])).await;
    wait_ready(&server).await;
    run_client(kserve_venv_python(), "kserve_sdk_v2.py", &server, &[]);
}

/// The model repository extension: index, unload and load over gRPC and REST while continuous
/// traffic on another model sees no failure, and requests racing an unload of their own model
/// either finish or are refused cleanly.
#[tokio::test]
async fn repository_unload_and_load_under_traffic() {
    let root = temp_dir("kserve-v2-repository");
    copy_models(&root);
    let cwd = root.clone();
    let mut server = start(move || {
        let mut cmd = Command::new(BIN);
        cmd.current_dir(&cwd);
        cmd
    })
    .await;
    run_client(triton_venv_python(), "kserve_v2.py", &server, &["--repository"]);
    assert!(server.try_wait().is_none(), "the server exited:\n{}", server.logs());
    drop(server);
    let _ = std::fs::remove_dir_all(&root);
}
