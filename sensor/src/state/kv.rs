//! A [`TriggerState`] in a JetStream key-value bucket, shared by every replica of a sensor
//! (ARCHITECTURE.md, "JetStream layout").
//!
//! One bucket per sensor ([`bucket_name`]), one key per trigger ([`key_name`]), the value a JSON
//! [`TriggerDocument`]. Every change reads the key, applies one pure transition and writes it back
//! with compare-and-set on the revision (`create` when the key is absent, `update(key, value,
//! revision)` otherwise). On a conflict — another replica wrote first — it reads again and retries,
//! a bounded number of times with small jittered waits; so of two replicas claiming the same
//! events, exactly one claim is written and the other sees the events gone.
//!
//! Guarantees: an event is held durably before [`TriggerState::hold`] returns (then the runner acks
//! it); a claimed firing stays in the bucket until [`TriggerState::finish`]; a claim whose owner is
//! gone is handed by [`TriggerState::take_over`] to exactly one new owner. Assumptions: replica
//! clocks agree within a small fraction of the lease (the durables' ack wait, at least 30 s); a
//! trigger's document fits in one NATS message (server `max_payload`, 1 MiB by default: held events
//! plus in-flight firings plus [`KvStateConfig::remembered_firings`] finished ids).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::kv::{CreateErrorKind, Operation, Store, UpdateErrorKind};
use async_nats::jetstream::{self, kv};
use async_trait::async_trait;
use bytes::Bytes;
use sha2::{Digest, Sha256};
use sluice_eventbus::Event;
use tracing::{debug, info, warn};

use super::document::{event_ids, Actor, HoldOutcome, TriggerDocument, DOCUMENT_VERSION};
use super::{Claim, Held, InFlight, StateError, StateFactory, TriggerScope, TriggerState};
use crate::firing::FiringId;
use crate::params::EventsByDependency;
use crate::retry::random_unit;

/// The prefix of every sensor's bucket name.
pub const BUCKET_PREFIX: &str = "sluice-sensor-";
const MAX_BUCKET_PART: usize = 100;
const MAX_KEY: usize = 200;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why the key-value state could not be opened, read or changed.
#[derive(Debug, thiserror::Error)]
pub enum KvStateError {
    /// The bucket could neither be found nor created.
    #[error("failed to open the trigger state bucket `{bucket}`")]
    OpenBucket {
        /// The bucket's name.
        bucket: String,
        /// Why.
        source: BoxError,
    },
    /// The factory was opened for another sensor.
    #[error("failed to create the state of sensor `{sensor}`: bucket `{bucket}` belongs to another sensor")]
    WrongSensor {
        /// The bucket's name.
        bucket: String,
        /// The sensor asked for.
        sensor: String,
    },
    /// The key could not be read.
    #[error("failed to read the trigger state `{key}` in bucket `{bucket}`")]
    ReadState {
        /// The bucket's name.
        bucket: String,
        /// The key.
        key: String,
        /// Why.
        source: kv::EntryError,
    },
    /// The stored document is not a trigger document.
    #[error("failed to decode the trigger state `{key}` in bucket `{bucket}`")]
    DecodeState {
        /// The bucket's name.
        bucket: String,
        /// The key.
        key: String,
        /// Why.
        source: serde_json::Error,
    },
    /// The stored document was written by a newer Sluice; it is not overwritten.
    #[error("failed to read the trigger state `{key}` in bucket `{bucket}`: document version {version} is newer than {DOCUMENT_VERSION}; upgrade this sensor")]
    NewerVersion {
        /// The bucket's name.
        bucket: String,
        /// The key.
        key: String,
        /// The stored version.
        version: u32,
    },
    /// The document could not be encoded.
    #[error("failed to encode the trigger state `{key}` in bucket `{bucket}`")]
    EncodeState {
        /// The bucket's name.
        bucket: String,
        /// The key.
        key: String,
        /// Why.
        source: serde_json::Error,
    },
    /// The write failed (other than a revision conflict).
    #[error("failed to update the trigger state `{key}` in bucket `{bucket}`")]
    UpdateState {
        /// The bucket's name.
        bucket: String,
        /// The key.
        key: String,
        /// Why.
        source: BoxError,
    },
    /// Every compare-and-set attempt lost to another writer.
    #[error("failed to update the trigger state `{key}` in bucket `{bucket}`: the revision changed under each of {attempts} attempts")]
    Contended {
        /// The bucket's name.
        bucket: String,
        /// The key.
        key: String,
        /// How many attempts were made.
        attempts: u32,
    },
}

