//! `s3` (Sluice extension, not in upstream Argo Events): object changes in a bucket of any
//! S3-compatible store (AWS S3, MinIO, Ceph, moto).
//!
//! Modes:
//! - `notifications`: the bucket sends S3 event notifications to the SQS queue `queue`; each message
//!   is long-polled ([`crate::clients::sqs::QueuePoller`]) and each of its records
//!   ([`crate::clients::s3_records`]) that passes `prefix`/`suffix`/`events` becomes one event. The
//!   message is deleted only after every one of its events was stored by the bus; otherwise it
//!   reappears after the visibility timeout.
//!   Messages without records (the `s3:TestEvent` S3 sends when notifications are configured) are
//!   deleted. A body that is not JSON, or JSON that is not a notification (no `Records` list of
//!   objects), is logged with its message id, counted as `processing_failed` and deleted.
//! - `list`: every `interval` (default 10s) the bucket is listed with ListObjectsV2 (path-style,
//!   under `prefix`). A key not seen before, or seen with another ETag, is `created`; a key seen
//!   before and now gone is `removed`. What was seen (key → ETag) is kept in the process's
//!   checkpoint store (a file under `sluice run`, the JetStream key-value bucket in cluster mode),
//!   written after published events, so a restart neither misses an object nor reports it again
//!   (an event published but not yet checkpointed is published again with the same id, which the
//!   bus dedupes). On the very first start every existing object is reported as created. The whole
//!   seen-set is one checkpoint value: meant for buckets (or prefixes) of up to tens of thousands of
//!   objects.
//!
//! Event: `type` s3, data = one S3 event record in AWS's shape (`eventName`, `eventTime`,
//! `s3.bucket.name`, `s3.object.key` URL-encoded as S3 does, `eTag`, `size`, `sequencer` in
//! notifications), the same in both modes, plus `metadata` when set. Event id: a hash of bucket,
//! key, versionId-or-ETag, the notification `sequencer` when present, and the change kind; a record
//! with neither a version nor a sequencer is identified by a hash of the whole record
//! ([`s3_records::event_id`]), so two such changes of one key never share an id.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use sluice_crds::eventsource::{S3EventSource, S3Mode, S3ObjectEvent};
use sluice_eventbus::{Event, EventBuilder, Subject};
use tokio_util::sync::CancellationToken;

use crate::aws::{AwsClient, SqsMessage};
use crate::checkpoint::CheckpointStore;
use crate::clients::s3_records;
use crate::clients::sqs::{Disposition, MessageHandler, QueuePoller};
use crate::metrics::{EventLabels, SourceMetrics};
use crate::push::metadata_value;
use crate::sender::EventSender;
use crate::{BuildError, BuiltEventSource, PullSource, SourceContext, SourceError};

/// How many published events may go without a checkpoint in list mode.
const CHECKPOINT_EVERY: usize = 50;

/// Publishes records of one `s3` event.
struct Publisher {
    event_source: String,
    event_name: String,
    metadata: Option<BTreeMap<String, String>>,
    sender: Arc<dyn EventSender>,
    metrics: SourceMetrics,
    labels: EventLabels,
}

