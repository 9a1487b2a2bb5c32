//! The official TF Serving Python client (tensorflow-serving-api + tf.make_tensor_proto)
//! against the server. The venv is created on first run by tests/python/setup_venv.sh.

mod common;

use std::process::Command;

use common::*;

async fn run_interop(server_args: &[&str], model: &str, fixtures: &str) {
    let python = venv_python();
    let server = Server::start(server_args, model).await;
    let output = Command::new(python)
        .arg(repo_root().join("tests/python/interop.py"))
        .args(["--target", &format!("127.0.0.1:{}", server.port), "--model", model])
        .arg("--fixtures")
        .arg(fixture(fixtures))
        .output()
        .expect("run interop.py");
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "interop.py failed:\n{stdout}");
    assert!(stdout.lines().last().is_some_and(|l| l.ends_with("passed, 0 failed")), "{stdout}");
}

#[tokio::test]
async fn official_python_client_gets_golden_predictions() {
    run_interop(&[], "mnist_cnn", "mnist_cnn").await;
}
