//! The SignatureDefMap that GetModelMetadata and REST `/metadata` publish.

use crate::proto::tensorflow::serving::SignatureDefMap;
use crate::proto::tensorflow::{SignatureDef, TensorInfo, TensorShapeProto, tensor_info};
use crate::tensor::TensorSpec;
use crate::tensor::tf_proto::{dtype_to_tf, shape_to_tf};

use super::{Servable, Signature};

impl Servable {
    /// A SavedModel's map as the file declares it (TF Serving prints the file's tensor names
    /// and its `__saved_model_init_op`); for other models, one built from the signatures, with
    /// each tensor named by its key.
    pub fn signature_def_map(&self) -> SignatureDefMap {
        if let Some(declared) = self.declared_signatures() {
            return declared.clone();
        }
        SignatureDefMap { signature_def: self.signatures().iter().map(|(k, s)| (k.clone(), signature_def(s))).collect() }
    }
}

fn signature_def(signature: &Signature) -> SignatureDef {
    SignatureDef {
        inputs: signature.inputs.iter().map(|s| (s.key.clone(), tensor_info(s))).collect(),
        outputs: signature.outputs.iter().map(|s| (s.key.clone(), tensor_info(s))).collect(),
        method_name: signature.method_name.clone(),
        defaults: Default::default(),
    }
}

fn tensor_info(spec: &TensorSpec) -> TensorInfo {
    TensorInfo {
        dtype: dtype_to_tf(spec.dtype) as i32,
        tensor_shape: Some(match &spec.shape {
            Some(dims) => shape_to_tf(dims.iter().map(|d| d.as_i64())),
            None => TensorShapeProto { dim: Vec::new(), unknown_rank: true },
        }),
        encoding: Some(tensor_info::Encoding::Name(spec.key.clone())),
    }
}
