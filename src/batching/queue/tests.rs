use std::time::Duration;

use prost::Message;

use super::*;
use crate::engine::onnx::OnnxSession;
use crate::proto::onnx::tensor_proto::DataType;
use crate::proto::onnx::tensor_shape_proto::{Dimension, dimension};
use crate::proto::onnx::type_proto::{Tensor as TensorType, Value as TypeValue};
use crate::proto::onnx::{GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorShapeProto, TypeProto, ValueInfoProto};
use crate::tensor::TensorData;

/// A real (tiny) engine session: y = Relu(x).
fn relu_session() -> Arc<dyn Session> {
    let value = |name: &str| ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(TypeValue::TensorType(TensorType {
                elem_type: DataType::Float as i32,
                shape: Some(TensorShapeProto {
                    dim: vec![
                        Dimension { value: Some(dimension::Value::DimParam("N".into())), ..Default::default() },
                        Dimension { value: Some(dimension::Value::DimParam("K".into())), ..Default::default() },
                    ],
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    };
    let model = ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 13 }],
        graph: Some(GraphProto {
            node: vec![NodeProto { op_type: "Relu".into(), name: "r".into(), input: vec!["x".into()], output: vec!["y".into()], ..Default::default() }],
            input: vec![value("x")],
            output: vec![value("y")],
            ..Default::default()
        }),
        ..Default::default()
    };
    Arc::new(OnnxSession::from_bytes(&model.encode_to_vec()).expect("session"))
}

fn options() -> BatchingOptions {
    BatchingOptions {
        max_batch_size: 8,
        batch_timeout: Duration::from_millis(5),
        max_enqueued_batches: 4,
        num_batch_threads: 1,
        allowed_batch_sizes: Vec::new(),
        gather: false,
    }
}

fn rows(shape: [usize; 2], start: f32) -> Vec<HostTensor> {
    let n = shape[0] * shape[1];
    let values = (0..n).map(|i| start - i as f32).collect();
    vec![HostTensor::new(shape.to_vec(), TensorData::F32(values)).expect("tensor")]
}

fn relu(t: &[HostTensor]) -> Vec<HostTensor> {
    let TensorData::F32(v) = t[0].data() else { panic!("f32") };
    vec![HostTensor::new(t[0].shape().to_vec(), TensorData::F32(v.iter().map(|x| x.max(0.0)).collect())).expect("tensor")]
}

fn metric(metrics: &Metrics, line_start: &str) -> f64 {
    metrics
        .render()
        .lines()
        .find_map(|l| l.strip_prefix(line_start).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

#[tokio::test(start_paused = true)]
async fn compatible_requests_share_a_batch_and_others_batch_separately() {
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    let batcher = Arc::new(Batcher::spawn(relu_session(), ComputePool::new(1, 16), options(), Arc::clone(&metrics), "t".into()));
    let inputs = [rows([1, 2], 1.0), rows([2, 2], 2.0), rows([1, 3], 0.5)];
    let handles: Vec<_> = inputs
        .iter()
        .cloned()
        .map(|i| {
            let b = Arc::clone(&batcher);
            tokio::spawn(async move { b.submit(i, None).await })
        })
        .collect();
    for (handle, input) in handles.into_iter().zip(&inputs) {
        let (outputs, _) = handle.await.expect("join").expect("batched run");
        assert_eq!(outputs, relu(input), "each request gets exactly its own rows back");
    }
    assert_eq!(metric(&metrics, "candle_serving_batch_size_count{model=\"t\"}"), 2.0, "[1,2]+[2,2] together, [1,3] alone");
    assert_eq!(metric(&metrics, "candle_serving_batch_size_sum{model=\"t\"}"), 4.0);
    assert_eq!(metric(&metrics, ":tensorflow:serving:batching_session:processed_batch_size_count{model_name=\"t\"}"), 2.0, "TF's name too, per model");
}

#[tokio::test(start_paused = true)]
async fn expired_and_cancelled_requests_are_dropped_before_compute() {
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    let batcher = Arc::new(Batcher::spawn(relu_session(), ComputePool::new(1, 16), options(), Arc::clone(&metrics), "t".into()));
    let expiring = {
        let b = Arc::clone(&batcher);
        tokio::spawn(async move { b.submit(rows([1, 2], 1.0), Some(Instant::now() + Duration::from_millis(1))).await })
    };
    let abandoned = {
        let b = Arc::clone(&batcher);
        tokio::spawn(async move { b.submit(rows([1, 2], 3.0), None).await })
    };
    tokio::task::yield_now().await;
    abandoned.abort();
    let kept = batcher.submit(rows([1, 2], 5.0), None).await.expect("live request runs");
    assert_eq!(kept.0, relu(&rows([1, 2], 5.0)));
    assert!(matches!(expiring.await.expect("join"), Err(BatchError::DeadlineExceeded)));
    assert_eq!(metric(&metrics, "candle_serving_dropped_requests_total{model=\"t\",reason=\"deadline\"}"), 1.0);
    assert_eq!(metric(&metrics, "candle_serving_dropped_requests_total{model=\"t\",reason=\"cancelled\"}"), 1.0);
    assert_eq!(metric(&metrics, "candle_serving_batch_size_sum{model=\"t\"}"), 1.0, "only the live request was computed");
}

#[tokio::test(start_paused = true)]
async fn oversized_requests_and_a_full_queue_are_refused_at_once() {
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    let small = BatchingOptions { max_batch_size: 2, max_enqueued_batches: 1, ..options() };
    let batcher = Batcher::spawn(relu_session(), ComputePool::new(1, 16), small, Arc::clone(&metrics), "t".into());
    let err = batcher.submit(rows([3, 2], 1.0), None).await.expect_err("too large");
    assert_eq!(err.to_string(), "Task size 3 is larger than maximum input batch size 2");
    assert_eq!(metric(&metrics, "candle_serving_rejected_requests_total{model=\"t\",reason=\"too_large\"}"), 1.0);

    // Polled in order within one poll cycle: two rows fill the queue, the third is refused.
    let (first, second, third) = tokio::join!(
        batcher.submit(rows([1, 2], 1.0), None),
        batcher.submit(rows([1, 2], 2.0), None),
        batcher.submit(rows([1, 2], 3.0), None),
    );
    let err = third.expect_err("queue full");
    assert!(err.to_string().contains("queue to which this task was submitted is full (limit 2 queued rows)"), "{err}");
    assert_eq!(metric(&metrics, "candle_serving_rejected_requests_total{model=\"t\",reason=\"queue_full\"}"), 1.0);
    assert!(first.is_ok() && second.is_ok(), "admitted requests still complete");
    assert!(batcher.submit(rows([1, 2], 1.0), None).await.is_ok(), "room again once the queue drained");
}
