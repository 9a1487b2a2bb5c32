//! The engine-neutral tensor that crosses every seam: transports decode wire tensors into it,
//! the engine consumes and produces it. Keeping it free of candle types means the transports
//! never learn how the engine stores data, and the engine never learns about protobuf.

mod dtype;
mod host;
mod rows;
mod shape;

pub use dtype::DType;
pub use host::{HostTensor, TensorData};
pub use shape::{Dim, TensorSpec, element_count};

pub mod le_bytes;
pub mod tf_proto;
