//! The model repository extension of the v2 protocol (Triton's, KServe's): load and unload
//! models by name and list what the repository holds. The manager task carries these out, so
//! they are ordered with config reloads and polling and never race a load.

use thiserror::Error;

#[derive(Debug, Clone, Error)]
pub enum ControlError {
    #[error(
        "model '{0}' is not in the model repository: it is neither configured, nor unloaded earlier, nor a model directory under the model root"
    )]
    UnknownModel(String),
    #[error("failed to load model '{name}': {reason}")]
    LoadFailed { name: String, reason: String },
    #[error("the model manager has stopped")]
    Stopped,
}

/// One row of the repository index: a version of a model, or a model with no version to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    pub name: String,
    pub version: Option<i64>,
    pub state: IndexState,
    /// Why the entry is not ready; empty when it is.
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexState {
    Ready,
    Loading,
    Unloading,
    Unavailable,
}

impl IndexState {
    /// The protocol's state names.
    pub fn name(self) -> &'static str {
        match self {
            IndexState::Ready => "READY",
            IndexState::Loading => "LOADING",
            IndexState::Unloading => "UNLOADING",
            IndexState::Unavailable => "UNAVAILABLE",
        }
    }
}
