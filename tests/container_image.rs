//! The CPU image, built from `Dockerfile` with podman and run the way the README says. The
//! commands come from the README's "Build and run the image" block, so the documentation is
//! what is tested:
//!   tests/container/build_image.sh TAG   -> run with this test's own tag and --check-cuda;
//!   export CONTAINERS_CONF=...           -> set for every podman command here;
//!   podman run ... TAG                   -> run detached under a unique name, without --rm (the
//!                                          exit code is read after stop), with the loopback host
//!                                          ports left to podman and read back with `podman port`.
//! Then: the container runs as UID 65532 on a read-only root, answers gRPC health and REST
//! readiness, matches the onnxruntime goldens, and drains in-flight requests on `podman stop`
//! (SIGTERM), exiting 0 inside the grace period; the image is at most 40 MB.
//!
//! Needs podman, buildah, runc and mmdebstrap (`tests/container/setup.sh` installs them); the
//! test fails, not skips, without them. Everything it makes is removed at the end, the base
//! image too unless it was there before.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use candle_serving::proto::tensorflow::serving::prediction_service_client::PredictionServiceClient;
use common::*;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;

const MARKER: &str = "<!-- tests/container_image.rs runs this block";
const BASE_IMAGE: &str = "localhost/candle-serving-base:bookworm";
/// Kubernetes' default terminationGracePeriodSeconds, and `podman stop -t` here.
const GRACE: Duration = Duration::from_secs(30);
/// The acceptance limit for the CPU image, in podman's (decimal) megabytes, uncompressed.
const MAX_IMAGE_BYTES: u64 = 40_000_000;

/// The README block's commands, each split into words (`\` continuations joined, `# ...`
/// comments dropped, double quotes removed, `$PWD` expanded to the repository root).
fn readme_commands() -> Vec<Vec<String>> {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README.md");
    let after = &readme[readme.find(MARKER).expect("README: the block tests/container_image.rs runs")..];
    let body = after.split_once("```sh\n").expect("README: ```sh block after the marker").1;
    let body = body.split_once("\n```").expect("README: end of the block").0;
    let root = repo_root().display().to_string();
    body.replace("\\\n", " ").replace("$PWD", &root).lines().map(words).filter(|w| !w.is_empty()).collect()
}

