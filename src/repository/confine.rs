//! Keeps every file a version reads inside its model's base path.
//!
//! A base path is often a mounted volume that other people write to. A version directory or
//! `model.onnx` that is a symlink to `/etc` or to another tenant's models would otherwise be
//! loaded (and its warm-up file replayed) as if it belonged here. Symlinks that stay inside
//! the base path are fine: Kubernetes volumes are built from them (`1 -> ..data/1`).

use std::path::{Path, PathBuf};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum EscapeError {
    #[error("{path} resolves to {resolved}, outside the model base path {base}; refusing to read it")]
    Outside { path: String, resolved: String, base: String },
    #[error("cannot resolve {path}: {source}")]
    Resolve {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// `path` with every symlink resolved, if that lies under `base` (also resolved).
pub(crate) fn confined(base: &Path, path: &Path) -> Result<PathBuf, EscapeError> {
    let resolve = |p: &Path| {
        p.canonicalize().map_err(|source| EscapeError::Resolve { path: p.display().to_string(), source })
    };
    let base_resolved = resolve(base)?;
    let resolved = resolve(path)?;
    if resolved.starts_with(&base_resolved) {
        Ok(resolved)
    } else {
        Err(EscapeError::Outside {
            path: path.display().to_string(),
            resolved: resolved.display().to_string(),
            base: base.display().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("confine-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        dir
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_are_followed_only_while_they_stay_inside_the_base() {
        let root = temp("links");
        let base = root.join("model");
        std::fs::create_dir_all(base.join("..data/1")).expect("mkdir");
        std::fs::create_dir_all(root.join("elsewhere")).expect("mkdir");
        std::os::unix::fs::symlink(base.join("..data/1"), base.join("1")).expect("inner link");
        std::os::unix::fs::symlink(root.join("elsewhere"), base.join("2")).expect("outer link");
        assert!(confined(&base, &base.join("1")).is_ok());
        let err = confined(&base, &base.join("2")).expect_err("escapes").to_string();
        assert!(err.starts_with(&format!("{} resolves to ", base.join("2").display())), "{err}");
        assert!(err.contains("outside the model base path"), "{err}");
        // A base path that is itself a link is resolved first, so its children still match.
        std::os::unix::fs::symlink(&base, root.join("alias")).expect("base link");
        assert!(confined(&root.join("alias"), &root.join("alias/1")).is_ok());
        let err = confined(&base, &base.join("missing")).expect_err("missing").to_string();
        assert!(err.starts_with("cannot resolve"), "{err}");
        std::fs::remove_dir_all(&root).ok();
    }
}
