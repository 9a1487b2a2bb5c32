//! TensorFlow SavedModels without TensorFlow: the variables' tensor bundle (a LevelDB table of
//! entries, CRC-checked data shards, snappy blocks), the meta graph a tag set selects with its
//! signatures, the binding of variables to checkpoint keys (object graphs for TF2, the restore
//! op for TF1), and each signature translated into an ONNX graph for the engine, so a
//! SavedModel shares the ONNX importer, passes, plans and kernels.

pub mod binding;
pub mod bundle;
mod crc32c;
pub mod meta_graph;
mod table;
pub mod translate;

use std::sync::Arc;

use thiserror::Error;

use crate::engine::Session;
use crate::proto::tensorflow::serving::SignatureDefMap;
use crate::example::ExampleSignature;
use crate::proto::tensorflow::MetaGraphDef;
use crate::servable::{Signature, SignatureSession};

pub use binding::{Capture, captures};
pub use bundle::{Bundle, BundleError};
pub use table::TableError;
pub use translate::to_onnx;

/// A SavedModel version directory, ready to become a servable.
pub struct LoadedSavedModel {
    /// Every signature of the meta graph but the init op, each with its engine session.
    pub signatures: Vec<SignatureSession>,
    /// The file's own SignatureDefMap, for metadata.
    pub declared: SignatureDefMap,
}

/// Reads `dir`'s SavedModel and translates each signature into an engine session. A predict
/// signature that does not translate fails the load (the message lists what is missing); a
/// classify or regress signature that does not is still listed, and answers why when called.
pub fn load(dir: &std::path::Path, options: &crate::engine::EngineOptions) -> Result<LoadedSavedModel, SavedModelError> {
    let meta = meta_graph::read(dir, &options.saved_model_tags)?;
    let bundle = Bundle::open(&dir.join("variables").join("variables"))?;
    let declared = SignatureDefMap { signature_def: meta.signature_def.clone() };
    let mut signatures = Vec::new();
    for name in meta_graph::signature_names(&meta) {
        let method = meta.signature_def[name].method_name.clone();
        match signature_session(&meta, &bundle, name, options) {
            Ok(entry) => signatures.push(entry),
            Err(e) if method == crate::servable::PREDICT_METHOD => return Err(e),
            Err(e) => {
                tracing::warn!(signature = name, method, "signature is listed but cannot run: {e}");
                let signature = Signature { name: name.to_string(), method_name: method, inputs: Vec::new(), outputs: Vec::new() };
                signatures.push(SignatureSession { signature, session: Err(e.to_string()), examples: None });
            }
        }
    }
    Ok(LoadedSavedModel { signatures, declared })
}

/// Signature `name` translated and loaded. A signature over tf.Examples is described by its
/// engine session (the dense features in place of the serialized Examples).
fn signature_session(meta: &MetaGraphDef, bundle: &Bundle, name: &str, options: &crate::engine::EngineOptions) -> Result<SignatureSession, SavedModelError> {
    let translated = to_onnx(meta, bundle, name)?;
    let session = session(translated.model, name, options)?;
    let examples = translated.examples.map(|input| ExampleSignature { input, constant_rows: translated.constant_rows });
    let signature = match &examples {
        None => meta_graph::signature(meta, name)?,
        Some(_) => Signature {
            name: name.to_string(),
            method_name: meta.signature_def[name].method_name.clone(),
            inputs: session.inputs().to_vec(),
            outputs: session.outputs().to_vec(),
        },
    };
    Ok(SignatureSession { signature, session: Ok(session), examples })
}

fn session(model: crate::proto::onnx::ModelProto, signature: &str, options: &crate::engine::EngineOptions) -> Result<Arc<dyn Session>, SavedModelError> {
    use prost::Message;
    let session = crate::engine::onnx::OnnxSession::from_bytes_on(&model.encode_to_vec(), &options.device).map_err(|e| match e {
        crate::engine::LoadError::UnsupportedOps(ops) => {
            let prefix = format!("{}.", translate::UNTRANSLATED_DOMAIN);
            let ops: Vec<&str> = ops.iter().map(|op| op.strip_prefix(&prefix).unwrap_or(op)).collect();
            SavedModelError::Unsupported(format!("signature {signature:?}: TensorFlow ops not translated yet: {}", ops.join("; ")))
        }
        e => SavedModelError::Unsupported(format!("signature {signature:?}: the translated graph does not load: {e}")),
    })?;
    Ok(Arc::new(session))
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
