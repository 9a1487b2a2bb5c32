//! A version directory to a servable: the files it reads must stay inside the base path.

use std::path::Path;
use std::sync::Arc;

use thiserror::Error;

use crate::engine::onnx::OnnxSession;
use crate::batching::BatchingOptions;
use crate::config::model_config::{ModelConfig, ModelPlatform};
use crate::engine::{ComputePool, EngineOptions, LoadError};
use crate::metrics::Metrics;
use crate::servable::Servable;

use super::confine::{EscapeError, confined};

/// The file an ONNX version directory holds.
pub(crate) const MODEL_FILE: &str = "model.onnx";
/// The file a SavedModel version directory holds.
pub(crate) const SAVED_MODEL_FILE: &str = crate::savedmodel::meta_graph::SAVED_MODEL_FILE;

/// Why a version directory did not become a servable.
#[derive(Debug, Error)]
pub enum VersionLoadError {
    #[error(transparent)]
    Escape(#[from] EscapeError),
    #[error(transparent)]
    Load(#[from] LoadError),
}

/// Loads `<dir>/model.onnx`, or a SavedModel (`<dir>/saved_model.pb` and `variables/`), into a
/// servable of `model`, as its `model_platform` allows, refusing a version directory or model
/// file that is a symlink resolving outside the model's base path. Blocking: decode and plan building are CPU work.
pub fn load_servable(
    model: &ModelConfig,
    version: i64,
    dir: &Path,
    options: &EngineOptions,
    compute: ComputePool,
    batching: Option<(BatchingOptions, Arc<Metrics>)>,
) -> Result<Servable, VersionLoadError> {
    let (name, base, platform) = (model.name.as_str(), model.base_path.as_path(), model.platform);
    confined(base, dir)?;
    let file = dir.join(MODEL_FILE);
    let saved_model = dir.join(SAVED_MODEL_FILE);
    let wrong = |wanted: &str, file: &str| {
        LoadError::Invalid(format!("model_platform is \"{wanted}\", but {} holds no {file}", dir.display()))
    };
    match platform {
        ModelPlatform::TensorFlow if !saved_model.is_file() => return Err(wrong("tensorflow", SAVED_MODEL_FILE).into()),
        ModelPlatform::Onnx if !file.is_file() => return Err(wrong("onnx", MODEL_FILE).into()),
        _ => {}
    }
    if file.is_file() && platform != ModelPlatform::TensorFlow {
        confined(base, &file)?;
        let session = OnnxSession::load(&file, options)?;
        Ok(Servable::new(name.to_string(), version, Arc::new(session), compute, batching))
    } else if saved_model.is_file() {
        confined(base, &saved_model)?;
        confined(base, &dir.join("variables"))?;
        let model = crate::savedmodel::load(dir, options).map_err(|e| LoadError::Invalid(format!("SavedModel {}: {e}", dir.display())))?;
        Ok(Servable::with_signatures(name.to_string(), version, model.signatures, Some(model.declared), compute, batching))
    } else {
        let missing = format!(
            "{} holds neither {MODEL_FILE} nor {SAVED_MODEL_FILE} (a version directory holds an ONNX model or a SavedModel)",
            dir.display()
        );
        Err(LoadError::Invalid(missing).into())
    }
}
