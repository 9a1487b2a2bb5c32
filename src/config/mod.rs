//! Server configuration: TF Serving's command-line flags, parsed into [`ServerConfig`].

mod flags;

pub use flags::{FlagError, ModelSource, ParseOutcome, ServerConfig, parse_args, usage};
