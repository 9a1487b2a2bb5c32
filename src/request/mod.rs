//! The request flow every transport shares, in the spirit of text-embeddings-inference's
//! `Infer`: admit, resolve the servable, run it, and record the outcome once. A transport only
//! decodes its wire format into a [`PredictCall`](crate::servable::PredictCall) and encodes
//! the answer; metrics, the log line and the trace come from one [`ResponseMetadata`] here,
//! so gRPC, REST (and any later protocol) cannot drift apart.

mod admission;
mod record;

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::OwnedSemaphorePermit;

use crate::error::ServingError;
use crate::metrics::{Entrypoint, InflightGuard, Metrics};
use crate::repository::{ModelRepository, VersionRequest};
use crate::servable::{PredictCall, PredictOutcome, RequestError, RequestTensor, Servable};
use crate::telemetry::Tracer;

pub use admission::{Admission, AdmissionError};
pub use record::{Reportable, ResponseMetadata, TraceHeaders};

/// What every request handler needs; cheap to clone into each transport.
#[derive(Clone)]
pub struct RequestCore {
    repository: Arc<ModelRepository>,
    metrics: Arc<Metrics>,
    admission: Admission,
    tracer: Tracer,
}

/// What a transport knows of a request before it decodes the body.
pub struct Incoming {
    pub entrypoint: Entrypoint,
    /// TF Serving's `API` label: the RPC name for gRPC, the URL verb for REST.
    pub api: &'static str,
    /// The model the request names ("" when it names none we could read).
    pub model: String,
    pub trace: TraceHeaders,
}

impl RequestCore {
    pub fn new(repository: Arc<ModelRepository>, metrics: Arc<Metrics>, admission: Admission, tracer: Tracer) -> Self {
        Self { repository, metrics, admission, tracer }
    }

    pub fn repository(&self) -> &ModelRepository {
        &self.repository
    }

    /// A shared handle, for services that read the repository outside a request (model status).
    pub fn repository_handle(&self) -> Arc<ModelRepository> {
        Arc::clone(&self.repository)
    }

    /// Starts the clock on a request. Everything after this point is recorded by
    /// [`Request::finish`].
    pub fn begin(&self, incoming: Incoming) -> Request<'_> {
        Request {
            core: self,
            meta: ResponseMetadata {
                entrypoint: incoming.entrypoint,
                api: incoming.api,
                model: incoming.model,
                version: None,
                started: Instant::now(),
                // Only traces need wall-clock time.
                started_wall: self.tracer.is_enabled().then(std::time::SystemTime::now),
                timeline: None,
                trace: incoming.trace,
            },
            _permit: None,
            _inflight: None,
        }
    }

    /// The whole Predict flow for a transport whose request decodes without the signature
    /// (gRPC): admit, resolve, run, record.
    pub async fn predict<T: RequestTensor>(
        &self,
        incoming: Incoming,
        version: &VersionRequest,
        call: PredictCall<T>,
    ) -> Result<(Arc<Servable>, PredictOutcome), ServingError> {
        let mut request = self.begin(incoming);
        let result = async {
            request.admit()?;
            let servable = request.resolve(version)?;
            let outcome = request.predict(&servable, call).await?;
            Ok((servable, outcome))
        }
        .await;
        request.finish(result)
    }
}

/// One request between [`RequestCore::begin`] and [`Request::finish`]. The in-flight slot and
/// gauge are held until it is dropped, so a cancelled request releases them too.
pub struct Request<'c> {
    core: &'c RequestCore,
    meta: ResponseMetadata,
    _permit: Option<OwnedSemaphorePermit>,
    _inflight: Option<InflightGuard>,
}

impl Request<'_> {
    /// Takes an in-flight slot (`--max_inflight_requests`) and counts the request in the
    /// in-flight gauge, the autoscaling signal. Only inference takes one: status and metadata
    /// answer from memory.
    pub fn admit(&mut self) -> Result<(), ServingError> {
        let metrics = &self.core.metrics;
        match self.core.admission.admit() {
            Ok(permit) => {
                self._permit = permit;
                self._inflight = Some(metrics.inflight(&self.meta.model));
                Ok(())
            }
            Err(err) => {
                metrics.count_rejection(&self.meta.model, "inflight_limit");
                Err(err.into())
            }
        }
    }

    /// The servable that answers this request; its version labels the request's metrics.
    pub fn resolve(&mut self, version: &VersionRequest) -> Result<Arc<Servable>, ServingError> {
        if self.meta.model.is_empty() {
            return Err(RequestError::EmptyModelName.into());
        }
        let servable = self.core.repository.resolve(&self.meta.model, version)?;
        self.meta.version = Some(servable.version());
        Ok(servable)
    }

    /// Records the version that answered when a transport resolved it another way (metadata).
    pub fn served_by(&mut self, version: i64) {
        self.meta.version = Some(version);
    }

    pub async fn predict<T: RequestTensor>(&mut self, servable: &Servable, call: PredictCall<T>) -> Result<PredictOutcome, ServingError> {
        let outcome = servable.predict(call).await?;
        self.meta.timeline = Some(outcome.timeline);
        Ok(outcome)
    }

    /// Records when a servable ran the request (Classify, Regress, MultiInference).
    pub fn ran(&mut self, timeline: crate::servable::Timeline) {
        self.meta.timeline = Some(timeline);
    }

    /// Counts a tf.Example request's examples (TF Serving's example-count metrics).
    pub fn count_examples(&self, examples: usize) {
        self.core.metrics.count_examples(&self.meta.model, examples);
    }

    /// Records the request once (metrics, log line, trace) and hands the result back.
    pub fn finish<T, E: Reportable>(self, result: Result<T, E>) -> Result<T, E> {
        let outcome = result.as_ref().map(|_| ()).map_err(|e| e as &dyn Reportable);
        record::record(&self.core.metrics, &self.core.tracer, &self.meta, outcome);
        result
    }
}
