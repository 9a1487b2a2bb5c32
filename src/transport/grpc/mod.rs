//! TF Serving's gRPC services on tonic.

mod inference;
mod model_service;
mod model_spec;
mod prediction;

pub(crate) use prediction::grpc_deadline;

use tonic::service::Routes;

use crate::proto::tensorflow::serving::model_service_server::ModelServiceServer;
use crate::proto::tensorflow::serving::prediction_service_server::PredictionServiceServer;
use tonic_health::pb::health_server::{Health, HealthServer};

use crate::proto::inference::grpc_inference_service_server::GrpcInferenceServiceServer;
use crate::repository::ManagerHandle;
use crate::request::RequestCore;
use crate::transport::health::Readiness;
use crate::transport::v2::grpc::InferenceServiceImpl;

pub use model_service::ModelServiceImpl;
pub use prediction::{PredictOptions, PredictionServiceImpl};

/// Every gRPC service: TF Serving's two, the v2 protocol's `inference.GRPCInferenceService`,
/// `grpc.health.v1`, and server reflection (v1 and v1alpha) over the same descriptors the
/// code is generated from, so grpcurl works.
/// `max_message_bytes` bounds both directions (`--grpc_max_message_bytes`).
pub fn routes(
    core: RequestCore,
    options: PredictOptions,
    health: HealthServer<impl Health>,
    readiness: Readiness,
    manager: ManagerHandle,
    max_message_bytes: usize,
) -> Result<Routes, tonic_reflection::server::Error> {
    let repository = core.repository_handle();
    let max_tensor_bytes = options.max_tensor_bytes;
    let inference = GrpcInferenceServiceServer::new(InferenceServiceImpl::new(core.clone(), readiness, manager.clone(), max_tensor_bytes))
        .max_decoding_message_size(max_message_bytes)
        .max_encoding_message_size(max_message_bytes);
    let prediction = PredictionServiceServer::new(PredictionServiceImpl::new(core, options))
        .max_decoding_message_size(max_message_bytes)
        .max_encoding_message_size(max_message_bytes);
    let models = ModelServiceServer::new(ModelServiceImpl::new(repository, manager))
        .max_decoding_message_size(max_message_bytes)
        .max_encoding_message_size(max_message_bytes);
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let mut builder = Routes::builder();
    builder
        .add_service(prediction)
        .add_service(models)
        .add_service(inference)
        .add_service(health)
        .add_service(reflection().build_v1()?)
        .add_service(reflection().build_v1alpha()?);
    Ok(builder.routes())
}

#[cfg(test)]
mod tests {
    use prost::Message;

    /// Reflection serves these descriptors, so grpcurl and Triton's tooling can list and call
    /// the v2 service next to TF Serving's.
    #[test]
    fn reflection_describes_every_served_service() {
        let set = prost_types::FileDescriptorSet::decode(crate::proto::FILE_DESCRIPTOR_SET).expect("descriptor set");
        let services: Vec<String> = set
            .file
            .iter()
            .flat_map(|f| f.service.iter().map(move |s| format!("{}.{}", f.package(), s.name())))
            .collect();
        for wanted in ["tensorflow.serving.PredictionService", "tensorflow.serving.ModelService", "inference.GRPCInferenceService"] {
            assert!(services.iter().any(|s| s == wanted), "{wanted} missing from {services:?}");
        }
    }
}
