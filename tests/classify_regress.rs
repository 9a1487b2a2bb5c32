//! Classify, Regress and MultiInference on TF Serving's half_plus_two (rebuilt by
//! models/make_savedmodels.py): the official Python client and REST get the answers TF
//! Serving's own test suite expects, every error gets its code and message, the example-count
//! metrics count, and warm-up replays Classify, Regress and MultiInference records.

mod common;

use std::process::Command;

use candle_serving::proto::tensorflow::serving::prediction_log::LogType;
use candle_serving::proto::tensorflow::serving::{
    ClassificationRequest, ClassifyLog, ExampleList, InferenceTask, Input, MultiInferenceLog, MultiInferenceRequest, PredictionLog, RegressLog,
    RegressionRequest, input,
};
use candle_serving::proto::tensorflow::{Example, Feature, Features, FloatList, feature};
use candle_serving::repository::write_tfrecords;
use common::*;
use prost::Message;

fn base() -> std::path::PathBuf {
    repo_root().join("tests/fixtures/savedmodel/set/half_plus_two")
}

#[tokio::test]
async fn the_official_client_gets_tf_servings_answers_and_errors() {
    let models = temp_dir("classify-regress");
    let config = models.join("models.config");
    std::fs::write(
        &config,
        format!(
            "model_config_list {{\n  config {{ name: \"half_plus_two\" base_path: \"{}\" model_platform: \"tensorflow\" }}\n  config {{ name: \"mnist_cnn\" base_path: \"{}\" model_platform: \"onnx\" }}\n}}\n",
            base().display(),
            repo_root().join("models/mnist_cnn").display()
        ),
    )
    .expect("config");
    let config_flag = format!("--model_config_file={}", config.display());
    let python = venv_python();
    let (mut server, rest) = BinaryServer::start_with_rest(&[&config_flag], "half_plus_two").await;
    server.wait_available("mnist_cnn").await;
    let output = Command::new(python)
        .arg(repo_root().join("tests/python/classify_regress.py"))
        .args(["--target", &format!("127.0.0.1:{}", server.port), "--rest", &format!("http://127.0.0.1:{rest}")])
        .args(["--model", "half_plus_two", "--other", "mnist_cnn"])
        .output()
        .expect("run classify_regress.py");
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "classify_regress.py failed:\n{stdout}\nserver log:\n{}", server.logs());
    assert!(stdout.lines().last().is_some_and(|l| l.ends_with("passed, 0 failed")), "{stdout}");

    // TF Serving's names: Classify and Regress under request_count, examples counted.
    let text = scrape(rest).await;
    let examples = metric_value(&text, r#":tensorflow:serving:request_example_count_total{model="half_plus_two"}"#).expect("example count");
    assert!(examples >= 10.0, "{examples} examples counted");
    for api in ["Classify", "Regress", "MultiInference"] {
        let series = format!(r#":tensorflow:serving:request_latency_count{{API="{api}",entrypoint="GRPC",model_name="half_plus_two"}}"#);
        assert!(metric_value(&text, &series).is_some_and(|n| n >= 1.0), "{series} missing from\n{text}");
    }
    std::fs::remove_dir_all(&models).ok();
}

fn examples(x: &[f32]) -> Option<Input> {
    let example = |v: f32| Example {
        features: Some(Features {
            feature: [("x".to_string(), Feature { kind: Some(feature::Kind::FloatList(FloatList { value: vec![v] })) })].into_iter().collect(),
        }),
    };
    Some(Input { kind: Some(input::Kind::ExampleList(ExampleList { examples: x.iter().map(|&v| example(v)).collect() })) })
}

fn with_signature(name: &str) -> Option<candle_serving::proto::tensorflow::serving::ModelSpec> {
    Some(candle_serving::proto::tensorflow::serving::ModelSpec { signature_name: name.into(), ..spec("hp") })
}

/// Warm-up replays Classify, Regress and MultiInference records before the version is
/// published; one that its signature refuses fails the version, naming why.
#[tokio::test]
async fn warmup_replays_classify_regress_and_multi_inference_records() {
    let dir = temp_dir("classify-warmup");
    let version = dir.join("hp/1");
    std::fs::create_dir_all(version.join("variables")).expect("mkdir");
    std::fs::copy(base().join("1/saved_model.pb"), version.join("saved_model.pb")).expect("copy");
    for file in ["variables.index", "variables.data-00000-of-00001"] {
        std::fs::copy(base().join("1/variables").join(file), version.join("variables").join(file)).expect("copy");
    }
    let log = |log_type| PredictionLog { log_type: Some(log_type), ..Default::default() }.encode_to_vec();
    let classify = log(LogType::ClassifyLog(ClassifyLog {
        request: Some(ClassificationRequest { model_spec: with_signature("classify_x_to_y"), input: examples(&[2.0]) }),
        response: None,
    }));
    let regress = log(LogType::RegressLog(RegressLog {
        request: Some(RegressionRequest { model_spec: with_signature("regress_x_to_y"), input: examples(&[2.0, 3.0]) }),
        response: None,
    }));
    let multi = log(LogType::MultiInferenceLog(MultiInferenceLog {
        request: Some(MultiInferenceRequest {
            tasks: vec![InferenceTask { model_spec: with_signature("regress_x_to_y2"), method_name: "tensorflow/serving/regress".into() }],
            input: examples(&[1.0]),
        }),
        response: None,
    }));
    std::fs::create_dir_all(version.join("assets.extra")).expect("mkdir");
    let warmup = version.join("assets.extra/tf_serving_warmup_requests");
    std::fs::write(&warmup, write_tfrecords([classify.as_slice(), regress.as_slice(), multi.as_slice()])).expect("write");
    let base_flag = format!("--model_base_path={}", dir.join("hp").display());
    let server = Server::start(&["--model_name=hp", &base_flag], "hp").await;
    drop(server);

    // A Regress record on the predict signature fails the load with TF's method message.
    let refused = log(LogType::RegressLog(RegressLog {
        request: Some(RegressionRequest { model_spec: with_signature("serving_default"), input: examples(&[2.0]) }),
        response: None,
    }));
    std::fs::write(&warmup, write_tfrecords([refused.as_slice()])).expect("write");
    let status = std::process::Command::new(BIN).args(["--port=0", "--rest_api_port=0", "--model_name=hp", &base_flag]).output().expect("run");
    let logs = String::from_utf8_lossy(&status.stderr);
    assert!(!status.status.success(), "{logs}");
    assert!(logs.contains("Expected regression signature method_name to be tensorflow/serving/regress. Was: tensorflow/serving/predict"), "{logs}");
    std::fs::remove_dir_all(&dir).ok();
}
