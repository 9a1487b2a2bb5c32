//! `serve`: open the transports (health says NOT_SERVING), load every configured model, turn
//! SERVING, and on `shutdown` walk back down: NOT_SERVING, the preStop delay, stop accepting,
//! drain in-flight requests. Tests call it directly with listeners bound to port 0.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::text_proto::{self, TextProtoError};
use crate::config::{ModelSource, ServerConfig};
use crate::engine::{ComputePool, EngineOptions};
use crate::metrics::Metrics;
use crate::proto::tensorflow::serving::MonitoringConfig;
use crate::repository::{LayoutError, ModelRepository, VersionState, discover_models, load_servable, scan_versions};
use crate::transport::connections::{self, ConnectionLimits};
use crate::transport::grpc::{self, PredictOptions};
use crate::transport::health::Readiness;
use crate::transport::{ops_http, rest};

/// Sockets bound by the caller, so tests can use port 0 and `main` owns address selection.
pub struct Listeners {
    pub grpc: TcpListener,
    /// `None` when `--rest_api_port` is 0.
    pub rest: Option<TcpListener>,
}

#[derive(Debug, Error)]
pub enum ServeError {
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error(transparent)]
    Config(#[from] TextProtoError),
    #[error("{count} model(s) did not become available: {details}")]
    ModelsUnavailable { count: usize, details: String },
    #[error("cannot set up {0}")]
    Setup(String),
}

/// Bound on requests waiting for a compute thread; beyond it requests fail fast.
const COMPUTE_QUEUE: usize = 1024;

pub async fn serve(
    config: ServerConfig,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let threads = match config.compute_threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let metrics_path = match &config.monitoring_config_file {
        None => None,
        Some(path) => {
            let parsed: MonitoringConfig = text_proto::parse_file("tensorflow.serving.MonitoringConfig", path)?;
            parsed.prometheus_config.filter(|p| p.enable).map(|p| {
                if p.path.is_empty() { "/monitoring/prometheus/metrics".to_string() } else { p.path }
            })
        }
    };
    let models: Vec<(String, PathBuf)> = match &config.models {
        ModelSource::Single { name, base_path } => vec![(name.clone(), base_path.clone())],
        ModelSource::Discover { root } => discover_models(root)?,
    };

    let compute = ComputePool::new(threads, COMPUTE_QUEUE);
    let repository = Arc::new(ModelRepository::new());
    let metrics = Arc::new(Metrics::new().map_err(|e| ServeError::Setup(format!("metrics: {e}")))?);
    let (reporter, health_service) = tonic_health::server::health_reporter();
    let readiness = Readiness::new(reporter);
    readiness.set(false).await;

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut transports = JoinSet::new();
    let options = PredictOptions {
        tensor_content_outputs: config.enable_serialization_as_tensor_content,
        max_tensor_bytes: config.max_tensor_bytes,
    };
    let routes = grpc::routes(Arc::clone(&repository), Arc::clone(&metrics), options, health_service)
        .map_err(|e| ServeError::Setup(format!("gRPC reflection: {e}")))?;
    let grpc_address = listeners.grpc.local_addr().map(|a| a.to_string()).unwrap_or_default();
    let limits = ConnectionLimits {
        max_age: config.grpc_max_connection_age,
        max_age_grace: config.grpc_max_connection_age_grace,
    };
    let counter = metrics.connection_counter("grpc");
    transports.spawn(connections::serve(
        "grpc",
        listeners.grpc,
        routes.prepare(),
        limits,
        stop_rx.clone(),
        config.drain_timeout,
        move || counter.inc(),
    ));
    let mut rest_address = None;
    if let Some(listener) = listeners.rest {
        rest_address = listener.local_addr().ok().map(|a| a.to_string());
        let state = rest::RestState {
            repository: Arc::clone(&repository),
            metrics: Arc::clone(&metrics),
            timeout: config.rest_api_timeout,
        };
        let app = rest::router(state).merge(ops_http::router(Arc::clone(&metrics), readiness.clone(), metrics_path));
        let counter = metrics.connection_counter("rest");
        transports.spawn(connections::serve(
            "rest",
            listener,
            app,
            ConnectionLimits::default(),
            stop_rx.clone(),
            config.drain_timeout,
            move || counter.inc(),
        ));
    }
    tracing::info!(grpc = %grpc_address, rest = ?rest_address, compute_threads = threads, "listening; loading models");

    if let Err(err) = load_all(&repository, &metrics, &models, &compute).await {
        let _ = stop_tx.send(true);
        while transports.join_next().await.is_some() {}
        return Err(err);
    }
    readiness.set(true).await;
    tracing::info!(models = ?repository.model_names(), "all models available; SERVING");

    shutdown.await;
    readiness.set(false).await;
    if !config.shutdown_delay.is_zero() {
        tracing::info!(delay_s = config.shutdown_delay.as_secs(), "NOT_SERVING; still serving during the shutdown delay");
        tokio::time::sleep(config.shutdown_delay).await;
    }
    let _ = stop_tx.send(true);
    while transports.join_next().await.is_some() {}
    tracing::info!("server stopped");
    Ok(())
}

/// Loads the newest version of every model, like TF Serving at start-up. Any model that fails
/// keeps its error in the repository and fails start-up with every message listed.
async fn load_all(
    repository: &Arc<ModelRepository>,
    metrics: &Metrics,
    models: &[(String, PathBuf)],
    compute: &ComputePool,
) -> Result<(), ServeError> {
    let mut failures = Vec::new();
    for (name, base_path) in models {
        let versions = scan_versions(base_path)?;
        let Some((&version, dir)) = versions.iter().next_back() else { continue };
        repository.set_state(name, version, VersionState::Loading, None);
        metrics.set_version_state(name, version, "LOADING");
        let started = Instant::now();
        let (n, d, c) = (name.clone(), dir.clone(), compute.clone());
        let loaded = tokio::task::spawn_blocking(move || load_servable(&n, version, &d, &EngineOptions::default(), c))
            .await
            .map_err(|e| crate::engine::LoadError::Invalid(format!("loader thread failed: {e}")))
            .and_then(|r| r);
        let elapsed = started.elapsed();
        metrics.observe_load(name, &dir.display().to_string(), elapsed, loaded.is_ok());
        match loaded {
            Ok(servable) => {
                repository.make_available(servable);
                metrics.set_version_state(name, version, "AVAILABLE");
                tracing::info!(model = %name, version, elapsed_ms = elapsed.as_millis() as u64, "model version AVAILABLE");
            }
            Err(err) => {
                let message = err.to_string();
                tracing::error!(model = %name, version, error = %message, "model version failed to load; END");
                repository.set_state(name, version, VersionState::End, Some(message.clone()));
                metrics.set_version_state(name, version, "END");
                failures.push(format!("{{name: {name} version: {version}, error: {message}}}"));
            }
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(ServeError::ModelsUnavailable { count: failures.len(), details: failures.join(", ") })
    }
}
