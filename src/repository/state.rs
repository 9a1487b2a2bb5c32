//! Version states and request routing. Readers take a short read lock and clone an `Arc`, so
//! lookups never wait on model loading, which happens outside the lock.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use thiserror::Error;
use tokio::sync::watch;

use crate::servable::Servable;

/// TF Serving's ModelVersionStatus.State.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionState {
    Start,
    Loading,
    Available,
    Unloading,
    End,
}

/// Which version a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionRequest {
    Latest,
    Specific(i64),
    Label(String),
}

#[derive(Debug, Clone)]
pub struct VersionStatus {
    pub version: i64,
    pub state: VersionState,
    /// `None` is OK; otherwise the load or serve error of this version.
    pub error: Option<String>,
}

#[derive(Debug, Error)]
pub enum LookupError {
    #[error("Servable not found for request: Latest({0})")]
    NoLatest(String),
    #[error("Servable not found for request: Specific({0}, {1})")]
    NoVersion(String, i64),
    #[error("Unrecognized servable version label: {0}")]
    UnknownLabel(String),
    #[error("Could not find any versions of model {0}")]
    NoStatus(String),
    #[error("Could not find version {1} of model {0}")]
    NoVersionStatus(String, i64),
}

struct Slot {
    state: VersionState,
    error: Option<String>,
    servable: Option<Arc<Servable>>,
}

#[derive(Default)]
struct Model {
    versions: BTreeMap<i64, Slot>,
    labels: HashMap<String, i64>,
    /// Why no version could even be tried (the base path cannot be read), if so.
    problem: Option<String>,
    /// Removed from the config and draining: no longer part of the server's health.
    retired: bool,
}

/// Whether a model can answer requests now, as health checks report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelHealth {
    pub name: String,
    /// At least one version is AVAILABLE.
    pub available: bool,
    /// The newest version's error, when it has one (why the model is not available).
    pub error: Option<String>,
}

pub struct ModelRepository {
    models: RwLock<BTreeMap<String, Model>>,
    /// Bumped after every change, so health follows the repository instead of being set once.
    changes: watch::Sender<u64>,
}

impl Default for ModelRepository {
    fn default() -> Self {
        Self { models: RwLock::default(), changes: watch::Sender::new(0) }
    }
}

/// Write access; dropping it tells the watchers that something changed.
struct WriteGuard<'a> {
    models: std::sync::RwLockWriteGuard<'a, BTreeMap<String, Model>>,
    changes: &'a watch::Sender<u64>,
}

impl std::ops::Deref for WriteGuard<'_> {
    type Target = BTreeMap<String, Model>;
    fn deref(&self) -> &Self::Target {
        &self.models
    }
}

impl std::ops::DerefMut for WriteGuard<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.models
    }
}

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        self.changes.send_modify(|generation| *generation += 1);
    }
}

impl ModelRepository {
    pub fn new() -> Self {
        Self::default()
    }

