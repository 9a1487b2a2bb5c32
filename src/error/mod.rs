//! The one table from error kinds to wire codes. gRPC statuses (and, later, REST bodies and
//! metric labels) all come from [`ServingError::kind`], so the transports cannot drift apart.

mod kind;

use thiserror::Error;

use crate::batching::BatchError;
use crate::engine::{ComputeError, EngineError};
use crate::repository::{ControlError, LookupError};
use crate::request::AdmissionError;
use crate::servable::{PredictError, RequestError, RunError};

pub use kind::ErrorKind;

#[derive(Debug, Error)]
pub enum ServingError {
    #[error(transparent)]
    Lookup(#[from] LookupError),
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    Admission(#[from] AdmissionError),
    /// A load, unload or index request of the v2 repository extension.
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error("{0}")]
    Unimplemented(String),
}

impl From<PredictError> for ServingError {
    fn from(err: PredictError) -> Self {
        match err {
            PredictError::Request(e) => ServingError::Request(e),
            PredictError::Run(e) => ServingError::Run(e),
        }
    }
}

impl ServingError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            ServingError::Lookup(LookupError::UnknownLabel(_)) => ErrorKind::InvalidArgument,
            ServingError::Lookup(_) => ErrorKind::NotFound,
            ServingError::Request(RequestError::UnknownSignature { .. }) => ErrorKind::FailedPrecondition,
            ServingError::Request(RequestError::NotRunnable { .. }) => ErrorKind::Unimplemented,
            ServingError::Request(RequestError::NoExampleSignatures { .. }) => ErrorKind::FailedPrecondition,
            ServingError::Request(_) => ErrorKind::InvalidArgument,
            // Inputs passed the signature check, so a node rejecting them is still the
            // caller's shape problem, as TensorFlow reports kernel shape errors.
            ServingError::Run(RunError::Engine(EngineError::Node { .. } | EngineError::Input { .. })) => {
                ErrorKind::InvalidArgument
            }
            ServingError::Run(RunError::Engine(EngineError::Internal(_))) => ErrorKind::Internal,
            ServingError::Run(RunError::Compute(ComputeError::QueueFull { .. })) => ErrorKind::ResourceExhausted,
            ServingError::Run(RunError::Compute(ComputeError::ShutDown)) => ErrorKind::Unavailable,
            ServingError::Run(RunError::Compute(ComputeError::Panicked(_))) => ErrorKind::Internal,
            ServingError::Run(RunError::Batch(BatchError::QueueFull { .. })) => ErrorKind::Unavailable,
            ServingError::Run(RunError::Batch(BatchError::TooLarge { .. })) => ErrorKind::InvalidArgument,
            // `RunError::from(BatchError)` turns the batch's engine, compute and deadline
            // failures into their own variants, so only refusals arrive here as `Batch`.
            ServingError::Run(RunError::Batch(_)) => ErrorKind::Internal,
            ServingError::Run(RunError::DeadlineExceeded) => ErrorKind::DeadlineExceeded,
            ServingError::Admission(_) => ErrorKind::ResourceExhausted,
            ServingError::Control(ControlError::UnknownModel(_)) => ErrorKind::NotFound,
            ServingError::Control(ControlError::LoadFailed { .. }) => ErrorKind::FailedPrecondition,
            ServingError::Control(ControlError::Stopped) => ErrorKind::Unavailable,
            ServingError::Unimplemented(_) => ErrorKind::Unimplemented,
        }
    }
}

/// TF Serving cuts messages at 1024 characters so huge shape dumps cannot bloat trailers.
const MAX_MESSAGE_CHARS: usize = 1024;

pub(crate) fn truncate_message(message: String) -> String {
    if message.chars().count() <= MAX_MESSAGE_CHARS {
        return message;
    }
    let cut: String = message.chars().take(MAX_MESSAGE_CHARS).collect();
    format!("{cut}...TRUNCATED")
}

impl From<ServingError> for tonic::Status {
    fn from(err: ServingError) -> Self {
        tonic::Status::new(err.kind().grpc_code(), truncate_message(err.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_tf_serving() {
        let e = ServingError::from(LookupError::NoLatest("m".into()));
        let status = tonic::Status::from(e);
        assert_eq!(status.code(), tonic::Code::NotFound);
        assert_eq!(status.message(), "Servable not found for request: Latest(m)");
        let e = ServingError::from(RequestError::UnknownSignature { name: "x".into(), available: "serving_default".into() });
        assert_eq!(e.kind(), ErrorKind::FailedPrecondition);
        assert_eq!(ErrorKind::ResourceExhausted.http_status(), 429);
    }

    #[test]
    fn long_messages_are_truncated() {
        let msg = truncate_message("x".repeat(2000));
        assert!(msg.ends_with("...TRUNCATED"));
        assert_eq!(msg.len(), 1024 + "...TRUNCATED".len());
    }
}
