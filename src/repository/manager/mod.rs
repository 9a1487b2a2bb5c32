//! The model lifecycle, owned by one task: which versions should be loaded (config + policy +
//! what is on disk), loading and warming them up, publishing, and unloading what is no longer
//! wanted only once a wanted version serves. Requests never wait on this task.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, oneshot, watch};

use crate::batching::BatchingOptions;
use crate::config::LifecycleOptions;
use crate::config::model_config::{self, ModelConfig};
use crate::engine::{ComputePool, EngineOptions};
use crate::metrics::Metrics;

mod control;

pub use control::{ControlError, IndexEntry, IndexState};

use super::loader::{MODEL_FILE, SAVED_MODEL_FILE};
use super::warmup::warm_up;
use super::{LayoutError, ModelRepository, VersionState, load_servable, scan_versions};

/// Size and modification time of a version's model file: a version whose fingerprint is the
/// same on two consecutive polls is complete (a copy in progress keeps changing it).
type Fingerprint = (u64, SystemTime);

fn fingerprint(dir: &Path) -> Option<Fingerprint> {
    let meta = std::fs::metadata(dir.join(MODEL_FILE)).or_else(|_| std::fs::metadata(dir.join(SAVED_MODEL_FILE))).ok()?;
    Some((meta.len(), meta.modified().ok()?))
}

struct Failure {
    count: u32,
    retry_at: Instant,
    fingerprint: Option<Fingerprint>,
}

pub struct ModelManager {
    repository: Arc<ModelRepository>,
    metrics: Arc<Metrics>,
    compute: ComputePool,
    /// Device and other engine knobs every version loads with.
    engine: EngineOptions,
    options: LifecycleOptions,
    max_tensor_bytes: usize,
    batching: Option<BatchingOptions>,
    config: Vec<ModelConfig>,
    seen: HashMap<(String, i64), Fingerprint>,
    failures: HashMap<(String, i64), Failure>,
    scan_errors: HashMap<String, String>,
    /// Models taken out by an explicit unload, kept so a later load can bring them back with
    /// their config, and the index can list them.
    unloaded: BTreeMap<String, ModelConfig>,
    /// Where a load by name finds a model that is not configured (the root the server was
    /// started on when it serves every model under it).
    root: Option<PathBuf>,
}

enum Command {
    Reload { config: Vec<ModelConfig>, reply: oneshot::Sender<Result<(), String>> },
    Load { name: String, reply: oneshot::Sender<Result<(), ControlError>> },
    Unload { name: String, reply: oneshot::Sender<Result<(), ControlError>> },
    Index { reply: oneshot::Sender<Vec<IndexEntry>> },
}

/// How transports ask the manager for a new config (HandleReloadConfigRequest).
#[derive(Clone)]
pub struct ManagerHandle {
    tx: mpsc::Sender<Command>,
}

impl ManagerHandle {
    /// Applies `config` and answers once the new state is reached, or with what failed.
    pub async fn reload(&self, config: Vec<ModelConfig>) -> Result<(), String> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Command::Reload { config, reply }).await.map_err(|_| "the model manager has stopped".to_string())?;
        rx.await.map_err(|_| "the model manager has stopped".to_string())?
    }

    /// Loads (or reloads) `name` and answers once it serves, or with why it does not.
    pub async fn load(&self, name: &str) -> Result<(), ControlError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Load { name: name.to_string(), reply }).await?;
        rx.await.map_err(|_| ControlError::Stopped)?
    }

    /// Takes `name` out of service at once; its in-flight requests finish on the versions
    /// they hold.
    pub async fn unload(&self, name: &str) -> Result<(), ControlError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Unload { name: name.to_string(), reply }).await?;
        rx.await.map_err(|_| ControlError::Stopped)?
    }

    pub async fn index(&self) -> Result<Vec<IndexEntry>, ControlError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Index { reply }).await?;
        rx.await.map_err(|_| ControlError::Stopped)
    }

    async fn send(&self, command: Command) -> Result<(), ControlError> {
        self.tx.send(command).await.map_err(|_| ControlError::Stopped)
    }
}

