//! The KServe v2 / Open Inference Protocol, the protocol of Triton, KServe, Seldon MLServer,
//! TorchServe and OpenVINO Model Server, served next to TF Serving's on the same two ports:
//! `inference.GRPCInferenceService` on the gRPC port and `/v2/...` on the REST port.
//!
//! Both transports decode into an [`InferCall`] and go through [`infer`], which hands the
//! request core a [`PredictCall`] of the default signature: admission, deadlines, batching,
//! metrics (under the `api` labels `ModelInfer` and `infer`), logs and traces are the same
//! as for a TF Serving Predict.

pub mod datatype;
pub mod grpc;
mod rest;
pub mod tensor;

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;
use std::time::Instant;

use crate::error::ServingError;
use crate::repository::{ModelRepository, VersionRequest};
use crate::request::{Incoming, RequestCore};
use crate::servable::{PredictCall, RequestError, Servable};
use crate::tensor::{HostTensor, TensorSpec};

pub use rest::{RestV2State, router};
pub use tensor::{V2Input, Values};

/// `ServerMetadata`'s name.
pub const SERVER_NAME: &str = "candle-serving";

/// The protocol extensions this server implements, as `ServerMetadata` lists them.
pub const EXTENSIONS: &[&str] = &["model_repository", "binary_tensor_data"];

/// The protocol's platform name for the models the engine loads today (ONNX files; a
/// SavedModel importer would answer `tensorflow_savedmodel`).
pub const PLATFORM: &str = "onnx_onnxv1";

/// A model's version as the v2 protocol names it: "" is the version policy's default (the
/// newest available), digits are a version number, anything else is a TF Serving label.
pub fn version_request(version: &str) -> VersionRequest {
    match version {
        "" => VersionRequest::Latest,
        v if v.bytes().all(|b| b.is_ascii_digit()) => v.parse().map_or_else(|_| VersionRequest::Label(v.to_string()), VersionRequest::Specific),
        label => VersionRequest::Label(label.to_string()),
    }
}

/// Whether the named version answers requests now (`ModelReady`).
pub fn model_ready(repository: &ModelRepository, name: &str, version: &str) -> bool {
    repository.resolve(name, &version_request(version)).is_ok()
}

/// What `ModelMetadata` reports: the default signature's tensors, -1 for dynamic dimensions.
pub struct ModelMetadata {
    pub name: String,
    pub versions: Vec<String>,
    pub platform: &'static str,
    pub inputs: Vec<TensorMetadata>,
    pub outputs: Vec<TensorMetadata>,
}

pub struct TensorMetadata {
    pub name: String,
    pub datatype: &'static str,
    pub shape: Vec<i64>,
}

impl ModelMetadata {
    fn of(repository: &ModelRepository, servable: &Servable) -> Result<Self, RequestError> {
        let signature = servable.signature("")?;
        let describe = |spec: &TensorSpec| TensorMetadata {
            name: spec.key.clone(),
            datatype: datatype::name(spec.dtype),
            // An input of unknown rank has no v2 shape; [-1] is the closest a client can read.
            shape: spec.shape.as_ref().map_or_else(|| vec![-1], |dims| dims.iter().map(|d| d.as_i64()).collect()),
        };
        Ok(Self {
            name: servable.name().to_string(),
            versions: repository.available_versions(servable.name()).iter().map(i64::to_string).collect(),
            platform: PLATFORM,
            inputs: signature.inputs.iter().map(describe).collect(),
            outputs: signature.outputs.iter().map(describe).collect(),
        })
    }
}

/// `ModelMetadata` through the request core (counted and logged like TF's GetModelMetadata).
pub fn model_metadata(core: &RequestCore, incoming: Incoming, version: &str) -> Result<ModelMetadata, ServingError> {
    let mut request = core.begin(incoming);
    let result = request.resolve(&version_request(version)).and_then(|servable| Ok(ModelMetadata::of(core.repository(), &servable)?));
    request.finish(result)
}

/// An inference request, decoded from either transport.
pub struct InferCall {
    pub version: String,
    pub inputs: Vec<V2Input>,
    /// Requested outputs by name; empty means every output.
    pub outputs: Vec<String>,
    pub deadline: Option<Instant>,
}

pub struct InferAnswer {
    pub model_name: String,
    pub model_version: String,
    /// In the requested order, or the signature's.
    pub outputs: Vec<(String, HostTensor)>,
}

/// Runs a v2 inference on the model's default signature through the request core.
pub async fn infer(core: &RequestCore, incoming: Incoming, call: InferCall) -> Result<InferAnswer, ServingError> {
    let version = version_request(&call.version);
    let mut inputs = HashMap::with_capacity(call.inputs.len());
    for input in call.inputs {
        match inputs.entry(input.name.clone()) {
            Entry::Vacant(slot) => {
                slot.insert(input);
            }
            Entry::Occupied(slot) => {
                let err = RequestError::Invalid(format!("input '{}' appears more than once in the request", slot.key()));
                return core.begin(incoming).finish(Err(err.into()));
            }
        }
    }
    let call = PredictCall { signature_name: String::new(), inputs, output_filter: call.outputs, deadline: call.deadline };
    let (servable, outcome): (Arc<Servable>, _) = core.predict(incoming, &version, call).await?;
    Ok(InferAnswer {
        model_name: servable.name().to_string(),
        model_version: servable.version().to_string(),
        outputs: outcome.outputs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_numbers_labels_or_the_default() {
        assert_eq!(version_request(""), VersionRequest::Latest);
        assert_eq!(version_request("3"), VersionRequest::Specific(3));
        assert_eq!(version_request("stable"), VersionRequest::Label("stable".into()));
        assert_eq!(version_request("99999999999999999999"), VersionRequest::Label("99999999999999999999".into()));
    }
}
