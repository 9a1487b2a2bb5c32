//! Readiness, published to gRPC health (`grpc.health.v1`) and the HTTP probes from one place so
//! they can never disagree.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

/// The names Kubernetes probes and TF Serving clients check: the whole server (""), the fully
/// qualified services, and TF Serving's short names.
const SERVICES: &[&str] = &[
    "",
    "tensorflow.serving.PredictionService",
    "tensorflow.serving.ModelService",
    "PredictionService",
    "ModelService",
];

#[derive(Clone)]
pub struct Readiness {
    reporter: HealthReporter,
    ready: Arc<AtomicBool>,
}

impl Readiness {
    pub fn new(reporter: HealthReporter) -> Self {
        Self { reporter, ready: Arc::new(AtomicBool::new(false)) }
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    pub async fn set(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
        let status = if ready { ServingStatus::Serving } else { ServingStatus::NotServing };
        for service in SERVICES {
            self.reporter.set_service_status(*service, status).await;
        }
    }
}
