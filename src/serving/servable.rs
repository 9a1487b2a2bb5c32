use std::collections::BTreeMap;
use std::sync::Arc;

use crate::engine::{ComputePool, EngineError, Session, Timing};
use crate::tensor::HostTensor;

use super::{DEFAULT_SIGNATURE, PREDICT_METHOD, RequestError, Signature};

/// One loaded model version. Requests hold an `Arc<Servable>` for their whole duration, so an
/// unload never pulls a model out from under an in-flight request.
pub struct Servable {
    name: String,
    version: i64,
    signatures: BTreeMap<String, Signature>,
    session: Arc<dyn Session>,
    compute: ComputePool,
}

/// Why running a validated request failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Compute(#[from] crate::engine::ComputeError),
}

impl Servable {
    pub fn new(name: String, version: i64, session: Arc<dyn Session>, compute: ComputePool) -> Self {
        let default = Signature {
            name: DEFAULT_SIGNATURE.to_string(),
            method_name: PREDICT_METHOD.to_string(),
            inputs: session.inputs().to_vec(),
            outputs: session.outputs().to_vec(),
        };
        let signatures = BTreeMap::from([(DEFAULT_SIGNATURE.to_string(), default)]);
        Self { name, version, signatures, session, compute }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn version(&self) -> i64 {
        self.version
    }

    pub fn signatures(&self) -> &BTreeMap<String, Signature> {
        &self.signatures
    }

    /// Resolves a request's signature name; empty means `serving_default`.
    pub fn signature(&self, name: &str) -> Result<&Signature, RequestError> {
        let key = if name.is_empty() { DEFAULT_SIGNATURE } else { name };
        self.signatures.get(key).ok_or_else(|| RequestError::UnknownSignature {
            name: key.to_string(),
            available: self.signatures.keys().cloned().collect::<Vec<_>>().join(", "),
        })
    }

    /// Executes validated inputs (in signature order) off the async runtime.
    pub async fn run(&self, inputs: Vec<HostTensor>) -> Result<(Vec<HostTensor>, Timing), RunError> {
        let session = Arc::clone(&self.session);
        let (result, timing) = self.compute.run(move || session.run(inputs)).await?;
        Ok((result?, timing))
    }
}
