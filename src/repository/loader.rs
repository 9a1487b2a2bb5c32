//! A version directory to a servable: the files it reads must stay inside the base path.

use std::path::Path;
use std::sync::Arc;

use thiserror::Error;

use crate::engine::onnx::OnnxSession;
use crate::batching::BatchingOptions;
use crate::engine::{ComputePool, EngineOptions, LoadError};
use crate::metrics::Metrics;
use crate::servable::Servable;

use super::confine::{EscapeError, confined};

/// The file a version directory must hold.
pub(crate) const MODEL_FILE: &str = "model.onnx";

/// Why a version directory did not become a servable.
#[derive(Debug, Error)]
pub enum VersionLoadError {
    #[error(transparent)]
    Escape(#[from] EscapeError),
    #[error(transparent)]
    Load(#[from] LoadError),
}

/// Loads `<dir>/model.onnx` into a servable, refusing a version directory or model file that
/// is a symlink resolving outside `base` (the model's base path). Blocking: decode and plan
/// building are CPU work.
pub fn load_servable(
    name: &str,
    version: i64,
    base: &Path,
    dir: &Path,
    options: &EngineOptions,
    compute: ComputePool,
    batching: Option<(BatchingOptions, Arc<Metrics>)>,
) -> Result<Servable, VersionLoadError> {
    confined(base, dir)?;
    let file = dir.join(MODEL_FILE);
    if !file.is_file() {
        let missing = format!("{} not found (a version directory must contain {MODEL_FILE})", file.display());
        return Err(LoadError::Invalid(missing).into());
    }
    confined(base, &file)?;
    let session = OnnxSession::load(&file, options)?;
    Ok(Servable::new(name.to_string(), version, Arc::new(session), compute, batching))
}
