//! `s3` (Sluice extension, not in upstream Argo Events): object changes in a bucket of any
//! S3-compatible store (AWS S3, MinIO, Ceph, moto).
//!
//! Modes:
//! - `notifications`: the bucket sends S3 event notifications to the SQS queue `queue`; each message
//!   is long-polled ([`crate::clients::sqs::QueueUpstream`]) and each of its records
//!   ([`crate::clients::s3_records`]) that passes `prefix`/`suffix`/`events` becomes one event. The
//!   message is deleted only after every one of its events was stored by the bus; otherwise it
//!   reappears after the visibility timeout.
//!   Messages without records (the `s3:TestEvent` S3 sends when notifications are configured) are
//!   deleted. A body that is not JSON, or JSON that is not a notification (no `Records` list of
//!   objects), is logged with its message id, counted as `processing_failed` and
//!   `rejected{reason="malformed"}` and deleted; so is a message with an event bigger than the bus
//!   takes (logged and counted by the sender), which would otherwise come back forever.
//! - `list`: every `interval` (default 10s) the bucket is listed with ListObjectsV2 (path-style,
//!   under `prefix`). A key not seen before, or seen with another ETag, is `created`; a key seen
//!   before and now gone is `removed`. What was seen (key → ETag) is kept in the process's
//!   checkpoint store (a file under `sluice run`, the JetStream key-value bucket in cluster mode),
//!   written after published events, so a restart neither misses an object nor reports it again
//!   (an event published but not yet checkpointed is published again with the same id, which the
//!   bus dedupes). On the very first start every existing object is reported as created. The whole
//!   seen-set is one checkpoint value: meant for buckets (or prefixes) of up to tens of thousands of
//!   objects. When the bus refuses an event the round stops there and the change is reported again
//!   by the next listing; an event the bus can never take (too large; logged and counted) is
//!   recorded as seen, so it does not block every later round.
//!
//! Both modes run on the pull skeleton ([`crate::pull`]): notifications as the shared
//! [`QueueUpstream`] (a message is an SQS message, its records, filtered, its events; `settle`
//! deletes it or leaves it for the visibility timeout), list mode as [`S3Lister`] (a message is one
//! change between listings; `settle` records it as seen and writes the checkpoint, as `close` does
//! when the source stops). Both publish once and nak on a refusal: SQS redelivers, and the lister
//! lists again.
//!
//! Event: `type` s3, data = one S3 event record in AWS's shape (`eventName`, `eventTime`,
//! `s3.bucket.name`, `s3.object.key` URL-encoded as S3 does, `eTag`, `size`, `sequencer` in
//! notifications), the same in both modes, plus `metadata` when set. Event id: a hash of bucket,
//! key, versionId-or-ETag, the notification `sequencer` when present, and the change kind; a record
//! with neither a version nor a sequencer is identified by a hash of the whole record
//! ([`s3_records::event_id`]), so two such changes of one key never share an id.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use sluice_crds::eventsource::{S3EventSource, S3Mode, S3ObjectEvent};

use crate::aws::{AwsClient, ListedObject};
use crate::checkpoint::CheckpointStore;
use crate::clients::s3_records;
use crate::clients::sqs::{Queue, QueueUpstream};
use crate::pull::{Draft, Malformed, Names, Pull, Settle, Upstream, UpstreamError};
use crate::push::metadata_value;
use crate::reconnect::Backoff;
use crate::sender::Retry;
use crate::{BuildError, BuiltEventSource, SourceContext};

/// The CloudEvent `type` of this kind.
pub const SOURCE_TYPE: &str = "s3";
/// How many changes may be handled without a checkpoint in list mode.
const CHECKPOINT_EVERY: usize = 50;

/// Which records of one `s3` event become events, and how: the same in both modes.
struct Records {
    prefix: Option<String>,
    suffix: Option<String>,
    kinds: Vec<S3ObjectEvent>,
    metadata: Option<BTreeMap<String, String>>,
}

