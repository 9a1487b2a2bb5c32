use std::time::Instant;

use prost::Message;
use tonic::{Request, Response, Status};

use crate::error::ServingError;
use crate::metrics::Entrypoint;
use crate::proto::tensorflow::serving::prediction_service_server::PredictionService;
use crate::proto::tensorflow::serving::{
    ClassificationRequest, ClassificationResponse, GetModelMetadataRequest, GetModelMetadataResponse,
    ModelSpec, MultiInferenceRequest, MultiInferenceResponse, PredictRequest, PredictResponse, RegressionRequest,
    RegressionResponse,
};
use crate::request::{Incoming, RequestCore, TraceHeaders};
use crate::servable::{PredictCall, RequestError, WireTensor};
use crate::tensor::tf_proto;

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
    core: RequestCore,
    options: PredictOptions,
}

impl PredictionServiceImpl {
    pub fn new(core: RequestCore, options: PredictOptions) -> Self {
        Self { core, options }
    }

    async fn predict_inner(&self, request: Request<PredictRequest>) -> Result<PredictResponse, ServingError> {
        let incoming = incoming(&request, "Predict");
        let deadline = grpc_deadline(&request, Instant::now());
        let request = request.into_inner();
        let version = model_spec::parse(request.model_spec.as_ref()).map(|(_, v)| v);
        let call = PredictCall {
            signature_name: request.model_spec.as_ref().map(|s| s.signature_name.clone()).unwrap_or_default(),
            inputs: request.inputs.into_iter().map(|(k, v)| (k, WireTensor { proto: v, max_bytes: self.options.max_tensor_bytes })).collect(),
            output_filter: request.output_filter,
            deadline,
        };
        let version = match version {
            Ok(version) => version,
            // Recorded like every other failure: the spec is checked inside the flow.
            Err(err) => return self.core.begin(incoming).finish(Err(err.into())),
        };
        let (servable, outcome) = self.core.predict(incoming, &version, call).await?;
        let as_content = self.options.tensor_content_outputs;
        Ok(PredictResponse {
            outputs: outcome.outputs.iter().map(|(k, t)| (k.clone(), tf_proto::encode(t, as_content))).collect(),
            model_spec: Some(model_spec::echo(servable.name(), servable.version(), &outcome.signature_name)),
        })
    }

    fn metadata_inner(&self, request: Request<GetModelMetadataRequest>) -> Result<GetModelMetadataResponse, ServingError> {
        let mut flow = self.core.begin(incoming(&request, "GetModelMetadata"));
        let request = request.into_inner();
        let result = (|| {
            let (_, version) = model_spec::parse(request.model_spec.as_ref())?;
            if request.metadata_field.is_empty() {
                return Err(RequestError::Invalid("GetModelMetadataRequest must specify at least one metadata_field".into()).into());
            }
            if let Some(field) = request.metadata_field.iter().find(|f| f.as_str() != SIGNATURE_DEF_FIELD) {
                return Err(RequestError::Invalid(format!("Metadata field {field} is not supported")).into());
            }
            let servable = flow.resolve(&version)?;
            let map = servable.signature_def_map();
            let any = prost_types::Any { type_url: SIGNATURE_DEF_MAP_URL.to_string(), value: map.encode_to_vec() };
            Ok(GetModelMetadataResponse {
                model_spec: Some(model_spec::echo(servable.name(), servable.version(), "")),
                metadata: [(SIGNATURE_DEF_FIELD.to_string(), any)].into_iter().collect(),
            })
        })();
        flow.finish(result)
    }
}

/// The request's model name and trace headers, read before the body is taken apart.
pub(super) fn incoming<T: HasModelSpec>(request: &Request<T>, api: &'static str) -> Incoming {
    Incoming {
        entrypoint: Entrypoint::Grpc,
        api,
        model: request.get_ref().model_spec().map(|s| s.name.clone()).unwrap_or_default(),
        trace: TraceHeaders::read(request.metadata().as_ref()),
    }
}

pub(super) trait HasModelSpec {
    fn model_spec(&self) -> Option<&ModelSpec>;
}

impl HasModelSpec for PredictRequest {
    fn model_spec(&self) -> Option<&ModelSpec> {
        self.model_spec.as_ref()
    }
}

impl HasModelSpec for ClassificationRequest {
    fn model_spec(&self) -> Option<&ModelSpec> {
        self.model_spec.as_ref()
    }
}

impl HasModelSpec for RegressionRequest {
    fn model_spec(&self) -> Option<&ModelSpec> {
        self.model_spec.as_ref()
    }
}

impl HasModelSpec for MultiInferenceRequest {
    fn model_spec(&self) -> Option<&ModelSpec> {
        self.tasks.first().and_then(|t| t.model_spec.as_ref())
    }
}

impl HasModelSpec for GetModelMetadataRequest {
    fn model_spec(&self) -> Option<&ModelSpec> {
        self.model_spec.as_ref()
    }
}

/// The client's deadline from the `grpc-timeout` header (`<digits><H|M|S|m|u|n>`).
pub(crate) fn grpc_deadline<T>(request: &Request<T>, now: Instant) -> Option<Instant> {
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

#[tonic::async_trait]
impl PredictionService for PredictionServiceImpl {
    async fn classify(&self, request: Request<ClassificationRequest>) -> Result<Response<ClassificationResponse>, Status> {
        Ok(Response::new(super::inference::classify(&self.core, request).await?))
    }

    async fn regress(&self, request: Request<RegressionRequest>) -> Result<Response<RegressionResponse>, Status> {
        Ok(Response::new(super::inference::regress(&self.core, request).await?))
    }

    async fn predict(&self, request: Request<PredictRequest>) -> Result<Response<PredictResponse>, Status> {
        Ok(Response::new(self.predict_inner(request).await?))
    }

    async fn multi_inference(&self, request: Request<MultiInferenceRequest>) -> Result<Response<MultiInferenceResponse>, Status> {
        Ok(Response::new(super::inference::multi_inference(&self.core, request).await?))
    }

    async fn get_model_metadata(
        &self,
        request: Request<GetModelMetadataRequest>,
    ) -> Result<Response<GetModelMetadataResponse>, Status> {
        Ok(Response::new(self.metadata_inner(request)?))
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
