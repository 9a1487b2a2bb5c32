//! The models to serve, from `--model_config_file` (TF Serving's text-format ModelServerConfig)
//! or from the single-model flags, normalised into [`ModelConfig`] values.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::proto::tensorflow::serving::ModelServerConfig;
use crate::proto::tensorflow::serving::file_system_storage_path_source_config::servable_version_policy::PolicyChoice;
use crate::proto::tensorflow::serving::model_server_config::Config;

use super::text_proto::{self, TextProtoError};

pub const MODEL_SERVER_CONFIG: &str = "tensorflow.serving.ModelServerConfig";

/// Which versions under a base path should be loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionPolicy {
    /// The N highest version numbers (TF's default, N = 1).
    Latest(usize),
    All,
    Specific(BTreeSet<i64>),
}

impl VersionPolicy {
    /// The versions to serve out of those present on disk.
    pub fn select(&self, present: &BTreeSet<i64>) -> BTreeSet<i64> {
        match self {
            VersionPolicy::Latest(n) => present.iter().rev().take(*n).copied().collect(),
            VersionPolicy::All => present.clone(),
            VersionPolicy::Specific(wanted) => present.intersection(wanted).copied().collect(),
        }
    }
}

/// `model_platform`: which kind of model the versions hold. Unset accepts either, so the
/// single-model flags and folder discovery serve whatever a version directory holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelPlatform {
    Any,
    /// `onnx`: `<version>/model.onnx`.
    Onnx,
    /// `tensorflow`, TF Serving's platform name: `<version>/saved_model.pb`.
    TensorFlow,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelConfig {
    pub name: String,
    pub base_path: PathBuf,
    pub policy: VersionPolicy,
    pub labels: BTreeMap<String, i64>,
    pub platform: ModelPlatform,
}

impl ModelConfig {
    pub fn latest(name: impl Into<String>, base_path: impl Into<PathBuf>) -> Self {
        Self {
            name: name.into(),
            base_path: base_path.into(),
            policy: VersionPolicy::Latest(1),
            labels: BTreeMap::new(),
            platform: ModelPlatform::Any,
        }
    }
}

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error(transparent)]
    Parse(#[from] TextProtoError),
    #[error("ServerModelConfig type not supported by HandleReloadConfigRequest. Only ModelConfigList is currently supported")]
    NotAList,
    #[error("model config entry {0} has an empty name")]
    EmptyName(usize),
    #[error("model {0} has an empty base_path")]
    EmptyBasePath(String),
    #[error("model name {0} appears more than once in the config")]
    Duplicate(String),
    #[error("model {model}: model_platform \"{platform}\" is not supported; use \"tensorflow\" (SavedModel) or \"onnx\"")]
    Platform { model: String, platform: String },
}

/// Validates and normalises a ModelServerConfig.
pub fn from_proto(config: ModelServerConfig) -> Result<Vec<ModelConfig>, ConfigError> {
    let list = match config.config {
        Some(Config::ModelConfigList(list)) => list,
        None => return Ok(Vec::new()),
        Some(_) => return Err(ConfigError::NotAList),
    };
    let mut seen = HashSet::new();
    let mut models = Vec::with_capacity(list.config.len());
    for (index, m) in list.config.into_iter().enumerate() {
        if m.name.is_empty() {
            return Err(ConfigError::EmptyName(index));
        }
        if m.base_path.is_empty() {
            return Err(ConfigError::EmptyBasePath(m.name));
        }
        if !seen.insert(m.name.clone()) {
            return Err(ConfigError::Duplicate(m.name));
        }
        let policy = match m.model_version_policy.and_then(|p| p.policy_choice) {
            None => VersionPolicy::Latest(1),
            Some(PolicyChoice::Latest(l)) => VersionPolicy::Latest(l.num_versions.max(1) as usize),
            Some(PolicyChoice::All(_)) => VersionPolicy::All,
            Some(PolicyChoice::Specific(s)) => VersionPolicy::Specific(s.versions.into_iter().collect()),
        };
        let platform = match m.model_platform.as_str() {
            "" => ModelPlatform::Any,
            "onnx" => ModelPlatform::Onnx,
            "tensorflow" => ModelPlatform::TensorFlow,
            other => return Err(ConfigError::Platform { model: m.name, platform: other.to_string() }),
        };
        models.push(ModelConfig {
            name: m.name,
            base_path: PathBuf::from(m.base_path),
            policy,
            labels: m.version_labels.into_iter().collect(),
            platform,
        });
    }
    Ok(models)
}

pub fn load_file(path: &Path) -> Result<Vec<ModelConfig>, ConfigError> {
    from_proto(text_proto::parse_file(MODEL_SERVER_CONFIG, path)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<ModelConfig>, ConfigError> {
        from_proto(text_proto::parse(MODEL_SERVER_CONFIG, text, "test.config")?)
    }

    #[test]
    fn model_platform_is_read_and_checked() {
        let models = parse("model_config_list { config { name: 'a' base_path: '/a' model_platform: 'tensorflow' } config { name: 'b' base_path: '/b' } }")
            .expect("config");
        assert_eq!((models[0].platform, models[1].platform), (ModelPlatform::TensorFlow, ModelPlatform::Any));
        let err = parse("model_config_list { config { name: 'a' base_path: '/a' model_platform: 'pytorch' } }").expect_err("pytorch");
        assert!(err.to_string().contains("\"pytorch\""), "{err}");
    }

    #[test]
    fn reads_tf_serving_model_config() {
        let models = parse(
            "model_config_list {\n  config {\n    name: 'a'\n    base_path: '/models/a'\n    model_platform: 'onnx'\n    model_version_policy { specific { versions: 42 versions: 43 } }\n    version_labels { key: 'stable' value: 42 }\n    version_labels { key: 'canary' value: 43 }\n  }\n  config { name: 'b' base_path: '/models/b' model_version_policy { all {} } }\n  config { name: 'c' base_path: '/models/c' model_version_policy { latest { num_versions: 2 } } }\n}\n",
        )
        .expect("parse");
        assert_eq!(models.len(), 3);
        assert_eq!(models[0].policy, VersionPolicy::Specific([42, 43].into()));
        assert_eq!(models[0].labels, BTreeMap::from([("canary".into(), 43), ("stable".into(), 42)]));
        assert_eq!(models[1].policy, VersionPolicy::All);
        assert_eq!(models[2].policy, VersionPolicy::Latest(2));
    }

    #[test]
    fn bad_files_name_line_and_column() {
        let err = parse("model_config_list {\n  config {\n    name: 'a'\n    base_pathh: '/x'\n  }\n}\n").expect_err("typo");
        assert!(err.to_string().contains("line 4, column 5"), "{err}");
        assert!(matches!(parse("improperly formatted file"), Err(ConfigError::Parse(_))));
        let err = parse("model_config_list { config { name: 'a' base_path: '/a' } config { name: 'a' base_path: '/b' } }").expect_err("dup");
        assert!(err.to_string().contains("more than once"));
    }

    #[test]
    fn policies_select_versions() {
        let present: BTreeSet<i64> = [1, 2, 5].into();
        assert_eq!(VersionPolicy::Latest(1).select(&present), [5].into());
        assert_eq!(VersionPolicy::Latest(2).select(&present), [2, 5].into());
        assert_eq!(VersionPolicy::All.select(&present), present);
        assert_eq!(VersionPolicy::Specific([1, 3].into()).select(&present), [1].into());
    }
}
