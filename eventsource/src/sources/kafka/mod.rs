//! `kafka`: records from an Apache Kafka topic, through librdkafka (the `rdkafka` crate), on the
//! pull skeleton ([`crate::pull`]).
//!
//! Modes, as upstream: with `consumerGroup` the source joins the group and reads the partitions
//! assigned to it (`rebalanceStrategy` range, roundrobin or sticky; `oldest` starts a group without
//! committed offsets at the oldest record); without it, it reads the one `partition` from the newest
//! record on (no offsets are kept, as upstream).
//!
//! Event: `type` kafka, `subject` the event name, `time` the record's timestamp, data
//! `{topic, key, partition, body, timestamp, headers, metadata}` as upstream: `key` and header
//! values as text, `timestamp` in Go's `time.String` layout. `body` is the parsed JSON value when
//! `jsonBody` is true; otherwise — and when a record is not valid JSON despite `jsonBody` — it is the
//! value as a base64 string (upstream marshals the raw bytes), so a record is never dropped.
//!
//! Id: derived from EventSource/event/topic/partition/offset (a UUID v5), so a record read again after
//! a crash or a rebalance is the same event and dedupes on the bus.
//!
//! Delivery guarantee (at least once, no loss): records of a partition are published one at a time in
//! offset order (the skeleton handles one message at a time, and retries the bus in hand); an offset is
//! *stored* for commit ([`Upstream::settle`]) only after the bus acked its event, so the offset
//! committed for a partition is always the highest contiguously acked one. librdkafka commits stored
//! offsets every `auto.commit.interval.ms`, on a partition revoke (rebalance) and when the source
//! stops; it never commits an offset that was not stored. A crash loses at most the uncommitted
//! tail, which is read again and deduped by id.
//!
//! Connection: one consumer per run. Connecting creates it and waits until the brokers answer a
//! metadata request, logging each failed probe with `retry_in_ms` (from `connectionBackoff.duration`,
//! default 1s, doubling to 30s); after that librdkafka reconnects on its own, receive errors are
//! logged, and the readiness flag, cleared while librdkafka reports the brokers down, is set again
//! once a probe every 2s answers.
//!
//! Not applied: `version` (librdkafka negotiates the protocol version with the broker), `config`
//! (Sarama's YAML; a warning names it), `schemaRegistry` and `awsMskIamAuth` (refused at build).
//! `filter.expression` is applied by the shared filtering sender (`crate::filter`) like every kind's.

pub mod client;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde_json::{Map, Value};
use sluice_crds::eventsource::KafkaEventSource;
use sluice_eventbus::deterministic_id;
use tokio::time::Instant;

use crate::pull::{Draft, Malformed, Names, Pull, Settle, Upstream, UpstreamError};
use crate::push::metadata_value;
use crate::reconnect::{Backoff, MAX_WAIT};
use crate::sender::{Retry, FIRST_BACKOFF};
use crate::{BuildError, BuiltEventSource, ReadyFlag, SourceContext};

use self::client::Settings;

/// How the source reads the topic.
#[derive(Clone, Debug, PartialEq)]
pub enum Mode {
    /// A consumer group member; offsets committed after the bus acked.
    Group,
    /// One partition, from the newest record, nothing committed.
    Partition(i32),
}

