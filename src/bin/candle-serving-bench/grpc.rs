//! gRPC target: `tensorflow.serving.PredictionService/Predict` over `--connections` tonic
//! channels (one HTTP/2 connection each), requests spread round-robin. Inputs travel as
//! `tensor_content` bytes, as `tf.make_tensor_proto` sends numpy arrays, so the client's
//! encoding cost per request is a buffer clone rather than a float-by-float varint loop.

use std::time::Duration;

use candle_serving::proto::tensorflow::serving::prediction_service_client::PredictionServiceClient;
use candle_serving::proto::tensorflow::serving::{ModelSpec, PredictRequest};
use candle_serving::proto::tensorflow::{DataType, TensorProto, TensorShapeProto, tensor_shape_proto};
use tonic::transport::{Channel, Endpoint};

use crate::inputs::{NamedTensor, Payload, Values};
use crate::stats::Failure;

pub(crate) type Stub = PredictionServiceClient<Channel>;

pub(crate) struct GrpcClient {
    stubs: Vec<Stub>,
    requests: Vec<PredictRequest>,
    timeout: Duration,
}

/// Opens `n` channels to `target` (HOST:PORT), each its own TCP connection.
pub(crate) async fn connect(target: &str, n: usize) -> Result<Vec<Channel>, String> {
    let endpoint = Endpoint::from_shared(format!("http://{target}"))
        .map_err(|e| format!("--target {target}: {e}"))?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(10));
    let mut channels = Vec::with_capacity(n);
    for _ in 0..n {
        channels.push(endpoint.connect().await.map_err(|e| format!("cannot connect to {target}: {}", chain(&e)))?);
    }
    Ok(channels)
}

pub(crate) fn stub(channel: Channel) -> Stub {
    PredictionServiceClient::new(channel).max_decoding_message_size(usize::MAX).max_encoding_message_size(usize::MAX)
}

impl GrpcClient {
    pub(crate) fn new(stubs: Vec<Stub>, model: &str, signature: Option<&str>, payloads: &[Payload], timeout: Duration) -> GrpcClient {
        let spec = ModelSpec { name: model.to_string(), signature_name: signature.unwrap_or_default().to_string(), ..Default::default() };
        let requests = payloads
            .iter()
            .map(|p| PredictRequest {
                model_spec: Some(spec.clone()),
                inputs: p.tensors.iter().map(|t| (t.name.clone(), tensor_proto(t))).collect(),
                ..Default::default()
            })
            .collect();
        GrpcClient { stubs, requests, timeout }
    }

    /// Sends payload `seq % payloads` on channel `seq % connections`, with the deadline in the
    /// `grpc-timeout` header so the server can drop work nobody waits for.
    pub(crate) async fn call(&self, seq: u64) -> Result<(), Failure> {
        let mut stub = self.stubs[(seq % self.stubs.len() as u64) as usize].clone();
        let body = self.requests[(seq % self.requests.len() as u64) as usize].clone();
        let mut request = tonic::Request::new(body);
        request.set_timeout(self.timeout);
        match stub.predict(request).await {
            Ok(_) => Ok(()),
            Err(status) => Err(failure(&status)),
        }
    }
}

/// tonic enforces the deadline on the client side too and reports it as CANCELLED; it is
/// grouped with the other client-side timeouts.
pub(crate) fn failure(status: &tonic::Status) -> Failure {
    if status.code() == tonic::Code::Cancelled && status.message() == "Timeout expired" {
        Failure::new("timeout", "no response within the deadline (--timeout)")
    } else {
        Failure::new(&format!("{:?}", status.code()), status.message())
    }
}

/// An error and its causes ("transport error: tcp connect error: Connection refused"): tonic's
/// own message alone does not say what went wrong.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// The tensor's TF dtype and little-endian elements (tensor_content, and v2 raw contents).
pub(crate) fn le_content(t: &NamedTensor) -> (DataType, Vec<u8>) {
    match &t.values {
        Values::F32(v) => (DataType::DtFloat, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        Values::F64(v) => (DataType::DtDouble, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        Values::I32(v) => (DataType::DtInt32, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        Values::I64(v) => (DataType::DtInt64, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
    }
}

fn tensor_proto(t: &NamedTensor) -> TensorProto {
    let (dtype, content) = le_content(t);
    let dim = t.dims.iter().map(|&d| tensor_shape_proto::Dim { size: d as i64, name: String::new() }).collect();
    TensorProto {
        dtype: dtype as i32,
        tensor_shape: Some(TensorShapeProto { dim, unknown_rank: false }),
        tensor_content: content.into(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_tensor_content() {
        let t = NamedTensor { name: "x".into(), dims: vec![1, 2], values: Values::F32(vec![1.0, -2.0]) };
        let p = tensor_proto(&t);
        assert_eq!(p.dtype, DataType::DtFloat as i32);
        assert_eq!(p.tensor_content.as_ref(), [1.0f32.to_le_bytes(), (-2.0f32).to_le_bytes()].concat().as_slice());
        assert_eq!(p.tensor_shape.map(|s| s.dim.len()), Some(2));
    }
}