impl Publisher {
    fn event(&self, record: &Value) -> Option<Event> {
        let id = s3_records::event_id(record)?;
        let mut data = record.clone();
        if let (Some(m), Some(obj)) = (metadata_value(self.metadata.as_ref()), data.as_object_mut()) {
            obj.insert("metadata".into(), m);
        }
        let mut builder = EventBuilder::new(&self.event_source, &self.event_name, "s3").id(id);
        if let Some(t) = record["eventTime"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        {
            builder = builder.time(t.with_timezone(&chrono::Utc));
        }
        builder.data_json(data).build().ok()
    }

    /// Publishes one record; `true` once the bus stored it.
    async fn publish(&self, record: &Value, cancel: &CancellationToken) -> bool {
        let started = tokio::time::Instant::now();
        let Some(event) = self.event(record) else {
            // A record without bucket/key/kind cannot be published; counted, and skipped so the
            // rest of the message is not held back forever.
            self.metrics.processing_failed.get_or_create(&self.labels).inc();
            tracing::error!(eventsource = %self.event_source, event_name = %self.event_name, "skipping an S3 record without bucket, key or a created/removed eventName");
            return true;
        };
        let subject = Subject::new(&self.event_source, &self.event_name);
        let result = tokio::select! {
            biased;
            _ = cancel.cancelled() => return false,
            r = self.sender.send(&subject, &event) => r,
        };
        match result {
            Ok(ack) => {
                if !ack.filtered {
                    self.metrics.sent.get_or_create(&self.labels).inc();
                }
                self.metrics
                    .processing_duration
                    .get_or_create(&self.labels)
                    .observe(started.elapsed().as_secs_f64() * 1000.0);
                tracing::info!(eventsource = %self.event_source, event_name = %self.event_name, event = %event.id(), key = record["s3"]["object"]["key"].as_str().unwrap_or_default(), duplicate = ack.duplicate, "published");
                true
            }
            Err(error) => {
                self.metrics.sent_failed.get_or_create(&self.labels).inc();
                tracing::error!(eventsource = %self.event_source, event_name = %self.event_name, event = %event.id(), %error, "failed to publish an S3 record");
                false
            }
        }
    }
}

struct Filters {
    prefix: Option<String>,
    suffix: Option<String>,
    kinds: Vec<S3ObjectEvent>,
}

impl Filters {
    fn wanted(&self, record: &Value) -> bool {
        s3_records::wanted(
            record,
            self.prefix.as_deref(),
            self.suffix.as_deref(),
            &self.kinds,
        )
    }
}

struct NotificationHandler {
    publisher: Publisher,
    filters: Filters,
}

#[async_trait]
impl MessageHandler for NotificationHandler {
    async fn handle(&self, message: &SqsMessage, cancel: &CancellationToken) -> Disposition {
        let p = &self.publisher;
        let document: Value = match serde_json::from_str(&message.body) {
            Ok(v) => v,
            Err(error) => {
                p.metrics.processing_failed.get_or_create(&p.labels).inc();
                tracing::error!(eventsource = %p.event_source, event_name = %p.event_name, message_id = %message.message_id, %error, "deleting an SQS message that is not an S3 notification");
                return Disposition::Delete;
            }
        };
        let records = match s3_records::records(&document) {
            Ok(records) => records,
            Err(error) => {
                p.metrics.processing_failed.get_or_create(&p.labels).inc();
                tracing::error!(eventsource = %p.event_source, event_name = %p.event_name, message_id = %message.message_id, %error, "deleting an SQS message that is not an S3 notification");
                // Why delete: the body will not change on redelivery; keeping it would only bring
                // it back after every visibility timeout. The log line and the counter report it.
                return Disposition::Delete;
            }
        };
        for record in records {
            if !self.filters.wanted(&record) {
                continue;
            }
            if !p.publish(&record, cancel).await {
                // Why keep: a record is not on the bus; the whole message comes back after the
                // visibility timeout and the records already published dedupe by id.
                return Disposition::Keep;
            }
        }
        Disposition::Delete
    }
}

/// What list mode remembers: key → ETag.
type Seen = BTreeMap<String, String>;

struct Lister {
    client: AwsClient,
    endpoint: String,
    bucket: String,
    interval: Duration,
    checkpoints: Arc<dyn CheckpointStore>,
    publisher: Publisher,
    filters: Filters,
    /// True after a successful listing, false while the bucket cannot be listed.
    ready: crate::ReadyFlag,
}

impl Lister {
    fn checkpoint_key(&self) -> String {
        format!("s3/{}/{}", self.publisher.event_source, self.publisher.event_name)
    }

    async fn load(&self) -> Result<Seen, crate::checkpoint::CheckpointError> {
        Ok(self
            .checkpoints
            .load(&self.checkpoint_key())
            .await?
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default())
    }

    async fn save(&self, seen: &Seen) {
        let text = serde_json::to_string(seen).unwrap_or_default();
        if let Err(error) = self.checkpoints.save(&self.checkpoint_key(), &text).await {
            // Not a loss: the next poll reports the unrecorded changes again, with the same ids.
            tracing::warn!(eventsource = %self.publisher.event_source, event_name = %self.publisher.event_name, error = %sluice_eventbus::error_chain(&error), "failed to record the listed objects");
        }
    }

