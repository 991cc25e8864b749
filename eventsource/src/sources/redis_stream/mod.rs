//! `redisStream`: reads Redis streams through a consumer group (XREADGROUP) and publishes each entry
//! as an event with upstream's data `{stream, message_id, values, metadata}`.
//!
//! Delivery: at-least-once. An entry is acknowledged (XACK, in [`Upstream::settle`]) only after the
//! bus stored its event; while the bus refuses, the source retries the same entry in hand
//! ([`Retry::UntilStored`]) and reads nothing else, so the entry stays in the group's pending
//! entries list (PEL). The consumer name is deterministic (`sluice-<eventSourceName>-<eventName>`),
//! so a restarted source first re-reads its own pending entries (XREADGROUP from id `0`, then past
//! the last one read) and then new ones (`>`); entries left pending by another consumer of the
//! group (a dead replica, an older name), or by this one when an XACK failed, are taken over with
//! XAUTOCLAIM once idle for [`CLAIM_MIN_IDLE`]. The event id is derived from `stream/entry id`
//! ([`event_id`]), so a re-read entry has the id it had and the bus drops the duplicate (within its
//! dedupe window).
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

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::MultiplexedConnection;
use serde_json::{json, Map, Value};
use sluice_crds::eventsource::RedisStreamEventSource;
use sluice_eventbus::event::deterministic_id;
use tokio::time::Instant;
use tracing::info;

use crate::clients::redis::redis_client;
use crate::pull::{Draft, Malformed, Names, Pull, Settle, Upstream, UpstreamError};
use crate::sender::{Retry, FIRST_BACKOFF};
use crate::{BuildError, BuiltEventSource, SourceContext};

/// The CloudEvent `type` of this kind.
pub const SOURCE_TYPE: &str = "redisStream";
/// Upstream's default consumer group.
pub const DEFAULT_GROUP: &str = "argo-events-cg";
/// How long another consumer's pending entry must be idle before this source claims it.
pub const CLAIM_MIN_IDLE: Duration = Duration::from_secs(30);
/// How long one XREADGROUP blocks (short, so a lost connection is noticed).
const BLOCK: Duration = Duration::from_millis(500);

/// Builds a pull source per `redisStream` event of EventSource `es_name`.
pub fn build(
    es_name: &str,
    events: &BTreeMap<String, RedisStreamEventSource>,
    ctx: &SourceContext,
    out: &mut BuiltEventSource,
) -> Result<(), BuildError> {
    let secrets = ctx.secrets.as_ref();
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
        let count = usize::try_from(count)
            .ok()
            .filter(|c| *c >= 1)
            .ok_or_else(|| invalid(format!("maxMsgCountPerRead must be at least 1, got {count}")))?;
        let password = spec
            .password
            .as_ref()
            .map(|s| crate::resolve_secret(secrets, es_name, event_name, s))
            .transpose()?;
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
        let upstream = RedisStreamUpstream {
            event_source: es_name.to_owned(),
            event_name: event_name.clone(),
            group: spec
                .consumer_group
                .clone()
                .filter(|g| !g.is_empty())
                .unwrap_or_else(|| DEFAULT_GROUP.into()),
            consumer: format!("sluice-{es_name}-{event_name}"),
            count,
            spec: spec.clone(),
            client,
        };
        out.tasks
            .push(Box::new(Pull::new(es_name, event_name, upstream, ctx)));
    }
    Ok(())
}

/// One `redisStream` event: a consumer of a group over the streams.
pub struct RedisStreamUpstream {
    event_source: String,
    event_name: String,
    group: String,
    consumer: String,
    count: usize,
    spec: RedisStreamEventSource,
    client: redis::Client,
}

/// One stream entry: id and field/value pairs (RESP2 shape).
type Entry = (String, Vec<Vec<u8>>);
/// An XREADGROUP reply: per stream, its entries.
type ReadReply = Option<Vec<(String, Vec<Entry>)>>;

/// One entry and the stream it was read from.
pub struct StreamEntry {
    /// The stream's key.
    pub stream: String,
    /// The entry id (`<ms>-<seq>`).
    pub id: String,
    /// Field/value pairs, flattened as Redis sends them.
    pub fields: Vec<Vec<u8>>,
}

/// What a session reads next, in the order a (re)started consumer must read.
enum Phase {
    /// This consumer's own pending entries (a previous run died before XACK), past the last id
    /// read of each stream (`0` at first).
    Pending(Vec<String>),
    /// Entries left idle by any consumer of the group, stream by stream, from `start`.
    Claim { stream: usize, start: String },
    /// New entries (`>`).
    New,
}

/// A connection, the entries read but not yet handed out, and where reading stands.
pub struct Session {
    con: MultiplexedConnection,
    buffer: VecDeque<StreamEntry>,
    phase: Phase,
    /// When the last XAUTOCLAIM round started.
    last_claim: Instant,
}