impl From<KvStateError> for StateError {
    fn from(error: KvStateError) -> Self {
        StateError::Backend(Box::new(error))
    }
}

/// Settings of the key-value state.
#[derive(Clone, Debug)]
pub struct KvStateConfig {
    /// Replicas of the bucket's stream: 1 on a single server, 3 in a three-node cluster.
    pub replicas: usize,
    /// How many finished firings each trigger remembers, to recognise their redelivered events.
    pub remembered_firings: usize,
    /// This replica's stable name, e.g. the pod name. Firings left in flight by an earlier process
    /// with the same name are taken over at once instead of after the lease. Must be unique among
    /// running replicas. Default: none.
    pub replica: Option<String>,
    /// Compare-and-set attempts per change before giving up (the runner then naks and retries).
    pub max_attempts: u32,
}

impl Default for KvStateConfig {
    fn default() -> Self {
        Self {
            replicas: 1,
            remembered_firings: 1000,
            replica: None,
            max_attempts: 64,
        }
    }
}

/// A name made of `[A-Za-z0-9_-]` (valid as a bucket name and as a key), deterministic: `name`
/// itself when it is valid and at most `max` long, otherwise its valid characters (others become
/// `_`), cut to fit, plus `_` and 8 hex digits of its SHA-256 so that different names stay apart.
pub fn sanitize(name: &str, max: usize) -> String {
    let valid = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if !name.is_empty() && name.len() <= max && name.chars().all(valid) {
        return name.to_owned();
    }
    let hash = hex::encode(&Sha256::digest(name.as_bytes())[..4]);
    let head: String = name
        .chars()
        .map(|c| if valid(c) { c } else { '_' })
        .take(max.saturating_sub(hash.len() + 1))
        .collect();
    format!("{head}_{hash}")
}

/// The bucket of sensor `sensor`: `sluice-sensor-<sensor>`, sanitized (a `.` in a Kubernetes name
/// is not allowed in a bucket name).
pub fn bucket_name(sensor: &str) -> String {
    format!("{BUCKET_PREFIX}{}", sanitize(sensor, MAX_BUCKET_PART))
}

/// The key of trigger `trigger` in its sensor's bucket.
pub fn key_name(trigger: &str) -> String {
    sanitize(trigger, MAX_KEY)
}

/// Opens (creates when missing) a sensor's bucket, and makes one [`KvTriggerState`] per trigger.
#[derive(Clone)]
pub struct KvStateFactory {
    store: Store,
    sensor: String,
    config: KvStateConfig,
}

impl KvStateFactory {
    /// Gets or creates the bucket of `sensor` on `jetstream`.
    pub async fn open(
        jetstream: &jetstream::Context,
        sensor: &str,
        config: KvStateConfig,
    ) -> Result<Self, KvStateError> {
        let bucket = bucket_name(sensor);
        let store = match jetstream.get_key_value(bucket.clone()).await {
            Ok(store) => store,
            Err(get_error) => {
                debug!(bucket = %bucket, error = %get_error, "state bucket not found; creating it");
                let created = jetstream
                    .create_key_value(kv::Config {
                        bucket: bucket.clone(),
                        description: format!("Sluice trigger state of sensor {sensor}"),
                        // Only the latest document counts; compare-and-set needs no history.
                        history: 1,
                        storage: jetstream::stream::StorageType::File,
                        num_replicas: config.replicas.max(1),
                        ..kv::Config::default()
                    })
                    .await;
                match created {
                    Ok(store) => store,
                    // Another replica may have created it between our get and create.
                    Err(create_error) => jetstream.get_key_value(bucket.clone()).await.map_err(|_| {
                        KvStateError::OpenBucket {
                            bucket: bucket.clone(),
                            source: Box::new(create_error),
                        }
                    })?,
                }
            }
        };
        Ok(Self {
            store,
            sensor: sensor.to_owned(),
            config,
        })
    }

