//! Transport-independent request handling: signatures, validation of request tensors against
//! them, and the servable (one loaded model version) that executes a validated request.

mod admission;
mod predict;
pub(crate) mod servable;
mod signature;
mod validate;

pub use admission::{Admission, AdmissionError};
pub use predict::{PredictCall, PredictOutcome, RequestTensor, WireTensor, bind_inputs, predict, predict_on};
pub use servable::Servable;
pub use signature::{DEFAULT_SIGNATURE, PREDICT_METHOD, Signature};
pub use validate::{RequestError, check_input, check_input_keys, select_outputs};