/// The receiving end, handed to [`ModelManager::run`] once start-up loading is done.
pub struct ManagerInbox {
    rx: mpsc::Receiver<Command>,
}

pub fn channel() -> (ManagerHandle, ManagerInbox) {
    let (tx, rx) = mpsc::channel(16);
    (ManagerHandle { tx }, ManagerInbox { rx })
}

impl ModelManager {
    pub fn new(
        repository: Arc<ModelRepository>,
        metrics: Arc<Metrics>,
        compute: ComputePool,
        engine: EngineOptions,
        options: LifecycleOptions,
        max_tensor_bytes: usize,
        batching: Option<BatchingOptions>,
    ) -> Self {
        Self {
            repository,
            metrics,
            compute,
            engine,
            options,
            max_tensor_bytes,
            batching,
            config: Vec::new(),
            seen: HashMap::new(),
            failures: HashMap::new(),
            scan_errors: HashMap::new(),
            unloaded: BTreeMap::new(),
            root: None,
        }
    }

    /// The directory a load by name searches for models that are not configured.
    pub fn with_root(mut self, root: PathBuf) -> Self {
        self.root = Some(root);
        self
    }

    /// Replaces the config: removed models unload, new ones load (files present now are taken
    /// as complete), labels apply. Errors list every model without an available version and
    /// every refused label.
    pub async fn apply(&mut self, config: Vec<ModelConfig>) -> Result<(), String> {
        let keep: BTreeSet<&str> = config.iter().map(|m| m.name.as_str()).collect();
        for old in self.config.iter().filter(|m| !keep.contains(m.name.as_str())) {
            self.retire(&old.name);
            tracing::info!(model = %old.name, "model removed from config");
        }
        for model in &config {
            self.repository.declare_model(&model.name);
            self.unloaded.remove(&model.name);
        }
        self.config = config;
        let models = self.config.clone();
        let mut problems = Vec::new();
        for model in &models {
            self.reconcile(model, true).await;
            if let Some(why) = self.unavailable_reason(&model.name) {
                problems.push(format!("{{name: {} error: {why}}}", model.name));
            }
        }
        let unavailable = problems.len();
        for model in &models {
            problems.extend(self.apply_labels(model));
        }
        if problems.is_empty() {
            Ok(())
        } else if unavailable > 0 {
            Err(format!("{unavailable} model(s) did not become available: {}", problems.join(", ")))
        } else {
            Err(problems.join("; "))
        }
    }

    /// Stops routing to every version of `name` (they drain) and forgets it once drained.
    fn retire(&self, name: &str) {
        let serving = self.repository.available_versions(name);
        if serving.is_empty() {
            self.repository.remove_model(name);
        } else {
            self.repository.retire_model(name);
        }
        for version in serving {
            self.unload(name, version, true);
        }
    }

    /// Why `name` has no available version, if it has none.
    fn unavailable_reason(&self, name: &str) -> Option<String> {
        if !self.repository.available_versions(name).is_empty() {
            return None;
        }
        let why = self.scan_errors.get(name).cloned().or_else(|| self.repository.last_error(name));
        Some(why.unwrap_or_else(|| "no version matches the version policy".to_string()))
    }

    fn apply_labels(&self, model: &ModelConfig) -> Vec<String> {
        let available = self.repository.available_versions(&model.name);
        let mut refused = Vec::new();
        for (label, version) in &model.labels {
            if !available.contains(version) && !self.options.allow_labels_for_unavailable {
                refused.push(format!(
                    "Request to assign label {label} to version {version} of model {}, which is not currently available for inference",
                    model.name
                ));
            }
        }
        if refused.is_empty() {
            self.repository.set_labels(&model.name, model.labels.clone().into_iter().collect());
        }
        refused
    }

    /// One polling round over every configured model.
    pub async fn poll(&mut self) {
        for model in self.config.clone() {
            self.reconcile(&model, false).await;
        }
    }

