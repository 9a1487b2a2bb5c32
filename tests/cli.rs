//! Start-up behaviour of the binary: flags, the model layout, and load failures. Exit codes,
//! --help and the working directory belong to the process, so those tests run the binary.

mod common;

use std::path::Path;

use candle_serving::proto::onnx::{GraphProto, NodeProto};
use common::*;

fn node(op: &str, name: &str, input: &str, output: &str) -> NodeProto {
    NodeProto { op_type: op.into(), name: name.into(), input: vec![input.into()], output: vec![output.into()], ..Default::default() }
}

/// A model whose graph uses two operators the engine does not have, twice each.
fn write_unsupported_model(dir: &Path) {
    let graph = GraphProto {
        name: "g".into(),
        node: vec![
            node("Relu", "relu_ok", "x", "a"),
            node("Frobnicate", "frob_1", "a", "b"),
            node("HardMax9", "hm", "b", "c"),
            node("Frobnicate", "frob_2", "c", "y"),
        ],
        input: vec![onnx_value("x", &[None, Some(4)])],
        output: vec![onnx_value("y", &[None, Some(4)])],
        ..Default::default()
    };
    std::fs::create_dir_all(dir.join("1")).expect("mkdir");
    std::fs::write(dir.join("1/model.onnx"), onnx_model_bytes(graph)).expect("write model");
}

#[test]
fn unknown_flags_exit_with_code_2_and_say_why() {
    let (code, stderr) = run_to_exit(&["--no_such_flag=3"], &repo_root());
    assert_eq!(code, 2);
    assert!(stderr.contains("unknown flag --no_such_flag"), "{stderr}");
    let (code, stderr) = run_to_exit(&["--port", "eighty"], &repo_root());
    assert_eq!(code, 2);
    assert!(stderr.contains("--port") && stderr.contains("eighty"), "{stderr}");
}

#[test]
fn help_lists_tf_serving_flags() {
    let out = std::process::Command::new(BIN).arg("--help").output().expect("run");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in ["--port", "--rest_api_port", "--model_name", "--model_base_path"] {
        assert!(text.contains(flag), "{flag} missing from --help");
    }
}

#[test]
fn a_missing_or_empty_base_path_is_a_startup_error_naming_it() {
    let dir = temp_dir("layout");
    let missing = dir.join("does-not-exist");
    let (code, stderr) = run_to_exit(&["--port=0", "--model_name=m", &format!("--model_base_path={}", missing.display())], &dir);
    assert_eq!(code, 1);
    assert!(stderr.contains(&format!("model base path {} does not exist", missing.display())), "{stderr}");

    let empty = dir.join("empty");
    std::fs::create_dir_all(empty.join("not-a-version")).expect("mkdir");
    let (code, stderr) = run_to_exit(&["--port=0", "--model_name=m", &format!("--model_base_path={}", empty.display())], &dir);
    assert_eq!(code, 1);
    assert!(stderr.contains(&format!("no versions of the model found under {}", empty.display())), "{stderr}");
}

#[test]
fn unsupported_operators_are_all_listed_in_one_error() {
    let dir = temp_dir("unsupported");
    write_unsupported_model(&dir.join("weird"));
    let (code, stderr) = run_to_exit(&["--port=0", "--model_name=weird", &format!("--model_base_path={}", dir.join("weird").display())], &dir);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("unsupported ONNX operators: Frobnicate (nodes 'frob_1', 'frob_2'); HardMax9 (nodes 'hm')"),
        "{stderr}"
    );
    assert!(stderr.contains("1 model(s) did not become available"), "{stderr}");
}

/// The binary: models/ is found relative to the working directory, which is per process.
#[tokio::test]
async fn without_model_flags_every_model_directory_is_served() {
    let dir = temp_dir("discover");
    let models = dir.join("models");
    for (name, source) in [("a", repo_root().join("models/mnist_cnn/1")), ("b", fixture("mnist_cnn_nchw/1"))] {
        std::fs::create_dir_all(models.join(name).join("3")).expect("mkdir");
        std::fs::copy(source.join("model.onnx"), models.join(name).join("3/model.onnx")).expect("copy");
    }
    std::fs::create_dir_all(models.join("notes")).expect("mkdir");
    let mut server = BinaryServer::spawn(
        || {
            let mut cmd = std::process::Command::new(BIN);
            cmd.current_dir(&dir);
            cmd
        },
        false,
    );
    let mut served = Vec::new();
    for name in ["a", "b"] {
        server.wait_available(name).await;
        let request = candle_serving::proto::tensorflow::serving::GetModelStatusRequest { model_spec: Some(spec(name)) };
        let status = server.model_client().await.get_model_status(request).await.expect("status").into_inner();
        served.push((name, status.model_version_status[0].version));
    }
    assert_eq!(served, vec![("a", 3), ("b", 3)]);
}

/// A version whose graph has unsupported operators fails on its own: END with the one error
/// listing every operator, while the version before it and every other model keep answering.
#[tokio::test]
async fn a_version_with_unsupported_operators_fails_alone_and_everything_else_keeps_serving() {
    use candle_serving::proto::tensorflow::serving::GetModelStatusRequest;
    use candle_serving::proto::tensorflow::serving::model_spec::VersionChoice;
    use candle_serving::proto::tensorflow::serving::model_version_status::State;

    let dir = temp_dir("unsupported-live");
    let base = dir.join("m");
    std::fs::create_dir_all(base.join("1")).expect("mkdir");
    std::fs::copy(repo_root().join("models/mnist_cnn/1/model.onnx"), base.join("1/model.onnx")).expect("copy");
    let base_arg = format!("--model_base_path={}", base.display());
    let server = Server::start(&["--model_name=m", &base_arg, "--file_system_poll_wait_seconds=0.1"], "m").await;

    // version 2 arrives with the unsupported graph
    let staging = dir.join("staging");
    write_unsupported_model(&staging);
    std::fs::rename(staging.join("1"), base.join("2")).expect("publish v2");

    let mut status = server.model_client().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let message = loop {
        let versions = status
            .get_model_status(GetModelStatusRequest { model_spec: Some(spec("m")) })
            .await
            .expect("status")
            .into_inner()
            .model_version_status;
        let v2 = versions.iter().find(|v| v.version == 2 && v.state == State::End as i32);
        if let Some(message) = v2.and_then(|v| v.status.as_ref()).map(|s| s.error_message.clone()).filter(|m| !m.is_empty()) {
            let v1 = versions.iter().find(|v| v.version == 1).expect("v1 listed");
            assert_eq!(v1.state, State::Available as i32, "v1 must stay AVAILABLE: {versions:?}");
            break message;
        }
        assert!(std::time::Instant::now() < deadline, "v2 never failed: {versions:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(
        message.contains("unsupported ONNX operators: Frobnicate (nodes 'frob_1', 'frob_2'); HardMax9 (nodes 'hm')"),
        "{message}"
    );

    // the model still answers, from version 1, with the right numbers
    let (dims, input) = npy(&fixture("mnist_cnn/input_b1.npy"));
    let (_, expected) = npy(&fixture("mnist_cnn/output_b1.npy"));
    let response = server
        .predict_client()
        .await
        .predict(predict_request("m", "image", float_tensor(&dims, input)))
        .await
        .expect("predict after the failed load")
        .into_inner();
    assert_eq!(response.model_spec.and_then(|s| s.version_choice), Some(VersionChoice::Version(1)));
    let got = &response.outputs["probabilities"].float_val;
    assert_close(got, &expected, 1e-5, "v1 after v2 failed");
    std::fs::remove_dir_all(&dir).ok();
}