impl Records {
    /// The event of `record`, or `None` when `prefix`, `suffix` or `events` leave it out.
    fn draft(&self, record: &Value) -> Option<Draft> {
        if !s3_records::wanted(
            record,
            self.prefix.as_deref(),
            self.suffix.as_deref(),
            &self.kinds,
        ) {
            return None;
        }
        // A wanted record has a bucket, a key and a created/removed kind, so it has an id.
        let id = s3_records::event_id(record)?;
        let mut data = record.clone();
        if let (Some(m), Some(obj)) = (metadata_value(self.metadata.as_ref()), data.as_object_mut()) {
            obj.insert("metadata".into(), m);
        }
        let mut draft = Draft::new(data).with_id(id);
        if let Some(t) = record["eventTime"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        {
            draft = draft.with_time(t.with_timezone(&chrono::Utc));
        }
        Some(draft)
    }

    /// The events of one notification document (an SQS message body).
    fn notification(&self, body: &str) -> Result<Vec<Draft>, Malformed> {
        let not_a_notification = |reason: String| Malformed(format!("not an S3 notification: {reason}"));
        let document: Value = serde_json::from_str(body).map_err(|e| not_a_notification(e.to_string()))?;
        let records = s3_records::records(&document).map_err(|e| not_a_notification(e.to_string()))?;
        Ok(records.iter().filter_map(|r| self.draft(r)).collect())
    }
}

/// What list mode remembers: key → ETag.
type Seen = BTreeMap<String, String>;

/// List mode: changes between listings of the bucket.
pub struct S3Lister {
    client: AwsClient,
    endpoint: String,
    bucket: String,
    interval: Duration,
    checkpoints: Arc<dyn CheckpointStore>,
    /// `s3/<eventSource>/<event>`.
    checkpoint_key: String,
    records: Records,
}

/// One change seen by listing: the key, its ETag now (`None`: removed), and its record.
#[derive(Clone, Debug, PartialEq)]
pub struct ListedChange {
    key: String,
    etag: Option<String>,
    record: Value,
}

/// The lister's state: what was seen, and the changes of the last listing not yet handed out.
pub struct Listing {
    seen: Seen,
    pending: VecDeque<ListedChange>,
    /// Changes recorded in `seen` since the last checkpoint.
    unsaved: usize,
    /// For logs.
    names: Names,
}

/// The changes from `seen` to `listed`: a key not seen before, or seen with another ETag, is
/// created (its record's time the object's LastModified); a key seen before and now gone is
/// removed (at `now`). Pure.
fn changes(region: &str, bucket: &str, seen: &Seen, listed: &[ListedObject], now: &str) -> Vec<ListedChange> {
    let mut out = Vec::new();
    let mut present = BTreeSet::new();
    for o in listed {
        present.insert(o.key.as_str());
        if seen.get(&o.key) == Some(&o.etag) {
            continue;
        }
        let record = s3_records::listed_record(
            region,
            bucket,
            &o.key,
            &o.etag,
            Some(o.size),
            S3ObjectEvent::Created,
            &o.last_modified,
        );
        out.push(ListedChange {
            key: o.key.clone(),
            etag: Some(o.etag.clone()),
            record,
        });
    }
    for (key, etag) in seen {
        if !present.contains(key.as_str()) {
            let record =
                s3_records::listed_record(region, bucket, key, etag, None, S3ObjectEvent::Removed, now);
            out.push(ListedChange {
                key: key.clone(),
                etag: None,
                record,
            });
        }
    }
    out
}

impl S3Lister {
    /// What was seen, from the checkpoint.
    async fn load(&self, names: &Names) -> Result<Seen, UpstreamError> {
        let Some(text) = self.checkpoints.load(&self.checkpoint_key).await? else {
            return Ok(Seen::new());
        };
        Ok(serde_json::from_str(&text).unwrap_or_else(|error| {
            // As if new: every object is reported again, with the ids it had (deduped by the bus
            // within its window).
            tracing::warn!(eventsource = %names.event_source, event_name = %names.event_name, %error, "ignoring an unreadable listed-objects checkpoint");
            Seen::new()
        }))
    }

    /// Writes `seen` to the checkpoint when changes were recorded since the last write.
    async fn save(&self, listing: &mut Listing) -> Result<(), UpstreamError> {
        if listing.unsaved == 0 {
            return Ok(());
        }
        listing.unsaved = 0;
        let text = serde_json::to_string(&listing.seen)?;
        self.checkpoints.save(&self.checkpoint_key, &text).await?;
        Ok(())
    }

    /// Lists the bucket and queues what changed since what was seen.
    async fn poll(&self, listing: &mut Listing) -> Result<(), UpstreamError> {
        let listed = self
            .client
            .s3_list(&self.endpoint, &self.bucket, self.records.prefix.as_deref())
            .await?;
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let changed = changes(self.client.region(), &self.bucket, &listing.seen, &listed, &now);
        listing.pending.extend(changed);
        Ok(())
    }
}

#[async_trait]
impl Upstream for S3Lister {
    type Session = Listing;
    type Message = ListedChange;

    fn kind(&self) -> &'static str {
        SOURCE_TYPE
    }

