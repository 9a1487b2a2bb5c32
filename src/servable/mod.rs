//! The servable: one loaded model version, the thing the repository stores and requests run
//! on. It owns its signatures, checks a request's tensors against them and executes (directly
//! or through its batch queue). It knows nothing of transports, admission or metrics of
//! requests; the request flow above it (`crate::request`) does that bookkeeping.

mod inference;
mod metadata;
mod predict;
mod signature;
mod validate;
mod version;

pub use inference::{CLASSIFY_METHOD, Examples, InferenceOutcome, InferenceOutput, Method, REGRESS_METHOD};
pub use predict::{PredictCall, PredictError, PredictOutcome, RequestTensor, WireTensor, bind_inputs};
pub use signature::{DEFAULT_SIGNATURE, PREDICT_METHOD, Signature};
pub use validate::{RequestError, check_input, check_input_keys, select_outputs};
pub use version::{RunError, Servable, SignatureSession, Timeline};
