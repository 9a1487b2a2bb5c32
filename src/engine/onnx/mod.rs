//! ONNX front end: decode the protobuf, resolve every node to a kernel once, fold constants, and
//! hand back a [`Plan`](plan::Plan) that requests only execute.

mod attrs;
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
use super::{EngineError, EngineOptions, LoadError, Session};

/// A loaded ONNX model.
pub struct OnnxSession {
    plan: plan::Plan,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    device: Device,
}

impl OnnxSession {
    pub fn load(path: &Path, options: &EngineOptions) -> Result<Self, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Io { path: path.display().to_string(), source })?;
        Self::from_bytes_on(&bytes, &options.device).map_err(|e| match e {
            LoadError::Decode { reason, .. } => LoadError::Decode { path: path.display().to_string(), reason },
            other => other,
        })
    }

    /// Loads onto the CPU.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, LoadError> {
        Self::from_bytes_on(bytes, &Device::Cpu)
    }

    pub fn from_bytes_on(bytes: &[u8], device: &Device) -> Result<Self, LoadError> {
        let model = ModelProto::decode(bytes)
            .map_err(|e| LoadError::Decode { path: String::new(), reason: e.to_string() })?;
        let device = device.clone();
        let imported = import::import(&model, &device)?;
        Ok(Self { plan: imported.plan, inputs: imported.inputs, outputs: imported.outputs, device })
    }
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
        let results = self.plan.run(bound)?;
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
    fn keras_cnn_runs_as_nhwc_convs_with_fused_relu_and_no_transposes() {
        let bytes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/models/mnist_cnn/1/model.onnx")).expect("model");
        let session = OnnxSession::from_bytes(&bytes).expect("load");
        assert_eq!(
            session.plan.step_ops(),
            ["_NhwcConv", "_NhwcMaxPool", "_NhwcConv", "_NhwcMaxPool", "Reshape", "_Dense", "Softmax"]
        );
    }
}
