//! A real Prometheus server (Debian's `prometheus` package, installed by .ci/run) scrapes both
//! metric endpoints on loopback, and its query API returns the request counts we generated.

mod common;

use common::*;

#[tokio::test]
async fn prometheus_scrapes_both_endpoints_and_counts_requests() {
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

    let prometheus = Prometheus::scraping(&dir, &[("tfs", "/monitoring/prometheus/metrics", rest), ("plain", "/metrics", rest)]);

    let checks = [
        ("sum(candle_serving_requests_total{job=\"plain\",model=\"mnist_cnn\",method=\"Predict\",code=\"OK\"})", 7.0),
        ("sum({__name__=\":tensorflow:serving:request_count\",job=\"tfs\",model_name=\"mnist_cnn\",status=\"OK\"})", 7.0),
        ("sum({__name__=\":tensorflow:serving:request_count\",job=\"tfs\",model_name=\"nope\",status=\"NOT_FOUND\"})", 2.0),
        ("sum({__name__=\":tensorflow:serving:request_latency_count\",job=\"plain\",model_name=\"mnist_cnn\",entrypoint=\"GRPC\"})", 7.0),
        ("sum(candle_serving_inflight_requests{job=\"tfs\",model=\"mnist_cnn\"})", 0.0),
        ("sum(up{job=~\"tfs|plain\"})", 2.0),
    ];
    prometheus.expect(&checks).await;
    std::fs::remove_dir_all(&dir).ok();
}
