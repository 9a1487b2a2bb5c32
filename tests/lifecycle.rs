//! Version and config changes while clients send Predict continuously: every test counts the
//! requests and asserts that none failed.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use candle_serving::proto::tensorflow::serving::model_server_config::Config;
use candle_serving::proto::tensorflow::serving::model_spec::VersionChoice;
use candle_serving::proto::tensorflow::serving::model_version_status::State;
use candle_serving::proto::tensorflow::serving::prediction_log::LogType;
use candle_serving::proto::tensorflow::serving::{
    GetModelStatusRequest, ModelConfigList, ModelServerConfig, PredictLog, PredictionLog,
    ReloadConfigRequest,
};
use candle_serving::repository::write_tfrecords;
use common::*;
use prost::Message;
use tonic::Code;


/// Clients sending Predict (latest version) in a loop until stopped; counts outcomes.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// Clients of an ONNX CNN version (output `probabilities`).
    async fn start(server: &Server, model: &str, clients: usize) -> Load {
        Load::start_reading(server, model, "probabilities", clients).await
    }

    /// Clients reading `output`: the shipped SavedModel CNN answers the same as the ONNX one
    /// (same weights) under Keras' export key `output_0`.
    async fn start_reading(server: &Server, model: &str, output: &'static str, clients: usize) -> Load {
        let (dims, input) = npy(&fixture("mnist_cnn/input_b1.npy"));
        let (_, want) = npy(&fixture("mnist_cnn/output_b1.npy"));
        let load = Load {
            stop: Arc::new(AtomicBool::new(false)),
            ok: Arc::new(AtomicU64::new(0)),
            failed: Arc::new(AtomicU64::new(0)),
            tasks: Vec::new(),
        };
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let mut client = server.predict_client().await;
            let (stop, ok, failed) = (Arc::clone(&load.stop), Arc::clone(&load.ok), Arc::clone(&load.failed));
            let request = predict_request(model, "image", float_tensor(&dims, input.clone()));
            let want = want.clone();
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    match client.predict(request.clone()).await {
                        Ok(r) => {
                            assert_close(&r.into_inner().outputs[output].float_val, &want, 1e-5, "prediction during swaps");
                            ok.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(status) => {
                            eprintln!("request failed: {status:?}");
                            failed.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
            }));
        }
        Load { tasks, ..load }
    }

    /// Stops the clients and returns (succeeded, failed).
    async fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::SeqCst);
        for task in self.tasks {
            task.await.expect("client task");
        }
        (self.ok.load(Ordering::SeqCst), self.failed.load(Ordering::SeqCst))
    }
}

