//! Dynamic batching, admission and deadlines through the server.

mod common;

use std::time::{Duration, Instant};

use candle_serving::proto::tensorflow::serving::prediction_service_client::PredictionServiceClient;
use common::*;
use tonic::Code;

/// `--tensorflow_intra_op_parallelism` is process-wide (the latest server to start sets it),
/// and these servers run in the test process: one test at a time, so that the overload test's
/// setting holds while it runs.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn image(i: usize, input: &[f32]) -> Vec<f32> {
    input[i * 784..(i + 1) * 784].to_vec()
}

/// Sends the 16 golden images twice each, all at once (32 concurrent single-image clients).
async fn concurrent_predictions(server: &Server) -> Vec<Vec<f32>> {
    let (_, input) = npy(&fixture("mnist_cnn/input_b16.npy"));
    let mut tasks = Vec::new();
    for i in 0..32 {
        let mut client = server.predict_client().await;
        let request = predict_request("mnist_cnn", "image", float_tensor(&[1, 28, 28, 1], image(i % 16, &input)));
        tasks.push(tokio::spawn(async move { client.predict(request).await }));
    }
    let mut out = Vec::new();
    for task in tasks {
        let response = task.await.expect("join").expect("predict");
        out.push(response.into_inner().outputs["probabilities"].float_val.clone());
    }
    out
}

#[tokio::test]
async fn batched_results_equal_unbatched_ones_and_batches_form() {
    let _serial = SERIAL.lock().await;
    let (_, golden) = npy(&fixture("mnist_cnn/output_b16.npy"));
    let plain = Server::start(&[], "mnist_cnn").await;
    let unbatched = concurrent_predictions(&plain).await;
    let (batching, rest) = Server::start_with_rest(&["--enable_batching"], "mnist_cnn").await;
    let batched = concurrent_predictions(&batching).await;
    for i in 0..32 {
        assert_close(&batched[i], &unbatched[i], 1e-6, &format!("request {i}: batched vs unbatched"));
        assert_close(&batched[i], &golden[(i % 16) * 10..(i % 16 + 1) * 10], 1e-5, &format!("request {i}: golden"));
    }
    let text = scrape(rest).await;
    let rows = metric_value(&text, "candle_serving_batch_size_sum{model=\"mnist_cnn\"}").unwrap_or(0.0);
    let batches = metric_value(&text, "candle_serving_batch_size_count{model=\"mnist_cnn\"}").unwrap_or(0.0);
    println!("32 concurrent requests ran in {batches} batches");
    assert!(rows >= 32.0, "every request went through the queue: {rows}");
    assert!(batches < rows, "no batch had more than one request ({batches} batches for {rows} rows)");
    // The same batches under TF Serving's name, per model.
    let series = ":tensorflow:serving:batching_session:input_batch_size";
    assert_eq!(metric_value(&text, &format!("{series}_sum{{model_name=\"mnist_cnn\"}}")), Some(rows), "{text}");
    assert_eq!(metric_value(&text, &format!("{series}_count{{model_name=\"mnist_cnn\"}}")), Some(batches), "{text}");
}

#[tokio::test]
async fn overload_is_refused_at_once_and_admitted_requests_finish() {
    let _serial = SERIAL.lock().await;
    let (server, rest) = Server::start_with_rest(&["--max_inflight_requests=2", "--tensorflow_intra_op_parallelism=1"], "mnist_cnn").await;
    let (_, one) = npy(&fixture("mnist_cnn/input_b1.npy"));
    let batch: Vec<f32> = one.iter().copied().cycle().take(256 * 784).collect();
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let mut client = server.predict_client().await;
        let request = predict_request("mnist_cnn", "image", float_tensor(&[256, 28, 28, 1], batch.clone()));
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            (client.predict(request).await, sent.elapsed())
        }));
    }
    let (mut ok, mut refused) = (0, 0);
    for task in tasks {
        match task.await.expect("join") {
            (Ok(r), _) => {
                assert_eq!(r.into_inner().outputs["probabilities"].float_val.len(), 2560);
                ok += 1;
            }
            (Err(status), took) => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                assert!(status.message().contains("limit is 2 (--max_inflight_requests)"), "{}", status.message());
                assert!(took < Duration::from_millis(500), "refusal took {took:?}");
                refused += 1;
            }
        }
    }
    println!("admitted {ok}, refused {refused}");
    assert_eq!(ok + refused, 10);
    assert!(ok >= 2 && refused >= 1, "admitted {ok}, refused {refused}");
    let text = scrape(rest).await;
    assert_eq!(
        metric_value(&text, "candle_serving_rejected_requests_total{model=\"mnist_cnn\",reason=\"inflight_limit\"}").unwrap_or(0.0),
        refused as f64
    );
}

/// The queue dropping expired requests is covered on tokio's paused clock in the batching unit
/// tests; this checks the wire: `grpc-timeout` becomes a deadline and the answer's code.
#[tokio::test]
async fn an_expired_grpc_deadline_answers_deadline_exceeded() {
    let _serial = SERIAL.lock().await;
    let server = Server::start(&["--enable_batching"], "mnist_cnn").await;
    let (_, one) = npy(&fixture("mnist_cnn/input_b1.npy"));
    // tonic's Channel enforces grpc-timeout itself; a plain HTTP/2 client leaves it to the server.
    let raw = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<tonic::body::Body>();
    let origin: http::Uri = server.url().parse().expect("uri");
    let mut client = PredictionServiceClient::with_origin(raw, origin);
    let mut request = tonic::Request::new(predict_request("mnist_cnn", "image", float_tensor(&[1, 28, 28, 1], one.clone())));
    request.set_timeout(Duration::from_nanos(1));
    let status = client.predict(request).await.expect_err("deadline");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(status.message().contains("Deadline exceeded"), "{}", status.message());
    let mut request = tonic::Request::new(predict_request("mnist_cnn", "image", float_tensor(&[1, 28, 28, 1], one)));
    request.set_timeout(Duration::from_secs(10));
    client.predict(request).await.expect("a request with time left is served");
}