fn words(line: &str) -> Vec<String> {
    let (mut out, mut word, mut quoted, mut in_word) = (Vec::new(), String::new(), false, false);
    for c in line.chars() {
        match c {
            '"' => (quoted, in_word) = (!quoted, true),
            '#' if !quoted && !in_word => break,
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    out.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    assert!(!quoted, "README: unbalanced quotes in {line:?}");
    if in_word {
        out.push(word);
    }
    out
}

/// A podman (or any) command that must succeed; returns stdout.
fn run(program: &str, args: &[String], env: &[(&str, &str)]) -> String {
    let out = output(program, args, env);
    assert!(
        out.status.success(),
        "{program} {} failed ({}):\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn output(program: &str, args: &[String], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(program);
    cmd.args(args).envs(env.iter().copied()).current_dir(repo_root());
    cmd.output().unwrap_or_else(|e| panic!("run {program}: {e}"))
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// Removes what the test made, also when it fails half-way.
struct Cleanup {
    conf: String,
    container: String,
    images: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let env = [("CONTAINERS_CONF", self.conf.as_str())];
        let _ = output("podman", &strings(&["rm", "-f", "-t", "0", &self.container]), &env);
        for image in &self.images {
            let _ = output("podman", &strings(&["rmi", "-f", image]), &env);
        }
    }
}

/// The loopback host port podman published `container_port` of the container on.
fn published_port(name: &str, container_port: u16, env: &[(&str, &str)]) -> u16 {
    let mapping = run("podman", &strings(&["port", name, &format!("{container_port}/tcp")]), env);
    let port = mapping.lines().next().and_then(|l| l.trim().rsplit_once(':')).and_then(|(_, p)| p.parse().ok());
    port.unwrap_or_else(|| panic!("podman port {name} {container_port}/tcp: {mapping:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_builds_and_serves_read_only_as_non_root_and_drains_on_sigterm() {
    assert!(
        Command::new("podman").arg("--version").output().is_ok_and(|o| o.status.success()),
        "podman is missing: run tests/container/setup.sh (installs Debian's podman, buildah, runc and mmdebstrap)"
    );

    // The README's commands, checked for what the acceptance criteria need.
    let commands = readme_commands();
    let names: Vec<&str> = commands.iter().map(|c| c[0].as_str()).collect();
    assert_eq!(names, ["tests/container/setup.sh", "tests/container/build_image.sh", "export", "podman"], "README block: {commands:?}");
    let readme_tag = commands[1].last().expect("build_image.sh TAG").clone();
    let conf = commands[2][1].strip_prefix("CONTAINERS_CONF=").expect("export CONTAINERS_CONF=...").to_string();
    assert!(Path::new(&conf).is_file(), "README: {conf} is missing");
    let readme_run = &commands[3];
    assert_eq!(readme_run[1], "run");
    assert_eq!(readme_run.last(), Some(&readme_tag), "README: podman run runs the image build_image.sh built");
    let has = |pair: &[&str]| readme_run.windows(pair.len()).any(|w| w == pair);
    for flag in [&["--read-only"][..], &["--read-only-tmpfs=false"], &["--user", "65532:65532"], &["--cap-drop=all"]] {
        assert!(has(flag), "README: podman run lacks {flag:?}");
    }
    let published: Vec<&String> = readme_run.windows(2).filter(|w| w[0] == "-p").map(|w| &w[1]).collect();
    assert_eq!(published.len(), 2, "README: publishes gRPC and REST");
    assert!(published.iter().all(|p| p.starts_with("127.0.0.1:")), "README: ports on loopback only: {published:?}");
    let volume = readme_run.windows(2).find(|w| w[0] == "-v").map(|w| &w[1]).expect("README: a model volume");
    assert!(volume.ends_with(":ro"), "README: the model is mounted read-only: {volume}");

    let id = std::process::id();
    let tag = format!("localhost/candle-serving-test:{id}");
    let name = format!("candle-serving-test-{id}");
    let env = [("CONTAINERS_CONF", conf.as_str())];
    let base_existed = output("podman", &strings(&["image", "exists", BASE_IMAGE]), &env).status.success();
    let mut images = vec![tag.clone(), format!("{tag}-cuda-runtime")];
    if !base_existed {
        images.push(BASE_IMAGE.to_string());
    }
    let _cleanup = Cleanup { conf: conf.clone(), container: name.clone(), images };

    // Build: Dockerfile's `prebuilt` target on a base from Debian packages, and Dockerfile.cuda
    // up to the stages that need the CUDA images.
    let started = Instant::now();
    let mut build_args = commands[1][1..commands[1].len() - 1].to_vec();
    build_args.extend(["--check-cuda".to_string(), tag.clone()]);
    run(&repo_root().join(&commands[1][0]).display().to_string(), &build_args, &env);
    eprintln!("container_image: built in {:.0?}", started.elapsed());
    let size: u64 = run("podman", &strings(&["image", "inspect", "--format", "{{.Size}}", &tag]), &env).trim().parse().expect("size");
    println!("container_image: image {tag} is {:.1} MB ({size} bytes, uncompressed)", size as f64 / 1e6);
    assert!(size <= MAX_IMAGE_BYTES, "image is {size} bytes, over the {MAX_IMAGE_BYTES} limit");

    // Run: the README's command, detached, named, with podman choosing the host ports (8500 and
    // 8501 may be taken here, and no port chosen in advance is sure to stay free).
    let mut args = vec!["run".to_string(), "-d".into(), "--name".into(), name.clone()];
    for arg in &readme_run[2..readme_run.len() - 1] {
        match arg.as_str() {
            "--rm" => {}
            "127.0.0.1:8500:8500" => args.push("127.0.0.1::8500".into()),
            "127.0.0.1:8501:8501" => args.push("127.0.0.1::8501".into()),
            other => args.push(other.to_string()),
        }
    }
    args.push(tag.clone());
    run("podman", &args, &env);
    let (grpc, rest) = (published_port(&name, 8500, &env), published_port(&name, 8501, &env));

    let deadline = Instant::now() + Duration::from_secs(60);
    while grpc_health(grpc, "").await != Ok(ServingStatus::Serving) {
        let state = run("podman", &strings(&["inspect", "--format", "{{.State.Status}}", &name]), &env);
        if state.trim() != "running" || Instant::now() > deadline {
            let logs = output("podman", &strings(&["logs", &name]), &env);
            panic!("container {} and not SERVING; logs:\n{}", state.trim(), String::from_utf8_lossy(&logs.stderr));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ready = reqwest::get(format!("http://127.0.0.1:{rest}/v1/health/ready")).await.map(|r| r.status().as_u16()).ok();
    assert_eq!(ready, Some(200), "REST readiness");

    let user = run("podman", &strings(&["top", &name, "huser", "user"]), &env);
    assert!(user.lines().skip(1).all(|l| l.split_whitespace().all(|u| u == "65532")), "processes not all UID 65532:\n{user}");
    let write = output("podman", &strings(&["exec", "--user", "0", &name, "/bin/sh", "-c", ": >/probe"]), &env);
    let stderr = String::from_utf8_lossy(&write.stderr);
    assert!(!write.status.success() && stderr.contains("Read-only file system"), "root filesystem writable: {stderr}");

    let channel = Channel::from_shared(format!("http://127.0.0.1:{grpc}")).expect("url").connect().await.expect("connect");
    let mut client = PredictionServiceClient::new(channel.clone());
    for batch in [1, 16] {
        check_golden(&mut client, "mnist_cnn", "mnist_cnn", batch, None).await;
    }

    // Drain: eight slow requests, SIGTERM once the server has some of them in flight, with the
    // grace period. Every request the server had admitted must finish. A request the client had
    // not yet put on the wire when the GOAWAY arrived is cancelled by tonic itself (it does not
    // retry, unlike grpc-core): that one never reached the server, so it is not a lost request.
    let (_, image) = npy(&fixture("mnist_cnn/input_b1.npy"));
    let batch = 1024;
    let input: Vec<f32> = image.iter().copied().cycle().take(batch * 784).collect();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let mut client = PredictionServiceClient::new(channel.clone());
            let request = predict_request("mnist_cnn", "image", float_tensor(&[batch, 28, 28, 1], input.clone()));
            tokio::spawn(async move { client.predict(request).await })
        })
        .collect();
    let admitted_by = Instant::now() + Duration::from_secs(60);
    let in_flight = loop {
        let metrics = match reqwest::get(format!("http://127.0.0.1:{rest}/metrics")).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        let inflight = metric_value(&metrics, "candle_serving_inflight_requests{model=\"mnist_cnn\"}").unwrap_or(0.0);
        if inflight >= 2.0 {
            break inflight as usize;
        }
        assert!(Instant::now() < admitted_by, "no two requests were in flight within 60 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let stop_args = strings(&["stop", "-t", &GRACE.as_secs().to_string(), &name]);
    let conf_for_stop = conf.clone();
    let stopping = Instant::now();
    let stop = tokio::task::spawn_blocking(move || run("podman", &stop_args, &[("CONTAINERS_CONF", conf_for_stop.as_str())]));
    let mut finished = 0;
    for task in tasks {
        match task.await.expect("join") {
            Ok(response) => {
                assert_eq!(response.into_inner().outputs["probabilities"].float_val.len(), batch * 10);
                finished += 1;
            }
            Err(status) => {
                // Not processed: tonic never sent it (hyper `Canceled`), or the server's GOAWAY
                // named a last stream below it (`GoAway(.., NO_ERROR, Remote)`: HTTP/2's promise
                // that the stream was not processed, safe to retry).
                let text = format!("{status:?}");
                let never_sent = status.code() == tonic::Code::Cancelled && text.contains("Canceled");
                let refused_by_goaway = text.contains("GoAway(") && text.contains("NO_ERROR, Remote");
                assert!(never_sent || refused_by_goaway, "a request failed during the drain: {status:?}");
            }
        }
    }
    eprintln!("container_image: {in_flight} requests in flight at SIGTERM, {finished} of 8 finished");
    assert!(finished >= in_flight, "{in_flight} requests were in flight at SIGTERM but only {finished} finished");
    stop.await.expect("podman stop");
    let stopped_after = stopping.elapsed();
    let code = run("podman", &strings(&["inspect", "--format", "{{.State.ExitCode}}", &name]), &env);
    eprintln!("container_image: stopped in {stopped_after:.1?}, exit code {}", code.trim());
    assert_eq!(code.trim(), "0", "exit code after SIGTERM");
    assert!(stopped_after < GRACE, "stop took {stopped_after:?}, not inside the {GRACE:?} grace period");
}
