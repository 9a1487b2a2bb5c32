use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::batching::{BatchError, Batcher, BatchingOptions};
use crate::engine::{ComputePool, EngineError, Session, Timing};
use crate::metrics::Metrics;
use crate::tensor::HostTensor;

use super::{DEFAULT_SIGNATURE, PREDICT_METHOD, RequestError, Signature};

/// One loaded model version. Requests hold an `Arc<Servable>` for their whole duration, so an
/// unload never pulls a model out from under an in-flight request.
pub struct Servable {
    name: String,
    version: i64,
    signatures: BTreeMap<String, Signature>,
    session: Arc<dyn Session>,
    executor: Executor,
}

/// Why running a validated request failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Compute(#[from] crate::engine::ComputeError),
    /// Refused by the batch queue (full, or a request larger than a batch).
    #[error(transparent)]
    Batch(BatchError),
    #[error("Deadline exceeded: the request's deadline passed before the model ran")]
    DeadlineExceeded,
}

/// Engine and deadline failures seen through the batch queue are reported as if the request
/// had run alone, so one error kind maps to one status code however the version executes.
impl From<BatchError> for RunError {
    fn from(err: BatchError) -> Self {
        match err {
            BatchError::Engine(e) => RunError::Engine(e),
            BatchError::Compute(e) => RunError::Compute(e),
            BatchError::DeadlineExceeded => RunError::DeadlineExceeded,
            refused @ (BatchError::QueueFull { .. } | BatchError::TooLarge { .. }) => RunError::Batch(refused),
        }
    }
}

/// When a request's execution happened: it was handed over at `submitted`, waited `queued`
/// (batch queue and compute queue), then ran for `computed`. Metrics take the durations;
/// traces place the queue and compute spans from them.
#[derive(Debug, Clone, Copy)]
pub struct Timeline {
    pub submitted: Instant,
    pub queued: Duration,
    pub computed: Duration,
}

/// How a version executes: straight onto the compute threads, or through its batch queue.
enum Executor {
    Direct(ComputePool),
    Batched(Batcher, ComputePool),
}

impl Servable {
    /// `batching` turns on dynamic batching for this version (with the metrics it reports to).
    pub fn new(
        name: String,
        version: i64,
        session: Arc<dyn Session>,
        compute: ComputePool,
        batching: Option<(BatchingOptions, Arc<Metrics>)>,
    ) -> Self {
        let default = Signature {
            name: DEFAULT_SIGNATURE.to_string(),
            method_name: PREDICT_METHOD.to_string(),
            inputs: session.inputs().to_vec(),
            outputs: session.outputs().to_vec(),
        };
        let signatures = BTreeMap::from([(DEFAULT_SIGNATURE.to_string(), default)]);
        let executor = match batching {
            None => Executor::Direct(compute),
            Some((options, metrics)) => {
                let batcher = Batcher::spawn(Arc::clone(&session), compute.clone(), options, metrics, name.clone());
                Executor::Batched(batcher, compute)
            }
        };
        Self { name, version, signatures, session, executor }
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
    /// A request whose `deadline` passes while it waits gets `DeadlineExceeded`.
    pub async fn run(&self, inputs: Vec<HostTensor>, deadline: Option<Instant>) -> Result<(Vec<HostTensor>, Timeline), RunError> {
        let submitted = Instant::now();
        if deadline.is_some_and(|d| d <= submitted) {
            return Err(RunError::DeadlineExceeded);
        }
        let (outputs, Timing { queued, computed }) = self.execute(inputs, deadline).await?;
        Ok((outputs, Timeline { submitted, queued, computed }))
    }

    async fn execute(&self, inputs: Vec<HostTensor>, deadline: Option<Instant>) -> Result<(Vec<HostTensor>, Timing), RunError> {
        let work = async {
            match &self.executor {
                Executor::Batched(batcher, _) if Batcher::accepts(&inputs) => {
                    Ok(batcher.submit(inputs, deadline.map(tokio::time::Instant::from_std)).await?)
                }
                Executor::Batched(_, compute) | Executor::Direct(compute) => {
                    let session = Arc::clone(&self.session);
                    let (result, timing) = compute.run(move || session.run(inputs)).await?;
                    Ok((result?, timing))
                }
            }
        };
        match deadline {
            None => work.await,
            Some(d) => tokio::time::timeout_at(d.into(), work).await.unwrap_or(Err(RunError::DeadlineExceeded)),
        }
    }
}