/// Why the Kafka client failed.
#[derive(Debug, thiserror::Error)]
pub enum KafkaSourceError {
    /// The consumer could not be created (a bad setting).
    #[error("failed to create the Kafka consumer")]
    CreateConsumer(#[source] KafkaError),
    /// Subscribing or assigning failed.
    #[error("failed to subscribe to topic {topic}")]
    Subscribe {
        topic: String,
        #[source]
        source: KafkaError,
    },
}

/// One kafka event, resolved.
pub struct KafkaUpstream {
    event_source: String,
    event_name: String,
    topic: String,
    mode: Mode,
    settings: Settings,
    json_body: bool,
    metadata: Option<BTreeMap<String, String>>,
    /// The least time between two records (`limitEventsPerSecond`).
    min_interval: Option<Duration>,
    /// The first wait between attempts to reach the brokers (`connectionBackoff.duration`).
    connect_backoff: Duration,
}

/// The consumer of one run, and where rate limiting and readiness probing stand.
pub struct Session {
    consumer: Arc<StreamConsumer<LogContext>>,
    ready: ReadyFlag,
    /// The earliest time the next record may be taken (`limitEventsPerSecond`).
    next_allowed: Instant,
    /// When readiness is probed next (only while it is cleared).
    next_probe: Instant,
}

/// How often a source whose brokers were reported down probes them again (readiness recovery).
const READY_PROBE_EVERY: Duration = Duration::from_secs(2);

/// Logs librdkafka's own messages and errors with the source's name, so an unreachable broker or a
/// rejected login is attributed to the EventSource that has it.
struct LogContext {
    event_source: String,
    event_name: String,
    ready: ReadyFlag,
}

impl ClientContext for LogContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        let (es, ev) = (&self.event_source, &self.event_name);
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(eventsource = %es, event_name = %ev, facility = fac, "kafka client: {log_message}")
            }
            RDKafkaLogLevel::Warning => {
                tracing::warn!(eventsource = %es, event_name = %ev, facility = fac, "kafka client: {log_message}")
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(eventsource = %es, event_name = %ev, facility = fac, "kafka client: {log_message}")
            }
            RDKafkaLogLevel::Debug => {
                tracing::debug!(eventsource = %es, event_name = %ev, facility = fac, "kafka client: {log_message}")
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let auth = matches!(
            error.rdkafka_error_code(),
            Some(
                rdkafka::types::RDKafkaErrorCode::Authentication
                    | rdkafka::types::RDKafkaErrorCode::SaslAuthenticationFailed
                    | rdkafka::types::RDKafkaErrorCode::TopicAuthorizationFailed
                    | rdkafka::types::RDKafkaErrorCode::GroupAuthorizationFailed
            )
        );
        if matches!(
            error.rdkafka_error_code(),
            Some(
                rdkafka::types::RDKafkaErrorCode::AllBrokersDown
                    | rdkafka::types::RDKafkaErrorCode::BrokerTransportFailure
                    | rdkafka::types::RDKafkaErrorCode::Resolve
            )
        ) || auth
        {
            // Not ready until a metadata probe succeeds again (see `KafkaUpstream::next`).
            self.ready.set(false);
        }
        if auth {
            tracing::error!(eventsource = %self.event_source, event_name = %self.event_name, %error, reason, "kafka brokers refused the credentials of this event source (check sasl/tls)");
        } else {
            tracing::error!(eventsource = %self.event_source, event_name = %self.event_name, %error, reason, "kafka client error; librdkafka retries on its own");
        }
    }
}

impl ConsumerContext for LogContext {}

/// Go's `time.Time.String()` of a record timestamp in UTC: fraction without trailing zeros.
pub fn go_timestamp(t: DateTime<Utc>) -> String {
    let nanos = t.timestamp_subsec_nanos();
    let frac = if nanos == 0 {
        String::new()
    } else {
        let digits = format!(".{nanos:09}");
        digits.trim_end_matches('0').to_string()
    };
    format!("{}{} +0000 UTC", t.format("%Y-%m-%d %H:%M:%S"), frac)
}

/// The event id of a record.
pub fn event_id(es: &str, event: &str, topic: &str, partition: i32, offset: i64) -> String {
    deterministic_id(&[
        "kafka",
        es,
        event,
        topic,
        &partition.to_string(),
        &offset.to_string(),
    ])
}

/// The `body` of a record: JSON when asked and valid; else base64 (upstream's bytes); `null` for a
/// record without a value (a tombstone).
pub fn body_value(payload: Option<&[u8]>, json_body: bool) -> (Value, bool) {
    let Some(bytes) = payload else {
        return (Value::Null, false);
    };
    if json_body {
        if let Ok(v) = serde_json::from_slice::<Value>(bytes) {
            return (v, false);
        }
    }
    (
        Value::String(base64::engine::general_purpose::STANDARD.encode(bytes)),
        json_body,
    )
}

/// The event data of a record (upstream's shape), and whether a jsonBody record was not JSON.
pub fn record_data(
    msg: &OwnedMessage,
    json_body: bool,
    metadata: Option<&BTreeMap<String, String>>,
    time: DateTime<Utc>,
) -> (Value, bool) {
    let mut data = Map::new();
    data.insert("topic".into(), Value::String(msg.topic().to_string()));
    let key = msg
        .key()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .unwrap_or_default();
    data.insert("key".into(), Value::String(key));
    data.insert("partition".into(), Value::from(msg.partition()));
    let (body, not_json) = body_value(msg.payload(), json_body);
    data.insert("body".into(), body);
    data.insert("timestamp".into(), Value::String(go_timestamp(time)));
    let mut headers = Map::new();
    if let Some(hs) = msg.headers() {
        for h in hs.iter() {
            let v = h
                .value
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default();
            headers.insert(h.key.to_string(), Value::String(v));
        }
    }
    data.insert("headers".into(), Value::Object(headers));
    if let Some(m) = metadata_value(metadata) {
        data.insert("metadata".into(), m);
    }
    (Value::Object(data), not_json)
}

