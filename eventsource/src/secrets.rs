//! Secret references resolved from files, the layout of a mounted Secret volume:
//! `<secrets-dir>/<name>/<key>`. This is how `sluice run` reads secrets outside Kubernetes and how the
//! controller mounts them into pods. Values are never logged; errors name the reference, not the value.

use std::path::{Component, Path, PathBuf};

use sluice_crds::common::SecretKeySelector;

/// Why a secret reference did not resolve.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The file for `name`/`key` could not be read.
    #[error("failed to read secret {name}/{key} from {path}")]
    ReadSecret { name: String, key: String, path: PathBuf, source: std::io::Error },
    /// The name or key would escape the secrets directory (`..`, `/`).
    #[error("failed to resolve secret {name}/{key}: name and key must be plain file names")]
    InvalidReference { name: String, key: String },
}

/// Resolves `SecretKeySelector`s to their values.
pub trait SecretResolver: Send + Sync + 'static {
    /// The value of `selector` with surrounding whitespace removed (a trailing newline in a file is
    /// an accident of editors, never part of a token).
    fn resolve(&self, selector: &SecretKeySelector) -> Result<String, SecretError>;
}

/// Reads `<dir>/<name>/<key>`.
#[derive(Clone, Debug)]
pub struct FileSecretResolver {
    dir: PathBuf,
}

impl FileSecretResolver {
    /// Resolves under `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory secrets are read from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn is_plain_name(s: &str) -> bool {
    let mut parts = Path::new(s).components();
    matches!((parts.next(), parts.next()), (Some(Component::Normal(_)), None))
}

impl SecretResolver for FileSecretResolver {
    fn resolve(&self, selector: &SecretKeySelector) -> Result<String, SecretError> {
        let (name, key) = (selector.name.as_str(), selector.key.as_str());
        if !is_plain_name(name) || !is_plain_name(key) {
            return Err(SecretError::InvalidReference { name: name.into(), key: key.into() });
        }
        let path = self.dir.join(name).join(key);
        let value = std::fs::read_to_string(&path).map_err(|source| SecretError::ReadSecret {
            name: name.into(),
            key: key.into(),
            path: path.clone(),
            source,
        })?;
        Ok(value.trim().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn selector(name: &str, key: &str) -> SecretKeySelector {
        SecretKeySelector { name: name.into(), key: key.into(), optional: None }
    }

    #[test]
    fn reads_the_mounted_layout_and_trims() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        std::fs::create_dir_all(dir.path().join("hook"))?;
        std::fs::write(dir.path().join("hook").join("token"), "s3cret\n")?;
        let r = FileSecretResolver::new(dir.path());
        assert_eq!(r.resolve(&selector("hook", "token"))?, "s3cret");
        Ok(())
    }

    #[test]
    fn missing_file_names_the_reference_not_the_value() {
        let r = FileSecretResolver::new("/nonexistent-sluice-dir");
        let err = r.resolve(&selector("hook", "token")).err().map(|e| e.to_string());
        assert_eq!(err.as_deref(), Some("failed to read secret hook/token from /nonexistent-sluice-dir/hook/token"));
    }

    #[test]
    fn rejects_path_escapes() {
        let r = FileSecretResolver::new("/tmp");
        for (n, k) in [("..", "x"), ("a/b", "x"), ("a", "../etc/passwd"), ("", "x"), ("a", "/etc")] {
            assert!(matches!(r.resolve(&selector(n, k)), Err(SecretError::InvalidReference { .. })), "{n}/{k}");
        }
    }
}
