//! `serve`: open the transports (health says NOT_SERVING), load every configured model, turn
//! SERVING, and on `shutdown` walk back down: NOT_SERVING, the preStop delay, stop accepting,
//! drain in-flight requests. Tests call it directly with listeners bound to port 0.

use std::future::Future;
use std::sync::Arc;

use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::text_proto::{self, TextProtoError};
use crate::config::{ModelSource, ServerConfig};
use crate::engine::{self, ComputePool, EngineOptions};
use crate::metrics::Metrics;
use crate::batching::BatchingOptions;
use crate::proto::tensorflow::serving::{BatchingParameters, MonitoringConfig};
use crate::request::{Admission, RequestCore};
use crate::telemetry::Tracer;
use crate::config::model_config::{self, ConfigError, ModelConfig};
use crate::repository::{LayoutError, ModelManager, ModelRepository, discover_models, manager_channel};
use crate::transport::connections::{self, ConnectionLimits, Endpoint};
use crate::transport::tls::{TlsConfig, TlsError};
use crate::transport::grpc::{self, PredictOptions};
use crate::transport::health::{Phase, Readiness};
use crate::transport::{ops_http, rest, v2};

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
    #[error(transparent)]
    ModelConfig(#[from] ConfigError),
    #[error("{0}")]
    ModelsUnavailable(String),
    #[error("cannot set up {0}")]
    Setup(String),
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
}

/// Bound on requests waiting for a compute thread; beyond it requests fail fast.
const COMPUTE_QUEUE: usize = 1024;

