use crate::tensor::TensorSpec;

/// The key TF Serving uses when a request leaves `signature_name` empty.
pub const DEFAULT_SIGNATURE: &str = "serving_default";
pub const PREDICT_METHOD: &str = "tensorflow/serving/predict";

/// A named entry point of a model, as in a SavedModel's SignatureDef.
#[derive(Debug, Clone)]
pub struct Signature {
    pub name: String,
    pub method_name: String,
    /// In the order the engine session takes them.
    pub inputs: Vec<TensorSpec>,
    /// In the order the engine session returns them.
    pub outputs: Vec<TensorSpec>,
}

impl Signature {
    pub(crate) fn input_keys(&self) -> Vec<&str> {
        self.inputs.iter().map(|s| s.key.as_str()).collect()
    }

    pub(crate) fn output_keys(&self) -> Vec<&str> {
        self.outputs.iter().map(|s| s.key.as_str()).collect()
    }
}