    async fn reconcile(&mut self, model: &ModelConfig, trust_files: bool) {
        let versions = match scan_versions(&model.base_path) {
            Ok(v) => {
                if self.scan_errors.remove(&model.name).is_some() {
                    self.repository.set_model_problem(&model.name, None);
                }
                v
            }
            Err(err) => {
                if self.scan_errors.insert(model.name.clone(), err.to_string()).is_none() {
                    tracing::warn!(model = %model.name, error = %err, "cannot scan model base path; will retry");
                    self.repository.set_model_problem(&model.name, Some(err.to_string()));
                }
                // A readable base path with no versions left is an answer (unload what was
                // deleted); an unreadable one is not, and the versions serving stay.
                if !matches!(err, LayoutError::NoVersions(_)) {
                    return;
                }
                BTreeMap::new()
            }
        };
        let mut complete = BTreeSet::new();
        for (&version, dir) in &versions {
            let key = (model.name.clone(), version);
            let print = fingerprint(dir);
            let stable = match print {
                Some(p) => self.seen.insert(key, p) == Some(p),
                None => false,
            };
            if trust_files || stable {
                complete.insert(version);
            }
        }
        let wanted = model.policy.select(&complete);
        for &version in wanted.iter().rev() {
            if self.repository.state(&model.name, version) == Some(VersionState::Available) {
                continue;
            }
            let dir = &versions[&version];
            if !trust_files && !self.may_retry(&model.name, version, fingerprint(dir)) {
                continue;
            }
            self.load(model, version, dir).await;
        }
        let serving = self.repository.available_versions(&model.name);
        if serving.iter().any(|v| wanted.contains(v)) {
            for version in serving.into_iter().filter(|v| !wanted.contains(v)) {
                self.unload(&model.name, version, false);
            }
        } else if model.policy.select(&versions.keys().copied().collect()).is_empty() {
            // Nothing on disk that the policy could serve next: versions whose directory is
            // gone are unloaded, as TF Serving does when a model's last version is deleted.
            // (A version still being copied keeps the old one serving until it is complete.)
            for version in serving.into_iter().filter(|v| !versions.contains_key(v)) {
                tracing::warn!(model = %model.name, version, "version directory removed; unloading it");
                self.unload(&model.name, version, false);
            }
        }
    }

    /// A failed version is retried after the retry interval, up to the retry limit, or at
    /// once when its files changed (someone fixed it).
    fn may_retry(&mut self, name: &str, version: i64, print: Option<Fingerprint>) -> bool {
        let key = (name.to_string(), version);
        match self.failures.get(&key) {
            None => true,
            Some(f) if f.fingerprint != print => {
                self.failures.remove(&key);
                true
            }
            Some(f) => f.count <= self.options.max_load_retries && Instant::now() >= f.retry_at,
        }
    }

    async fn load(&mut self, model: &ModelConfig, version: i64, dir: &Path) {
        let name = model.name.as_str();
        let started = Instant::now();
        self.repository.set_state(name, version, VersionState::Loading, None);
        self.metrics.set_version_state(name, version, "LOADING");
        tracing::info!(model = %name, version, state = "LOADING", "model version transition");
        let result = self.load_and_warm(model, version, dir.to_path_buf()).await;
        let elapsed = started.elapsed();
        self.metrics.observe_load(name, &dir.display().to_string(), elapsed, result.is_ok());
        let key = (name.to_string(), version);
        match result {
            Ok(servable) => {
                self.failures.remove(&key);
                self.repository.make_available(servable);
                self.metrics.register_model(name);
                self.metrics.set_version_state(name, version, "AVAILABLE");
                tracing::info!(model = %name, version, state = "AVAILABLE", duration_ms = elapsed.as_millis() as u64, "model version transition");
            }
            Err(message) => {
                let count = self.failures.get(&key).map_or(1, |f| f.count + 1);
                let retry_at = Instant::now() + self.options.load_retry_interval;
                self.failures.insert(key, Failure { count, retry_at, fingerprint: fingerprint(dir) });
                self.repository.set_state(name, version, VersionState::End, Some(message.clone()));
                self.metrics.set_version_state(name, version, "END");
                tracing::error!(model = %name, version, state = "END", attempt = count, duration_ms = elapsed.as_millis() as u64, error = %message, "model version failed to load");
            }
        }
    }

