//! The Kubernetes manifests against the real binary. `k8s/validate.sh` renders the base and every
//! overlay and validates them strictly (once per run); it also writes a JSON description of the
//! base Deployment's server container (`target/k8s-rendered/base.json`). The tests then start
//! the binary with that container's args, answer its probes, scrape the metrics the HPA and the
//! prometheus-adapter rule name, and shut it down as the kubelet would.
//!
//! The binary, not the in-process server: the manifest's args are a command line, and the
//! kubelet stops the pod with SIGTERM and reads the exit status.
//!
//! What differs from a pod, and why: the gRPC/REST ports become the harness's loopback ports
//! (8500/8501 may be taken on a CI machine, and tests run in parallel); paths under a ConfigMap
//! mount point to a temp copy of that ConfigMap, and paths under the models volume to the
//! repository's `models/` (same `<name>/<version>/model.onnx` layout the init container produces).

mod common;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{BIN, BinaryServer, Grpc, grpc_health, repo_root, temp_dir};
use serde_json::Value;
use tonic_health::pb::health_check_response::ServingStatus;

/// Runs k8s/validate.sh once for the whole test binary and returns base.json.
fn validated() -> &'static Value {
    static RESULT: OnceLock<Result<Value, String>> = OnceLock::new();
    let result = RESULT.get_or_init(|| {
        let out = Command::new("bash")
            .arg("k8s/validate.sh")
            .env("CANDLE_SERVING_BIN", BIN)
            .current_dir(repo_root())
            .output()
            .map_err(|e| format!("cannot run bash k8s/validate.sh: {e}"))?;
        let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        if !out.status.success() {
            return Err(log);
        }
        eprintln!("{log}");
        let json = std::fs::read_to_string(repo_root().join("target/k8s-rendered/base.json")).map_err(|e| e.to_string())?;
        serde_json::from_str(&json).map_err(|e| format!("base.json: {e}"))
    });
    match result {
        Ok(v) => v,
        Err(log) => panic!("k8s/validate.sh failed:\n{log}"),
    }
}

/// The server started as the Deployment's container, killed when dropped.
struct Deployed {
    server: BinaryServer,
    /// Container port in the manifest -> loopback port here.
    ports: HashMap<u16, u16>,
    dir: PathBuf,
}