    /// The bucket's name.
    pub fn bucket(&self) -> String {
        bucket_name(&self.sensor)
    }

    /// The state of trigger `trigger`, with its claims leased for `lease`.
    pub fn trigger_state(&self, trigger: &str, lease: Duration) -> KvTriggerState {
        KvTriggerState::new(self.store.clone(), &self.sensor, trigger, lease, &self.config)
    }
}

impl StateFactory for KvStateFactory {
    fn create(&self, scope: &TriggerScope<'_>) -> Result<Arc<dyn TriggerState>, StateError> {
        if scope.sensor != self.sensor {
            return Err(KvStateError::WrongSensor {
                bucket: self.bucket(),
                sensor: scope.sensor.to_owned(),
            }
            .into());
        }
        Ok(Arc::new(self.trigger_state(scope.trigger, scope.claim_lease)))
    }
}

/// One trigger's state in a key-value bucket. Each instance is one owner: its claims carry its
/// random id, so another instance (another replica, or this replica after a restart) can tell
/// them from its own.
pub struct KvTriggerState {
    store: Store,
    bucket: String,
    key: String,
    trigger: String,
    owner: String,
    replica: Option<String>,
    lease: Duration,
    remembered: usize,
    max_attempts: u32,
}

/// A read document and the revision to compare against (`None`: the key does not exist).
struct Read {
    doc: TriggerDocument,
    revision: Option<u64>,
}

enum WriteError {
    Conflict,
    Failed(BoxError),
}

fn now_ms() -> u64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

/// The wait before compare-and-set attempt `attempt + 1`: 2 ms doubling to 100 ms, times a jitter
/// in [0.5, 1.5) so that racing replicas spread apart.
fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_millis(2u64 << attempt.min(6)).min(Duration::from_millis(100));
    base.mul_f64(0.5 + random_unit())
}

impl KvTriggerState {
    /// The state of `trigger` of `sensor` in `store`, a new owner.
    pub fn new(store: Store, sensor: &str, trigger: &str, lease: Duration, config: &KvStateConfig) -> Self {
        Self {
            store,
            bucket: bucket_name(sensor),
            key: key_name(trigger),
            trigger: trigger.to_owned(),
            owner: uuid::Uuid::new_v4().to_string(),
            replica: config.replica.clone(),
            lease,
            remembered: config.remembered_firings,
            max_attempts: config.max_attempts.max(1),
        }
    }

    /// The key of this trigger in the bucket.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// This owner's id (recorded in its claims).
    pub fn owner(&self) -> &str {
        &self.owner
    }