    fn write(&self) -> WriteGuard<'_> {
        WriteGuard { models: self.models.write().unwrap_or_else(|poisoned| poisoned.into_inner()), changes: &self.changes }
    }

    /// Wakes on every change of any model's versions or states.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Every model the repository knows (configured, or still draining), with whether it serves.
    pub fn health(&self) -> Vec<ModelHealth> {
        self.read()
            .iter()
            .filter(|(_, model)| !model.retired)
            .map(|(name, model)| ModelHealth {
                name: name.clone(),
                available: model.versions.values().any(|s| s.servable.is_some()),
                error: model.problem.clone().or_else(|| model.versions.values().next_back().and_then(|s| s.error.clone())),
            })
            .collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Model>> {
        self.models.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn set_state(&self, name: &str, version: i64, state: VersionState, error: Option<String>) {
        let mut models = self.write();
        let slot = models
            .entry(name.to_string())
            .or_default()
            .versions
            .entry(version)
            .or_insert(Slot { state, error: None, servable: None });
        slot.state = state;
        slot.error = error;
        if state != VersionState::Available {
            slot.servable = None;
        }
    }

    /// Publishes a loaded (and warmed-up) version; from now on requests can reach it.
    pub fn make_available(&self, servable: Arc<Servable>) {
        let mut models = self.write();
        let model = models.entry(servable.name().to_string()).or_default();
        model.versions.insert(servable.version(), Slot { state: VersionState::Available, error: None, servable: Some(servable) });
    }

    /// Takes a version out of routing (state UNLOADING) and hands back the servable so the caller
    /// can wait for in-flight requests, which hold their own `Arc`, before releasing it.
    pub fn begin_unload(&self, name: &str, version: i64) -> Option<Arc<Servable>> {
        let mut models = self.write();
        let slot = models.get_mut(name)?.versions.get_mut(&version)?;
        let servable = slot.servable.take()?;
        slot.state = VersionState::Unloading;
        slot.error = None;
        Some(servable)
    }

    /// Ends an unload once the version's in-flight requests are done: the version becomes END,
    /// or the whole model goes when it was removed and nothing of it serves or loads. A version
    /// loaded again meanwhile (an unload followed by a load) is left as it is.
    pub fn finish_unload(&self, name: &str, version: i64, remove_model: bool) {
        let mut models = self.write();
        let Some(model) = models.get_mut(name) else { return };
        let idle = model.versions.values().all(|s| s.servable.is_none() && s.state != VersionState::Loading);
        if remove_model && model.retired && idle {
            models.remove(name);
            return;
        }
        if let Some(slot) = model.versions.get_mut(&version)
            && slot.state == VersionState::Unloading
        {
            slot.state = VersionState::End;
            slot.error = None;
        }
    }

    pub fn state(&self, name: &str, version: i64) -> Option<VersionState> {
        self.read().get(name).and_then(|m| m.versions.get(&version)).map(|s| s.state)
    }

    /// Versions that currently answer requests.
    pub fn available_versions(&self, name: &str) -> Vec<i64> {
        self.read()
            .get(name)
            .map(|m| m.versions.iter().filter(|(_, s)| s.servable.is_some()).map(|(v, _)| *v).collect())
            .unwrap_or_default()
    }

    /// The last error of any version of `name`, newest first.
    pub fn last_error(&self, name: &str) -> Option<String> {
        self.read().get(name).and_then(|m| m.versions.values().rev().find_map(|s| s.error.clone()))
    }

    pub fn set_labels(&self, name: &str, labels: HashMap<String, i64>) {
        if let Some(model) = self.write().get_mut(name) {
            model.labels = labels;
        }
    }

    pub fn remove_model(&self, name: &str) {
        self.write().remove(name);
    }

    /// A configured model is known before any of its versions loads, so health reports it
    /// (as not available) from the start, even when its base path cannot be read.
    pub fn declare_model(&self, name: &str) {
        self.write().entry(name.to_string()).or_default().retired = false;
    }

    /// A model removed from the config keeps answering its in-flight requests while it
    /// drains, but no longer counts for health.
    pub fn retire_model(&self, name: &str) {
        if let Some(model) = self.write().get_mut(name) {
            model.retired = true;
        }
    }

    /// Records (or clears) a problem with the model as a whole.
    pub fn set_model_problem(&self, name: &str, problem: Option<String>) {
        self.write().entry(name.to_string()).or_default().problem = problem;
    }

    pub fn model_names(&self) -> Vec<String> {
        self.read().keys().cloned().collect()
    }

    pub fn resolve(&self, name: &str, request: &VersionRequest) -> Result<Arc<Servable>, LookupError> {
        let models = self.read();
        let model = models.get(name);
        let available = |version: i64| {
            model.and_then(|m| m.versions.get(&version)).and_then(|s| s.servable.clone())
        };
        match request {
            VersionRequest::Latest => model
                .and_then(|m| m.versions.values().rev().find_map(|s| s.servable.clone()))
                .ok_or_else(|| LookupError::NoLatest(name.to_string())),
            VersionRequest::Specific(v) => available(*v).ok_or_else(|| LookupError::NoVersion(name.to_string(), *v)),
            VersionRequest::Label(label) => {
                let version = model
                    .and_then(|m| m.labels.get(label))
                    .copied()
                    .ok_or_else(|| LookupError::UnknownLabel(label.clone()))?;
                available(version).ok_or_else(|| LookupError::NoVersion(name.to_string(), version))
            }
        }
    }

    /// Status of every version (newest first, as TF Serving orders them) or of one version.
    pub fn status(&self, name: &str, version: Option<i64>) -> Result<Vec<VersionStatus>, LookupError> {
        let models = self.read();
        let model = models.get(name).filter(|m| !m.versions.is_empty()).ok_or_else(|| LookupError::NoStatus(name.to_string()))?;
        let describe = |(&version, slot): (&i64, &Slot)| VersionStatus { version, state: slot.state, error: slot.error.clone() };
        match version {
            None => Ok(model.versions.iter().rev().map(describe).collect()),
            Some(v) => model
                .versions
                .get_key_value(&v)
                .map(|entry| vec![describe(entry)])
                .ok_or(LookupError::NoVersionStatus(name.to_string(), v)),
        }
    }
}
