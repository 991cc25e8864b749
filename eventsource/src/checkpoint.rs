//! Where sources remember progress across restarts (the calendar's last fired tick): a small
//! key → text store. `sluice run` on the embedded bus keeps it in files ([`FileCheckpointStore`]);
//! on JetStream it lives in a key-value bucket ([`KvCheckpointStore`]) so a source that moves to
//! another pod finds it.

use std::path::PathBuf;

use async_trait::async_trait;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The JetStream bucket holding every source checkpoint.
pub const CHECKPOINT_BUCKET: &str = "sluice-eventsource-checkpoints";

/// Why a checkpoint could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Reading failed.
    #[error("failed to read checkpoint {key}")]
    Load { key: String, source: BoxError },
    /// Writing failed.
    #[error("failed to write checkpoint {key}")]
    Save { key: String, source: BoxError },
}

/// A key → text store.
#[async_trait]
pub trait CheckpointStore: Send + Sync + 'static {
    /// The value of `key`, if any.
    async fn load(&self, key: &str) -> Result<Option<String>, CheckpointError>;
    /// Stores `value` under `key`; returns once it is durable.
    async fn save(&self, key: &str, value: &str) -> Result<(), CheckpointError>;
}

/// Encodes a key into the characters both files and NATS keys allow (`[A-Za-z0-9_-]`, `=XX` for the
/// rest), so distinct keys never collide.
pub fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("={b:02X}"));
        }
    }
    out
}

/// One file per key in a directory; written to a temporary file and renamed, so a crash never leaves
/// half a value.
pub struct FileCheckpointStore {
    dir: PathBuf,
}

impl FileCheckpointStore {
    /// A store in `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }
}

#[async_trait]
impl CheckpointStore for FileCheckpointStore {
    async fn load(&self, key: &str) -> Result<Option<String>, CheckpointError> {
        let path = self.dir.join(encode_key(key));
        match tokio::fs::read_to_string(&path).await {
            Ok(v) => Ok(Some(v.trim().to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(CheckpointError::Load {
                key: key.into(),
                source: Box::new(e),
            }),
        }
    }

    async fn save(&self, key: &str, value: &str) -> Result<(), CheckpointError> {
        let err = |e: std::io::Error| CheckpointError::Save {
            key: key.into(),
            source: Box::new(e),
        };
        tokio::fs::create_dir_all(&self.dir).await.map_err(err)?;
        let path = self.dir.join(encode_key(key));
        let tmp = self.dir.join(format!(".{}.tmp", encode_key(key)));
        tokio::fs::write(&tmp, value).await.map_err(err)?;
        tokio::fs::rename(&tmp, &path).await.map_err(err)?;
        Ok(())
    }
}

/// Checkpoints in the JetStream key-value bucket [`CHECKPOINT_BUCKET`], opened (or created) on first
/// use so processes without persistent sources never touch it.
pub struct KvCheckpointStore {
    context: async_nats::jetstream::Context,
    store: tokio::sync::OnceCell<async_nats::jetstream::kv::Store>,
}

impl KvCheckpointStore {
    /// A store on `context`.
    pub fn new(context: async_nats::jetstream::Context) -> Self {
        Self {
            context,
            store: tokio::sync::OnceCell::new(),
        }
    }

    async fn bucket(&self) -> Result<&async_nats::jetstream::kv::Store, BoxError> {
        self.store
            .get_or_try_init(|| async {
                match self.context.get_key_value(CHECKPOINT_BUCKET).await {
                    Ok(s) => Ok(s),
                    Err(_) => self
                        .context
                        .create_key_value(async_nats::jetstream::kv::Config {
                            bucket: CHECKPOINT_BUCKET.into(),
                            history: 1,
                            ..Default::default()
                        })
                        .await
                        .map_err(|e| Box::new(e) as BoxError),
                }
            })
            .await
    }
}

#[async_trait]
impl CheckpointStore for KvCheckpointStore {
    async fn load(&self, key: &str) -> Result<Option<String>, CheckpointError> {
        let err = |source: BoxError| CheckpointError::Load {
            key: key.into(),
            source,
        };
        let bucket = self.bucket().await.map_err(err)?;
        let value = bucket.get(encode_key(key)).await.map_err(|e| err(Box::new(e)))?;
        Ok(value.map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    async fn save(&self, key: &str, value: &str) -> Result<(), CheckpointError> {
        let err = |source: BoxError| CheckpointError::Save {
            key: key.into(),
            source,
        };
        let bucket = self.bucket().await.map_err(err)?;
        bucket
            .put(encode_key(key), value.to_string().into())
            .await
            .map_err(|e| err(Box::new(e)))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn file_store_round_trip() {
        let dir = tempfile::tempdir().expect("a temporary directory can be made");
        let store = FileCheckpointStore::new(dir.path().join("state"));
        assert_eq!(store.load("cal/every").await.ok().flatten(), None);
        assert!(store.save("cal/every", "2026-01-01T00:00:00Z").await.is_ok());
        assert!(store.save("cal/every", "2026-01-01T00:01:00Z").await.is_ok());
        assert_eq!(
            store.load("cal/every").await.ok().flatten().as_deref(),
            Some("2026-01-01T00:01:00Z")
        );
        assert_eq!(encode_key("a/b.c"), "a=2Fb=2Ec");
    }
}