impl KafkaUpstream {
    /// Resolves one kafka event.
    pub fn build(
        event_source: &str,
        event_name: &str,
        spec: &KafkaEventSource,
        secrets: &dyn crate::SecretResolver,
    ) -> Result<Self, BuildError> {
        let invalid = |reason: String| BuildError::InvalidSpec {
            event_source: event_source.into(),
            event: event_name.into(),
            reason: format!("spec.kafka.{event_name}.{reason}"),
        };
        let unsupported = |what: &str| BuildError::Unsupported {
            event_source: event_source.into(),
            event: event_name.into(),
            what: format!("kafka {what}"),
        };
        if spec.schema_registry.is_some() {
            return Err(unsupported("schemaRegistry (Avro decoding)"));
        }
        if spec.aws_msk_iam_auth.is_some() {
            return Err(unsupported("awsMskIamAuth"));
        }
        let topic = spec.topic.trim().to_string();
        if topic.is_empty() {
            return Err(invalid("topic: required".into()));
        }
        let mut settings = client::connection_settings(event_source, event_name, spec, secrets)?;
        let mode = match &spec.consumer_group {
            Some(group) => {
                let name = group.group_name.trim();
                if name.is_empty() {
                    return Err(invalid("consumerGroup.groupName: required".into()));
                }
                let strategy = client::assignment_strategy(group.rebalance_strategy.as_deref())
                    .map_err(|r| invalid(format!("consumerGroup.rebalanceStrategy: {r}")))?;
                settings.insert("group.id".into(), name.into());
                settings.insert("partition.assignment.strategy".into(), strategy.into());
                let reset = if group.oldest { "earliest" } else { "latest" };
                settings.insert("auto.offset.reset".into(), reset.into());
                // Why: librdkafka may commit only offsets we stored, and we store one only after the
                // bus acked its event (see the module docs). Auto-commit then commits periodically, on
                // revoke and on close — never past an unacked record.
                settings.insert("enable.auto.commit".into(), "true".into());
                settings.insert("enable.auto.offset.store".into(), "false".into());
                settings.insert("auto.commit.interval.ms".into(), "1000".into());
                Mode::Group
            }
            None => {
                let text = spec.partition.as_deref().map(str::trim).unwrap_or("");
                let p = text.parse::<i32>().map_err(|_| {
                    invalid(format!(
                        "partition: {text:?} is not a partition number (set it, or set consumerGroup)"
                    ))
                })?;
                if p < 0 {
                    return Err(invalid(format!("partition: {p} is negative")));
                }
                settings.insert("group.id".into(), format!("sluice-{event_source}-{event_name}"));
                settings.insert("enable.auto.commit".into(), "false".into());
                Mode::Partition(p)
            }
        };
        settings.insert("client.id".into(), format!("sluice-{event_source}-{event_name}"));
        if spec.config.as_deref().is_some_and(|c| !c.trim().is_empty()) {
            tracing::warn!(eventsource = %event_source, event_name = %event_name, "spec.kafka.{event_name}.config (Sarama settings) is not applied by Sluice; librdkafka defaults are used");
        }
        let min_interval = match spec.limit_events_per_second {
            Some(n) if n > 0 => Some(Duration::from_secs_f64(1.0 / n as f64)),
            Some(n) if n < 0 => return Err(invalid(format!("limitEventsPerSecond: {n} is negative"))),
            _ => None,
        };
        let connect_backoff = spec
            .connection_backoff
            .as_ref()
            .and_then(|b| b.duration.as_ref())
            .map(|d| d.to_duration())
            .transpose()
            .map_err(|e| invalid(format!("connectionBackoff.duration: {e}")))?
            .filter(|d| !d.is_zero())
            .unwrap_or(Duration::from_secs(1));
        Ok(Self {
            event_source: event_source.into(),
            event_name: event_name.into(),
            topic,
            mode,
            settings,
            json_body: spec.json_body,
            metadata: spec.metadata.clone(),
            min_interval,
            connect_backoff,
        })
    }

