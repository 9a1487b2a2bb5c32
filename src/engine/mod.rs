//! The tensor engine. A model file is compiled once into a [`Session`]; requests only bind
//! inputs and execute. The engine knows nothing of transports, repositories or batching: it
//! speaks [`HostTensor`](crate::tensor::HostTensor) at its edge and candle inside.

mod convert;
mod device;
mod error;
pub(crate) mod kernels;
pub mod onnx;
mod session;
mod worker;

pub use device::DeviceSpec;
pub use error::{EngineError, LoadError};
pub use kernels::threads::{available_cores, keep_candle_on_the_calling_thread, set_intra_op_threads};
pub use session::{EngineOptions, Session};
pub use worker::{ComputeError, ComputePool, InlineSlot, Timing};
