use std::sync::Arc;
use std::time::Instant;

use prost::Message;
use tonic::{Request, Response, Status};

use crate::error::ServingError;
use crate::metrics::{Entrypoint, Metrics, RequestRecord};
use crate::proto::tensorflow::serving::prediction_service_server::PredictionService;
use crate::proto::tensorflow::serving::{
    ClassificationRequest, ClassificationResponse, GetModelMetadataRequest, GetModelMetadataResponse,
    MultiInferenceRequest, MultiInferenceResponse, PredictRequest, PredictResponse, RegressionRequest,
    RegressionResponse, SignatureDefMap,
};
use crate::proto::tensorflow::{SignatureDef, TensorInfo, tensor_info};
use crate::repository::ModelRepository;
use crate::serving::{Admission, PredictCall, RequestError, Signature, WireTensor, predict};
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
    metrics: Arc<Metrics>,
    admission: Admission,
    options: PredictOptions,
}

impl PredictionServiceImpl {
    pub fn new(repository: Arc<ModelRepository>, metrics: Arc<Metrics>, admission: Admission, options: PredictOptions) -> Self {
        Self { repository, metrics, admission, options }
    }

    /// Metrics and the per-request log line, shared by every RPC of this service.
    fn finish<T>(&self, model: &str, api: &str, started: Instant, result: Result<(T, Option<i64>), ServingError>) -> Result<Response<T>, Status> {
        let elapsed = started.elapsed();
        let version = result.as_ref().ok().and_then(|(_, v)| *v);
        let outcome = result.as_ref().map(|_| ()).map_err(ServingError::kind);
        self.metrics.observe_request(&RequestRecord { model, version, api, entrypoint: Entrypoint::Grpc, outcome, elapsed });
        let code = outcome.err().map_or("OK", |k| k.label());
        let span = tracing::debug_span!("request", model, api, version, code, duration_us = elapsed.as_micros() as u64);
        let _entered = span.enter();
        match result {
            Ok((response, _)) => {
                tracing::debug!("ok");
                Ok(Response::new(response))
            }
            Err(err) => {
                tracing::debug!(error = %err, "failed");
                Err(err.into())
            }
        }
    }

    async fn predict_inner(&self, request: PredictRequest, deadline: Option<Instant>) -> Result<PredictResponse, ServingError> {
        let (name, version) = model_spec::parse(request.model_spec.as_ref())?;
        let call = PredictCall {
            model: name.to_string(),
            version,
            signature_name: request.model_spec.as_ref().map(|s| s.signature_name.clone()).unwrap_or_default(),
            inputs: request.inputs.into_iter().map(|(k, v)| (k, WireTensor { proto: v, max_bytes: self.options.max_tensor_bytes })).collect(),
            output_filter: request.output_filter,
            deadline,
        };
        let outcome = predict(&self.repository, call).await?;
        self.metrics.observe_execution(outcome.servable.name(), "Predict", outcome.timing.queued, outcome.timing.computed);
        let as_content = self.options.tensor_content_outputs;
        Ok(PredictResponse {
            outputs: outcome.outputs.iter().map(|(k, t)| (k.clone(), tf_proto::encode(t, as_content))).collect(),
            model_spec: Some(model_spec::echo(outcome.servable.name(), outcome.servable.version(), &outcome.signature_name)),
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
        Ok(GetModelMetadataResponse {
            model_spec: Some(model_spec::echo(servable.name(), servable.version(), "")),
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

/// The client's deadline from the `grpc-timeout` header (`<digits><H|M|S|m|u|n>`).
fn grpc_deadline<T>(request: &Request<T>, now: Instant) -> Option<Instant> {
    let value = request.metadata().get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    let n: u64 = digits.parse().ok()?;
    let timeout = match unit {
        "H" => std::time::Duration::from_secs(n.saturating_mul(3600)),
        "M" => std::time::Duration::from_secs(n.saturating_mul(60)),
        "S" => std::time::Duration::from_secs(n),
        "m" => std::time::Duration::from_millis(n),
        "u" => std::time::Duration::from_micros(n),
        "n" => std::time::Duration::from_nanos(n),
        _ => return None,
    };
    now.checked_add(timeout)
}

fn served_version(spec: Option<&crate::proto::tensorflow::serving::ModelSpec>) -> Option<i64> {
    match spec?.version_choice {
        Some(crate::proto::tensorflow::serving::model_spec::VersionChoice::Version(v)) => Some(v),
        _ => None,
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
        let started = Instant::now();
        let deadline = grpc_deadline(&request, started);
        let request = request.into_inner();
        let model = request.model_spec.as_ref().map(|s| s.name.clone()).unwrap_or_default();
        let _permit = match self.admission.admit() {
            Ok(permit) => permit,
            Err(err) => {
                self.metrics.count_rejection(&model, "inflight_limit");
                return self.finish::<PredictResponse>(&model, "Predict", started, Err(err.into()));
            }
        };
        let _inflight = self.metrics.inflight(&model);
        let result = self.predict_inner(request, deadline).await.map(|r| {
            let version = served_version(r.model_spec.as_ref());
            (r, version)
        });
        self.finish(&model, "Predict", started, result)
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
        let started = Instant::now();
        let request = request.into_inner();
        let model = request.model_spec.as_ref().map(|s| s.name.clone()).unwrap_or_default();
        let result = self.metadata_inner(request).map(|r| {
            let version = served_version(r.model_spec.as_ref());
            (r, version)
        });
        self.finish(&model, "GetModelMetadata", started, result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_header_becomes_a_deadline() {
        let now = Instant::now();
        let mut request = Request::new(());
        request.metadata_mut().insert("grpc-timeout", "250m".parse().expect("value"));
        assert_eq!(grpc_deadline(&request, now), Some(now + std::time::Duration::from_millis(250)));
        let mut request = Request::new(());
        request.metadata_mut().insert("grpc-timeout", "3S".parse().expect("value"));
        assert_eq!(grpc_deadline(&request, now), Some(now + std::time::Duration::from_secs(3)));
        assert_eq!(grpc_deadline(&Request::new(()), now), None);
    }
}