    fn actor(&self) -> Actor<'_> {
        Actor {
            owner: &self.owner,
            replica: self.replica.as_deref(),
            now_ms: now_ms(),
        }
    }

    async fn read(&self) -> Result<Read, KvStateError> {
        let entry = self
            .store
            .entry(self.key.clone())
            .await
            .map_err(|source| KvStateError::ReadState {
                bucket: self.bucket.clone(),
                key: self.key.clone(),
                source,
            })?;
        let Some(entry) = entry else {
            return Ok(Read {
                doc: TriggerDocument::new(&self.trigger),
                revision: None,
            });
        };
        if matches!(entry.operation, Operation::Delete | Operation::Purge) {
            // Deleted by an operator: start empty, writing over the delete marker's revision.
            return Ok(Read {
                doc: TriggerDocument::new(&self.trigger),
                revision: Some(entry.revision),
            });
        }
        let doc: TriggerDocument =
            serde_json::from_slice(&entry.value).map_err(|source| KvStateError::DecodeState {
                bucket: self.bucket.clone(),
                key: self.key.clone(),
                source,
            })?;
        if doc.version > DOCUMENT_VERSION {
            return Err(KvStateError::NewerVersion {
                bucket: self.bucket.clone(),
                key: self.key.clone(),
                version: doc.version,
            });
        }
        Ok(Read {
            doc,
            revision: Some(entry.revision),
        })
    }

    async fn write(&self, value: Bytes, revision: Option<u64>) -> Result<u64, WriteError> {
        match revision {
            None => self
                .store
                .create(&self.key, value)
                .await
                .map_err(|e| match e.kind() {
                    CreateErrorKind::AlreadyExists => WriteError::Conflict,
                    _ => WriteError::Failed(Box::new(e)),
                }),
            Some(revision) => {
                self.store
                    .update(&self.key, value, revision)
                    .await
                    .map_err(|e| match e.kind() {
                        UpdateErrorKind::WrongLastRevision => WriteError::Conflict,
                        _ => WriteError::Failed(Box::new(e)),
                    })
            }
        }
    }

    /// Reads the document, applies `change` (which returns its result and whether it changed the
    /// document) and writes it back with compare-and-set, retrying on conflicts.
    async fn modify<R>(
        &self,
        mut change: impl FnMut(&mut TriggerDocument) -> (R, bool),
    ) -> Result<R, KvStateError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let Read { mut doc, revision } = self.read().await?;
            let (result, changed) = change(&mut doc);
            if !changed {
                return Ok(result);
            }
            let value = serde_json::to_vec(&doc).map_err(|source| KvStateError::EncodeState {
                bucket: self.bucket.clone(),
                key: self.key.clone(),
                source,
            })?;
            let value = Bytes::from(value);
            let error = match self.write(value.clone(), revision).await {
                Ok(_) => return Ok(result),
                Err(WriteError::Conflict) => None,
                Err(WriteError::Failed(error)) => Some(error),
            };
            if let Some(error) = error {
                // Why read back: a timed-out write may still have been stored. If our exact
                // document is there, the change happened; reporting a failure would make the
                // runner nak an event already held, or leave a written claim unexecuted until
                // its lease runs out.
                if let Ok(Some(entry)) = self.store.entry(self.key.clone()).await {
                    if entry.value == value {
                        return Ok(result);
                    }
                }
                return Err(KvStateError::UpdateState {
                    bucket: self.bucket.clone(),
                    key: self.key.clone(),
                    source: error,
                });
            }
            // Why retry: another replica (or task) wrote between our read and write; our change
            // was computed on an old document and is discarded, then recomputed on the new one.
            if attempt >= self.max_attempts {
                return Err(KvStateError::Contended {
                    bucket: self.bucket.clone(),
                    key: self.key.clone(),
                    attempts: attempt,
                });
            }
            tokio::time::sleep(backoff(attempt)).await;
        }
    }

    fn in_flight_of(&self, doc: &TriggerDocument, ids: &[String]) -> Vec<InFlight> {
        ids.iter()
            .filter_map(|stored| {
                let record = doc.in_flight.get(stored)?;
                let id = FiringId::new(&self.trigger, &record.events);
                if id.as_str() != stored {
                    // Not expected: the id is derived from the same trigger and events. Run it
                    // under the derived id, which is what this version would send.
                    warn!(bucket = %self.bucket, key = %self.key, stored = %stored, firing = %id,
                        "stored firing id does not match its events");
                }
                Some(InFlight {
                    id,
                    events: record.events.clone(),
                })
            })
            .collect()
    }
}

