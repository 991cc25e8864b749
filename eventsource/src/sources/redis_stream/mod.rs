//! `redisStream`: reads Redis streams through a consumer group (XREADGROUP) and publishes each entry
//! as an event with upstream's data `{stream, message_id, values, metadata}`.
//!
//! Delivery: at-least-once. An entry is acknowledged (XACK) only after the bus stored its event;
//! while the bus refuses, the source retries the same entry with backoff and reads nothing else, so
//! the entry stays in the group's pending entries list (PEL). The consumer name is deterministic
//! (`sluice-<eventSourceName>-<eventName>`), so a restarted source first re-reads its own pending
//! entries (XREADGROUP from id `0`) and then new ones (`>`); entries left pending by another consumer
//! of the group (a dead replica, an older name) are taken over with XAUTOCLAIM once idle for
//! [`CLAIM_MIN_IDLE`]. The event id is derived from `stream/entry id`, so a re-read entry has the id
//! it had and the bus drops the duplicate (within its dedupe window).
//!
//! Too large: an entry whose event is bigger than the bus takes is logged with its size, counted in
//! `sluice_eventsource_events_rejected_total{reason="too_large"}` and XACKed (dropped), so it is not
//! re-read forever. Readiness: `<eventSource>/<event>` is ready while connected.
//!
//! The group (default `argo-events-cg`) is created on every stream at `$` (new entries), with
//! MKSTREAM, when missing, as upstream.
//!
//! TLS: with a `tls` block (`caCertSecret`, `clientCertSecret` + `clientKeySecret`,
//! `insecureSkipVerify`; checked by [`crate::tls`]) the source speaks TLS to `hostAddress`, as
//! upstream; see [`crate::clients::redis::redis_client`].

use crate::{BuiltEventSource, SourceContext};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::MultiplexedConnection;
use serde_json::{json, Map, Value};
use sluice_crds::eventsource::RedisStreamEventSource;
use sluice_eventbus::event::deterministic_id;
use sluice_eventbus::{EventBuilder, Subject};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::clients::redis::redis_client;
use crate::metrics::{EventLabels, SourceMetrics};
use crate::reconnect::Backoff;
use crate::sender::{publish, EventSender, Outcome, Publisher, Retry, FIRST_BACKOFF};
use crate::{BuildError, PullSource, SourceError};
use sluice_eventbus::readiness::ReadyFlag;

/// The CloudEvent `type` of this kind.
pub const SOURCE_TYPE: &str = "redisStream";
/// Upstream's default consumer group.
pub const DEFAULT_GROUP: &str = "argo-events-cg";
/// How long another consumer's pending entry must be idle before this source claims it.
pub const CLAIM_MIN_IDLE: Duration = Duration::from_secs(30);
/// How long one XREADGROUP blocks (short, so cancellation is seen promptly).
const BLOCK: Duration = Duration::from_millis(500);

/// Builds a pull source per `redisStream` event of EventSource `es_name`.
pub fn build(
    es_name: &str,
    events: &BTreeMap<String, RedisStreamEventSource>,
    ctx: &SourceContext,
    out: &mut BuiltEventSource,
) -> Result<(), BuildError> {
    let secrets = ctx.secrets.as_ref();
    let (sender, metrics) = (&ctx.sender, &ctx.metrics);
    for (event_name, spec) in events {
        let invalid = |reason: String| BuildError::InvalidSpec {
            event_source: es_name.into(),
            event: event_name.clone(),
            reason,
        };
        if spec.host_address.is_empty() || spec.streams.is_empty() {
            return Err(invalid("`hostAddress` and `streams` are required".into()));
        }
        let count = spec.max_msg_count_per_read.unwrap_or(10);
        if count < 1 {
            return Err(invalid(format!(
                "maxMsgCountPerRead must be at least 1, got {count}"
            )));
        }
        let password = match &spec.password {
            Some(s) => Some(secrets.resolve_secret(s).map_err(|e| BuildError::ResolveSecret {
                event_source: es_name.into(),
                event: event_name.clone(),
                source: Box::new(e),
            })?),
            None => None,
        };
        let client = redis_client(
            "redisStream",
            es_name,
            event_name,
            &spec.host_address,
            spec.username.as_deref(),
            password.as_deref(),
            spec.db.unwrap_or(0),
            spec.tls.as_ref(),
            secrets,
        )?;
        out.tasks.push(Box::new(RedisStreamSource {
            ready: ctx.readiness.flag(format!("{es_name}/{event_name}")),
            event_source: es_name.to_owned(),
            event_name: event_name.clone(),
            group: spec
                .consumer_group
                .clone()
                .filter(|g| !g.is_empty())
                .unwrap_or_else(|| DEFAULT_GROUP.into()),
            consumer: format!("sluice-{es_name}-{event_name}"),
            count: usize::try_from(count).unwrap_or(10),
            spec: spec.clone(),
            client,
            sender: sender.clone(),
            metrics: metrics.clone(),
        }));
    }
    Ok(())
}