impl Drop for Deployed {
    fn drop(&mut self) {
        self.server.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Deployed {
    fn start(d: &Value) -> Deployed {
        let dir = temp_dir("deploy");
        // Mount path -> local directory: ConfigMaps are written out, the models volume is models/.
        let mut mounts: Vec<(String, PathBuf)> = Vec::new();
        for (mount, source) in d["mounts"].as_object().expect("mounts") {
            let local = match source.get("config_map") {
                Some(_) => dir.join(mount.trim_start_matches('/')),
                None => repo_root().join(mount.trim_start_matches('/')),
            };
            mounts.push((mount.clone(), local));
        }
        let localise = |text: &str| {
            mounts.iter().fold(text.to_string(), |t, (mount, local)| {
                t.replace(&format!("{mount}/"), &format!("{}/", local.display()))
                    .replace(&format!("'{mount}'"), &format!("'{}'", local.display()))
            })
        };
        for (mount, source) in d["mounts"].as_object().expect("mounts") {
            if let Some(files) = source.get("config_map").and_then(Value::as_object) {
                let local = dir.join(mount.trim_start_matches('/'));
                std::fs::create_dir_all(&local).expect("mkdir");
                for (key, content) in files {
                    std::fs::write(local.join(key), localise(content.as_str().expect("text"))).expect("write config");
                }
            }
        }
        // The port flags are left to the harness, which maps the manifest's ports to its own.
        let (mut grpc_port, mut rest_port) = (None, None);
        let mut args = Vec::new();
        for a in d["args"].as_array().expect("args") {
            let a = a.as_str().expect("arg");
            match a.split_once('=') {
                Some(("--port", value)) => grpc_port = Some(value.parse::<u16>().expect("port")),
                Some(("--rest_api_port", value)) => rest_port = Some(value.parse::<u16>().expect("port")),
                _ => args.push(localise(a)),
            }
        }
        eprintln!("starting {BIN} {}", args.join(" "));
        let server = BinaryServer::spawn(
            || {
                let mut cmd = Command::new(BIN);
                cmd.args(&args).current_dir(&dir);
                cmd
            },
            rest_port.is_some(),
        );
        let mut ports = HashMap::new();
        ports.insert(grpc_port.expect("the Deployment sets --port"), server.port);
        if let (Some(manifest), Some(local)) = (rest_port, server.rest) {
            ports.insert(manifest, local);
        }
        Deployed { server, ports, dir }
    }

    fn port(&self, manifest_port: &Value) -> u16 {
        let p = manifest_port.as_u64().expect("numeric port") as u16;
        *self.ports.get(&p).unwrap_or_else(|| panic!("port {p} is not one of the server's ports {:?}", self.ports))
    }

    /// One probe attempt as the kubelet makes it: Ok(()) on success, Err(what it saw) otherwise.
    async fn probe_once(&self, probe: &Value) -> Result<(), String> {
        let timeout = Duration::from_secs(probe["timeoutSeconds"].as_u64().unwrap_or(1));
        if let Some(grpc) = probe.get("grpc") {
            let service = grpc["service"].as_str().unwrap_or("");
            let port = self.port(&grpc["port"]);
            let check = async {
                match grpc_health(port, service).await? {
                    ServingStatus::Serving => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            };
            tokio::time::timeout(timeout, check).await.unwrap_or_else(|_| Err("timeout".into()))
        } else if let Some(http) = probe.get("httpGet") {
            let url = format!("http://127.0.0.1:{}{}", self.port(&http["port"]), http["path"].as_str().unwrap_or("/"));
            let reply = reqwest::Client::new().get(url).timeout(timeout).send().await.map_err(|e| e.to_string())?;
            if reply.status().is_success() || reply.status().is_redirection() { Ok(()) } else { Err(reply.status().to_string()) }
        } else {
            panic!("unsupported probe {probe}");
        }
    }

    /// The startup probe: succeeds within initialDelay + period x failureThreshold, like the kubelet allows.
    async fn wait_started(&mut self, probe: &Value) {
        let budget = probe["initialDelaySeconds"].as_u64().unwrap_or(0)
            + probe["periodSeconds"].as_u64().unwrap_or(10) * probe["failureThreshold"].as_u64().unwrap_or(3);
        let deadline = Instant::now() + Duration::from_secs(budget);
        loop {
            if let Some(status) = self.server.try_wait() {
                panic!("the server exited during start-up with {status}");
            }
            match self.probe_once(probe).await {
                Ok(()) => return,
                Err(seen) if Instant::now() > deadline => panic!("startupProbe still failing after {budget}s: {seen}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
}

async fn started(d: &Value) -> Deployed {
    let mut server = Deployed::start(d);
    server.wait_started(&d["probes"]["startupProbe"]).await;
    server
}

#[test]
fn every_overlay_renders_and_validates_strictly() {
    let d = validated();
    assert!(d["args"].as_array().is_some_and(|a| !a.is_empty()), "the base Deployment has no args: {d}");
}

#[tokio::test]
async fn deployment_args_start_the_server_and_every_probe_passes() {
    let d = validated();
    let server = started(d).await;
    for kind in ["startupProbe", "readinessProbe", "livenessProbe"] {
        let probe = &d["probes"][kind];
        assert!(!probe.is_null(), "the Deployment has no {kind}");
        if let Err(seen) = server.probe_once(probe).await {
            panic!("{kind} {probe} failed: {seen}");
        }
    }
}

#[tokio::test]
async fn metrics_named_by_the_hpa_and_adapter_rule_are_exported() {
    let d = validated();
    let server = started(d).await;
    let names: Vec<&str> = d["metric_names"].as_array().expect("metric_names").iter().filter_map(Value::as_str).collect();
    assert!(!names.is_empty(), "neither the HPA nor the adapter rule names a metric");
    // Scraped at once, before any request: the HPA needs a value from idle pods too.
    let url = format!("http://127.0.0.1:{}{}", server.port(&d["scrape"]["port"]), d["scrape"]["path"].as_str().expect("path"));
    let text = reqwest::get(&url).await.expect("scrape").text().await.expect("body");
    let exported: HashSet<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let missing: Vec<&str> = names.iter().copied().filter(|n| !exported.contains(n)).collect();
    assert!(missing.is_empty(), "{url} has no sample of {missing:?} right after start-up (an idle pod must export them, e.g. at 0)");
}

#[tokio::test]
async fn sigterm_goes_not_serving_and_exits_within_the_grace_period() {
    let d = validated();
    let mut server = started(d).await;
    let readiness = &d["probes"]["readinessProbe"];
    server.probe_once(readiness).await.expect("ready before SIGTERM");
    // The kubelet sends SIGTERM after the preStop hook, so the server has what is left of the grace period.
    let budget = d["termination_grace_period_seconds"].as_u64().expect("grace") - d["prestop_seconds"].as_u64().expect("preStop");
    let sent = Instant::now();
    server.server.sigterm();
    // Readiness must fail while the server still serves (within the shutdown delay), so the
    // kubelet takes the pod out of the endpoints within period x failureThreshold.
    let window = readiness["periodSeconds"].as_u64().unwrap_or(10) * readiness["failureThreshold"].as_u64().unwrap_or(3);
    while server.probe_once(readiness).await.is_ok() {
        assert!(sent.elapsed() < Duration::from_secs(window), "readiness still passes {window}s after SIGTERM");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    loop {
        if let Some(status) = server.server.try_wait() {
            assert!(status.success(), "exit status after SIGTERM: {status}");
            break;
        }
        assert!(sent.elapsed() < Duration::from_secs(budget), "still running {budget}s after SIGTERM (grace period minus preStop)");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// docker/entrypoint.sh, the image's ENTRYPOINT, run here with the built binary on PATH (the
/// harness's port flags come last, and the last flag wins, as the entrypoint promises).
async fn entrypoint(env: &[(&str, &str)], args: &[String]) -> BinaryServer {
    let bin_dir = Path::new(BIN).parent().expect("bin dir");
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let mut server = BinaryServer::spawn(
        || {
            let mut cmd = Command::new("sh");
            cmd.arg(repo_root().join("docker/entrypoint.sh")).args(args).env("PATH", &path).envs(env.iter().copied());
            cmd
        },
        true,
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = server.try_wait() {
            panic!("entrypoint exited with {status}");
        }
        if grpc_health(server.port, "").await == Ok(ServingStatus::Serving) {
            return server;
        }
        assert!(Instant::now() < deadline, "not SERVING within 60s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn image_entrypoint_honours_model_name_and_base_path_like_tf_serving() {
    use candle_serving::proto::tensorflow::serving::GetModelStatusRequest;

    let models = repo_root().join("models");
    let server = entrypoint(&[("MODEL_NAME", "mnist_cnn"), ("MODEL_BASE_PATH", models.to_str().expect("utf-8"))], &[]).await;
    let status = server.model_client().await.get_model_status(GetModelStatusRequest { model_spec: Some(common::spec("mnist_cnn")) }).await;
    drop(server);
    assert!(status.is_ok(), "MODEL_NAME=mnist_cnn is not served: {status:?}");

    // With --model_config_file the env defaults (MODEL_NAME=model under /models) are left out.
    let dir = temp_dir("entrypoint");
    let config = dir.join("models.config");
    let text = format!("model_config_list {{ config {{ name: 'mnist_cnn' base_path: '{}' model_platform: 'onnx' }} }}", models.join("mnist_cnn").display());
    std::fs::write(&config, text).expect("write config");
    drop(entrypoint(&[], &[format!("--model_config_file={}", config.display())]).await);
    let _ = std::fs::remove_dir_all(dir);
}
