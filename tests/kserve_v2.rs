//! KServe v2 / Open Inference Protocol with NVIDIA's official Triton client (tritonclient)
//! against the real binary serving the three shipped models: gRPC `inference.GRPCInferenceService`
//! on the gRPC port, `/v2` on the REST port (tests/python/kserve_v2.py does the talking).
//!
//! tritonclient needs protobuf 6, which cannot share the TF Serving client's venv (target/pyenv,
//! protobuf 3.20), so it has its own: target/triton-venv, made on first run by
//! tests/python/setup_venv.sh from tests/python/triton_requirements.txt.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::*;
use tonic_health::pb::health_check_response::ServingStatus;

const MODELS: [&str; 3] = ["mnist_cnn", "mnist_gru", "mnist_lstm"];

/// The Python of target/triton-venv, created or refreshed once per test binary (the tests in
/// it run in parallel and must not install into the same venv at once).
fn triton_venv_python() -> PathBuf {
    static READY: OnceLock<PathBuf> = OnceLock::new();
    READY
        .get_or_init(|| {
            let venv = repo_root().join("target/triton-venv");
            let status = Command::new("bash")
                .arg(repo_root().join("tests/python/setup_venv.sh"))
                .arg(&venv)
                .arg(repo_root().join("tests/python/triton_requirements.txt"))
                .status()
                .expect("run setup_venv.sh");
            assert!(status.success(), "setting up the tritonclient venv failed");
            venv.join("bin/python")
        })
        .clone()
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

/// Runs kserve_v2.py against `server` with `extra` flags; it must end with "N passed, 0 failed".
fn run_client(server: &BinaryServer, extra: &[&str]) {
    let rest = server.rest.expect("REST port");
    let output = Command::new(triton_venv_python())
        .arg(repo_root().join("tests/python/kserve_v2.py"))
        .args(["--grpc", &format!("127.0.0.1:{}", server.port), "--http", &format!("127.0.0.1:{rest}")])
        .args(["--models", &MODELS.join(",")])
        .arg("--fixtures")
        .arg(repo_root().join("tests/fixtures"))
        .args(extra)
        .output()
        .expect("run kserve_v2.py");
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "kserve_v2.py failed:\n{stdout}");
    assert!(stdout.lines().last().is_some_and(|l| l.ends_with(" passed, 0 failed")), "{stdout}");
}

/// Health, metadata, inference over gRPC (raw and typed contents) and REST (binary tensor data,
/// flat and nested JSON) against the goldens for every model, and the protocol's error codes.
/// The server is started as the README does it: no model flags, every model under ./models.
#[tokio::test]
async fn tritonclient_grpc_and_http_get_golden_outputs() {
    let server = start(|| BinaryServer::command(&[])).await;
    // Kubernetes' gRPC probes and grpc-health-probe name the service they check. Readiness is
    // published a moment after the models load, hence the wait.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let health = grpc_health(server.port, "inference.GRPCInferenceService").await;
        if health == Ok(ServingStatus::Serving) {
            break;
        }
        assert!(Instant::now() < deadline, "grpc.health.v1 for inference.GRPCInferenceService: {health:?}, want SERVING");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    run_client(&server, &[]);
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
    run_client(&server, &["--repository"]);
    assert!(server.try_wait().is_none(), "the server exited:\n{}", server.logs());
    drop(server);
    let _ = std::fs::remove_dir_all(&root);
}