/// One `redisStream` event: a consumer of a group over the streams.
pub struct RedisStreamSource {
    event_source: String,
    event_name: String,
    group: String,
    consumer: String,
    count: usize,
    spec: RedisStreamEventSource,
    client: redis::Client,
    sender: Arc<dyn EventSender>,
    metrics: SourceMetrics,
    /// Set while connected with the group in place.
    ready: ReadyFlag,
}

/// One stream entry: id and field/value pairs (RESP2 shape).
type Entry = (String, Vec<Vec<u8>>);
/// An XREADGROUP reply: per stream, its entries.
type ReadReply = Option<Vec<(String, Vec<Entry>)>>;

/// How the run loop ended.
enum End {
    Cancelled,
}

impl RedisStreamSource {
    async fn connect(&self) -> redis::RedisResult<MultiplexedConnection> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(BLOCK + Duration::from_secs(5)));
        let mut con = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        for stream in &self.spec.streams {
            let created: redis::RedisResult<()> = redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(stream)
                .arg(&self.group)
                .arg("$")
                .arg("MKSTREAM")
                .query_async(&mut con)
                .await;
            match created {
                Ok(()) => {}
                Err(e) if e.code() == Some("BUSYGROUP") || e.to_string().contains("BUSYGROUP") => {}
                Err(e) => return Err(e),
            }
        }
        Ok(con)
    }

    fn data(&self, stream: &str, id: &str, fields: &[Vec<u8>]) -> Value {
        let mut values = Map::new();
        for pair in fields.chunks(2) {
            if let [k, v] = pair {
                values.insert(
                    String::from_utf8_lossy(k).into_owned(),
                    Value::String(String::from_utf8_lossy(v).into_owned()),
                );
            }
        }
        let mut data = json!({"stream": stream, "message_id": id, "values": values});
        if let Some(m) = &self.spec.metadata {
            data["metadata"] = json!(m);
        }
        data
    }

    /// Publishes one entry, retrying while the bus refuses; then XACKs it. `false` when cancelled
    /// before the bus stored it (the entry stays pending and is re-read after a restart).
    async fn deliver(
        &self,
        con: &mut MultiplexedConnection,
        stream: &str,
        entry: &Entry,
        labels: &EventLabels,
        cancel: &CancellationToken,
    ) -> Result<bool, redis::RedisError> {
        let (id, fields) = entry;
        let event = EventBuilder::new(&self.event_source, &self.event_name, SOURCE_TYPE)
            .id(deterministic_id(&[
                SOURCE_TYPE,
                &self.event_source,
                &self.event_name,
                stream,
                id,
            ]))
            .data_json(self.data(stream, id, fields))
            .build();
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                // Cannot happen with these attributes; left pending rather than acked unseen.
                warn!(eventsource = %self.event_source, event_name = %self.event_name, stream, entry = %id, error = %e, "failed to build a redisStream event; left pending");
                self.metrics.processing_failed.get_or_create(labels).inc();
                return Ok(true);
            }
        };
        let subject = Subject::new(&self.event_source, &self.event_name);
        let publisher = Publisher {
            sender: &*self.sender,
            metrics: &self.metrics,
            labels,
            cancel,
        };
        let retry = Retry::UntilStored { first: FIRST_BACKOFF };
        // While the bus refuses, no XACK: the helper retries the same entry here, which stays
        // pending meanwhile.
        match publish(&publisher, &subject, &event, retry).await {
            Outcome::Stored(_) | Outcome::Filtered => {
                debug!(eventsource = %self.event_source, event_name = %self.event_name, event = %event.id(), stream, entry = %id, "published");
            }
            Outcome::Rejected(_) => {
                // Why XACK a rejected entry (it is dropped after the helper's error log): it is
                // bigger than the bus takes, so leaving it pending would re-read it forever.
            }
            Outcome::Refused(_) | Outcome::Cancelled => return Ok(false),
        }
        // Why XACK now: the bus stored the event, so the group may forget the entry. A failed XACK
        // leaves it pending: re-read later and deduped on the bus by its id.
        let _: i64 = redis::cmd("XACK")
            .arg(stream)
            .arg(&self.group)
            .arg(id)
            .query_async(con)
            .await?;
        Ok(true)
    }

    /// Reads with `id` (`0`: this consumer's pending entries, `>`: new ones); the number of entries.
    async fn read(
        &self,
        con: &mut MultiplexedConnection,
        id: &str,
        labels: &EventLabels,
        cancel: &CancellationToken,
    ) -> Result<Option<usize>, redis::RedisError> {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&self.group)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(self.count);
        if id == ">" {
            cmd.arg("BLOCK").arg(BLOCK.as_millis() as u64);
        }
        cmd.arg("STREAMS").arg(&self.spec.streams);
        for _ in &self.spec.streams {
            cmd.arg(id);
        }
        let reply: ReadReply = tokio::select! {
            biased;
            _ = cancel.cancelled() => return Ok(None),
            r = cmd.query_async::<ReadReply>(con) => r?,
        };
        let mut n = 0;
        for (stream, entries) in reply.unwrap_or_default() {
            for entry in &entries {
                if !self.deliver(con, &stream, entry, labels, cancel).await? {
                    return Ok(None);
                }
                n += 1;
            }
        }
        Ok(Some(n))
    }

    /// Takes over other consumers' entries idle for [`CLAIM_MIN_IDLE`] and delivers them.
    async fn claim(
        &self,
        con: &mut MultiplexedConnection,
        labels: &EventLabels,
        cancel: &CancellationToken,
    ) -> Result<bool, redis::RedisError> {
        for stream in &self.spec.streams {
            let mut start = "0-0".to_string();
            loop {
                let (next, entries, _deleted): (String, Vec<Option<Entry>>, Vec<String>) =
                    redis::cmd("XAUTOCLAIM")
                        .arg(stream)
                        .arg(&self.group)
                        .arg(&self.consumer)
                        .arg(CLAIM_MIN_IDLE.as_millis() as u64)
                        .arg(&start)
                        .arg("COUNT")
                        .arg(self.count)
                        .query_async(con)
                        .await?;
                for entry in entries.iter().flatten() {
                    info!(eventsource = %self.event_source, event_name = %self.event_name, stream, entry = %entry.0, "claimed an entry left pending by another consumer");
                    if !self.deliver(con, stream, entry, labels, cancel).await? {
                        return Ok(false);
                    }
                }
                if next == "0-0" {
                    break;
                }
                start = next;
            }
        }
        Ok(true)
    }

    /// Connects and reads until cancelled; `backoff` starts over once connected.
    async fn consume(
        &self,
        labels: &EventLabels,
        cancel: &CancellationToken,
        backoff: &mut Backoff,
    ) -> Result<End, redis::RedisError> {
        let mut con = self.connect().await?;
        self.ready.set(true);
        // Why reset here: the backoff is for a server that stays away; after a successful
        // connection the next outage starts from the shortest wait again.
        backoff.reset();
        info!(eventsource = %self.event_source, event_name = %self.event_name, group = %self.group, consumer = %self.consumer, "reading redis streams");
        // This consumer's own pending entries first (a previous run died before XACK).
        loop {
            match self.read(&mut con, "0", labels, cancel).await? {
                None => return Ok(End::Cancelled),
                Some(0) => break,
                Some(_) => {}
            }
        }
        let mut last_claim = tokio::time::Instant::now();
        if !self.claim(&mut con, labels, cancel).await? {
            return Ok(End::Cancelled);
        }
        loop {
            if last_claim.elapsed() >= CLAIM_MIN_IDLE {
                last_claim = tokio::time::Instant::now();
                if !self.claim(&mut con, labels, cancel).await? {
                    return Ok(End::Cancelled);
                }
            }
            if self.read(&mut con, ">", labels, cancel).await?.is_none() {
                return Ok(End::Cancelled);
            }
        }
    }
}

#[async_trait]
impl PullSource for RedisStreamSource {
    fn describe(&self) -> String {
        format!("{}/{}", self.event_source, self.event_name)
    }

    async fn run(self: Box<Self>, cancel: CancellationToken) -> Result<(), SourceError> {
        let labels = EventLabels {
            eventsource_name: self.event_source.clone(),
            event_name: self.event_name.clone(),
        };
        let mut backoff = Backoff::default();
        loop {
            match self.consume(&labels, &cancel, &mut backoff).await {
                Ok(End::Cancelled) => return Ok(()),
                Err(e) => {
                    self.ready.set(false);
                    warn!(eventsource = %self.event_source, event_name = %self.event_name, error = %e, retry_in = ?backoff.wait(), "redis stream consumer failed; reconnecting");
                }
            }
            if !backoff.sleep(&cancel).await {
                return Ok(());
            }
        }
    }
}
