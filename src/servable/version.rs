use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::batching::{BatchError, Batcher, BatchingOptions};
use crate::engine::{ComputePool, EngineError, Session, Timing};
use crate::metrics::Metrics;
use crate::tensor::HostTensor;

use crate::example::ExampleSignature;
use crate::proto::tensorflow::serving::SignatureDefMap;

use super::{DEFAULT_SIGNATURE, PREDICT_METHOD, RequestError, Signature};

/// One loaded model version. Requests hold an `Arc<Servable>` for their whole duration, so an
/// unload never pulls a model out from under an in-flight request.
pub struct Servable {
    name: String,
    version: i64,
    signatures: BTreeMap<String, Signature>,
    /// Each signature's engine session, or why it cannot run (a SavedModel's classify or
    /// regress signature is listed and described even when its ops are not translated).
    runners: BTreeMap<String, Result<Runner, String>>,
    /// A SavedModel's own SignatureDefMap: metadata publishes the file's signatures as
    /// TensorFlow reads them (tensor names, `__saved_model_init_op`), not our view of them.
    declared: Option<SignatureDefMap>,
}

/// What executes one signature.
pub(super) struct Runner {
    session: Arc<dyn Session>,
    executor: Executor,
    cost: CostEstimate,
    /// Set when the signature takes tf.Examples (Classify, Regress).
    pub(super) examples: Option<Arc<ExampleSignature>>,
}

/// A signature of a version being built, with the session that runs it or why none can.
pub struct SignatureSession {
    pub signature: Signature,
    pub session: Result<Arc<dyn Session>, String>,
    /// Set when the signature takes serialized tf.Examples: how they become its inputs.
    pub examples: Option<ExampleSignature>,
}

/// Runs predicted to take less than this go inline on the request's own thread when a compute
/// thread is idle. A hand-off to the pool costs about 20-30 µs of CPU (a wake-up, two context
/// switches, a cross-thread reply): most of a tiny model's request, under a tenth of a run
/// this long. Longer runs go to the pool so an I/O thread is never held for long.
const INLINE_LIMIT: Duration = Duration::from_micros(250);

/// A moving average of this version's compute time per row, learnt from warm-up and traffic.
struct CostEstimate {
    /// Nanoseconds per row; `u64::MAX` until the first run is seen.
    per_row_ns: AtomicU64,
}

impl CostEstimate {
    fn new() -> Self {
        Self { per_row_ns: AtomicU64::new(u64::MAX) }
    }

    fn predicts_short(&self, rows: usize) -> bool {
        let per_row = self.per_row_ns.load(Ordering::Relaxed);
        per_row != u64::MAX && per_row.saturating_mul(rows.max(1) as u64) < INLINE_LIMIT.as_nanos() as u64
    }

    fn observe(&self, rows: usize, computed: Duration) {
        let sample = (computed.as_nanos() / rows.max(1) as u128).min(u64::MAX as u128 - 1) as u64;
        let old = self.per_row_ns.load(Ordering::Relaxed);
        // One eighth of the new sample: quick to learn, steady under noise. A lost update
        // between two threads only costs a slightly older average.
        let new = if old == u64::MAX { sample } else { old - old / 8 + sample / 8 };
        self.per_row_ns.store(new, Ordering::Relaxed);
    }
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
        let signature = Signature {
            name: DEFAULT_SIGNATURE.to_string(),
            method_name: PREDICT_METHOD.to_string(),
            inputs: session.inputs().to_vec(),
            outputs: session.outputs().to_vec(),
        };
        Self::with_signatures(name, version, vec![SignatureSession { signature, session: Ok(session), examples: None }], None, compute, batching)
    }

    /// A version with several signatures (a SavedModel's), each on its own session and, with
    /// batching, its own queue: rows of two signatures never share a batch, as in TF Serving.
    pub fn with_signatures(
        name: String,
        version: i64,
        entries: Vec<SignatureSession>,
        declared: Option<SignatureDefMap>,
        compute: ComputePool,
        batching: Option<(BatchingOptions, Arc<Metrics>)>,
    ) -> Self {
        let mut signatures = BTreeMap::new();
        let mut runners = BTreeMap::new();
        for SignatureSession { signature, session, examples } in entries {
            let examples = examples.map(Arc::new);
            let runner = session.map(|session| {
                let executor = match &batching {
                    None => Executor::Direct(compute.clone()),
                    Some((options, metrics)) => {
                        let batcher = Batcher::spawn(Arc::clone(&session), compute.clone(), options.clone(), Arc::clone(metrics), name.clone());
                        Executor::Batched(batcher, compute.clone())
                    }
                };
                Runner { session, executor, cost: CostEstimate::new(), examples }
            });
            runners.insert(signature.name.clone(), runner);
            signatures.insert(signature.name.clone(), signature);
        }
        Self { name, version, signatures, runners, declared }
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

    /// The SignatureDefMap the model file declares, where it declares one (SavedModels).
    pub fn declared_signatures(&self) -> Option<&SignatureDefMap> {
        self.declared.as_ref()
    }

    /// Resolves a request's signature name; empty means `serving_default`.
    pub fn signature(&self, name: &str) -> Result<&Signature, RequestError> {
        let key = if name.is_empty() { DEFAULT_SIGNATURE } else { name };
        self.signatures.get(key).ok_or_else(|| RequestError::UnknownSignature {
            name: key.to_string(),
            available: self.signatures.keys().cloned().collect::<Vec<_>>().join(", "),
        })
    }

    /// What runs `signature`, or why nothing can.
    pub(super) fn runner(&self, signature: &Signature) -> Result<&Runner, RequestError> {
        match self.runners.get(&signature.name) {
            Some(Ok(runner)) => Ok(runner),
            Some(Err(reason)) => Err(RequestError::NotRunnable { name: signature.name.clone(), reason: reason.clone() }),
            None => Err(RequestError::NotRunnable { name: signature.name.clone(), reason: "it has no session".into() }),
        }
    }
}

impl Runner {
    /// Executes validated inputs (in signature order) off the async runtime.
    /// A request whose `deadline` passes while it waits gets `DeadlineExceeded`.
    pub(super) async fn run(&self, inputs: Vec<HostTensor>, deadline: Option<Instant>) -> Result<(Vec<HostTensor>, Timeline), RunError> {
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
                    let rows = inputs.first().map_or(1, HostTensor::rows);
                    let inline = if self.cost.predicts_short(rows) { compute.claim_inline() } else { None };
                    let (result, timing) = match inline {
                        Some(slot) => slot.run(|| self.session.run(inputs))?,
                        None => {
                            let session = Arc::clone(&self.session);
                            compute.run(move || session.run(inputs)).await?
                        }
                    };
                    self.cost.observe(rows, timing.computed);
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
