//! The floor under the per-request cost: a bare tonic server with TF Serving's Predict that
//! only decodes the request and echoes its inputs back (no admission, no lookup, no model,
//! no metrics), on tonic's own `Server` and tokio's default runtime. What it costs per
//! request is what tonic, hyper, h2 and prost cost on this machine, which no serving path
//! built on them can go under. benches/grpc_floor.sh runs the load generator against it and
//! against the real server side by side.
//!
//!   cargo bench --bench grpc_floor -- 127.0.0.1:PORT

use std::collections::HashMap;

use candle_serving::proto::tensorflow::serving::prediction_service_server::{PredictionService, PredictionServiceServer};
use candle_serving::proto::tensorflow::serving::{
    ClassificationRequest, ClassificationResponse, GetModelMetadataRequest, GetModelMetadataResponse, MultiInferenceRequest,
    MultiInferenceResponse, PredictRequest, PredictResponse, RegressionRequest, RegressionResponse, SignatureDefMap,
};
use candle_serving::proto::tensorflow::{DataType, SignatureDef, TensorInfo, TensorShapeProto, tensor_info, tensor_shape_proto};
use prost::Message;
use tonic::{Request, Response, Status};

struct Echo;

/// tiny_relu's signature: x float [-1, 4] -> y float [-1, 4], so the load generator sends the
/// same requests as to the real server.
fn signature() -> SignatureDefMap {
    let info = |name: &str| TensorInfo {
        dtype: DataType::DtFloat as i32,
        tensor_shape: Some(TensorShapeProto {
            dim: [-1, 4].into_iter().map(|size| tensor_shape_proto::Dim { size, name: String::new() }).collect(),
            unknown_rank: false,
        }),
        encoding: Some(tensor_info::Encoding::Name(name.to_string())),
    };
    let def = SignatureDef {
        inputs: HashMap::from([("x".to_string(), info("x"))]),
        outputs: HashMap::from([("y".to_string(), info("y"))]),
        method_name: "tensorflow/serving/predict".into(),
        defaults: Default::default(),
    };
    SignatureDefMap { signature_def: HashMap::from([("serving_default".to_string(), def)]) }
}

#[tonic::async_trait]
impl PredictionService for Echo {
    async fn predict(&self, request: Request<PredictRequest>) -> Result<Response<PredictResponse>, Status> {
        let request = request.into_inner();
        let outputs = request.inputs.into_iter().map(|(_, tensor)| ("y".to_string(), tensor)).collect();
        Ok(Response::new(PredictResponse { outputs, model_spec: request.model_spec }))
    }

    async fn get_model_metadata(&self, request: Request<GetModelMetadataRequest>) -> Result<Response<GetModelMetadataResponse>, Status> {
        let any = prost_types::Any {
            type_url: "type.googleapis.com/tensorflow.serving.SignatureDefMap".into(),
            value: signature().encode_to_vec(),
        };
        Ok(Response::new(GetModelMetadataResponse {
            model_spec: request.into_inner().model_spec,
            metadata: HashMap::from([("signature_def".to_string(), any)]),
        }))
    }

    async fn classify(&self, _: Request<ClassificationRequest>) -> Result<Response<ClassificationResponse>, Status> {
        Err(Status::unimplemented("floor server"))
    }

    async fn regress(&self, _: Request<RegressionRequest>) -> Result<Response<RegressionResponse>, Status> {
        Err(Status::unimplemented("floor server"))
    }

    async fn multi_inference(&self, _: Request<MultiInferenceRequest>) -> Result<Response<MultiInferenceResponse>, Status> {
        Err(Status::unimplemented("floor server"))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `cargo bench` passes `--bench`; the address is the first argument that parses as one.
    let address = std::env::args().skip(1).find_map(|a| a.parse().ok()).ok_or("usage: grpc_floor HOST:PORT")?;
    eprintln!("grpc_floor: listening on {address}");
    tonic::transport::Server::builder().add_service(PredictionServiceServer::new(Echo)).serve(address).await?;
    Ok(())
}
