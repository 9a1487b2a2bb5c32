//! TF Serving's gRPC services on tonic.

mod model_service;
mod model_spec;
mod prediction;

use std::sync::Arc;

use tonic::transport::server::Router;

use crate::proto::tensorflow::serving::model_service_server::ModelServiceServer;
use crate::proto::tensorflow::serving::prediction_service_server::PredictionServiceServer;
use crate::repository::ModelRepository;

pub use model_service::ModelServiceImpl;
pub use prediction::{PredictOptions, PredictionServiceImpl};

/// TF Serving accepts messages up to INT32_MAX; clients rely on sending large batches.
const MAX_MESSAGE_BYTES: usize = i32::MAX as usize;

/// The gRPC router with every TF Serving service mounted.
pub fn router(repository: Arc<ModelRepository>, options: PredictOptions) -> Router {
    let prediction = PredictionServiceServer::new(PredictionServiceImpl::new(Arc::clone(&repository), options))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let models = ModelServiceServer::new(ModelServiceImpl::new(repository))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    tonic::transport::Server::builder().add_service(prediction).add_service(models)
}
