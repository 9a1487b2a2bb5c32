//! Operational HTTP endpoints on the REST port: Prometheus metrics and health probes
//! (TF Serving-style `/v1/health/*` and KServe-style `/v2/health/*`).

use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::metrics::Metrics;

use super::health::{Phase, Readiness, ReadinessReport};
use super::json::Writer;

/// `metrics_path` is the `--monitoring_config_file` path when Prometheus is enabled there;
/// `/metrics` is always served.
pub fn router(metrics: Arc<Metrics>, readiness: Readiness, metrics_path: Option<String>) -> Router {
    let render = {
        let metrics = Arc::clone(&metrics);
        move || {
            let metrics = Arc::clone(&metrics);
            async move { ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], metrics.render()) }
        }
    };
    let live = || async { (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], "{\"live\": true}") };
    let ready = {
        move || {
            let readiness = readiness.clone();
            async move {
                let report = readiness.report();
                let code = if report.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
                (code, [(header::CONTENT_TYPE, "application/json")], ready_body(&report)).into_response()
            }
        }
    };
    let mut router = Router::new()
        .route("/metrics", get(render.clone()))
        .route("/v1/health/live", get(live))
        .route("/v2/health/live", get(live))
        .route("/v1/health/ready", get(ready.clone()))
        .route("/v2/health/ready", get(ready));
    if let Some(path) = metrics_path.filter(|p| p != "/metrics" && p.starts_with('/')) {
        router = router.route(&path, get(render));
    }
    router
}

/// `{"ready": true}`, or when not ready, why: the phase and the models that cannot answer.
fn ready_body(report: &ReadinessReport) -> String {
    if report.ready {
        return "{\"ready\": true}".to_string();
    }
    let mut w = Writer::new();
    w.begin_object().key("ready").bool(false);
    let phase = match report.phase {
        Phase::Starting => "starting",
        Phase::Serving => "serving",
        Phase::Draining => "draining",
    };
    w.key("phase").string(phase).key("unavailable").begin_array();
    for model in report.unavailable() {
        w.begin_object().key("model").string(&model.name);
        w.key("error").string(model.error.as_deref().unwrap_or("no version is available"));
        w.end_object();
    }
    w.end_array().end_object();
    w.finish()
}
