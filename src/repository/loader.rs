use std::path::Path;
use std::sync::Arc;

use crate::engine::onnx::OnnxSession;
use crate::batching::BatchingOptions;
use crate::engine::{ComputePool, EngineOptions, LoadError};
use crate::metrics::Metrics;
use crate::serving::Servable;

/// The file a version directory must hold.
pub(crate) const MODEL_FILE: &str = "model.onnx";

/// Loads `<dir>/model.onnx` into a servable. Blocking: decode and plan building are CPU work.
pub fn load_servable(
    name: &str,
    version: i64,
    dir: &Path,
    options: &EngineOptions,
    compute: ComputePool,
    batching: Option<(BatchingOptions, Arc<Metrics>)>,
) -> Result<Servable, LoadError> {
    let file = dir.join(MODEL_FILE);
    if !file.is_file() {
        return Err(LoadError::Invalid(format!("{} not found (a version directory must contain {MODEL_FILE})", file.display())));
    }
    let session = OnnxSession::load(&file, options)?;
    Ok(Servable::new(name.to_string(), version, Arc::new(session), compute, batching))
}