    /// Why once: a refused change is not recorded as seen, so the next listing reports it again.
    fn retry(&self) -> Retry {
        Retry::Once
    }

    /// From 2 s, doubling: between failed checkpoint reads or listings.
    fn backoff(&self) -> Backoff {
        Backoff::new(Duration::from_secs(2), 2.0)
    }

    /// Reads the checkpoint and lists once, so the source is ready once the bucket can be listed.
    async fn connect(&self, names: &Names) -> Result<Listing, UpstreamError> {
        // Why fail rather than start empty: an empty start would report every object again.
        let seen = self.load(names).await?;
        tracing::info!(eventsource = %names.event_source, event_name = %names.event_name, bucket = %self.bucket, known = seen.len(), "listing bucket");
        let mut listing = Listing {
            seen,
            pending: VecDeque::new(),
            unsaved: 0,
            names: names.clone(),
        };
        self.poll(&mut listing).await?;
        Ok(listing)
    }

    /// Cancel-safe: the queue changes only after a listing returned.
    async fn next(&self, listing: &mut Listing) -> Result<Option<ListedChange>, UpstreamError> {
        loop {
            if let Some(change) = listing.pending.pop_front() {
                return Ok(Some(change));
            }
            tokio::time::sleep(self.interval).await;
            self.poll(listing).await?;
        }
    }

    fn decode(&self, change: &ListedChange) -> Result<Vec<Draft>, Malformed> {
        Ok(self.records.draft(&change.record).into_iter().collect())
    }

    /// Records the change as seen — only now, after the bus stored its event (or the filters left
    /// it out, or it can never be stored) — and writes the checkpoint every [`CHECKPOINT_EVERY`]
    /// changes and at the end of a listing's changes.
    async fn settle(
        &self,
        listing: &mut Listing,
        change: ListedChange,
        settle: Settle,
    ) -> Result<(), UpstreamError> {
        match (settle, change.etag) {
            // Why stop the round: the change stays out of `seen`, so the next listing reports it
            // again, and the rest of this one with it.
            (Settle::Nak, _) => listing.pending.clear(),
            (Settle::Ack | Settle::Term, Some(etag)) => {
                listing.seen.insert(change.key, etag);
                listing.unsaved += 1;
            }
            (Settle::Ack | Settle::Term, None) => {
                listing.seen.remove(&change.key);
                listing.unsaved += 1;
            }
        }
        if listing.unsaved < CHECKPOINT_EVERY && !listing.pending.is_empty() {
            return Ok(());
        }
        // An error is not a loss (logged by the skeleton): the next listing after a restart
        // reports the unrecorded changes again, with the same ids.
        self.save(listing).await
    }

    /// Writes the checkpoint of what was handled since the last one, so a stop does not report it
    /// again.
    async fn close(&self, mut listing: Listing) {
        if let Err(error) = self.save(&mut listing).await {
            let names = &listing.names;
            tracing::warn!(eventsource = %names.event_source, event_name = %names.event_name, error = %error, "failed to record the listed objects; a restart reports the last changes again, with the same ids");
        }
    }

    fn locate(&self, change: &ListedChange) -> String {
        format!("key {}", change.key)
    }
}

