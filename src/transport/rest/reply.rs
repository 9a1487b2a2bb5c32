//! REST responses: JSON bodies with `Content-Type: application/json` (TF sets it on every
//! reply, errors included) and errors as `{"error": "<message>"}` with the HTTP status from
//! [`ErrorKind::http_status`], the one code table shared with gRPC.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::{ErrorKind, ServingError, truncate_message};
use crate::repository::LookupError;
use crate::request::Reportable;
use crate::servable::RequestError;

use crate::transport::json::Writer;

/// An error on its way to the client: a kind (for the status code and the metric label) and
/// TF's message. REST-only failures (bad paths, malformed JSON) use the same kinds as the
/// shared ones, so there is no second code table.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct RestError {
    kind: ErrorKind,
    message: String,
}

impl RestError {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into() }
    }

    /// INVALID_ARGUMENT (400), the code TF gives every request it cannot make sense of.
    pub(super) fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidArgument, message)
    }

    pub(super) fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub(crate) fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.kind.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut w = Writer::new();
        w.begin_object().key("error").string(&truncate_message(self.message)).end_object();
        json_response(status, w.finish())
    }
}

impl Reportable for RestError {
    fn kind(&self) -> ErrorKind {
        self.kind
    }
}

impl From<ServingError> for RestError {
    fn from(err: ServingError) -> Self {
        Self::new(err.kind(), err.to_string())
    }
}

impl From<RequestError> for RestError {
    fn from(err: RequestError) -> Self {
        ServingError::from(err).into()
    }
}

impl From<LookupError> for RestError {
    fn from(err: LookupError) -> Self {
        ServingError::from(err).into()
    }
}

pub(crate) fn json_response(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response()
}