/// The event id of entry `id` of `stream`: the same on every re-read, so the bus drops repeats.
pub fn event_id(event_source: &str, event_name: &str, stream: &str, id: &str) -> String {
    deterministic_id(&[SOURCE_TYPE, event_source, event_name, stream, id])
}

/// Upstream's event data of one entry: its fields as strings (invalid UTF-8 replaced; a field
/// without a value is left out), and the spec's metadata when set.
pub fn event_data(stream: &str, id: &str, fields: &[Vec<u8>], spec: &RedisStreamEventSource) -> Value {
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
    if let Some(m) = &spec.metadata {
        data["metadata"] = json!(m);
    }
    data
}

impl RedisStreamUpstream {
    /// XREADGROUP of `ids` (one per stream: a pending entry's id to read past, or `>`); new
    /// entries block up to [`BLOCK`].
    async fn read(
        &self,
        con: &mut MultiplexedConnection,
        ids: &[String],
    ) -> redis::RedisResult<Vec<StreamEntry>> {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&self.group)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(self.count);
        if ids.iter().any(|id| id == ">") {
            cmd.arg("BLOCK").arg(BLOCK.as_millis() as u64);
        }
        cmd.arg("STREAMS").arg(&self.spec.streams).arg(ids);
        let reply: ReadReply = cmd.query_async(con).await?;
        Ok(reply
            .unwrap_or_default()
            .into_iter()
            .flat_map(|(stream, entries)| {
                entries.into_iter().map(move |(id, fields)| StreamEntry {
                    stream: stream.clone(),
                    id,
                    fields,
                })
            })
            .collect())
    }

    /// One XAUTOCLAIM page of `stream` from `start`: the claimed entries and where the next page
    /// starts (`0-0` when the pending list was scanned to its end).
    async fn claim(
        &self,
        con: &mut MultiplexedConnection,
        stream: &str,
        start: &str,
    ) -> redis::RedisResult<(String, Vec<StreamEntry>)> {
        let (next, entries, _deleted): (String, Vec<Option<Entry>>, Vec<String>) = redis::cmd("XAUTOCLAIM")
            .arg(stream)
            .arg(&self.group)
            .arg(&self.consumer)
            .arg(CLAIM_MIN_IDLE.as_millis() as u64)
            .arg(start)
            .arg("COUNT")
            .arg(self.count)
            .query_async(con)
            .await?;
        let entries = entries
            .into_iter()
            .flatten()
            .map(|(id, fields)| {
                info!(eventsource = %self.event_source, event_name = %self.event_name, stream, entry = %id, "claimed an entry left pending by another consumer");
                StreamEntry {
                    stream: stream.to_owned(),
                    id,
                    fields,
                }
            })
            .collect();
        Ok((next, entries))
    }
}

#[async_trait]
impl Upstream for RedisStreamUpstream {
    type Session = Session;
    type Message = StreamEntry;

