//! Readiness, published to gRPC health (`grpc.health.v1`) and the HTTP probes from one
//! computation so they can never disagree. It follows the server's phase (starting, serving,
//! draining) and the repository's real state through its watch channel: a model that loses
//! its last version, or fails, turns the server NOT_SERVING until it serves again or a config
//! reload removes it.

use std::collections::BTreeSet;
use std::sync::Arc;

use tokio::sync::watch;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::repository::{ModelHealth, ModelRepository};

/// The names Kubernetes probes and TF Serving clients check for the whole server: "", the
/// fully qualified services, and TF Serving's short names. Each model is also a service of its
/// own name, so a probe (or a client) can ask about one model.
const SERVICES: &[&str] = &[
    "",
    "tensorflow.serving.PredictionService",
    "tensorflow.serving.ModelService",
    "inference.GRPCInferenceService",
    "PredictionService",
    "ModelService",
];

/// Where the server is in its life; only `Serving` can be ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Models are loading for the first time.
    Starting,
    Serving,
    /// Shutdown began: probes fail so load balancers stop sending, while requests still finish.
    Draining,
}

/// The answer to "ready?", with the models that keep it from being yes.
#[derive(Debug, Clone)]
pub struct ReadinessReport {
    pub ready: bool,
    pub phase: Phase,
    pub models: Vec<ModelHealth>,
}

impl ReadinessReport {
    pub fn unavailable(&self) -> impl Iterator<Item = &ModelHealth> {
        self.models.iter().filter(|m| !m.available)
    }
}

#[derive(Clone)]
pub struct Readiness {
    phase: Arc<watch::Sender<Phase>>,
    repository: Arc<ModelRepository>,
}

impl Readiness {
    pub fn new(repository: Arc<ModelRepository>) -> Self {
        Self { phase: Arc::new(watch::Sender::new(Phase::Starting)), repository }
    }

    pub fn set_phase(&self, phase: Phase) {
        self.phase.send_replace(phase);
    }

    /// Ready means serving, with every model the repository holds (the configured ones, and
    /// removed ones still draining) able to answer.
    pub fn report(&self) -> ReadinessReport {
        let phase = *self.phase.borrow();
        let models = self.repository.health();
        let ready = phase == Phase::Serving && models.iter().all(|m| m.available);
        ReadinessReport { ready, phase, models }
    }

    pub fn is_ready(&self) -> bool {
        self.report().ready
    }

    /// NOT_SERVING everywhere, before any port opens (the reporter starts out SERVING).
    pub async fn publish_not_serving(reporter: &HealthReporter) {
        for service in SERVICES {
            reporter.set_service_status(*service, ServingStatus::NotServing).await;
        }
    }

    /// Keeps `grpc.health.v1` in step with [`Readiness::report`] until the process ends:
    /// recomputed on every repository change and phase change.
    pub async fn publish(self, mut reporter: HealthReporter) {
        let mut changes = self.repository.subscribe();
        let mut phase = self.phase.subscribe();
        let mut published: BTreeSet<String> = BTreeSet::new();
        loop {
            changes.mark_unchanged();
            phase.mark_unchanged();
            let report = self.report();
            let status = |ok: bool| if ok { ServingStatus::Serving } else { ServingStatus::NotServing };
            for service in SERVICES {
                reporter.set_service_status(*service, status(report.ready)).await;
            }
            let serving = report.phase == Phase::Serving;
            let mut now = BTreeSet::new();
            for model in &report.models {
                reporter.set_service_status(&model.name, status(serving && model.available)).await;
                now.insert(model.name.clone());
            }
            // A model removed from the config is no longer a service: probes for it answer
            // NOT_FOUND (SERVICE_UNKNOWN for watchers), as for a name never served.
            for gone in published.difference(&now) {
                reporter.clear_service_status(gone).await;
            }
            published = now;
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { return },
                changed = phase.changed() => if changed.is_err() { return },
            }
        }
    }
}
