//! `saved_model.pb`: the meta graph a tag set selects (`--saved_model_tags`, `serve` by
//! default, matched as a set as TF does), and its signatures as the servable describes them.

use std::collections::BTreeSet;
use std::path::Path;

use prost::Message;

use crate::proto::tensorflow::{MetaGraphDef, SavedModel, TensorInfo, tensor_info};
use crate::servable::Signature;
use crate::tensor::{Dim, TensorSpec, tf_proto};

use super::SavedModelError;

pub const SAVED_MODEL_FILE: &str = "saved_model.pb";
/// Not a signature clients call: it runs the model's initialisation.
const INIT_OP_SIGNATURE: &str = "__saved_model_init_op";

/// The meta graph of `dir`'s SavedModel whose tags are exactly `tags`.
pub fn read(dir: &Path, tags: &[String]) -> Result<MetaGraphDef, SavedModelError> {
    let path = dir.join(SAVED_MODEL_FILE);
    let file = path.display().to_string();
    let bytes = std::fs::read(&path).map_err(|source| SavedModelError::Io { file: file.clone(), source })?;
    let model = SavedModel::decode(bytes.as_slice()).map_err(|e| SavedModelError::Invalid { file: file.clone(), what: format!("does not parse: {e}") })?;
    let wanted: BTreeSet<&str> = tags.iter().map(String::as_str).collect();
    let tag_set = |m: &MetaGraphDef| -> BTreeSet<String> { m.meta_info_def.as_ref().map(|i| i.tags.iter().cloned().collect()).unwrap_or_default() };
    let available: Vec<String> = model.meta_graphs.iter().map(|m| format!("{:?}", tag_set(m))).collect();
    model
        .meta_graphs
        .into_iter()
        .find(|m| tag_set(m).iter().map(String::as_str).collect::<BTreeSet<_>>() == wanted)
        .ok_or_else(|| SavedModelError::Invalid {
            file,
            what: format!("has no meta graph tagged {wanted:?} (--saved_model_tags); it has {}", available.join(", ")),
        })
}

/// The signatures clients can call, by name, sorted.
pub fn signature_names(meta: &MetaGraphDef) -> Vec<&str> {
    let mut names: Vec<&str> = meta.signature_def.keys().map(String::as_str).filter(|name| *name != INIT_OP_SIGNATURE).collect();
    names.sort_unstable();
    names
}

/// Signature `name` with its tensors as the servable describes them (inputs and outputs sorted
/// by key, the order the translated graph takes and returns them).
pub fn signature(meta: &MetaGraphDef, name: &str) -> Result<Signature, SavedModelError> {
    let def = meta
        .signature_def
        .get(name)
        .filter(|_| name != INIT_OP_SIGNATURE)
        .ok_or_else(|| SavedModelError::Unsupported(format!("signature {name:?} is not in the meta graph")))?;
    let specs = |tensors: &std::collections::HashMap<String, TensorInfo>| -> Result<Vec<TensorSpec>, SavedModelError> {
        let mut specs = tensors.iter().map(|(key, info)| tensor_spec(name, key, info)).collect::<Result<Vec<_>, _>>()?;
        specs.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(specs)
    };
    Ok(Signature { name: name.to_string(), method_name: def.method_name.clone(), inputs: specs(&def.inputs)?, outputs: specs(&def.outputs)? })
}

/// Whether a signature tensor is DT_STRING (serialized tf.Examples, labels).
pub(crate) fn is_string(info: &TensorInfo) -> bool {
    info.dtype == crate::proto::tensorflow::DataType::DtString as i32
}

pub(crate) fn tensor_spec(signature: &str, key: &str, info: &TensorInfo) -> Result<TensorSpec, SavedModelError> {
    let unsupported = |what: String| SavedModelError::Unsupported(format!("signature {signature:?} tensor {key:?}: {what}"));
    if !matches!(info.encoding, Some(tensor_info::Encoding::Name(_))) {
        return Err(unsupported("is sparse or composite; only dense tensors are served".into()));
    }
    if info.dtype == crate::proto::tensorflow::DataType::DtString as i32 {
        return Err(unsupported("is DT_STRING (serialized tf.Examples, text): string tensors are not served yet".into()));
    }
    let dtype = tf_proto::dtype_from_tf(info.dtype).map_err(|e| unsupported(e.to_string()))?;
    let shape = match &info.tensor_shape {
        Some(s) if !s.unknown_rank => Some(s.dim.iter().map(|d| usize::try_from(d.size).map_or(Dim::Dynamic, Dim::Fixed)).collect()),
        _ => None,
    };
    Ok(TensorSpec { key: key.to_string(), dtype, shape })
}

/// The graph tensor a signature entry names (`node:k`), as node name and output index.
pub fn tensor_name(info: &TensorInfo) -> Option<(&str, usize)> {
    let Some(tensor_info::Encoding::Name(name)) = &info.encoding else { return None };
    match name.rsplit_once(':') {
        Some((node, k)) => Some((node, k.parse().ok()?)),
        None => Some((name.as_str(), 0)),
    }
}