    /// One listing: publishes every change since `seen` and updates it; `false` when cancelled.
    async fn poll(&self, seen: &mut Seen, cancel: &CancellationToken) -> bool {
        let p = &self.publisher;
        let listed = tokio::select! {
            biased;
            _ = cancel.cancelled() => return false,
            r = self.client.s3_list(&self.endpoint, &self.bucket, self.filters.prefix.as_deref()) => r,
        };
        let listed = match listed {
            Ok(l) => {
                self.ready.set(true);
                l
            }
            Err(error) => {
                self.ready.set(false);
                tracing::error!(eventsource = %p.event_source, event_name = %p.event_name, bucket = %self.bucket, error = %sluice_eventbus::error_chain(&error), "failed to list the bucket");
                return true;
            }
        };
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let region = self.client.region().to_string();
        let mut changes: Vec<(String, Option<String>, Value)> = Vec::new();
        let mut present = std::collections::BTreeSet::new();
        for o in &listed {
            present.insert(o.key.clone());
            if seen.get(&o.key) == Some(&o.etag) {
                continue;
            }
            let record = s3_records::listed_record(
                &region,
                &self.bucket,
                &o.key,
                &o.etag,
                Some(o.size),
                S3ObjectEvent::Created,
                &o.last_modified,
            );
            changes.push((o.key.clone(), Some(o.etag.clone()), record));
        }
        for (key, etag) in seen.iter() {
            if !present.contains(key) {
                let record = s3_records::listed_record(
                    &region,
                    &self.bucket,
                    key,
                    etag,
                    None,
                    S3ObjectEvent::Removed,
                    &now,
                );
                changes.push((key.clone(), None, record));
            }
        }
        let mut unsaved = 0usize;
        for (key, etag, record) in changes {
            if self.filters.wanted(&record) && !p.publish(&record, cancel).await {
                // Why stop here: the change stays out of `seen`, so the next poll reports it again.
                if unsaved > 0 {
                    self.save(seen).await;
                }
                return !cancel.is_cancelled();
            }
            // Recorded only after the bus stored the event (or the filters skipped it).
            match etag {
                Some(e) => seen.insert(key, e),
                None => seen.remove(&key),
            };
            unsaved += 1;
            if unsaved >= CHECKPOINT_EVERY {
                self.save(seen).await;
                unsaved = 0;
            }
        }
        if unsaved > 0 {
            self.save(seen).await;
        }
        true
    }

    async fn run(&self, cancel: CancellationToken) {
        let p = &self.publisher;
        let mut seen = loop {
            match self.load().await {
                Ok(s) => break s,
                Err(error) => {
                    // Why wait rather than start empty: an empty start would report every object again.
                    tracing::error!(eventsource = %p.event_source, event_name = %p.event_name, error = %sluice_eventbus::error_chain(&error), "failed to read the listed-objects checkpoint; retrying");
                    tokio::select! {
                        biased;
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                    }
                }
            }
        };
        tracing::info!(eventsource = %p.event_source, event_name = %p.event_name, bucket = %self.bucket, known = seen.len(), "listing bucket");
        loop {
            if !self.poll(&mut seen, &cancel).await {
                return;
            }
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(self.interval) => {}
            }
        }
    }
}

enum Mode {
    Notifications(QueuePoller, NotificationHandler),
    List(Lister),
}

/// One `s3` event, resolved.
pub struct S3Source {
    describe: String,
    mode: Mode,
}

