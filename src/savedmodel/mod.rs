//! TensorFlow SavedModels without TensorFlow. So far: the variables' tensor bundle (a LevelDB
//! table of entries, CRC-checked data shards, snappy blocks), the meta graph a tag set selects
//! with its signatures, and the binding of a signature's captured variables to checkpoint
//! keys. Translating the graph's ops into the engine is the SavedModel issue's remaining work.

pub mod binding;
pub mod bundle;
mod crc32c;
pub mod meta_graph;
mod table;
pub mod translate;

use thiserror::Error;

pub use binding::{Capture, captures};
pub use bundle::{Bundle, BundleError};
pub use table::TableError;
pub use translate::to_onnx;

/// A SavedModel version directory as an engine session of its `serving_default` signature.
pub fn load_session(dir: &std::path::Path, options: &crate::engine::EngineOptions) -> Result<crate::engine::onnx::OnnxSession, SavedModelError> {
    use prost::Message;
    let meta = meta_graph::read(dir, &options.saved_model_tags)?;
    let bundle = Bundle::open(&dir.join("variables").join("variables"))?;
    let model = to_onnx(&meta, &bundle, crate::servable::DEFAULT_SIGNATURE)?;
    crate::engine::onnx::OnnxSession::from_bytes_on(&model.encode_to_vec(), &options.device)
        .map_err(|e| SavedModelError::Unsupported(format!("the translated graph does not load: {e}")))
}

#[derive(Debug, Error)]
pub enum SavedModelError {
    #[error("{file}: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file} {what}")]
    Invalid { file: String, what: String },
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error("{0}")]
    Unsupported(String),
}
