//! The model repository extension of the v2 protocol (Triton's, KServe's): load and unload
//! models by name and list what the repository holds. The manager task carries these out, so
//! they are ordered with config reloads and polling and never race a load.

use thiserror::Error;

use crate::config::model_config::ModelConfig;

use crate::repository::{VersionState, discover_models, scan_versions};
use super::ModelManager;

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

impl ModelManager {
    /// A load by name: a configured model is reconciled with its files now (new versions are
    /// picked up), an unloaded one comes back with its config, and a directory under the
    /// root is added with the default policy.
    pub(super) async fn load_model(&mut self, name: &str) -> Result<(), ControlError> {
        let model = match self.config.iter().find(|m| m.name == name) {
            Some(model) => model.clone(),
            None => {
                let model = match self.unloaded.remove(name) {
                    Some(model) => model,
                    None => self.discover(name).ok_or_else(|| ControlError::UnknownModel(name.to_string()))?,
                };
                self.config.push(model.clone());
                model
            }
        };
        self.repository.declare_model(name);
        self.reconcile(&model, true).await;
        if let Some(reason) = self.unavailable_reason(name) {
            return Err(ControlError::LoadFailed { name: name.to_string(), reason });
        }
        let refused = self.apply_labels(&model);
        if !refused.is_empty() {
            return Err(ControlError::LoadFailed { name: name.to_string(), reason: refused.join("; ") });
        }
        tracing::info!(model = %name, "model loaded on request");
        Ok(())
    }

    /// `<root>/<name>` when it is a model directory. A name is one path segment, so a load
    /// cannot reach outside the root.
    fn discover(&self, name: &str) -> Option<ModelConfig> {
        let root = self.root.as_ref()?;
        let plain = !name.is_empty() && !name.starts_with('.') && !name.contains(['/', '\\']);
        let path = root.join(name);
        (plain && scan_versions(&path).is_ok()).then(|| ModelConfig::latest(name, path))
    }

    pub(super) fn unload_model(&mut self, name: &str) -> Result<(), ControlError> {
        let Some(at) = self.config.iter().position(|m| m.name == name) else {
            // Unloading twice is not an error; unloading what never was is.
            return if self.unloaded.contains_key(name) { Ok(()) } else { Err(ControlError::UnknownModel(name.to_string())) };
        };
        let model = self.config.remove(at);
        self.retire(name);
        self.scan_errors.remove(name);
        self.unloaded.insert(name.to_string(), model);
        tracing::info!(model = %name, "model unloaded on request");
        Ok(())
    }

    /// Every model the repository knows: configured ones version by version, unloaded ones,
    /// and model directories under the root that were never loaded.
    pub(super) fn index(&self) -> Vec<IndexEntry> {
        let mut entries = Vec::new();
        for model in &self.config {
            match self.repository.status(&model.name, None) {
                Ok(versions) => entries.extend(versions.into_iter().map(|v| {
                    let (state, reason) = match v.state {
                        VersionState::Start | VersionState::Loading => (IndexState::Loading, String::new()),
                        VersionState::Available => (IndexState::Ready, String::new()),
                        VersionState::Unloading => (IndexState::Unloading, String::new()),
                        VersionState::End => (IndexState::Unavailable, v.error.unwrap_or_else(|| "unloaded".to_string())),
                    };
                    IndexEntry { name: model.name.clone(), version: Some(v.version), state, reason }
                })),
                Err(_) => entries.push(IndexEntry {
                    name: model.name.clone(),
                    version: None,
                    state: IndexState::Unavailable,
                    reason: self.scan_errors.get(&model.name).cloned().unwrap_or_else(|| "no version loaded".to_string()),
                }),
            }
        }
        let unavailable = |name: &str, reason: &str| IndexEntry {
            name: name.to_string(),
            version: None,
            state: IndexState::Unavailable,
            reason: reason.to_string(),
        };
        entries.extend(self.unloaded.keys().map(|name| unavailable(name, "unloaded")));
        if let Some(root) = &self.root {
            let known = |name: &str| self.config.iter().any(|m| m.name == name) || self.unloaded.contains_key(name);
            for (name, _) in discover_models(root).unwrap_or_default() {
                if !known(&name) {
                    entries.push(unavailable(&name, "not loaded"));
                }
            }
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name).then(b.version.cmp(&a.version)));
        entries
    }
}
