//! Secret and ConfigMap references resolved to their values. Shared by event sources and sensors (it
//! lives in the bus crate because both depend on it and `crds` does no I/O).
//!
//! Outside Kubernetes (and in pods, where the controller mounts them the same way) a reference
//! `{name, key}` is the file `<dir>/<name>/<key>`. Like upstream, one trailing newline is dropped
//! (editors add one; it is never part of a token) and nothing else is changed. Values are never
//! logged; errors name the reference, never the value.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use sluice_crds::common::{ConfigMapKeySelector, SecretKeySelector};

/// Why a reference did not resolve.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The Secret file could not be read.
    #[error("failed to read secret {name}/{key} from {path}")]
    ResolveSecret {
        /// The Secret's name.
        name: String,
        /// The key inside it.
        key: String,
        /// The file that was read.
        path: PathBuf,
        /// Why it could not be read.
        source: std::io::Error,
    },
    /// The ConfigMap file could not be read.
    #[error("failed to read configmap {name}/{key} from {path}")]
    ResolveConfigMap {
        /// The ConfigMap's name.
        name: String,
        /// The key inside it.
        key: String,
        /// The file that was read.
        path: PathBuf,
        /// Why it could not be read.
        source: std::io::Error,
    },
    /// The Secret's value is empty or only whitespace. A webhook secret or token that is empty
    /// would sign with an empty key or match a missing header: an open door, so never accepted.
    #[error("failed to resolve secret {name}/{key}: the value is empty")]
    EmptySecret {
        /// The Secret's name.
        name: String,
        /// The key inside it.
        key: String,
    },
    /// The name or key is not a plain file name (`..`, `/`), so it could escape the directory.
    #[error("failed to resolve {name}/{key}: name and key must be plain file names")]
    InvalidReference {
        /// The name as written.
        name: String,
        /// The key as written.
        key: String,
    },
}

/// Resolves Secret and ConfigMap key references. Implementations must never log values.
pub trait SecretResolver: Send + Sync + 'static {
    /// The value of a Secret key.
    fn resolve_secret(&self, selector: &SecretKeySelector) -> Result<String, SecretError>;

    /// The value of a ConfigMap key.
    fn resolve_config_map(&self, selector: &ConfigMapKeySelector) -> Result<String, SecretError>;
}

/// Reads `<secrets-dir>/<name>/<key>` and `<configmaps-dir>/<name>/<key>`.
#[derive(Clone, Debug)]
pub struct FileSecretResolver {
    secrets_dir: PathBuf,
    config_maps_dir: PathBuf,
}

impl FileSecretResolver {
    /// Secrets under `secrets_dir`; ConfigMaps under the same directory until
    /// [`with_config_maps_dir`](Self::with_config_maps_dir) says otherwise.
    pub fn new(secrets_dir: impl Into<PathBuf>) -> Self {
        let secrets_dir = secrets_dir.into();
        Self {
            config_maps_dir: secrets_dir.clone(),
            secrets_dir,
        }
    }

    /// ConfigMaps under `dir`.
    pub fn with_config_maps_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config_maps_dir = dir.into();
        self
    }

    /// Where Secrets are read from.
    pub fn secrets_dir(&self) -> &Path {
        &self.secrets_dir
    }
}

fn is_plain_name(s: &str) -> bool {
    let mut parts = Path::new(s).components();
    matches!((parts.next(), parts.next()), (Some(Component::Normal(_)), None))
}

fn read_value(dir: &Path, name: &str, key: &str) -> Result<(PathBuf, std::io::Result<String>), SecretError> {
    if !is_plain_name(name) || !is_plain_name(key) {
        return Err(SecretError::InvalidReference {
            name: name.to_owned(),
            key: key.to_owned(),
        });
    }
    let path = dir.join(name).join(key);
    let value = std::fs::read_to_string(&path).map(|mut v| {
        // Upstream drops exactly one trailing newline, nothing more.
        if v.ends_with('\n') {
            v.pop();
        }
        v
    });
    Ok((path, value))
}

impl SecretResolver for FileSecretResolver {
    fn resolve_secret(&self, selector: &SecretKeySelector) -> Result<String, SecretError> {
        let (name, key) = (selector.name.as_str(), selector.key.as_str());
        let (path, value) = read_value(&self.secrets_dir, name, key)?;
        let value = value.map_err(|source| SecretError::ResolveSecret {
            name: name.into(),
            key: key.into(),
            path,
            source,
        })?;
        non_empty(selector, value)
    }

    fn resolve_config_map(&self, selector: &ConfigMapKeySelector) -> Result<String, SecretError> {
        let (name, key) = (selector.name.as_str(), selector.key.as_str());
        let (path, value) = read_value(&self.config_maps_dir, name, key)?;
        value.map_err(|source| SecretError::ResolveConfigMap {
            name: name.into(),
            key: key.into(),
            path,
            source,
        })
    }
}

