//! Predict on one servable: check the request against its signature, materialise tensors,
//! execute, select outputs.

use std::collections::HashMap;
use std::time::Instant;

use crate::tensor::tf_proto;
use crate::tensor::{DType, HostTensor, TensorSpec};

use super::{RequestError, RunError, Servable, Signature, Timeline, check_input, check_input_keys, select_outputs};

/// A request tensor in its wire form. Split in two steps so that dtype and shape are checked
/// against the signature before any element is allocated.
pub trait RequestTensor {
    /// dtype and shape as the client declared them.
    fn header(&self, spec: &TensorSpec) -> Result<(DType, Vec<usize>), RequestError>;
    /// The values, once `header` passed the signature check.
    fn materialise(self, spec: &TensorSpec, dtype: DType, shape: Vec<usize>) -> Result<HostTensor, RequestError>;
}

/// A Predict request for one servable, once the transport has decoded it and the request
/// flow has resolved which version answers.
pub struct PredictCall<T> {
    /// Empty = `serving_default`.
    pub signature_name: String,
    pub inputs: HashMap<String, T>,
    /// Empty = every output.
    pub output_filter: Vec<String>,
    /// From the client's `grpc-timeout` or the REST timeout; queued work past it is dropped.
    pub deadline: Option<Instant>,
}

pub struct PredictOutcome {
    pub signature_name: String,
    /// Selected outputs in request (or signature) order.
    pub outputs: Vec<(String, HostTensor)>,
    pub timeline: Timeline,
}

impl Servable {
    /// Checks `call` against its signature, materialises the tensors, executes and picks the
    /// requested outputs. Warm-up runs this on a version before it is published, so no
    /// request can reach it half-ready.
    pub async fn predict<T: RequestTensor>(&self, mut call: PredictCall<T>) -> Result<PredictOutcome, PredictError> {
        let signature = self.signature(&call.signature_name)?;
        let runner = self.runner(signature)?;
        if let Some(examples) = &runner.examples {
            let reason = format!("it takes serialized tf.Examples (input \"{}\"); call Classify, Regress or MultiInference", examples.input.key);
            return Err(RequestError::NotRunnable { name: signature.name.clone(), reason }.into());
        }
        // Keys first, then the output filter, then tensors: the order TF reports problems in.
        check_input_keys(signature, call.inputs.keys().map(String::as_str))?;
        let selected = select_outputs(signature, &call.output_filter)?;
        let inputs = materialise_inputs(signature, std::mem::take(&mut call.inputs))?;

        let (results, timeline) = runner.run(inputs, call.deadline).await?;
        let mut results: Vec<Option<HostTensor>> = results.into_iter().map(Some).collect();
        let outputs = selected
            .into_iter()
            .filter_map(|i| results.get_mut(i).and_then(Option::take).map(|t| (signature.outputs[i].key.clone(), t)))
            .collect();
        Ok(PredictOutcome { signature_name: signature.name.clone(), outputs, timeline })
    }
}

/// Why a Predict on a servable failed: the request did not fit the signature, or running it
/// failed.
#[derive(Debug, thiserror::Error)]
pub enum PredictError {
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error(transparent)]
    Run(#[from] RunError),
}

/// Checks request tensors against `signature` and materialises them in the order the session
/// takes them. Each tensor's dtype and shape pass the signature check before its values are
/// allocated. Public because it is the whole request-side decoding step with no model behind
/// it, which is what the fuzz targets drive.
pub fn bind_inputs<T: RequestTensor>(signature: &Signature, sent: HashMap<String, T>) -> Result<Vec<HostTensor>, RequestError> {
    check_input_keys(signature, sent.keys().map(String::as_str))?;
    materialise_inputs(signature, sent)
}

/// [`bind_inputs`] after the keys were checked (`Servable::predict` checks them before the output
/// filter, the order TF reports problems in).
fn materialise_inputs<T: RequestTensor>(signature: &Signature, mut sent: HashMap<String, T>) -> Result<Vec<HostTensor>, RequestError> {
    let mut inputs = Vec::with_capacity(signature.inputs.len());
    for spec in &signature.inputs {
        let tensor = sent.remove(&spec.key).ok_or_else(|| RequestError::Invalid(format!("missing input {}", spec.key)))?;
        let (dtype, shape) = tensor.header(spec)?;
        check_input(spec, dtype, &shape)?;
        inputs.push(tensor.materialise(spec, dtype, shape)?);
    }
    Ok(inputs)
}

/// A `TensorProto` from the wire, decoded only after its header passed the signature check.
pub struct WireTensor {
    pub proto: crate::proto::tensorflow::TensorProto,
    pub max_bytes: usize,
}

impl RequestTensor for WireTensor {
    fn header(&self, spec: &TensorSpec) -> Result<(DType, Vec<usize>), RequestError> {
        let header = tf_proto::header(&self.proto, self.max_bytes)
            .map_err(|source| RequestError::Tensor { key: spec.key.clone(), source })?;
        Ok((header.dtype, header.shape))
    }

    fn materialise(self, spec: &TensorSpec, dtype: DType, shape: Vec<usize>) -> Result<HostTensor, RequestError> {
        tf_proto::decode(&self.proto, tf_proto::TensorHeader { dtype, shape })
            .map_err(|source| RequestError::Tensor { key: spec.key.clone(), source })
    }
}

/// Already-decoded tensors (REST after JSON parsing, synthetic warm-up requests).
impl RequestTensor for HostTensor {
    fn header(&self, _: &TensorSpec) -> Result<(DType, Vec<usize>), RequestError> {
        Ok((self.dtype(), self.shape().to_vec()))
    }

    fn materialise(self, _: &TensorSpec, _: DType, _: Vec<usize>) -> Result<HostTensor, RequestError> {
        Ok(self)
    }
}