    /// The event of a record, and whether a `jsonBody` record was not JSON: the id from its
    /// position, `time` from its timestamp (`now` when it has none).
    pub fn draft(&self, msg: &OwnedMessage, now: DateTime<Utc>) -> (Draft, bool) {
        let time = msg
            .timestamp()
            .to_millis()
            .and_then(DateTime::<Utc>::from_timestamp_millis)
            .unwrap_or(now);
        let id = event_id(
            &self.event_source,
            &self.event_name,
            msg.topic(),
            msg.partition(),
            msg.offset(),
        );
        let (data, not_json) = record_data(msg, self.json_body, self.metadata.as_ref(), time);
        (Draft::new(data).with_id(id).with_time(time), not_json)
    }

    fn consumer(&self, ready: &ReadyFlag) -> Result<StreamConsumer<LogContext>, KafkaSourceError> {
        let ctx = LogContext {
            event_source: self.event_source.clone(),
            event_name: self.event_name.clone(),
            ready: ready.clone(),
        };
        let consumer: StreamConsumer<LogContext> = client::client_config(&self.settings)
            .create_with_context(ctx)
            .map_err(KafkaSourceError::CreateConsumer)?;
        let subscribe = |source| KafkaSourceError::Subscribe {
            topic: self.topic.clone(),
            source,
        };
        match self.mode {
            Mode::Group => consumer.subscribe(&[&self.topic]).map_err(subscribe)?,
            Mode::Partition(p) => {
                let mut list = TopicPartitionList::new();
                list.add_partition_offset(&self.topic, p, Offset::End)
                    .map_err(subscribe)?;
                consumer.assign(&list).map_err(subscribe)?;
            }
        }
        Ok(consumer)
    }

    /// Whether the brokers answer a metadata request for the topic within `timeout`.
    async fn probe(
        &self,
        consumer: &Arc<StreamConsumer<LogContext>>,
        timeout: Duration,
    ) -> Result<(), String> {
        let (c, topic) = (consumer.clone(), self.topic.clone());
        let probe = tokio::task::spawn_blocking(move || c.fetch_metadata(Some(&topic), timeout).map(|_| ()));
        match probe.await {
            Ok(answered) => answered.map_err(|e| e.to_string()),
            Err(e) => Err(format!("the metadata probe task failed: {e}")),
        }
    }
}

#[async_trait]
impl Upstream for KafkaUpstream {
    type Session = Session;
    type Message = OwnedMessage;

