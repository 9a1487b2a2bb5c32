//! `serve`: build the repository, load every configured model, then run the transports until
//! `shutdown` resolves. Tests call it directly with listeners bound to port 0.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use thiserror::Error;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

use crate::config::{ModelSource, ServerConfig};
use crate::engine::{ComputePool, EngineOptions};
use crate::repository::{LayoutError, ModelRepository, VersionState, discover_models, load_servable, scan_versions};
use crate::transport::grpc::{self, PredictOptions};

/// Sockets bound by the caller, so tests can use port 0 and `main` owns address selection.
pub struct Listeners {
    pub grpc: TcpListener,
}

#[derive(Debug, Error)]
pub enum ServeError {
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error("{count} model(s) did not become available: {details}")]
    ModelsUnavailable { count: usize, details: String },
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
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
    let compute = ComputePool::new(threads, COMPUTE_QUEUE);
    let repository = Arc::new(ModelRepository::new());
    let models: Vec<(String, PathBuf)> = match &config.models {
        ModelSource::Single { name, base_path } => vec![(name.clone(), base_path.clone())],
        ModelSource::Discover { root } => discover_models(root)?,
    };
    load_all(&repository, &models, &compute).await?;
    if config.rest_api_port != 0 {
        tracing::warn!(port = config.rest_api_port, "--rest_api_port is set but this release serves gRPC only");
    }

    let options = PredictOptions {
        tensor_content_outputs: config.enable_serialization_as_tensor_content,
        max_tensor_bytes: config.max_tensor_bytes,
    };
    let address = listeners.grpc.local_addr().map(|a| a.to_string()).unwrap_or_default();
    tracing::info!(grpc = %address, models = ?repository.model_names(), compute_threads = threads, "serving");
    grpc::router(repository, options)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listeners.grpc), shutdown)
        .await?;
    tracing::info!("server stopped");
    Ok(())
}

/// Loads the newest version of every model, like TF Serving before its ports open. Any model
/// that fails keeps its error in the repository and fails startup with every message listed.
async fn load_all(
    repository: &Arc<ModelRepository>,
    models: &[(String, PathBuf)],
    compute: &ComputePool,
) -> Result<(), ServeError> {
    let mut failures = Vec::new();
    for (name, base_path) in models {
        let versions = scan_versions(base_path)?;
        let Some((&version, dir)) = versions.iter().next_back() else { continue };
        repository.set_state(name, version, VersionState::Loading, None);
        let started = Instant::now();
        let (n, d, c) = (name.clone(), dir.clone(), compute.clone());
        let loaded = tokio::task::spawn_blocking(move || load_servable(&n, version, &d, &EngineOptions::default(), c))
            .await
            .map_err(|e| crate::engine::LoadError::Invalid(format!("loader thread failed: {e}")))
            .and_then(|r| r);
        match loaded {
            Ok(servable) => {
                repository.make_available(servable);
                tracing::info!(model = %name, version, elapsed_ms = started.elapsed().as_millis() as u64, "model available");
            }
            Err(err) => {
                let message = err.to_string();
                tracing::error!(model = %name, version, error = %message, "model failed to load");
                repository.set_state(name, version, VersionState::End, Some(message.clone()));
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
