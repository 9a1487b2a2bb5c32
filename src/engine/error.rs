use thiserror::Error;

/// Why a model could not be turned into a runnable session. Carries the model-level context
/// (file, node, op) so that one message in GetModelStatus is enough to fix the model.
#[derive(Debug, Error)]
pub enum LoadError {
    #[error("cannot read model file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("model file {path} is not a valid ONNX protobuf: {reason}")]
    Decode { path: String, reason: String },
    #[error("unsupported ONNX operators: {}", .0.join("; "))]
    UnsupportedOps(Vec<String>),
    #[error("invalid model: {0}")]
    Invalid(String),
    #[error("{context}: {source}")]
    Context {
        context: String,
        #[source]
        source: Box<LoadError>,
    },
}

impl LoadError {
    pub(crate) fn context(self, context: impl Into<String>) -> Self {
        LoadError::Context { context: context.into(), source: Box::new(self) }
    }
}

/// Why one execution failed. Inputs were already validated against the signature, so these are
/// shape combinations the graph itself rejects, or engine faults.
#[derive(Debug, Clone, Error)]
pub enum EngineError {
    #[error("input {name}: {reason}")]
    Input { name: String, reason: String },
    #[error("execution failed at node '{node}' ({op}): {reason}")]
    Node { node: String, op: String, reason: String },
    #[error("engine fault: {0}")]
    Internal(String),
}