    fn kind(&self) -> &'static str {
        "kafka"
    }

    /// Why retry in hand: the record's offset is not stored until the bus stored its event, so
    /// giving up and moving on would let a later commit skip it. Stopping while retrying leaves
    /// it uncommitted; it is read again on the next start.
    fn retry(&self) -> Retry {
        Retry::UntilStored { first: FIRST_BACKOFF }
    }

    /// Only for creating the consumer (a bad setting); reaching the brokers is retried inside
    /// `connect`, with the same waits.
    fn backoff(&self) -> Backoff {
        Backoff::new(self.connect_backoff, 2.0)
    }

    /// Creates the consumer and waits until the brokers answer, retrying with backoff and logging
    /// each failure (the consumer is kept: librdkafka keeps trying to reach them meanwhile).
    async fn connect(&self, names: &Names) -> Result<Session, UpstreamError> {
        let consumer = Arc::new(self.consumer(&names.ready)?);
        let mut wait = self.connect_backoff;
        while let Err(error) = self.probe(&consumer, Duration::from_secs(5)).await {
            names.ready.set(false);
            tracing::error!(eventsource = %self.event_source, event_name = %self.event_name, brokers = %self.settings.get("bootstrap.servers").map(String::as_str).unwrap_or(""), %error, retry_in_ms = wait.as_millis() as u64, "failed to reach the kafka brokers; retrying");
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(MAX_WAIT);
        }
        tracing::info!(eventsource = %self.event_source, event_name = %self.event_name, topic = %self.topic, mode = ?self.mode, "consuming");
        Ok(Session {
            consumer,
            ready: names.ready.clone(),
            next_allowed: Instant::now(),
            next_probe: Instant::now() + READY_PROBE_EVERY,
        })
    }

    /// The next record, no sooner than `limitEventsPerSecond` allows. A receive error is logged
    /// and the loop goes on (librdkafka reconnects on its own); while the readiness flag is
    /// cleared, the brokers are probed every [`READY_PROBE_EVERY`] and it is set once they answer.
    /// Cancel-safe: a record is taken from the consumer only when it is returned.
    async fn next(&self, session: &mut Session) -> Result<Option<OwnedMessage>, UpstreamError> {
        tokio::time::sleep_until(session.next_allowed).await;
        loop {
            tokio::select! {
                biased;
                received = session.consumer.recv() => match received {
                    Ok(m) => {
                        if let Some(gap) = self.min_interval {
                            session.next_allowed = Instant::now() + gap;
                        }
                        return Ok(Some(m.detach()));
                    }
                    Err(error) => {
                        tracing::warn!(eventsource = %self.event_source, event_name = %self.event_name, %error, "kafka consumer error");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                },
                _ = tokio::time::sleep_until(session.next_probe) => {
                    session.next_probe = Instant::now() + READY_PROBE_EVERY;
                    if !session.ready.get() && self.probe(&session.consumer, Duration::from_secs(2)).await.is_ok() {
                        session.ready.set(true);
                    }
                }
            }
        }
    }

    fn decode(&self, msg: &OwnedMessage) -> Result<Vec<Draft>, Malformed> {
        let (draft, not_json) = self.draft(msg, Utc::now());
        if not_json {
            tracing::warn!(eventsource = %self.event_source, event_name = %self.event_name, event = ?draft.id, partition = msg.partition(), offset = msg.offset(), "record value is not JSON although jsonBody is true; published as base64");
        }
        Ok(vec![draft])
    }

    async fn settle(
        &self,
        session: &mut Session,
        msg: OwnedMessage,
        settle: Settle,
    ) -> Result<(), UpstreamError> {
        if self.mode != Mode::Group {
            // Nothing is committed in partition mode (as upstream).
            return Ok(());
        }
        match settle {
            // Why store the offset here: the bus acked this record's event (or the filter dropped
            // it on purpose) and every earlier record of the partition was settled before it (one
            // at a time, in offset order), so this offset is the highest contiguously acked one —
            // safe to commit.
            Settle::Ack => {}
            // Why store the offset of a record that can never be stored (too large; logged and
            // counted): left unstored it would hold back every later commit of the partition.
            Settle::Term => {}
            // Not reached (the bus is retried in hand); left unstored, so it is read again.
            Settle::Nak => return Ok(()),
        }
        if let Err(error) = session
            .consumer
            .store_offset(msg.topic(), msg.partition(), msg.offset())
        {
            // The partition was revoked while publishing: its new owner reads the record again and
            // the bus dedupes it by id. Nothing is lost.
            tracing::info!(eventsource = %self.event_source, event_name = %self.event_name, partition = msg.partition(), offset = msg.offset(), %error, "offset not stored (partition no longer assigned); the new owner re-reads it");
        }
        Ok(())
    }

    /// Commits what was acked before leaving, so a restart does not re-read it (re-reading would
    /// be deduped anyway; this only saves work). Dropping the consumer then leaves the group.
    async fn close(&self, session: Session) {
        if self.mode != Mode::Group {
            return;
        }
        let c = session.consumer.clone();
        let committed = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::task::spawn_blocking(move || c.commit_consumer_state(CommitMode::Sync)),
        )
        .await;
        if let Ok(Ok(Err(error))) = committed {
            if !matches!(
                error.rdkafka_error_code(),
                Some(rdkafka::types::RDKafkaErrorCode::NoOffset)
            ) {
                tracing::warn!(eventsource = %self.event_source, event_name = %self.event_name, %error, "failed to commit offsets on stop; they are read again and deduped");
            }
        }
    }

    fn locate(&self, msg: &OwnedMessage) -> String {
        format!("{}/{}@{}", msg.topic(), msg.partition(), msg.offset())
    }
}

/// The tasks of the `kafka` events of one EventSource.
pub fn build(
    es_name: &str,
    events: &BTreeMap<String, KafkaEventSource>,
    ctx: &SourceContext,
    out: &mut BuiltEventSource,
) -> Result<(), BuildError> {
    for (event_name, spec) in events {
        let upstream = KafkaUpstream::build(es_name, event_name, spec, ctx.secrets.as_ref())?;
        out.tasks
            .push(Box::new(Pull::new(es_name, event_name, upstream, ctx)));
    }
    Ok(())
}
