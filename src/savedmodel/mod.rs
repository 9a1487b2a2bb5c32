//! TensorFlow SavedModels without TensorFlow. So far: the variables' tensor bundle (a LevelDB
//! table of entries, CRC-checked data shards, snappy blocks); the graph import that binds
//! them to a signature is the SavedModel issue's remaining work.

pub mod bundle;
mod crc32c;
mod table;

pub use bundle::{Bundle, BundleError};
pub use table::TableError;
