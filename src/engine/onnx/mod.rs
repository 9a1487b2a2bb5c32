//! ONNX front end: decode the protobuf, resolve every node to a kernel once, fold constants, and
//! hand back a [`Plan`](plan::Plan) that requests only execute.

mod attrs;
mod file;
mod import;
mod initializer;
mod ops;
mod passes;
mod plan;

use std::path::Path;

use candle_core::Device;
use prost::Message;

use crate::proto::onnx::ModelProto;
use crate::tensor::{HostTensor, TensorSpec};

use super::convert::{from_candle, to_candle};
use super::kernels::threads::RunLengths;
use super::{EngineError, EngineOptions, LoadError, Session};

/// A loaded ONNX model.
pub struct OnnxSession {
    plan: plan::Plan,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    device: Device,
    run_lengths: RunLengths,
}

impl OnnxSession {
    pub fn load(path: &Path, options: &EngineOptions) -> Result<Self, LoadError> {
        let io_error = |source| LoadError::Io { path: path.display().to_string(), source };
        let mut file = file::FileBuf::open(path).map_err(io_error)?;
        let decoded = decode(&mut file, &path.display().to_string());
        // a read that failed part way cut the message short (which may even decode): report the read
        if let Some(source) = file.error() {
            return Err(io_error(source));
        }
        Self::from_model(decoded?, &options.device)
    }

    /// Loads onto the CPU.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, LoadError> {
        Self::from_bytes_on(bytes, &Device::Cpu)
    }

    pub fn from_bytes_on(bytes: &[u8], device: &Device) -> Result<Self, LoadError> {
        Self::from_model(decode(bytes, "")?, device)
    }

    /// Loads onto the CPU without the CPU graph rewrites (layout, folding, fusion): the graph
    /// runs as the exporter wrote it. The conformance suite runs every case both ways, so a
    /// rewrite that changes a result shows up against the same case unrewritten.
    pub fn from_bytes_as_written(bytes: &[u8]) -> Result<Self, LoadError> {
        Ok(Self::new(import::import_for(decode(bytes, "")?, &Device::Cpu, passes::Target::Other)?, Device::Cpu))
    }

    fn from_model(model: ModelProto, device: &Device) -> Result<Self, LoadError> {
        Ok(Self::new(import::import(model, device)?, device.clone()))
    }

    fn new(imported: import::Imported, device: Device) -> Self {
        Self { plan: imported.plan, inputs: imported.inputs, outputs: imported.outputs, device, run_lengths: RunLengths::default() }
    }
}

/// `path` names the file in the error; empty for bytes that came from elsewhere.
fn decode(bytes: impl prost::bytes::Buf, path: &str) -> Result<ModelProto, LoadError> {
    ModelProto::decode(bytes).map_err(|e| LoadError::Decode { path: path.to_string(), reason: e.to_string() })
}

impl Session for OnnxSession {
    fn inputs(&self) -> &[TensorSpec] {
        &self.inputs
    }

    fn outputs(&self) -> &[TensorSpec] {
        &self.outputs
    }

    fn run(&self, inputs: Vec<HostTensor>) -> Result<Vec<HostTensor>, EngineError> {
        if inputs.len() != self.inputs.len() {
            return Err(EngineError::Internal(format!(
                "expected {} inputs, got {}",
                self.inputs.len(),
                inputs.len()
            )));
        }
        let bound = inputs
            .into_iter()
            .zip(&self.inputs)
            .map(|(t, spec)| {
                to_candle(t, &self.device)
                    .map_err(|e| EngineError::Input { name: spec.key.clone(), reason: e.to_string() })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let batch = bound.first().and_then(|t| t.dims().first().copied()).unwrap_or(1);
        let results = self.run_lengths.run(batch, || self.plan.run(bound))?;
        results
            .iter()
            .zip(&self.outputs)
            .map(|(t, spec)| from_candle(t, spec.dtype).map_err(|e| EngineError::Internal(e.to_string())))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keras_cnn_runs_as_nhwc_convs_with_fused_relu_and_pool_and_no_transposes() {
        let bytes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/models/mnist_cnn/1/model.onnx")).expect("model");
        let session = OnnxSession::from_bytes(&bytes).expect("load");
        assert_eq!(
            session.plan.step_ops(),
            ["_NhwcConv", "_NhwcConv", "Reshape", "_Dense", "Softmax"]
        );
    }

    /// The convs and the dense layer pack their weights at load; the plan must then let go of
    /// the originals (and of the NCHW ones the HWIO copies were folded from), or the model sits
    /// in memory twice. Biases and the Reshape's shape are all that stay.
    #[test]
    fn packed_weights_replace_the_originals() {
        let bytes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/models/mnist_cnn/1/model.onnx")).expect("model");
        let model = ModelProto::decode(bytes.as_slice()).expect("decode");
        let weights: usize =
            model.graph.as_ref().expect("graph").initializer.iter().map(|t| t.raw_data.len() + 4 * t.float_data.len()).sum();
        let session = OnnxSession::from_bytes(&bytes).expect("load");
        let kept = session.plan.constant_bytes();
        assert!(weights > 100_000, "the model has {weights} bytes of weights");
        assert!(kept < 4096, "the plan still holds {kept} of the model's {weights} bytes of weights as constants");
    }
}
