//! candle-serving: a TensorFlow Serving-compatible model server for ONNX models on candle.
//!
//! Request path: transport (`transport`: gRPC, REST) -> the request core (`request`: admission,
//! lookup in `repository`, one record per request) -> the servable (`servable`: validation
//! against its signature, `tensor` conversion, direct or `batching` execution) -> `engine` ->
//! response.

pub mod allocator;
pub mod batching;
pub mod config;
pub mod engine;
pub mod error;
pub mod example;
pub mod metrics;
pub mod proto;
pub mod repository;
pub mod request;
pub mod savedmodel;
pub mod servable;
pub mod telemetry;
pub mod tensor;
pub mod transport;

mod startup;

pub use startup::{Listeners, ServeError, serve};

/// The unit tests' allocator is the server's (main.rs), so `profile_plan` times what a pod runs.
#[cfg(test)]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