pub async fn serve(
    config: ServerConfig,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let cores = engine::available_cores();
    let threads = if config.compute_threads == 0 { cores } else { config.compute_threads };
    let intra_op = if config.intra_op_threads == 0 { cores } else { config.intra_op_threads };
    engine::set_intra_op_threads(intra_op);
    let device = config.device.open().map_err(|e| ServeError::Setup(format!("--device={}: {e}", config.device)))?;
    let metrics_path = match &config.monitoring_config_file {
        None => None,
        Some(path) => {
            let parsed: MonitoringConfig = text_proto::parse_file("tensorflow.serving.MonitoringConfig", path)?;
            parsed.prometheus_config.filter(|p| p.enable).map(|p| {
                if p.path.is_empty() { "/monitoring/prometheus/metrics".to_string() } else { p.path }
            })
        }
    };
    let (models, config_file) = match &config.models {
        ModelSource::Single { name, base_path } => (vec![ModelConfig::latest(name.clone(), base_path.clone())], None),
        ModelSource::Discover { root } => {
            (discover_models(root)?.into_iter().map(|(name, path)| ModelConfig::latest(name, path)).collect(), None)
        }
        ModelSource::ConfigFile(path) => (model_config::load_file(path)?, Some(path.clone())),
    };

    // Certificates are checked before a port opens: a bad key or certificate stops start-up.
    let network = &config.network;
    let grpc_tls = network.grpc_tls.clone().map(TlsConfig::load).transpose()?;
    let rest_tls = network.rest_tls.clone().map(TlsConfig::load).transpose()?;
    let max_connections = match network.max_connections {
        0 => crate::config::default_max_connections(),
        n => n,
    };
    let slots = Arc::new(tokio::sync::Semaphore::new(max_connections));
    // OpenTelemetry traces (--otlp_endpoint or OTEL_EXPORTER_OTLP_*): a bad endpoint stops
    // start-up here, before any connection is accepted. The request core records into clones
    // of `tracer`; it lives to the end of `serve`, which flushes it.
    let tracer = Tracer::from_config(config.otlp_endpoint.as_deref()).map_err(|e| ServeError::Setup(format!("tracing: {e}")))?;

    for flag in &config.ignored_flags {
        tracing::warn!(%flag, "TF Serving flag accepted for compatibility; it has no effect in candle-serving");
    }
    let compute = ComputePool::new(threads, COMPUTE_QUEUE);
    let repository = Arc::new(ModelRepository::new());
    let metrics = Arc::new(Metrics::new().map_err(|e| ServeError::Setup(format!("metrics: {e}")))?);
    let (reporter, health_service) = tonic_health::server::health_reporter();
    let readiness = Readiness::new(Arc::clone(&repository));
    Readiness::publish_not_serving(&reporter).await;
    tokio::spawn(readiness.clone().publish(reporter));

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut transports = JoinSet::new();
    let batching = match (config.enable_batching, &config.batching_parameters_file) {
        (false, _) => None,
        (true, None) => Some(BatchingOptions::adaptive(threads)),
        (true, Some(path)) => {
            let params: BatchingParameters = text_proto::parse_file("tensorflow.serving.BatchingParameters", path)?;
            Some(BatchingOptions::from_params(&params, threads).map_err(|e| ServeError::Setup(format!("{}: {e}", path.display())))?)
        }
    };
    let admission = Admission::new(config.max_inflight_requests);
    let options = PredictOptions {
        tensor_content_outputs: config.enable_serialization_as_tensor_content,
        max_tensor_bytes: config.max_tensor_bytes,
    };
    let (manager_handle, manager_inbox) = manager_channel();
    let core = RequestCore::new(Arc::clone(&repository), Arc::clone(&metrics), admission, tracer.clone());
    let routes = grpc::routes(
        core.clone(),
        options,
        health_service,
        readiness.clone(),
        manager_handle.clone(),
        network.grpc_max_message_bytes,
    )
    .map_err(|e| ServeError::Setup(format!("gRPC reflection: {e}")))?;
    let grpc_address = listeners.grpc.local_addr().map(|a| a.to_string()).unwrap_or_default();
    let limits = ConnectionLimits {
        max_age: None,
        max_age_grace: None,
        handshake_timeout: network.handshake_timeout,
        idle_timeout: network.idle_timeout,
        keepalive_interval: network.http2_keepalive_interval,
        keepalive_timeout: network.http2_keepalive_timeout,
        max_concurrent_streams: network.http2_max_concurrent_streams,
    };
    let endpoint = |name: &'static str, listener, tls: &Option<TlsConfig>, limits| Endpoint {
        name,
        listener,
        tls: tls.as_ref().map(TlsConfig::acceptor),
        limits,
        slots: Arc::clone(&slots),
        metrics: metrics.connection_metrics(name),
    };
    let grpc_limits = ConnectionLimits {
        max_age: config.grpc_max_connection_age,
        max_age_grace: config.grpc_max_connection_age_grace,
        ..limits
    };
    transports.spawn(connections::serve(
        endpoint("grpc", listeners.grpc, &grpc_tls, grpc_limits),
        routes.prepare(),
        stop_rx.clone(),
        config.drain_timeout,
    ));
    let mut rest_address = None;
    if let Some(listener) = listeners.rest {
        rest_address = listener.local_addr().ok().map(|a| a.to_string());
        let state = rest::RestState { core: core.clone(), timeout: config.rest_api_timeout, max_body_bytes: network.rest_max_body_bytes };
        let v2 = v2::RestV2State {
            core: core.clone(),
            manager: manager_handle.clone(),
            timeout: config.rest_api_timeout,
            max_body_bytes: network.rest_max_body_bytes,
            max_tensor_bytes: config.max_tensor_bytes,
        };
        let app = rest::router(state)
            .merge(v2::router(v2))
            .merge(ops_http::router(Arc::clone(&metrics), readiness.clone(), metrics_path));
        transports.spawn(connections::serve(endpoint("rest", listener, &rest_tls, limits), app, stop_rx.clone(), config.drain_timeout));
    }
    if let Some(interval) = network.tls_reload_interval {
        for (name, tls) in [("grpc", grpc_tls), ("rest", rest_tls)] {
            if let Some(tls) = tls {
                transports.spawn(tls.watch(name, interval, stop_rx.clone()));
            }
        }
    }
    tracing::info!(
        grpc = %grpc_address,
        rest = ?rest_address,
        grpc_tls = network.grpc_tls.is_some(),
        rest_tls = network.rest_tls.is_some(),
        max_connections,
        compute_threads = threads,
        intra_op_threads = intra_op,
        device = %config.device,
        "listening; loading models"
    );

    let mut manager = ModelManager::new(
        Arc::clone(&repository),
        Arc::clone(&metrics),
        compute,
        EngineOptions { device, saved_model_tags: config.saved_model_tags.clone() },
        config.lifecycle.clone(),
        config.max_tensor_bytes,
        batching,
    );
    // Serving every model under a root: a load by name (v2 repository extension) finds new
    // model directories there.
    if let ModelSource::Discover { root } = &config.models {
        manager = manager.with_root(root.clone());
    }
    if let Err(err) = manager.apply(models).await {
        let _ = stop_tx.send(true);
        while transports.join_next().await.is_some() {}
        return Err(ServeError::ModelsUnavailable(err));
    }
    readiness.set_phase(Phase::Serving);
    tracing::info!(models = ?repository.model_names(), "all models available; SERVING");
    let manager_task = tokio::spawn(manager.run(manager_inbox, config_file, stop_rx.clone()));

    shutdown.await;
    readiness.set_phase(Phase::Draining);
    if !config.shutdown_delay.is_zero() {
        tracing::info!(delay_s = config.shutdown_delay.as_secs(), "NOT_SERVING; still serving during the shutdown delay");
        tokio::time::sleep(config.shutdown_delay).await;
    }
    let _ = stop_tx.send(true);
    while transports.join_next().await.is_some() {}
    let _ = manager_task.await;
    tracer.shutdown();
    tracing::info!("server stopped");
    Ok(())
}
