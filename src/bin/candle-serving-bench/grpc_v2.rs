//! v2 gRPC target: `inference.GRPCInferenceService/ModelInfer` with `raw_input_contents`, what
//! Triton's client sends, over the same channels as the TF Serving target, so the two rows of
//! the server benchmark differ only in the protocol.

use std::time::Duration;

use candle_serving::proto::inference::ModelInferRequest;
use candle_serving::proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use candle_serving::proto::inference::model_infer_request::InferInputTensor;
use candle_serving::proto::tensorflow::DataType;
use tonic::transport::Channel;

use crate::grpc::{failure, le_content};
use crate::inputs::Payload;
use crate::stats::Failure;

type Stub = GrpcInferenceServiceClient<Channel>;

pub(crate) struct GrpcV2Client {
    stubs: Vec<Stub>,
    requests: Vec<ModelInferRequest>,
    timeout: Duration,
}

fn datatype(dtype: DataType) -> &'static str {
    match dtype {
        DataType::DtDouble => "FP64",
        DataType::DtInt32 => "INT32",
        DataType::DtInt64 => "INT64",
        _ => "FP32",
    }
}

impl GrpcV2Client {
    pub(crate) fn new(channels: Vec<Channel>, model: &str, payloads: &[Payload], timeout: Duration) -> GrpcV2Client {
        let stubs = channels
            .into_iter()
            .map(|c| Stub::new(c).max_decoding_message_size(usize::MAX).max_encoding_message_size(usize::MAX))
            .collect();
        let requests = payloads
            .iter()
            .map(|p| {
                let mut request = ModelInferRequest { model_name: model.to_string(), ..Default::default() };
                for t in &p.tensors {
                    let (dtype, content) = le_content(t);
                    request.inputs.push(InferInputTensor {
                        name: t.name.clone(),
                        datatype: datatype(dtype).to_string(),
                        shape: t.dims.iter().map(|&d| d as i64).collect(),
                        ..Default::default()
                    });
                    request.raw_input_contents.push(content.into());
                }
                request
            })
            .collect();
        GrpcV2Client { stubs, requests, timeout }
    }

    pub(crate) async fn call(&self, seq: u64) -> Result<(), Failure> {
        let mut stub = self.stubs[(seq % self.stubs.len() as u64) as usize].clone();
        let body = self.requests[(seq % self.requests.len() as u64) as usize].clone();
        let mut request = tonic::Request::new(body);
        request.set_timeout(self.timeout);
        stub.model_infer(request).await.map(|_| ()).map_err(|status| failure(&status))
    }
}
