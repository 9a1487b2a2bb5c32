//! The error kinds every failure maps to, and their wire codes. A leaf: metrics, the
//! executor and the transports use it without depending on the errors themselves.

/// Canonical error kinds (the gRPC / TensorFlow codes we use).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidArgument,
    NotFound,
    FailedPrecondition,
    ResourceExhausted,
    Unavailable,
    Unimplemented,
    Internal,
    /// The request ran past its deadline (REST's `--rest_api_timeout_in_ms`).
    DeadlineExceeded,
}

impl ErrorKind {
    pub fn grpc_code(self) -> tonic::Code {
        match self {
            ErrorKind::InvalidArgument => tonic::Code::InvalidArgument,
            ErrorKind::NotFound => tonic::Code::NotFound,
            ErrorKind::FailedPrecondition => tonic::Code::FailedPrecondition,
            ErrorKind::ResourceExhausted => tonic::Code::ResourceExhausted,
            ErrorKind::Unavailable => tonic::Code::Unavailable,
            ErrorKind::Unimplemented => tonic::Code::Unimplemented,
            ErrorKind::Internal => tonic::Code::Internal,
            ErrorKind::DeadlineExceeded => tonic::Code::DeadlineExceeded,
        }
    }

    /// TF Serving's HTTP mapping (http_server.cc).
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::InvalidArgument | ErrorKind::FailedPrecondition => 400,
            ErrorKind::NotFound => 404,
            ErrorKind::ResourceExhausted => 429,
            ErrorKind::Unavailable => 503,
            ErrorKind::Unimplemented => 501,
            ErrorKind::Internal => 500,
            ErrorKind::DeadlineExceeded => 504,
        }
    }

    /// The TensorFlow error-code name, used as the `status` metric label.
    pub fn label(self) -> &'static str {
        match self {
            ErrorKind::InvalidArgument => "INVALID_ARGUMENT",
            ErrorKind::NotFound => "NOT_FOUND",
            ErrorKind::FailedPrecondition => "FAILED_PRECONDITION",
            ErrorKind::ResourceExhausted => "RESOURCE_EXHAUSTED",
            ErrorKind::Unavailable => "UNAVAILABLE",
            ErrorKind::Unimplemented => "UNIMPLEMENTED",
            ErrorKind::Internal => "INTERNAL",
            ErrorKind::DeadlineExceeded => "DEADLINE_EXCEEDED",
        }
    }
}