async fn states(server: &Server, model: &str) -> Vec<(i64, i32, String)> {
    let mut client = server.model_client().await;
    match client.get_model_status(GetModelStatusRequest { model_spec: Some(spec(model)) }).await {
        Ok(r) => r
            .into_inner()
            .model_version_status
            .into_iter()
            .map(|v| (v.version, v.state, v.status.map(|s| s.error_message).unwrap_or_default()))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Waits until exactly `available` versions are AVAILABLE (and no other version is).
async fn wait_available(server: &Server, model: &str, available: &[i64]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = states(server, model).await;
        let mut serving: Vec<i64> = now.iter().filter(|(_, s, _)| *s == State::Available as i32).map(|(v, ..)| *v).collect();
        serving.sort_unstable();
        let settled = now.iter().all(|(_, s, _)| *s == State::Available as i32 || *s == State::End as i32);
        if serving == available && settled {
            return;
        }
        assert!(Instant::now() < deadline, "{model}: wanted {available:?} AVAILABLE, status is {now:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn twenty_version_swaps_under_load_fail_no_request() {
    let dir = temp_dir("life-swaps");
    let base = dir.join("m");
    add_version(&base, 1);
    let base_arg = format!("--model_base_path={}", base.display());
    let server = Server::start(&["--model_name=m", &base_arg, "--file_system_poll_wait_seconds=0.1"], "m").await;
    let load = Load::start(&server, "m", 4).await;
    for version in 2..=21 {
        add_version(&base, version);
        wait_available(&server, "m", &[version]).await;
    }
    let (ok, failed) = load.finish().await;
    println!("20 swaps: {ok} requests succeeded, {failed} failed");
    assert_eq!(failed, 0, "{failed} of {} requests failed across 20 swaps", ok + failed);
    assert!(ok >= 100, "the load generator ran only {ok} requests");
    std::fs::remove_dir_all(&dir).ok();
}

/// `<base>/<version>/` holding the shipped SavedModel CNN (models/mnist_cnn_savedmodel).
fn add_savedmodel_version(base: &std::path::Path, version: i64) {
    let from = repo_root().join("models/mnist_cnn_savedmodel/1");
    let to = base.join(version.to_string());
    std::fs::create_dir_all(to.join("variables")).expect("mkdir");
    std::fs::copy(from.join("saved_model.pb"), to.join("saved_model.pb")).expect("copy");
    for file in ["variables.index", "variables.data-00000-of-00001"] {
        std::fs::copy(from.join("variables").join(file), to.join("variables").join(file)).expect("copy");
    }
}

#[tokio::test]
async fn twenty_savedmodel_version_swaps_under_load_fail_no_request() {
    let dir = temp_dir("life-swaps-savedmodel");
    let base = dir.join("sm");
    add_savedmodel_version(&base, 1);
    let base_arg = format!("--model_base_path={}", base.display());
    let server = Server::start(&["--model_name=sm", &base_arg, "--file_system_poll_wait_seconds=0.1"], "sm").await;
    let load = Load::start_reading(&server, "sm", "output_0", 4).await;
    for version in 2..=21 {
        add_savedmodel_version(&base, version);
        wait_available(&server, "sm", &[version]).await;
    }
    let (ok, failed) = load.finish().await;
    println!("20 SavedModel swaps: {ok} requests succeeded, {failed} failed");
    assert_eq!(failed, 0, "{failed} of {} requests failed across 20 swaps", ok + failed);
    assert!(ok >= 100, "the load generator ran only {ok} requests");
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn add_remove_and_corrupt_versions_keep_serving() {
    let dir = temp_dir("life-versions");
    let base = dir.join("m");
    add_version(&base, 1);
    let base_arg = format!("--model_base_path={}", base.display());
    let server = Server::start(&["--model_name=m", &base_arg, "--file_system_poll_wait_seconds=0.2"], "m").await;
    let load = Load::start(&server, "m", 3).await;

    add_version(&base, 2);
    wait_available(&server, "m", &[2]).await;
    std::fs::remove_dir_all(base.join("2")).expect("remove v2");
    wait_available(&server, "m", &[1]).await;

    std::fs::create_dir_all(base.join("3")).expect("mkdir");
    let written = Instant::now();
    std::fs::write(base.join("3/model.onnx"), b"this is not an onnx file").expect("write corrupt");
    let error = loop {
        let now = states(&server, "m").await;
        if let Some((_, state, message)) = now.iter().find(|(v, ..)| *v == 3) && *state == State::End as i32 && !message.is_empty() {
            break message.clone();
        }
        assert!(written.elapsed() < Duration::from_secs(10), "corrupt v3 never reported: {now:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    println!("corrupt v3 reported after {:?}: {error}", written.elapsed());
    assert!(error.contains("not a valid ONNX protobuf"), "{error}");
    assert!(written.elapsed() < Duration::from_secs(2), "the error took {:?} to show", written.elapsed());
    wait_available(&server, "m", &[1]).await;

    // Fixing the files is noticed without waiting for the retry interval.
    std::fs::copy(cnn_model(), base.join("3/model.onnx")).expect("fix v3");
    wait_available(&server, "m", &[3]).await;

    let (ok, failed) = load.finish().await;
    println!("add/remove/corrupt: {ok} requests succeeded, {failed} failed");
    assert_eq!(failed, 0);
    assert!(ok > 0);
    std::fs::remove_dir_all(&dir).ok();
}


#[tokio::test]
async fn reload_rpc_adds_and_removes_models() {
    let dir = temp_dir("life-reload");
    add_version(&dir.join("a"), 1);
    add_version(&dir.join("b"), 1);
    let config_file = dir.join("models.config");
    std::fs::write(&config_file, format!("model_config_list {{ config {{ name: 'a' base_path: '{}' }} }}\n", dir.join("a").display())).expect("write");
    let server = Server::start(&[&format!("--model_config_file={}", config_file.display())], "a").await;
    let load = Load::start(&server, "a", 2).await;

    let both = ModelServerConfig {
        config: Some(Config::ModelConfigList(ModelConfigList { config: vec![model_config("a", &dir.join("a")), model_config("b", &dir.join("b"))] })),
    };
    let mut models = server.model_client().await;
    let reply = models.handle_reload_config_request(ReloadConfigRequest { config: Some(both), ..Default::default() }).await.expect("reload");
    assert_eq!(reply.into_inner().status.expect("status").error_code, 0);
    // The RPC answered only after b became available.
    let (dims, input) = npy(&fixture("mnist_cnn/input_b1.npy"));
    let mut client = server.predict_client().await;
    client.predict(predict_request("b", "image", float_tensor(&dims, input.clone()))).await.expect("b is served");

    let (ok, failed) = load.finish().await;
    assert_eq!(failed, 0, "requests to a failed during the reload");
    assert!(ok > 0);

    let only_b = ModelServerConfig { config: Some(Config::ModelConfigList(ModelConfigList { config: vec![model_config("b", &dir.join("b"))] })) };
    models.handle_reload_config_request(ReloadConfigRequest { config: Some(only_b), ..Default::default() }).await.expect("reload");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = client.predict(predict_request("a", "image", float_tensor(&dims, input.clone()))).await;
        match status {
            Err(s) if s.code() == Code::NotFound => break,
            _ => assert!(Instant::now() < deadline, "a is still served after its removal"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    client.predict(predict_request("b", "image", float_tensor(&dims, input.clone()))).await.expect("b still served");

    let missing = ModelServerConfig { config: Some(Config::ModelConfigList(ModelConfigList { config: vec![model_config("c", &dir.join("nope"))] })) };
    let status = models.handle_reload_config_request(ReloadConfigRequest { config: Some(missing), ..Default::default() }).await.expect_err("bad");
    assert!(status.message().contains("did not become available") && status.message().contains("does not exist"), "{}", status.message());
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn config_file_is_polled_and_a_bad_file_keeps_the_old_config() {
    let dir = temp_dir("life-poll");
    add_version(&dir.join("a"), 1);
    add_version(&dir.join("b"), 1);
    let config_file = dir.join("models.config");
    let one = format!("model_config_list {{ config {{ name: 'a' base_path: '{}' }} }}\n", dir.join("a").display());
    std::fs::write(&config_file, &one).expect("write");
    let server = Server::start(
        &[&format!("--model_config_file={}", config_file.display()), "--model_config_file_poll_wait_seconds=0.1"],
        "a",
    )
    .await;
    let load = Load::start(&server, "a", 2).await;
    std::fs::write(&config_file, "model_config_list { config { name: 'a' base_path: \n").expect("write bad");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(states(&server, "a").await.first().map(|s| s.1), Some(State::Available as i32), "old config in force");
    let two = format!("{one}model_config_list {{ config {{ name: 'b' base_path: '{}' }} }}\n", dir.join("b").display());
    let two = two.replace("}\nmodel_config_list {", "");
    std::fs::write(&config_file, two).expect("write two");
    wait_available(&server, "b", &[1]).await;
    let (ok, failed) = load.finish().await;
    assert_eq!(failed, 0);
    assert!(ok > 0);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_bad_config_file_fails_startup_with_line_and_column() {
    let dir = temp_dir("life-badconfig");
    let config_file = dir.join("models.config");
    std::fs::write(&config_file, "model_config_list {\n  config {\n    name: 'a'\n    base_pth: '/x'\n  }\n}\n").expect("write");
    // The binary: the exit code is what is tested.
    let (code, stderr) = run_to_exit(&["--port=0", &format!("--model_config_file={}", config_file.display())], &dir);
    assert_eq!(code, 1);
    assert!(stderr.contains("Error parsing text-format tensorflow.serving.ModelServerConfig"), "{stderr}");
    assert!(stderr.contains("line 4, column 5"), "{stderr}");
}

#[tokio::test]
async fn labels_route_and_specific_and_all_policies_hold() {
    let dir = temp_dir("life-labels");
    for v in [1, 2, 3] {
        add_version(&dir.join("s"), v);
        add_version(&dir.join("all"), v);
    }
    let config_file = dir.join("models.config");
    std::fs::write(
        &config_file,
        format!(
            "model_config_list {{\n config {{ name: 's' base_path: '{}' model_version_policy {{ specific {{ versions: 1 versions: 2 }} }} version_labels {{ key: 'stable' value: 1 }} version_labels {{ key: 'canary' value: 2 }} }}\n config {{ name: 'all' base_path: '{}' model_version_policy {{ all {{}} }} }}\n}}\n",
            dir.join("s").display(),
            dir.join("all").display()
        ),
    )
    .expect("write");
    let server = Server::start(&[&format!("--model_config_file={}", config_file.display())], "s").await;
    wait_available(&server, "s", &[1, 2]).await;
    wait_available(&server, "all", &[1, 2, 3]).await;
    let load = Load::start(&server, "all", 2).await;
    let (dims, input) = npy(&fixture("mnist_cnn/input_b1.npy"));
    let mut client = server.predict_client().await;
    for (choice, served) in [
        (VersionChoice::VersionLabel("stable".into()), 1),
        (VersionChoice::VersionLabel("canary".into()), 2),
        (VersionChoice::Version(1), 1),
    ] {
        let mut request = predict_request("s", "image", float_tensor(&dims, input.clone()));
        request.model_spec.as_mut().expect("spec").version_choice = Some(choice.clone());
        let response = client.predict(request).await.expect("predict").into_inner();
        assert_eq!(response.model_spec.expect("spec").version_choice, Some(VersionChoice::Version(served)), "{choice:?}");
    }
    let latest = client.predict(predict_request("s", "image", float_tensor(&dims, input.clone()))).await.expect("latest");
    assert_eq!(latest.into_inner().model_spec.expect("spec").version_choice, Some(VersionChoice::Version(2)));
    let (ok, failed) = load.finish().await;
    assert_eq!(failed, 0);
    assert!(ok > 0);

    // A label on a version that is not available is refused at config time.
    let bad = dir.join("bad.config");
    std::fs::write(&bad, format!("model_config_list {{ config {{ name: 's' base_path: '{}' version_labels {{ key: 'old' value: 1 }} }} }}\n", dir.join("s").display())).expect("write");
    let (code, stderr) = run_to_exit(&["--port=0", &format!("--model_config_file={}", bad.display())], &dir);
    assert_eq!(code, 1);
    assert!(stderr.contains("Request to assign label old to version 1 of model s, which is not currently available"), "{stderr}");
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn warmup_records_are_replayed_and_a_corrupt_file_fails_the_load() {
    let dir = temp_dir("life-warmup");
    let base = dir.join("w");
    add_version(&base, 1);
    let (dims, input) = npy(&fixture("mnist_cnn/input_b1.npy"));
    let log = PredictionLog {
        log_type: Some(LogType::PredictLog(PredictLog {
            request: Some(predict_request("w", "image", float_tensor(&dims, input))),
            response: None,
        })),
        ..Default::default()
    };
    let record = log.encode_to_vec();
    std::fs::create_dir_all(base.join("1/assets.extra")).expect("mkdir");
    std::fs::write(base.join("1/assets.extra/tf_serving_warmup_requests"), write_tfrecords([record.as_slice(), record.as_slice()])).expect("write");
    let base_arg = format!("--model_base_path={}", base.display());
    let server = Server::start(&["--model_name=w", &base_arg, "--file_system_poll_wait_seconds=0.1"], "w").await;
    let load = Load::start(&server, "w", 2).await;

    add_version(&base, 2);
    std::fs::create_dir_all(base.join("2/assets.extra")).expect("mkdir");
    let mut corrupt = write_tfrecords([record.as_slice()]);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    std::fs::write(base.join("2/assets.extra/tf_serving_warmup_requests"), corrupt).expect("write");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = states(&server, "w").await;
        if let Some((_, _, message)) = now.iter().find(|(v, s, m)| *v == 2 && *s == State::End as i32 && !m.is_empty()) {
            assert!(message.contains("checksum mismatch"), "{message}");
            break;
        }
        assert!(Instant::now() < deadline, "v2 with a corrupt warm-up file: {now:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_available(&server, "w", &[1]).await;
    let (ok, failed) = load.finish().await;
    assert_eq!(failed, 0);
    assert!(ok > 0);
    std::fs::remove_dir_all(&dir).ok();
}

/// TF Serving's warm-up file works in a SavedModel version directory as in an ONNX one: its
/// records run before the version is published, and one the signature refuses fails only that
/// version.
#[tokio::test]
async fn savedmodel_warmup_records_are_replayed_and_a_refused_one_fails_the_load() {
    let dir = temp_dir("life-warmup-savedmodel");
    let base = dir.join("ws");
    add_savedmodel_version(&base, 1);
    let (dims, input) = npy(&fixture("mnist_cnn/input_b1.npy"));
    let log = PredictionLog {
        log_type: Some(LogType::PredictLog(PredictLog {
            request: Some(predict_request("ws", "image", float_tensor(&dims, input))),
            response: None,
        })),
        ..Default::default()
    };
    let record = log.encode_to_vec();
    std::fs::create_dir_all(base.join("1/assets.extra")).expect("mkdir");
    std::fs::write(base.join("1/assets.extra/tf_serving_warmup_requests"), write_tfrecords([record.as_slice(), record.as_slice()])).expect("write");
    let base_arg = format!("--model_base_path={}", base.display());
    let server = Server::start(&["--model_name=ws", &base_arg, "--file_system_poll_wait_seconds=0.1"], "ws").await;
    let load = Load::start_reading(&server, "ws", "output_0", 2).await;

    // A warm-up request the signature refuses fails the version, naming why.
    add_savedmodel_version(&base, 2);
    std::fs::create_dir_all(base.join("2/assets.extra")).expect("mkdir");
    let bad = PredictionLog {
        log_type: Some(LogType::PredictLog(PredictLog { request: Some(predict_request("ws", "pixels", float_tensor(&[1, 2], vec![0.0, 1.0]))), response: None })),
        ..Default::default()
    };
    std::fs::write(base.join("2/assets.extra/tf_serving_warmup_requests"), write_tfrecords([bad.encode_to_vec().as_slice()])).expect("write");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = states(&server, "ws").await;
        if let Some((_, _, message)) = now.iter().find(|(v, s, m)| *v == 2 && *s == State::End as i32 && !m.is_empty()) {
            assert!(message.contains("pixels") && message.contains("image"), "{message}");
            break;
        }
        assert!(Instant::now() < deadline, "v2 with a refused warm-up request: {now:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_available(&server, "ws", &[1]).await;
    let (ok, failed) = load.finish().await;
    assert_eq!(failed, 0);
    assert!(ok > 0);
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn failed_loads_are_retried_as_configured() {
    let dir = temp_dir("life-retry");
    let base = dir.join("r");
    add_version(&base, 1);
    let (server, rest) = Server::start_with_rest(
        &[
            "--model_name=r",
            &format!("--model_base_path={}", base.display()),
            "--file_system_poll_wait_seconds=0.05",
            "--max_num_load_retries=2",
            "--load_retry_interval_micros=100000",
        ],
        "r",
    )
    .await;
    let load = Load::start(&server, "r", 2).await;
    std::fs::create_dir_all(base.join("2")).expect("mkdir");
    std::fs::write(base.join("2/model.onnx"), b"corrupt").expect("write");
    let path = base.join("2").display().to_string();
    let series = format!(":tensorflow:cc:saved_model:load_attempt_count{{model_path=\"{path}\",status=\"fail\"}}");
    let attempts = || async { metric_value(&scrape(rest).await, &series).unwrap_or(0.0) };
    let deadline = Instant::now() + Duration::from_secs(20);
    while attempts().await < 3.0 {
        assert!(Instant::now() < deadline, "expected 1 attempt + 2 retries");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(attempts().await, 3.0, "no attempts beyond --max_num_load_retries");
    wait_available(&server, "r", &[1]).await;
    let (ok, failed) = load.finish().await;
    assert_eq!(failed, 0);
    assert!(ok > 0);
    std::fs::remove_dir_all(&dir).ok();
}

#[cfg(unix)]
#[tokio::test]
async fn versions_linking_outside_the_base_path_fail_and_the_others_serve() {
    let dir = temp_dir("life-escape");
    let base = dir.join("e");
    add_version(&base, 1);
    add_version(&dir, 7); // a model outside the base path, at <dir>/7
    std::os::unix::fs::symlink(dir.join("7"), base.join("2")).expect("version directory link");
    std::fs::create_dir_all(base.join("3")).expect("mkdir");
    std::os::unix::fs::symlink(dir.join("7/model.onnx"), base.join("3/model.onnx")).expect("model file link");
    let config_file = dir.join("models.config");
    let config = format!("model_config_list {{ config {{ name: 'e' base_path: '{}' model_version_policy {{ all {{}} }} }} }}\n", base.display());
    std::fs::write(&config_file, config).expect("write");
    let server = Server::start(&[&format!("--model_config_file={}", config_file.display())], "e").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let refused = loop {
        let now = states(&server, "e").await;
        let ended: Vec<_> = now.iter().filter(|(v, s, m)| *v != 1 && *s == State::End as i32 && !m.is_empty()).cloned().collect();
        if ended.len() == 2 {
            break ended;
        }
        assert!(Instant::now() < deadline, "versions 2 and 3 should fail: {now:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    for (version, _, message) in refused {
        let named = if version == 2 { base.join("2") } else { base.join("3/model.onnx") };
        assert!(message.contains(&format!("{} resolves to", named.display())), "{message}");
        assert!(message.contains("outside the model base path"), "{message}");
    }
    wait_available(&server, "e", &[1]).await;
    std::fs::remove_dir_all(&dir).ok();
}