impl S3Source {
    /// Resolves one `s3` event.
    pub fn build(
        event_source: &str,
        event_name: &str,
        spec: &S3EventSource,
        ctx: &SourceContext,
    ) -> Result<Self, BuildError> {
        let invalid = |reason: String| BuildError::InvalidSpec {
            event_source: event_source.into(),
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
            event_source,
            event_name,
            ctx,
            spec.access_key.as_ref(),
            spec.secret_key.as_ref(),
            spec.session_token.as_ref(),
            &region,
            None,
        )?;
        let publisher = Publisher {
            event_source: event_source.into(),
            event_name: event_name.into(),
            metadata: spec.metadata.clone(),
            sender: ctx.sender.clone(),
            metrics: ctx.metrics.clone(),
            labels: SourceMetrics::labels(event_source, event_name),
        };
        let filters = Filters {
            prefix: spec.prefix.clone().filter(|p| !p.is_empty()),
            suffix: spec.suffix.clone().filter(|s| !s.is_empty()),
            kinds: spec.events.clone(),
        };
        let mode = match spec.effective_mode() {
            S3Mode::Notifications => {
                let queue = spec
                    .queue
                    .clone()
                    .filter(|q| !q.trim().is_empty())
                    .ok_or_else(|| {
                        invalid("queue: notifications mode needs the SQS queue the bucket notifies".into())
                    })?;
                let poller = QueuePoller {
                    event_source: event_source.into(),
                    event_name: event_name.into(),
                    endpoint: crate::aws::sqs_endpoint(spec.endpoint.as_deref(), &region),
                    client,
                    queue,
                    account_id: spec.queue_account_id.clone(),
                    wait_seconds: spec.wait_time_seconds.unwrap_or(20).clamp(0, 20),
                    ready: ctx.readiness.flag(format!("{event_source}/{event_name}")),
                };
                Mode::Notifications(poller, NotificationHandler { publisher, filters })
            }
            S3Mode::List => {
                let interval = match spec.interval.as_deref().filter(|i| !i.trim().is_empty()) {
                    Some(i) => sluice_crds::duration::parse_go_duration(i)
                        .map_err(|e| invalid(format!("interval: {e}")))?,
                    None => Duration::from_secs(10),
                };
                let checkpoints = ctx.checkpoints.clone().ok_or_else(|| BuildError::Unsupported {
                    event_source: event_source.into(),
                    event: event_name.into(),
                    what: "s3 list mode without a checkpoint store in this process".into(),
                })?;
                Mode::List(Lister {
                    endpoint: crate::aws::s3_endpoint(spec.endpoint.as_deref(), &region),
                    client,
                    bucket: spec.bucket.clone(),
                    interval: interval.max(Duration::from_millis(100)),
                    checkpoints,
                    publisher,
                    filters,
                    ready: ctx.readiness.flag(format!("{event_source}/{event_name}")),
                })
            }
        };
        Ok(Self {
            describe: format!("{event_source}/{event_name} s3"),
            mode,
        })
    }
}

#[async_trait]
impl PullSource for S3Source {
    fn describe(&self) -> String {
        self.describe.clone()
    }

    async fn run(self: Box<Self>, cancel: CancellationToken) -> Result<(), SourceError> {
        match &self.mode {
            Mode::Notifications(poller, handler) => poller.run(handler, cancel).await,
            Mode::List(lister) => lister.run(cancel).await,
        }
        Ok(())
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
        out.tasks
            .push(Box::new(S3Source::build(es_name, event_name, spec, ctx)?));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Recorder;

    fn handler(rec: Arc<Recorder>) -> NotificationHandler {
        NotificationHandler {
            publisher: Publisher {
                event_source: "store".into(),
                event_name: "uploads".into(),
                metadata: None,
                sender: rec,
                metrics: SourceMetrics::default(),
                labels: SourceMetrics::labels("store", "uploads"),
            },
            filters: Filters {
                prefix: None,
                suffix: None,
                kinds: Vec::new(),
            },
        }
    }

    fn message(body: &str) -> SqsMessage {
        SqsMessage {
            message_id: "m-1".into(),
            receipt_handle: "r-1".into(),
            body: body.into(),
            message_attributes: Value::Null,
        }
    }

    fn failed(h: &NotificationHandler) -> u64 {
        h.publisher
            .metrics
            .processing_failed
            .get_or_create(&h.publisher.labels)
            .get()
    }

    #[tokio::test]
    async fn a_malformed_notification_is_counted_and_deleted_not_dropped_silently() {
        let rec = Arc::new(Recorder::default());
        let h = handler(rec.clone());
        let cancel = CancellationToken::new();

        // The S3 test event carries no change: deleted, not an error.
        let test_event = message(r#"{"Service": "Amazon S3", "Event": "s3:TestEvent"}"#);
        assert_eq!(h.handle(&test_event, &cancel).await, Disposition::Delete);
        assert_eq!(failed(&h), 0);

        // Before, each of these became zero records: deleted with no log line and no count.
        for body in [
            r#"{"Records": "oops"}"#,
            r#"{"Records": [42]}"#,
            r#"{"Type": "Notification"}"#,
        ] {
            assert_eq!(
                h.handle(&message(body), &cancel).await,
                Disposition::Delete,
                "{body}"
            );
        }
        assert_eq!(failed(&h), 3, "every malformed notification is counted");
        assert!(rec.events().is_empty());

        let good = r#"{"Records": [{"eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": "b"}, "object": {"key": "k", "eTag": "e", "sequencer": "01"}}}]}"#;
        assert_eq!(h.handle(&message(good), &cancel).await, Disposition::Delete);
        assert_eq!(rec.events().len(), 1);
        assert_eq!(failed(&h), 3);
    }
}
