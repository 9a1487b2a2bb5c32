use std::sync::Arc;

use prost::Message;
use tonic::{Request, Response, Status};

use crate::error::ServingError;
use crate::proto::tensorflow::serving::prediction_service_server::PredictionService;
use crate::proto::tensorflow::serving::{
    ClassificationRequest, ClassificationResponse, GetModelMetadataRequest, GetModelMetadataResponse,
    MultiInferenceRequest, MultiInferenceResponse, PredictRequest, PredictResponse, RegressionRequest,
    RegressionResponse, SignatureDefMap,
};
use crate::proto::tensorflow::{SignatureDef, TensorInfo, tensor_info};
use crate::repository::ModelRepository;
use crate::serving::{RequestError, Signature, check_input, check_input_keys, select_outputs};
use crate::tensor::tf_proto::{self, dtype_to_tf, shape_to_tf};

use super::model_spec;

const SIGNATURE_DEF_FIELD: &str = "signature_def";
const SIGNATURE_DEF_MAP_URL: &str = "type.googleapis.com/tensorflow.serving.SignatureDefMap";

/// Per-server Predict settings.
#[derive(Debug, Clone)]
pub struct PredictOptions {
    /// `--enable_serialization_as_tensor_content`.
    pub tensor_content_outputs: bool,
    /// Largest tensor a request may ask us to materialise.
    pub max_tensor_bytes: usize,
}

pub struct PredictionServiceImpl {
    repository: Arc<ModelRepository>,
    options: PredictOptions,
}

impl PredictionServiceImpl {
    pub fn new(repository: Arc<ModelRepository>, options: PredictOptions) -> Self {
        Self { repository, options }
    }

    async fn predict_inner(&self, request: PredictRequest) -> Result<PredictResponse, ServingError> {
        let (name, version) = model_spec::parse(request.model_spec.as_ref())?;
        let servable = self.repository.resolve(name, &version)?;
        let signature_name = request.model_spec.as_ref().map_or("", |s| s.signature_name.as_str());
        let signature = servable.signature(signature_name)?;
        check_input_keys(signature, request.inputs.keys().map(String::as_str))?;
        let selected = select_outputs(signature, &request.output_filter)?;

        let mut inputs = Vec::with_capacity(signature.inputs.len());
        for spec in &signature.inputs {
            let proto = request
                .inputs
                .get(&spec.key)
                .ok_or_else(|| RequestError::Invalid(format!("missing input {}", spec.key)))?;
            let tensor_error = |source| RequestError::Tensor { key: spec.key.clone(), source };
            let header = tf_proto::header(proto, self.options.max_tensor_bytes).map_err(tensor_error)?;
            check_input(spec, header.dtype, &header.shape)?;
            inputs.push(tf_proto::decode(proto, header).map_err(tensor_error)?);
        }

        let results = servable.run(inputs).await?;
        let outputs = selected
            .into_iter()
            .map(|i| {
                (signature.outputs[i].key.clone(), tf_proto::encode(&results[i], self.options.tensor_content_outputs))
            })
            .collect();
        Ok(PredictResponse {
            outputs,
            model_spec: Some(model_spec::echo(servable.name(), servable.version(), &signature.name)),
        })
    }

    fn metadata_inner(&self, request: GetModelMetadataRequest) -> Result<GetModelMetadataResponse, ServingError> {
        let (name, version) = model_spec::parse(request.model_spec.as_ref())?;
        if request.metadata_field.is_empty() {
            return Err(RequestError::Invalid("GetModelMetadataRequest must specify at least one metadata_field".into()).into());
        }
        if let Some(field) = request.metadata_field.iter().find(|f| f.as_str() != SIGNATURE_DEF_FIELD) {
            return Err(RequestError::Invalid(format!("Metadata field {field} is not supported")).into());
        }
        let servable = self.repository.resolve(name, &version)?;
        let map = SignatureDefMap {
            signature_def: servable.signatures().iter().map(|(k, s)| (k.clone(), signature_def(s))).collect(),
        };
        let any = prost_types::Any { type_url: SIGNATURE_DEF_MAP_URL.to_string(), value: map.encode_to_vec() };
        let mut spec = model_spec::echo(servable.name(), servable.version(), "");
        spec.signature_name.clear();
        Ok(GetModelMetadataResponse {
            model_spec: Some(spec),
            metadata: [(SIGNATURE_DEF_FIELD.to_string(), any)].into_iter().collect(),
        })
    }
}

fn tensor_info(spec: &crate::tensor::TensorSpec) -> TensorInfo {
    TensorInfo {
        dtype: dtype_to_tf(spec.dtype) as i32,
        tensor_shape: Some(match &spec.shape {
            Some(dims) => shape_to_tf(dims.iter().map(|d| d.as_i64())),
            None => crate::proto::tensorflow::TensorShapeProto { dim: Vec::new(), unknown_rank: true },
        }),
        encoding: Some(tensor_info::Encoding::Name(spec.key.clone())),
    }
}

fn signature_def(signature: &Signature) -> SignatureDef {
    SignatureDef {
        inputs: signature.inputs.iter().map(|s| (s.key.clone(), tensor_info(s))).collect(),
        outputs: signature.outputs.iter().map(|s| (s.key.clone(), tensor_info(s))).collect(),
        method_name: signature.method_name.clone(),
        defaults: Default::default(),
    }
}

fn unimplemented(what: &str) -> Status {
    ServingError::Unimplemented(format!(
        "{what} is not implemented yet: candle-serving serves ONNX models through Predict; use PredictionService/Predict"
    ))
    .into()
}

#[tonic::async_trait]
impl PredictionService for PredictionServiceImpl {
    async fn classify(&self, _: Request<ClassificationRequest>) -> Result<Response<ClassificationResponse>, Status> {
        Err(unimplemented("Classify (tf.Example input)"))
    }

    async fn regress(&self, _: Request<RegressionRequest>) -> Result<Response<RegressionResponse>, Status> {
        Err(unimplemented("Regress (tf.Example input)"))
    }

    async fn predict(&self, request: Request<PredictRequest>) -> Result<Response<PredictResponse>, Status> {
        let request = request.into_inner();
        let model = request.model_spec.as_ref().map(|s| s.name.clone()).unwrap_or_default();
        let started = std::time::Instant::now();
        let result = self.predict_inner(request).await;
        match &result {
            Ok(_) => tracing::debug!(%model, elapsed_us = started.elapsed().as_micros() as u64, "predict ok"),
            Err(e) => tracing::debug!(%model, code = e.kind().label(), error = %e, "predict failed"),
        }
        result.map(Response::new).map_err(Status::from)
    }

    async fn multi_inference(
        &self,
        _: Request<MultiInferenceRequest>,
    ) -> Result<Response<MultiInferenceResponse>, Status> {
        Err(unimplemented("MultiInference (tf.Example input)"))
    }

    async fn get_model_metadata(
        &self,
        request: Request<GetModelMetadataRequest>,
    ) -> Result<Response<GetModelMetadataResponse>, Status> {
        self.metadata_inner(request.into_inner()).map(Response::new).map_err(Status::from)
    }
}
