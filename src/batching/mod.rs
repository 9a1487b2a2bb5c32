//! Dynamic batching: single-item requests from many clients are stacked along dim 0, run as one
//! engine call, and split back. One task owns each model version's queue; the engine runs on
//! the compute threads.

mod options;
mod queue;

pub use options::BatchingOptions;
pub use queue::{BatchError, Batcher};