/// Secrets and ConfigMaps held in memory, for tests and dry runs. A missing reference fails like a
/// missing file does (`NotFound`), naming the reference.
#[derive(Clone, Debug, Default)]
pub struct MapSecretResolver {
    secrets: BTreeMap<(String, String), String>,
    config_maps: BTreeMap<(String, String), String>,
}

impl MapSecretResolver {
    /// No values.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds Secret `name`'s `key`.
    pub fn with_secret(mut self, name: &str, key: &str, value: &str) -> Self {
        self.secrets.insert((name.into(), key.into()), value.into());
        self
    }

    /// Adds ConfigMap `name`'s `key`.
    pub fn with_config_map(mut self, name: &str, key: &str, value: &str) -> Self {
        self.config_maps.insert((name.into(), key.into()), value.into());
        self
    }
}

/// `value`, unless it is empty or only whitespace (one trailing newline was already dropped, so a
/// file holding only a newline lands here too).
pub fn non_empty(selector: &SecretKeySelector, value: String) -> Result<String, SecretError> {
    if value.trim().is_empty() {
        return Err(SecretError::EmptySecret {
            name: selector.name.clone(),
            key: selector.key.clone(),
        });
    }
    Ok(value)
}

fn not_in_memory() -> std::io::Error {
    std::io::Error::from(std::io::ErrorKind::NotFound)
}

impl SecretResolver for MapSecretResolver {
    fn resolve_secret(&self, selector: &SecretKeySelector) -> Result<String, SecretError> {
        let (name, key) = (selector.name.clone(), selector.key.clone());
        match self.secrets.get(&(name, key)) {
            Some(v) => non_empty(selector, v.clone()),
            None => Err(SecretError::ResolveSecret {
                name: selector.name.clone(),
                key: selector.key.clone(),
                path: PathBuf::from("<memory>"),
                source: not_in_memory(),
            }),
        }
    }

    fn resolve_config_map(&self, selector: &ConfigMapKeySelector) -> Result<String, SecretError> {
        let (name, key) = (selector.name.clone(), selector.key.clone());
        match self.config_maps.get(&(name, key)) {
            Some(v) => Ok(v.clone()),
            None => Err(SecretError::ResolveConfigMap {
                name: selector.name.clone(),
                key: selector.key.clone(),
                path: PathBuf::from("<memory>"),
                source: not_in_memory(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(name: &str, key: &str) -> SecretKeySelector {
        SecretKeySelector {
            name: name.into(),
            key: key.into(),
            optional: None,
        }
    }

    #[test]
    fn reads_the_mounted_layout_and_drops_one_newline() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("sluice-sensor-secrets-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("auth"))?;
        std::fs::write(dir.join("auth").join("token"), "s3cret \n\n")?;
        let resolver = FileSecretResolver::new(&dir);
        assert_eq!(resolver.resolve_secret(&secret("auth", "token"))?, "s3cret \n");
        let missing = resolver.resolve_secret(&secret("auth", "nope"));
        assert!(matches!(missing, Err(SecretError::ResolveSecret { ref key, .. }) if key == "nope"));
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }

    #[test]
    fn an_empty_secret_is_refused_naming_it() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        std::fs::create_dir_all(dir.path().join("hook"))?;
        std::fs::write(dir.path().join("hook").join("secret"), "\n")?;
        std::fs::write(dir.path().join("hook").join("blank"), " \t\n")?;
        std::fs::write(dir.path().join("hook").join("none"), "")?;
        let resolver = FileSecretResolver::new(dir.path());
        for key in ["secret", "blank", "none"] {
            let err = resolver
                .resolve_secret(&secret("hook", key))
                .expect_err("empty is refused");
            assert!(matches!(err, SecretError::EmptySecret { .. }), "{err:?}");
            assert_eq!(
                err.to_string(),
                format!("failed to resolve secret hook/{key}: the value is empty")
            );
        }
        let in_memory = MapSecretResolver::new().with_secret("hook", "secret", "");
        assert!(matches!(
            in_memory.resolve_secret(&secret("hook", "secret")),
            Err(SecretError::EmptySecret { .. })
        ));
        Ok(())
    }

    #[test]
    fn refuses_paths_that_escape_the_directory() {
        let resolver = FileSecretResolver::new("/nonexistent");
        assert!(matches!(
            resolver.resolve_secret(&secret("..", "passwd")),
            Err(SecretError::InvalidReference { .. })
        ));
        assert!(matches!(
            resolver.resolve_secret(&secret("a/b", "c")),
            Err(SecretError::InvalidReference { .. })
        ));
    }
}