/// The tasks of the `s3` events of one EventSource.
pub fn build(
    es_name: &str,
    events: &BTreeMap<String, S3EventSource>,
    ctx: &SourceContext,
    out: &mut BuiltEventSource,
) -> Result<(), BuildError> {
    for (event_name, spec) in events {
        let invalid = |reason: String| BuildError::InvalidSpec {
            event_source: es_name.into(),
            event: event_name.into(),
            reason: format!("spec.s3.{event_name}.{reason}"),
        };
        if spec.bucket.trim().is_empty() {
            return Err(invalid("bucket: the bucket name is required".into()));
        }
        let region = spec
            .region
            .clone()
            .filter(|r| !r.trim().is_empty())
            .or_else(|| std::env::var("AWS_REGION").ok().filter(|r| !r.is_empty()))
            .unwrap_or_else(|| "us-east-1".into());
        let client = crate::clients::aws::aws_client(
            es_name,
            event_name,
            ctx,
            spec.access_key.as_ref(),
            spec.secret_key.as_ref(),
            spec.session_token.as_ref(),
            &region,
            None,
            None,
        )?;
        let records = Records {
            prefix: spec.prefix.clone().filter(|p| !p.is_empty()),
            suffix: spec.suffix.clone().filter(|s| !s.is_empty()),
            kinds: spec.events.clone(),
            metadata: spec.metadata.clone(),
        };
        match spec.effective_mode() {
            S3Mode::Notifications => {
                let queue = spec
                    .queue
                    .clone()
                    .filter(|q| !q.trim().is_empty())
                    .ok_or_else(|| {
                        invalid("queue: notifications mode needs the SQS queue the bucket notifies".into())
                    })?;
                let upstream = QueueUpstream {
                    kind: SOURCE_TYPE,
                    queue: Queue {
                        endpoint: crate::aws::sqs_endpoint(spec.endpoint.as_deref(), &region),
                        client,
                        queue,
                        account_id: spec.queue_account_id.clone(),
                        wait_seconds: spec.wait_time_seconds.unwrap_or(20).clamp(0, 20),
                        dlq: false,
                    },
                    // The message's records that pass the filters; none for the `s3:TestEvent`.
                    decode: Box::new(move |message| records.notification(&message.body)),
                };
                out.tasks
                    .push(Box::new(Pull::new(es_name, event_name, upstream, ctx)));
            }
            S3Mode::List => {
                let interval = match spec.interval.as_deref().filter(|i| !i.trim().is_empty()) {
                    Some(i) => sluice_crds::duration::parse_go_duration(i)
                        .map_err(|e| invalid(format!("interval: {e}")))?,
                    None => Duration::from_secs(10),
                };
                let checkpoints = ctx.checkpoints.clone().ok_or_else(|| BuildError::Unsupported {
                    event_source: es_name.into(),
                    event: event_name.into(),
                    what: "s3 list mode without a checkpoint store in this process".into(),
                })?;
                let upstream = S3Lister {
                    endpoint: crate::aws::s3_endpoint(spec.endpoint.as_deref(), &region),
                    client,
                    bucket: spec.bucket.clone(),
                    interval: interval.max(Duration::from_millis(100)),
                    checkpoints,
                    checkpoint_key: format!("s3/{es_name}/{event_name}"),
                    records,
                };
                out.tasks
                    .push(Box::new(Pull::new(es_name, event_name, upstream, ctx)));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn records() -> Records {
        Records {
            prefix: None,
            suffix: None,
            kinds: Vec::new(),
            metadata: None,
        }
    }

    #[test]
    fn a_malformed_notification_is_an_error_not_zero_events() {
        let r = records();
        // The S3 test event carries no change: no event, not an error.
        assert_eq!(
            r.notification(r#"{"Service": "Amazon S3", "Event": "s3:TestEvent"}"#)
                .expect("a test event"),
            []
        );
        // Before, each of these became zero records: deleted with no log line and no count.
        for body in [
            r#"{"Records": "oops"}"#,
            r#"{"Records": [42]}"#,
            r#"{"Type": "Notification"}"#,
            "not json",
        ] {
            assert!(r.notification(body).is_err(), "{body}");
        }
        let good = r#"{"Records": [{"eventName": "ObjectCreated:Put", "eventTime": "2026-03-01T10:00:00.000Z",
            "s3": {"bucket": {"name": "b"}, "object": {"key": "k", "eTag": "e", "sequencer": "01"}}},
            {"eventName": "ObjectRestore:Completed", "s3": {"bucket": {"name": "b"}, "object": {"key": "k"}}}]}"#;
        let drafts = r.notification(good).expect("a notification");
        assert_eq!(drafts.len(), 1, "only created/removed records are events");
        assert!(drafts[0].id.is_some());
        assert_eq!(
            drafts[0].time.map(|t| t.to_rfc3339()),
            Some("2026-03-01T10:00:00+00:00".to_owned())
        );
    }

    #[test]
    fn a_listing_reports_new_changed_and_vanished_keys() {
        let object = |key: &str, etag: &str| ListedObject {
            key: key.into(),
            etag: etag.into(),
            size: 1,
            last_modified: "2026-03-01T10:00:00.000Z".into(),
        };
        let seen: Seen = [
            ("a".into(), "1".into()),
            ("b".into(), "1".into()),
            ("c".into(), "1".into()),
        ]
        .into();
        let listed = [object("a", "1"), object("b", "2"), object("d", "1")];
        let found: Vec<_> = changes("us-east-1", "bkt", &seen, &listed, "2026-03-01T11:00:00.000Z")
            .into_iter()
            .map(|c| (c.key, c.etag, c.record["eventName"].clone()))
            .collect();
        assert_eq!(
            found,
            [
                ("b".into(), Some("2".into()), json!("ObjectCreated:Put")),
                ("d".into(), Some("1".into()), json!("ObjectCreated:Put")),
                ("c".into(), None, json!("ObjectRemoved:Delete")),
            ]
        );
    }
}
