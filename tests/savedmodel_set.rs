//! The SavedModel test set (models/make_savedmodels.py: tf.keras 2.15 and Keras 3 exports, a
//! tf.Module with two signatures, a TF1 SavedModelBuilder graph, and the shipped
//! models/mnist_cnn_savedmodel) served by the real binary and checked with the official TF
//! Serving Python client against TensorFlow's own answers, over gRPC and REST, with metadata
//! compared to what TensorFlow reads from each file.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;

/// Model name and its base path (the folder holding version 1).
fn set() -> Vec<(&'static str, PathBuf)> {
    let fixtures = repo_root().join("tests/fixtures/savedmodel/set");
    vec![
        ("mnist_cnn_savedmodel", repo_root().join("models/mnist_cnn_savedmodel")),
        ("keras3_cnn", fixtures.join("keras3_cnn")),
        ("module_two_signatures", fixtures.join("module_two_signatures")),
        ("module_slicing", fixtures.join("module_slicing")),
        ("channels_first", fixtures.join("channels_first")),
        ("tf1_graph", fixtures.join("tf1_graph")),
        ("half_plus_two", fixtures.join("half_plus_two")),
        ("keras2_lstm", fixtures.join("keras2_lstm")),
        ("keras2_gru", fixtures.join("keras2_gru")),
        ("keras3_lstm", fixtures.join("keras3_lstm")),
        ("keras3_gru", fixtures.join("keras3_gru")),
        ("keras2_layers", fixtures.join("keras2_layers")),
        ("keras3_layers", fixtures.join("keras3_layers")),
    ]
}

fn model_config(models: &[(&str, PathBuf)]) -> PathBuf {
    let dir = temp_dir("savedmodel-set");
    let entries: String = models
        .iter()
        .map(|(name, base)| format!("  config {{ name: \"{name}\" base_path: \"{}\" model_platform: \"tensorflow\" }}\n", base.display()))
        .collect();
    let path = dir.join("models.config");
    std::fs::write(&path, format!("model_config_list {{\n{entries}}}\n")).expect("write config");
    path
}

#[tokio::test]
async fn every_savedmodel_answers_as_tensorflow_through_the_official_client() {
    let models = set();
    let config = model_config(&models);
    let config_flag = format!("--model_config_file={}", config.display());
    let python = venv_python();
    let (mut server, rest) = BinaryServer::start_with_rest(&[&config_flag], models[0].0).await;
    for (name, _) in &models[1..] {
        server.wait_available(name).await;
    }
    let mut command = Command::new(python);
    command
        .arg(repo_root().join("tests/python/savedmodel_client.py"))
        .args(["--target", &format!("127.0.0.1:{}", server.port), "--rest", &format!("http://127.0.0.1:{rest}")])
        .arg("--goldens")
        .arg(repo_root().join("tests/fixtures/savedmodel/goldens"));
    for (name, base) in &models {
        command.arg("--model").arg(format!("{name}={}", base.join("1").display()));
    }
    let output = command.output().expect("run savedmodel_client.py");
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "savedmodel_client.py failed:\n{stdout}\nserver log:\n{}", server.logs());
    assert!(stdout.lines().last().is_some_and(|l| l.ends_with("passed, 0 failed")), "{stdout}");
}
