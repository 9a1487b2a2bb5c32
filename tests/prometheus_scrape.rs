//! A real Prometheus server (Debian's `prometheus` package, installed by .ci/run) scrapes both
//! metric endpoints on loopback, and its query API returns the request counts we generated.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Prometheus on a port of its choosing (`127.0.0.1:0`), which it logs; killed when dropped.
struct Prometheus {
    child: Child,
    port: u16,
}

impl Prometheus {
    fn start(mut command: Command) -> Prometheus {
        command.arg("--web.listen-address=127.0.0.1:0").stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = command.spawn().expect("start prometheus");
        let mut logs = ChildLogs::capture(&mut child);
        // `msg="Listening on" address=127.0.0.1:41234`, once the port is bound.
        let bound = |line: &str| {
            let address = line.split_once("msg=\"Listening on\"")?.1.split_once("address=")?.1;
            address.split_whitespace().next()?.rsplit_once(':')?.1.parse::<u16>().ok()
        };
        match logs.wait_for(&mut child, Duration::from_secs(60), bound) {
            Waited::Found(port) => Prometheus { child, port },
            Waited::Exited(status) => panic!("prometheus exited with {status}:\n{}", logs.text()),
            Waited::TimedOut => {
                let _ = child.kill();
                panic!("prometheus logged no listening address within 60 s")
            }
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs an instant query and returns the single sample's value, if any.
async fn query(port: u16, promql: &str) -> Option<f64> {
    let url = format!("http://127.0.0.1:{port}/api/v1/query");
    let body: serde_json::Value = reqwest::Client::new().get(url).query(&[("query", promql)]).send().await.ok()?.json().await.ok()?;
    let value = body["data"]["result"].get(0)?["value"].get(1)?.as_str()?.to_string();
    value.parse().ok()
}

#[tokio::test]
async fn prometheus_scrapes_both_endpoints_and_counts_requests() {
    let binary = which("prometheus").expect("the prometheus binary is required: apt-get install prometheus (.ci/run does)");
    let dir = temp_dir("prom");
    let monitoring = dir.join("monitoring.config");
    std::fs::write(&monitoring, "prometheus_config {\n  enable: true\n  path: \"/monitoring/prometheus/metrics\"\n}\n").expect("write");

    // In-process: only the request metrics are queried (process_* would be the test's own).
    let (server, rest) = Server::start_with_rest(&[&format!("--monitoring_config_file={}", monitoring.display())], "mnist_cnn").await;
    let (dims, input) = npy(&fixture("mnist_cnn/input_b1.npy"));
    let mut client = server.predict_client().await;
    for _ in 0..7 {
        client.predict(predict_request("mnist_cnn", "image", float_tensor(&dims, input.clone()))).await.expect("predict");
    }
    for _ in 0..2 {
        client.predict(predict_request("nope", "image", float_tensor(&dims, input.clone()))).await.expect_err("unknown model");
    }

    let config = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: tfs\n    metrics_path: /monitoring/prometheus/metrics\n    static_configs:\n      - targets: ['127.0.0.1:{rest}']\n  - job_name: plain\n    metrics_path: /metrics\n    static_configs:\n      - targets: ['127.0.0.1:{rest}']\n"
    );
    std::fs::write(dir.join("prometheus.yml"), config).expect("write config");
    let mut command = Command::new(binary);
    command
        .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()));
    let prometheus = Prometheus::start(command);
    let web = prometheus.port;

    let checks = [
        ("sum(candle_serving_requests_total{job=\"plain\",model=\"mnist_cnn\",method=\"Predict\",code=\"OK\"})", 7.0),
        ("sum({__name__=\":tensorflow:serving:request_count\",job=\"tfs\",model_name=\"mnist_cnn\",status=\"OK\"})", 7.0),
        ("sum({__name__=\":tensorflow:serving:request_count\",job=\"tfs\",model_name=\"nope\",status=\"NOT_FOUND\"})", 2.0),
        ("sum({__name__=\":tensorflow:serving:request_latency_count\",job=\"plain\",model_name=\"mnist_cnn\",entrypoint=\"GRPC\"})", 7.0),
        ("sum(candle_serving_inflight_requests{job=\"tfs\",model=\"mnist_cnn\"})", 0.0),
        ("sum(up{job=~\"tfs|plain\"})", 2.0),
    ];
    let deadline = Instant::now() + Duration::from_secs(60);
    for (promql, want) in checks {
        loop {
            let got = query(web, promql).await;
            if got == Some(want) {
                break;
            }
            assert!(Instant::now() < deadline, "{promql}: got {got:?}, want {want}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| std::path::Path::new(d).join(name)).find(|p| p.is_file())
}
