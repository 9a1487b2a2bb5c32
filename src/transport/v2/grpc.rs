//! `inference.GRPCInferenceService` on tonic: health, metadata, ModelInfer with typed or raw
//! contents, and the model repository extension.

use std::time::{Duration, Instant};

use prost::bytes::Bytes;
use tonic::{Request, Response, Status};

use crate::error::ServingError;
use crate::metrics::Entrypoint;
use crate::proto::inference::grpc_inference_service_server::GrpcInferenceService;
use crate::proto::inference::infer_parameter::ParameterChoice;
use crate::proto::inference::model_infer_response::InferOutputTensor;
use crate::proto::inference::model_metadata_response::TensorMetadata as TensorMetadataProto;
use crate::proto::inference::repository_index_response::ModelIndex;
use crate::proto::inference::*;
use crate::repository::{IndexState, ManagerHandle};
use crate::request::{Incoming, RequestCore, TraceHeaders};
use crate::servable::RequestError;
use crate::tensor::le_bytes;
use crate::transport::grpc::grpc_deadline;
use crate::transport::health::Readiness;

use super::tensor::{shape_i64, typed_contents};
use super::{InferCall, TensorMetadata, V2Input, Values, datatype};

pub struct InferenceServiceImpl {
    core: RequestCore,
    readiness: Readiness,
    manager: ManagerHandle,
    max_tensor_bytes: usize,
}

impl InferenceServiceImpl {
    pub fn new(core: RequestCore, readiness: Readiness, manager: ManagerHandle, max_tensor_bytes: usize) -> Self {
        Self { core, readiness, manager, max_tensor_bytes }
    }

    async fn infer(&self, request: Request<ModelInferRequest>) -> Result<ModelInferResponse, ServingError> {
        let incoming = incoming(&request, "ModelInfer", |r| &r.model_name);
        let now = Instant::now();
        let deadline = grpc_deadline(&request, now);
        let request = request.into_inner();
        let (call, raw_inputs) =
            match self.decode(request.inputs, request.raw_input_contents, request.outputs, &request.parameters, deadline, now) {
                Ok(decoded) => decoded,
                // Recorded like every other failure.
                Err(err) => return self.core.begin(incoming).finish(Err(err.into())),
            };
        let call = InferCall { version: request.model_version, ..call };
        let answer = super::infer(&self.core, incoming, call).await?;
        // Raw answers for raw requests (what Triton's clients send); typed ones otherwise,
        // unless an output has no typed field (FP16, BF16), since raw is all or nothing.
        let raw = raw_inputs || answer.outputs.iter().any(|(_, t)| typed_contents(t).is_none());
        let mut outputs = Vec::with_capacity(answer.outputs.len());
        let mut raw_output_contents = Vec::new();
        for (name, tensor) in &answer.outputs {
            let contents = if raw {
                raw_output_contents.push(Bytes::from(le_bytes::encode(tensor.data())));
                None
            } else {
                typed_contents(tensor)
            };
            outputs.push(InferOutputTensor {
                name: name.clone(),
                datatype: datatype::name(tensor.dtype()).to_string(),
                shape: shape_i64(tensor),
                parameters: Default::default(),
                contents,
            });
        }
        Ok(ModelInferResponse {
            model_name: answer.model_name,
            model_version: answer.model_version,
            id: request.id,
            parameters: Default::default(),
            outputs,
            raw_output_contents,
        })
    }

    /// The call, and whether the inputs came raw.
    fn decode(
        &self,
        inputs: Vec<model_infer_request::InferInputTensor>,
        raw: Vec<Bytes>,
        outputs: Vec<model_infer_request::InferRequestedOutputTensor>,
        parameters: &std::collections::HashMap<String, InferParameter>,
        deadline: Option<Instant>,
        now: Instant,
    ) -> Result<(InferCall, bool), RequestError> {
        let raw_inputs = !raw.is_empty();
        if raw_inputs && raw.len() != inputs.len() {
            return Err(RequestError::Invalid(format!(
                "raw_input_contents has {} entries but the request has {} inputs: send raw contents for every input or for none",
                raw.len(),
                inputs.len()
            )));
        }
        let mut raw = raw.into_iter();
        let mut decoded = Vec::with_capacity(inputs.len());
        for input in inputs {
            let values = match raw.next() {
                Some(bytes) => {
                    if input.contents.as_ref().is_some_and(has_values) {
                        return Err(RequestError::Invalid(format!(
                            "input '{}' has both typed contents and raw_input_contents; send one",
                            input.name
                        )));
                    }
                    Values::Raw(bytes)
                }
                None => Values::Typed(input.contents.unwrap_or_default()),
            };
            decoded.push(V2Input {
                name: input.name,
                datatype: input.datatype,
                shape: input.shape,
                values,
                max_bytes: self.max_tensor_bytes,
            });
        }
        let mut names = Vec::with_capacity(outputs.len());
        for output in outputs {
            if output.parameters.contains_key("classification") {
                return Err(RequestError::Invalid(format!(
                    "output '{}' asks for the classification extension, which this server does not implement",
                    output.name
                )));
            }
            names.push(output.name);
        }
        let deadline = earliest(deadline, timeout_parameter(parameters)?.map(|t| now + t));
        Ok((InferCall { version: String::new(), inputs: decoded, outputs: names, deadline }, raw_inputs))
    }
}