    fn kind(&self) -> &'static str {
        SOURCE_TYPE
    }

    /// Why retry in hand: the entry stays pending while the bus refuses and nothing else is read,
    /// so the stream's order holds; a consumer group has no nak to redeliver it sooner.
    fn retry(&self) -> Retry {
        Retry::UntilStored { first: FIRST_BACKOFF }
    }

    fn reconnect_message(&self) -> Option<&'static str> {
        Some("redis stream consumer failed; reconnecting")
    }

    /// Connects and creates the group on every stream where it is missing.
    async fn connect(&self, _: &Names) -> Result<Session, UpstreamError> {
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
                Err(e) => return Err(e.into()),
            }
        }
        info!(eventsource = %self.event_source, event_name = %self.event_name, group = %self.group, consumer = %self.consumer, "reading redis streams");
        Ok(Session {
            con,
            buffer: VecDeque::new(),
            phase: Phase::Pending(vec!["0".to_owned(); self.spec.streams.len()]),
            last_claim: Instant::now(),
        })
    }

    /// The next entry: this consumer's pending ones first, then a claim round over every stream,
    /// then new ones, with another claim round every [`CLAIM_MIN_IDLE`]. The session's state
    /// changes only after a command answered, so a dropped call loses nothing: an entry XREADGROUP
    /// delivered but never handed out stays pending and is re-read by the next session.
    async fn next(&self, session: &mut Session) -> Result<Option<StreamEntry>, UpstreamError> {
        loop {
            if let Some(entry) = session.buffer.pop_front() {
                return Ok(Some(entry));
            }
            match &mut session.phase {
                Phase::Pending(ids) => {
                    let entries = self.read(&mut session.con, ids).await?;
                    if entries.is_empty() {
                        session.last_claim = Instant::now();
                        session.phase = Phase::Claim {
                            stream: 0,
                            start: "0-0".into(),
                        };
                        continue;
                    }
                    // Why read past the last id (not from `0` again): an entry whose XACK failed
                    // is left to XAUTOCLAIM rather than re-read here forever.
                    for entry in &entries {
                        if let Some(i) = self.spec.streams.iter().position(|s| *s == entry.stream) {
                            ids[i].clone_from(&entry.id);
                        }
                    }
                    session.buffer.extend(entries);
                }
                Phase::Claim { stream, start } => {
                    let (next, entries) = self
                        .claim(&mut session.con, &self.spec.streams[*stream], start)
                        .await?;
                    session.buffer.extend(entries);
                    if next != "0-0" {
                        *start = next;
                    } else if *stream + 1 < self.spec.streams.len() {
                        *stream += 1;
                        *start = "0-0".into();
                    } else {
                        session.phase = Phase::New;
                    }
                }
                Phase::New if session.last_claim.elapsed() >= CLAIM_MIN_IDLE => {
                    session.last_claim = Instant::now();
                    session.phase = Phase::Claim {
                        stream: 0,
                        start: "0-0".into(),
                    };
                }
                Phase::New => {
                    let ids = vec![">".to_owned(); self.spec.streams.len()];
                    let entries = self.read(&mut session.con, &ids).await?;
                    session.buffer.extend(entries);
                }
            }
        }
    }

    fn decode(&self, entry: &StreamEntry) -> Result<Vec<Draft>, Malformed> {
        let data = event_data(&entry.stream, &entry.id, &entry.fields, &self.spec);
        let id = event_id(&self.event_source, &self.event_name, &entry.stream, &entry.id);
        Ok(vec![Draft::new(data).with_id(id)])
    }

    async fn settle(
        &self,
        session: &mut Session,
        entry: StreamEntry,
        settle: Settle,
    ) -> Result<(), UpstreamError> {
        match settle {
            // Why XACK now: the bus stored the event (or the filter dropped it on purpose), so the
            // group may forget the entry. A failed XACK leaves it pending: claimed again once idle
            // and deduped on the bus by its id.
            Settle::Ack => {}
            // Why XACK an entry that can never be stored (too large; logged and counted): left
            // pending it would be re-read forever.
            Settle::Term => {}
            // Why no XACK: the entry stays pending and is read again. Not reached: the bus is
            // retried in hand ([`Retry::UntilStored`]).
            Settle::Nak => return Ok(()),
        }
        let _: i64 = redis::cmd("XACK")
            .arg(&entry.stream)
            .arg(&self.group)
            .arg(&entry.id)
            .query_async(&mut session.con)
            .await?;
        Ok(())
    }

    fn locate(&self, entry: &StreamEntry) -> String {
        format!("stream {} entry {}", entry.stream, entry.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(metadata: bool) -> RedisStreamEventSource {
        RedisStreamEventSource {
            host_address: "127.0.0.1:6379".into(),
            streams: vec!["orders".into()],
            metadata: metadata.then(|| [("team".to_owned(), "billing".to_owned())].into()),
            ..Default::default()
        }
    }

    fn fields(pairs: &[&str]) -> Vec<Vec<u8>> {
        pairs.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    #[test]
    fn an_entry_becomes_upstreams_data_with_its_fields_as_strings() {
        assert_eq!(
            event_data(
                "orders",
                "1700000000000-0",
                &fields(&["message", "hello", "n", "1"]),
                &spec(true)
            ),
            json!({"stream": "orders", "message_id": "1700000000000-0",
                   "values": {"message": "hello", "n": "1"}, "metadata": {"team": "billing"}})
        );
        let odd = event_data("orders", "1-0", &fields(&["a", "1", "dangling"]), &spec(false));
        assert_eq!(
            odd["values"],
            json!({"a": "1"}),
            "a field without a value is left out"
        );
        assert!(odd.get("metadata").is_none(), "no metadata key without metadata");
        let binary = event_data("s", "1-0", &[b"k".to_vec(), vec![0xff, b'x']], &spec(false));
        assert_eq!(binary["values"]["k"], json!("\u{fffd}x"));
    }

    #[test]
    fn the_id_is_the_same_for_a_re_read_entry_and_differs_per_stream_entry_and_event() {
        let id = event_id("es", "ev", "orders", "1-0");
        assert_eq!(id, event_id("es", "ev", "orders", "1-0"));
        assert_ne!(id, event_id("es", "ev", "orders", "1-1"));
        assert_ne!(id, event_id("es", "ev", "refunds", "1-0"));
        assert_ne!(id, event_id("es", "other", "orders", "1-0"));
        assert_ne!(id, event_id("other", "ev", "orders", "1-0"));
    }
}
