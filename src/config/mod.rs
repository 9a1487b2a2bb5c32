//! Server configuration: TF Serving's command-line flags, parsed into [`ServerConfig`].

mod flags;
mod network;

pub use network::{NetworkOptions, TlsSource, default_max_connections};
pub use flags::{FlagError, LifecycleOptions, LogFormat, ModelSource, ParseOutcome, ServerConfig, parse_args, usage};
pub mod text_proto;
pub mod model_config;