#[async_trait]
impl TriggerState for KvTriggerState {
    async fn hold(&self, dependency: &str, event: Event) -> Result<Held, StateError> {
        let (outcome, held) = self
            .modify(|doc| {
                let outcome = doc.hold(dependency, event.clone());
                let changed = matches!(outcome, HoldOutcome::Held { .. });
                ((outcome, doc.held.clone()), changed)
            })
            .await?;
        let replaced = match outcome {
            HoldOutcome::Held { replaced } => replaced,
            HoldOutcome::AlreadyHeld => None,
            HoldOutcome::AlreadyUsed { firing } => {
                // Why this is not a loss: the event is part of that firing, which runs (or ran)
                // with it; holding it again would let it fire a second time with other events.
                info!(bucket = %self.bucket, key = %self.key, dependency, event = %event.id(), firing = %firing,
                    "event already used by a firing; not held again");
                None
            }
        };
        Ok(Held {
            events: held,
            replaced,
        })
    }

    async fn claim(&self, firing: &FiringId, expected: &EventsByDependency) -> Result<Claim, StateError> {
        let expected = event_ids(expected);
        let actor = self.actor();
        // Why this cannot double-fire: the claim is written only if the revision is still the
        // one the held events were read at; a replica that lost the race re-reads, finds the
        // events taken, and gets `Conflict`.
        let claim = self
            .modify(|doc| {
                let (claim, changed) = doc.claim(firing.as_str(), &expected, &actor);
                // Why write even an unchanged document on `Conflict`: the read may come from a
                // stale replica of the bucket (direct get); an unconfirmed `Conflict` would make
                // the runner ack the completing event while nobody claims the complete set.
                // Writing it back with compare-and-set proves the read was the latest.
                (claim.clone(), changed || claim == Claim::Conflict)
            })
            .await?;
        Ok(claim)
    }

    async fn finish(&self, firing: &FiringId) -> Result<(), StateError> {
        let remembered = self.remembered;
        self.modify(|doc| ((), doc.finish(firing.as_str(), remembered)))
            .await?;
        Ok(())
    }

    async fn reset(&self, tick_ms: u64) -> Result<usize, StateError> {
        // Why compare-and-set: a hold racing the reset either lands before it (and is dropped, as
        // it belongs to the period that ended) or re-reads and lands after it (and is kept).
        Ok(self.modify(|doc| doc.reset(tick_ms)).await?)
    }

    async fn in_flight(&self) -> Result<Vec<InFlight>, StateError> {
        let Read { doc, .. } = self.read().await?;
        let ids: Vec<String> = doc.in_flight.keys().cloned().collect();
        Ok(self.in_flight_of(&doc, &ids))
    }

    async fn take_over(&self) -> Result<Vec<InFlight>, StateError> {
        let lease_ms = u64::try_from(self.lease.as_millis()).unwrap_or(u64::MAX);
        let actor = self.actor();
        // Why compare-and-set here too: two replicas starting together both see the orphaned
        // claim; only the one whose write of the new owner lands runs it.
        let (doc, ids) = self
            .modify(|doc| {
                let ids = doc.take_over(&actor, lease_ms);
                let changed = !ids.is_empty();
                ((doc.clone(), ids), changed)
            })
            .await?;
        Ok(self.in_flight_of(&doc, &ids))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_valid_deterministic_and_distinct() {
        assert_eq!(bucket_name("my-sensor"), "sluice-sensor-my-sensor");
        assert_eq!(key_name("trigger_1"), "trigger_1");
        let dotted = bucket_name("my.sensor");
        assert_eq!(dotted, bucket_name("my.sensor"));
        assert!(dotted.starts_with("sluice-sensor-my_sensor_"));
        assert_ne!(key_name("a.b"), key_name("a/b"));
        assert_ne!(key_name("a.b"), "a_b");
        for name in ["", "ü", "a b", ".x.", &"x".repeat(500)] {
            let key = key_name(name);
            assert!(!key.is_empty() && key.len() <= MAX_KEY, "{key}");
            assert!(key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        }
    }

    #[test]
    fn backoff_grows_and_is_bounded() {
        assert!(backoff(1) < Duration::from_millis(7));
        assert!(backoff(30) < Duration::from_millis(150));
        assert!(backoff(30) >= Duration::from_millis(50));
    }
}
