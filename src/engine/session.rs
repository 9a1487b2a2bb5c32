use crate::tensor::{HostTensor, TensorSpec};

use super::EngineError;

/// A compiled model ready to execute. Implementations are immutable after load, so one session
/// is shared by every request thread without locks.
pub trait Session: Send + Sync + 'static {
    /// Graph inputs in the order `run` expects them.
    fn inputs(&self) -> &[TensorSpec];
    /// Graph outputs in the order `run` returns them.
    fn outputs(&self) -> &[TensorSpec];
    /// Runs the graph. Blocking and CPU-heavy: call it from a compute thread, never from an
    /// async task.
    fn run(&self, inputs: Vec<HostTensor>) -> Result<Vec<HostTensor>, EngineError>;
}

/// Knobs fixed at load time.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Where weights live and kernels run (opened once from `--device`).
    pub device: candle_core::Device,
    /// `--saved_model_tags`: which meta graph of a SavedModel loads.
    pub saved_model_tags: Vec<String>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self { device: candle_core::Device::Cpu, saved_model_tags: vec!["serve".to_string()] }
    }
}
