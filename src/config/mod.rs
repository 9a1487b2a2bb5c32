//! Server configuration: TF Serving's command-line flags, parsed into [`ServerConfig`].

mod flags;

pub use flags::{FlagError, LifecycleOptions, LogFormat, ModelSource, ParseOutcome, ServerConfig, parse_args, usage};
pub mod text_proto;
pub mod model_config;
