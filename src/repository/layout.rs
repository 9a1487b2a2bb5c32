//! The on-disk layout `<base_path>/<version>/model.onnx`, as TF Serving's file-system source.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum LayoutError {
    #[error("model base path {0} does not exist")]
    Missing(String),
    #[error("model base path {0} is not a directory")]
    NotADirectory(String),
    #[error("cannot list {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "no versions of the model found under {0}. Did you forget to name your leaf directory as a number (eg. '/1/')?"
    )]
    NoVersions(String),
    #[error("no model directories found under {0}: expected <name>/<version>/model.onnx")]
    NoModels(String),
}

fn read_dir(path: &Path) -> Result<std::fs::ReadDir, LayoutError> {
    if !path.exists() {
        return Err(LayoutError::Missing(path.display().to_string()));
    }
    if !path.is_dir() {
        return Err(LayoutError::NotADirectory(path.display().to_string()));
    }
    std::fs::read_dir(path).map_err(|source| LayoutError::Io { path: path.display().to_string(), source })
}

/// Numeric child directories of `base` by version. Non-numeric entries are ignored, and
/// `00000123` is version 123, as in TF Serving.
pub fn scan_versions(base: &Path) -> Result<BTreeMap<i64, PathBuf>, LayoutError> {
    let mut versions = BTreeMap::new();
    for entry in read_dir(base)?.flatten() {
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        let parsed = entry.file_name().to_str().and_then(|n| n.parse::<i64>().ok()).filter(|v| *v >= 0);
        if let Some(version) = parsed {
            versions.insert(version, path);
        }
    }
    if versions.is_empty() {
        return Err(LayoutError::NoVersions(base.display().to_string()));
    }
    Ok(versions)
}

/// Every `<root>/<name>/` that holds at least one numeric version directory; used when the
/// server starts without flags and serves all shipped models.
pub fn discover_models(root: &Path) -> Result<Vec<(String, PathBuf)>, LayoutError> {
    let mut models = Vec::new();
    for entry in read_dir(root)?.flatten() {
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_string) else { continue };
        if path.is_dir() && scan_versions(&path).is_ok() {
            models.push((name, path));
        }
    }
    models.sort();
    if models.is_empty() {
        return Err(LayoutError::NoModels(root.display().to_string()));
    }
    Ok(models)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_directories_are_versions_and_others_are_ignored() {
        let dir = std::env::temp_dir().join(format!("layout-test-{}", std::process::id()));
        for sub in ["1", "00000123", "tmp", "7x"] {
            std::fs::create_dir_all(dir.join("m").join(sub)).expect("mkdir");
        }
        std::fs::write(dir.join("m").join("5"), b"file, not dir").expect("write");
        let versions = scan_versions(&dir.join("m")).expect("scan");
        assert_eq!(versions.keys().copied().collect::<Vec<_>>(), vec![1, 123]);
        let found = discover_models(&dir).expect("discover");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, "m");
        assert!(matches!(scan_versions(&dir.join("nope")), Err(LayoutError::Missing(_))));
        std::fs::create_dir_all(dir.join("empty")).expect("mkdir");
        let e = scan_versions(&dir.join("empty")).expect_err("empty");
        assert!(e.to_string().contains("empty"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