    async fn load_and_warm(&self, model: &ModelConfig, version: i64, dir: PathBuf) -> Result<Arc<crate::servable::Servable>, String> {
        // what the load and its warm-up request free (weights' exported forms, the passes'
        // copies, the request's buffers) goes back to the OS, loaded or not
        let _load = super::release::LoadInProgress::begin();
        let (name, base) = (model.name.as_str(), model.base_path.as_path());
        let (config, d, compute, engine) = (model.clone(), dir.clone(), self.compute.clone(), self.engine.clone());
        let batching = self.batching.clone().map(|b| (b, Arc::clone(&self.metrics)));
        let servable = tokio::task::spawn_blocking(move || load_servable(&config, version, &d, &engine, compute, batching))
            .await
            .map_err(|e| format!("loader thread failed: {e}"))?
            .map_err(|e| e.to_string())?;
        let servable = Arc::new(servable);
        if self.options.enable_warmup {
            let runs = warm_up(&servable, base, &dir, self.max_tensor_bytes).await?;
            tracing::debug!(model = %name, version, requests = runs, "warm-up done");
        }
        Ok(servable)
    }

    /// Stops routing to a version at once; it is released (END) after its in-flight requests,
    /// which hold their own references, have finished.
    fn unload(&self, name: &str, version: i64, remove_model: bool) {
        let Some(servable) = self.repository.begin_unload(name, version) else { return };
        let started = Instant::now();
        self.metrics.set_version_state(name, version, "UNLOADING");
        tracing::info!(model = %name, version, state = "UNLOADING", "model version transition");
        let repository = Arc::clone(&self.repository);
        let metrics = Arc::clone(&self.metrics);
        let name = name.to_string();
        tokio::spawn(async move {
            while Arc::strong_count(&servable) > 1 && started.elapsed() < Duration::from_secs(600) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            drop(servable);
            repository.finish_unload(&name, version, remove_model);
            metrics.set_version_state(&name, version, "END");
            tracing::info!(model = %name, version, state = "END", duration_ms = started.elapsed().as_millis() as u64, "model version transition");
        });
    }

    /// The polling loop: version directories every `file_system_poll`, the config file every
    /// `config_file_poll`, reload commands as they come, until `stop`.
    pub async fn run(mut self, mut inbox: ManagerInbox, config_file: Option<PathBuf>, mut stop: watch::Receiver<bool>) {
        let every = |d: Option<Duration>| d.unwrap_or(Duration::from_secs(86_400 * 365));
        let mut fs_tick = tokio::time::interval(every(self.options.file_system_poll));
        let mut config_tick = tokio::time::interval(every(self.options.config_file_poll.filter(|_| config_file.is_some())));
        fs_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        config_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        fs_tick.tick().await;
        config_tick.tick().await;
        // What the config file said when last read: a load or unload by name changes the live
        // config, and only a change of the file itself should override that.
        let mut last_read = self.config.clone();
        loop {
            tokio::select! {
                _ = stopped(&mut stop) => return,
                _ = fs_tick.tick(), if self.options.file_system_poll.is_some() => self.poll().await,
                _ = config_tick.tick(), if self.options.config_file_poll.is_some() => {
                    if let Some(path) = &config_file {
                        self.reread(path, &mut last_read).await;
                    }
                }
                Some(command) = inbox.rx.recv() => match command {
                    Command::Reload { config, reply } => {
                        let result = self.apply(config).await;
                        let _ = reply.send(result);
                    }
                    Command::Load { name, reply } => {
                        let _ = reply.send(self.load_model(&name).await);
                    }
                    Command::Unload { name, reply } => {
                        let _ = reply.send(self.unload_model(&name));
                    }
                    Command::Index { reply } => {
                        let _ = reply.send(self.index());
                    }
                },
            }
        }
    }

    async fn reread(&mut self, path: &Path, last_read: &mut Vec<ModelConfig>) {
        match model_config::load_file(path) {
            Err(err) => tracing::error!(error = %err, "model config file rejected; the previous config stays in force"),
            Ok(config) if config == *last_read => {}
            Ok(config) => {
                *last_read = config.clone();
                tracing::info!(path = %path.display(), "model config file changed; applying");
                if let Err(err) = self.apply(config).await {
                    tracing::error!(error = %err, "new model config applied with errors");
                }
            }
        }
    }
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