fn has_values(c: &InferTensorContents) -> bool {
    *c != InferTensorContents::default()
}

/// Triton's `timeout` request parameter, in microseconds.
pub(super) fn timeout_parameter(
    parameters: &std::collections::HashMap<String, InferParameter>,
) -> Result<Option<Duration>, RequestError> {
    let Some(parameter) = parameters.get("timeout") else { return Ok(None) };
    match parameter.parameter_choice {
        Some(ParameterChoice::Int64Param(us)) if us >= 0 => Ok(Some(Duration::from_micros(us as u64))),
        Some(ParameterChoice::Uint64Param(us)) => Ok(Some(Duration::from_micros(us))),
        _ => Err(RequestError::Invalid("the 'timeout' parameter must be a non-negative integer of microseconds".into())),
    }
}

pub(super) fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn incoming<T>(request: &Request<T>, api: &'static str, model: impl Fn(&T) -> &String) -> Incoming {
    Incoming { entrypoint: Entrypoint::Grpc, api, model: model(request.get_ref()).clone(), trace: TraceHeaders::read(request.metadata().as_ref()) }
}

fn tensor_metadata(t: TensorMetadata) -> TensorMetadataProto {
    TensorMetadataProto { name: t.name, datatype: t.datatype.to_string(), shape: t.shape }
}

#[tonic::async_trait]
impl GrpcInferenceService for InferenceServiceImpl {
    async fn server_live(&self, _: Request<ServerLiveRequest>) -> Result<Response<ServerLiveResponse>, Status> {
        Ok(Response::new(ServerLiveResponse { live: true }))
    }

    async fn server_ready(&self, _: Request<ServerReadyRequest>) -> Result<Response<ServerReadyResponse>, Status> {
        Ok(Response::new(ServerReadyResponse { ready: self.readiness.is_ready() }))
    }

    async fn model_ready(&self, request: Request<ModelReadyRequest>) -> Result<Response<ModelReadyResponse>, Status> {
        let request = request.into_inner();
        let ready = super::model_ready(self.core.repository(), &request.name, &request.version);
        Ok(Response::new(ModelReadyResponse { ready }))
    }

    async fn server_metadata(&self, _: Request<ServerMetadataRequest>) -> Result<Response<ServerMetadataResponse>, Status> {
        Ok(Response::new(ServerMetadataResponse {
            name: super::SERVER_NAME.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            extensions: super::EXTENSIONS.iter().map(|e| e.to_string()).collect(),
        }))
    }

    async fn model_metadata(&self, request: Request<ModelMetadataRequest>) -> Result<Response<ModelMetadataResponse>, Status> {
        let incoming = incoming(&request, "ModelMetadata", |r| &r.name);
        let metadata = super::model_metadata(&self.core, incoming, &request.get_ref().version)?;
        Ok(Response::new(ModelMetadataResponse {
            name: metadata.name,
            versions: metadata.versions,
            platform: metadata.platform.to_string(),
            inputs: metadata.inputs.into_iter().map(tensor_metadata).collect(),
            outputs: metadata.outputs.into_iter().map(tensor_metadata).collect(),
        }))
    }

    async fn model_infer(&self, request: Request<ModelInferRequest>) -> Result<Response<ModelInferResponse>, Status> {
        Ok(Response::new(self.infer(request).await?))
    }

    async fn repository_index(&self, request: Request<RepositoryIndexRequest>) -> Result<Response<RepositoryIndexResponse>, Status> {
        let ready_only = request.get_ref().ready;
        let entries = self.manager.index().await.map_err(ServingError::from)?;
        let models = entries
            .into_iter()
            .filter(|e| !ready_only || e.state == IndexState::Ready)
            .map(|e| ModelIndex {
                name: e.name,
                version: e.version.map(|v| v.to_string()).unwrap_or_default(),
                state: e.state.name().to_string(),
                reason: e.reason,
            })
            .collect();
        Ok(Response::new(RepositoryIndexResponse { models }))
    }

    async fn repository_model_load(
        &self,
        request: Request<RepositoryModelLoadRequest>,
    ) -> Result<Response<RepositoryModelLoadResponse>, Status> {
        self.manager.load(&request.get_ref().model_name).await.map_err(ServingError::from)?;
        Ok(Response::new(RepositoryModelLoadResponse {}))
    }

    async fn repository_model_unload(
        &self,
        request: Request<RepositoryModelUnloadRequest>,
    ) -> Result<Response<RepositoryModelUnloadResponse>, Status> {
        self.manager.unload(&request.get_ref().model_name).await.map_err(ServingError::from)?;
        Ok(Response::new(RepositoryModelUnloadResponse {}))
    }
}
