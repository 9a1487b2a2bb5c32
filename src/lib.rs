//! candle-serving: a TensorFlow Serving-compatible model server for ONNX models on candle.
//!
//! Request path: transport (gRPC) -> request validation and tensor conversion (`serving`,
//! `tensor`) -> model lookup (`repository`) -> engine (`engine`, on its own threads) -> response.

pub mod batching;
pub mod config;
pub mod engine;
pub mod error;
pub mod metrics;
pub mod proto;
pub mod repository;
pub mod request;
pub mod servable;
pub mod telemetry;
pub mod tensor;
pub mod transport;

mod startup;

pub use startup::{Listeners, ServeError, serve};
