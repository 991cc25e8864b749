//! [`JetStreamBus`]: connecting, publishing, closing. Subscriptions are in `subscription.rs`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::header::{HeaderMap, HeaderValue, NATS_MESSAGE_ID};
use async_nats::jetstream::context::{ContextBuilder, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{self, DiscardPolicy, RetentionPolicy, StorageType};
use async_nats::jetstream::Context;
use async_nats::{Client, ConnectOptions};
use async_trait::async_trait;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::config::{JetStreamAuth, JetStreamConfig};
use super::error::{ConnectError, JetStreamError};
use super::names;
use super::subscription;
use crate::redact::redact_url;
use crate::{
    deterministic_id, Bus, Deliveries, Event, PublishAck, PublishError, Subject, SubjectFilter,
    SubscribeError, SubscribeOptions,
};

/// The NATS JetStream bus. Cheap to clone; clones share one connection.
#[derive(Clone)]
pub struct JetStreamBus {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for JetStreamBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamBus")
            .field("stream", &self.inner.config.stream)
            .field("urls", &self.inner.shown_urls)
            .finish_non_exhaustive()
    }
}

pub(super) struct Inner {
    pub(super) config: JetStreamConfig,
    /// The URLs without user info, for messages.
    shown_urls: String,
    pub(super) client: Client,
    pub(super) context: Context,
    /// Set by `close`: publishes and subscribes are refused from then on.
    closed: AtomicBool,
    /// Cancelled by `close`; every subscription stream selects on it.
    pub(super) cancel: CancellationToken,
    /// One permit per publish waiting for its ack; `close` takes them all to wait for in-flight
    /// publishes.
    in_flight: Semaphore,
    /// `max_publishes_in_flight`, as the permit count `close` takes.
    permits: u32,
    /// The stream's settings, to create it again when it is gone.
    pub(super) stream_config: stream::Config,
    /// When the stream was last looked for after a publish found it missing: one try a second,
    /// however many publishes fail meanwhile.
    stream_checked: tokio::sync::Mutex<Option<tokio::time::Instant>>,
}

impl JetStreamBus {
    /// Connects to the server(s) of `config` and gets or creates the stream `<stream>` with the
    /// subjects `<stream>.>`. An existing stream keeps its settings (limits, replicas, duplicate
    /// window); it is not updated. After this returns, the client reconnects by itself whenever
    /// the connection drops, for ever.
    pub async fn connect(config: JetStreamConfig) -> Result<Self, ConnectError> {
        let invalid = |field, reason| Err(ConnectError::InvalidConfig { field, reason });
        if let Err(reason) = names::check_stream_name(&config.stream) {
            return invalid("stream", reason);
        }
        if config.urls.is_empty() {
            return invalid("urls", "must name at least one server");
        }
        if config.max_publishes_in_flight == 0 {
            return invalid("max_publishes_in_flight", "must be at least 1");
        }
        if config.pull_batch == 0 {
            return invalid("pull_batch", "must be at least 1");
        }
        if config.publish_timeout.is_zero() {
            return invalid("publish_timeout", "must be longer than zero");
        }
        if config.request_timeout.is_zero() {
            return invalid("request_timeout", "must be longer than zero");
        }
        let shown_urls = config
            .urls
            .iter()
            .map(|url| redact_url(url))
            .collect::<Vec<_>>()
            .join(",");

        let options = connect_options(&config).await?;
        let client =
            options
                .connect(config.urls.as_slice())
                .await
                .map_err(|source| ConnectError::ConnectServer {
                    url: shown_urls.clone(),
                    source,
                })?;
        // The context's own in-flight bound is ours too, with backpressure, so it never fails a
        // publish that got past our semaphore; its timeout bounds API requests and confirmed acks.
        let context = ContextBuilder::new()
            .timeout(config.request_timeout)
            .ack_timeout(config.publish_timeout)
            .max_ack_inflight(config.max_publishes_in_flight)
            .backpressure_on_inflight(true)
            .build(client.clone());

        let stream_config = stream_config(&config);
        let stream = context
            .get_or_create_stream(stream_config.clone())
            .await
            .map_err(|source| ConnectError::CreateStream {
                stream: config.stream.clone(),
                source,
            })?;
        let wanted = format!("{}.>", config.stream);
        let subjects = &stream.cached_info().config.subjects;
        if !subjects.iter().any(|s| s == &wanted) {
            // An existing stream made by someone else: it still works if its subjects cover ours
            // (upstream's `<stream>.*.*` does, since our tokens never contain `.`).
            warn!(
                stream = %config.stream,
                ?subjects,
                expected = %wanted,
                "the existing stream has other subjects; publishes outside them will fail"
            );
        }
        info!(stream = %config.stream, urls = %shown_urls, "connected to JetStream");

        let permits = u32::try_from(config.max_publishes_in_flight)
            .unwrap_or(u32::MAX)
            .min(u32::try_from(Semaphore::MAX_PERMITS).unwrap_or(u32::MAX));
        Ok(Self {
            inner: Arc::new(Inner {
                shown_urls,
                client,
                context,
                closed: AtomicBool::new(false),
                cancel: CancellationToken::new(),
                in_flight: Semaphore::new(permits as usize),
                permits,
                config,
                stream_config,
                stream_checked: tokio::sync::Mutex::new(None),
            }),
        })
    }

    /// The JetStream context on this bus's connection (for key-value buckets and the like). Its
    /// API requests time out after `request_timeout`.
    pub fn context(&self) -> &Context {
        &self.inner.context
    }

    /// The NATS client of this bus's connection.
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// The settings the bus was connected with.
    pub fn config(&self) -> &JetStreamConfig {
        &self.inner.config
    }

    /// The NATS subject events of `subject` are published on.
    pub fn nats_subject(&self, subject: &Subject) -> String {
        names::subject_for(&self.inner.config.stream, subject)
    }

    /// Gets or creates the stream after a publish found no stream, at most once a second.
    async fn recreate_stream(&self) {
        let mut checked = self.inner.stream_checked.lock().await;
        let now = tokio::time::Instant::now();
        if checked.is_some_and(|at| now.duration_since(at) < STREAM_CHECK_INTERVAL) {
            return;
        }
        *checked = Some(now);
        let stream = &self.inner.config.stream;
        // `get_stream` asks the server (`get_stream_no_info` would not).
        match self.inner.context.get_stream(stream).await {
            // Still there (no responders while JetStream was starting, say): nothing to do.
            Ok(_) => {}
            Err(_) => match self
                .inner
                .context
                .get_or_create_stream(self.inner.stream_config.clone())
                .await
            {
                Ok(_) => {
                    warn!(stream = %stream, "the stream was gone (a server restarted without its store?); created it again")
                }
                Err(error) => {
                    debug!(stream = %stream, error = %error, "failed to create the stream again; retrying on a later publish")
                }
            },
        }
    }

    async fn publish_acked(
        &self,
        nats_subject: String,
        payload: Vec<u8>,
        event: &Event,
        deadline: tokio::time::Instant,
    ) -> Result<PublishAck, PublishError> {
        let mut headers = HeaderMap::new();
        headers.insert(NATS_MESSAGE_ID, msg_id(event.id()));
        let message = PublishMessage::build().payload(payload.into()).headers(headers);
        let timeout = self.inner.config.publish_timeout;
        let sent = async {
            // Two stages: hand the message to the connection, then await the server's ack. Many
            // callers pipeline here — nothing is held across the wait but our permit.
            let ack = self
                .inner
                .context
                .send_publish(nats_subject.clone(), message)
                .await?;
            ack.await
        };
        match tokio::time::timeout_at(deadline, sent).await {
            Ok(Ok(ack)) => Ok(PublishAck::stored(ack.sequence, ack.duplicate)),
            // Why no loss in any error below: the caller hears "not stored" and must not ack its
            // sender, who retries; a retry that races a late store is deduped by Nats-Msg-Id.
            Err(_elapsed) => Err(PublishError::Timeout(timeout)),
            Ok(Err(err)) => Err(match err.kind() {
                PublishErrorKind::TimedOut => PublishError::Timeout(timeout),
                // No responders (stream gone or JetStream not ready), connection lost, too many
                // acks pending: the bus is not accepting right now.
                PublishErrorKind::StreamNotFound => {
                    debug!(subject = %nats_subject, error = %err, "publish not accepted");
                    // A server without persistent storage that restarted has no stream: make it
                    // again, or every later publish is refused too. This one is still refused
                    // (its sender retries).
                    self.recreate_stream().await;
                    PublishError::Unavailable
                }
                PublishErrorKind::BrokenPipe | PublishErrorKind::MaxAckPending => {
                    debug!(subject = %nats_subject, error = %err, "publish not accepted");
                    PublishError::Unavailable
                }
                PublishErrorKind::MaxPayloadExceeded
                | PublishErrorKind::WrongLastMessageId
                | PublishErrorKind::WrongLastSequence
                | PublishErrorKind::Other => PublishError::Backend(Box::new(JetStreamError::Publish {
                    subject: nats_subject,
                    source: err,
                })),
            }),
        }
    }
}

/// The `Nats-Msg-Id` for an event id: the id itself, or — when it cannot be a header value (CR or
/// LF) — a UUID v5 of it, so the same event still dedupes.
fn msg_id(event_id: &str) -> HeaderValue {
    event_id
        .parse::<HeaderValue>()
        .or_else(|_| deterministic_id(&["nats-msg-id", event_id]).parse())
        // A UUID has no CR or LF; this branch only keeps the function total.
        .unwrap_or_default()
}

async fn connect_options(config: &JetStreamConfig) -> Result<ConnectOptions, ConnectError> {
    let mut options = match &config.auth {
        JetStreamAuth::None => ConnectOptions::new(),
        JetStreamAuth::Token(token) => ConnectOptions::with_token(token.clone()),
        JetStreamAuth::UserPassword { user, password } => {
            ConnectOptions::with_user_and_password(user.clone(), password.clone())
        }
        JetStreamAuth::NKeySeed(seed) => ConnectOptions::with_nkey(seed.clone()),
        JetStreamAuth::CredsFile(path) => {
            ConnectOptions::with_credentials_file(path)
                .await
                .map_err(|source| ConnectError::ReadCredentials {
                    path: path.clone(),
                    source,
                })?
        }
    };
    if let Some(tls) = &config.tls {
        if let Some(ca) = &tls.ca_file {
            options = options.add_root_certificates(ca.clone());
        }
        if let (Some(cert), Some(key)) = (&tls.client_cert_file, &tls.client_key_file) {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        // Any TLS file means the user wants TLS: never fall back to plain text.
        let files = tls.ca_file.is_some() || tls.client_cert_file.is_some();
        options = options.require_tls(tls.tls_required || files);
    }
    Ok(options
        .name(&config.connection_name)
        .connection_timeout(config.request_timeout)
        .request_timeout(Some(config.request_timeout))
        // Reconnect for ever (async-nats's default, said out loud): a bus that gives up would
        // need a process restart to recover from a server outage.
        .max_reconnects(None)
        .event_callback(|event| async move {
            // Connection events carry no credentials (auth errors are the server's text).
            match event {
                async_nats::Event::Connected => info!("connected to NATS"),
                async_nats::Event::Disconnected => warn!("disconnected from NATS; reconnecting"),
                async_nats::Event::Closed => info!("the NATS connection is closed"),
                // One per failed reconnect attempt (up to every 4 s during an outage): the
                // `disconnected` warning already said it.
                async_nats::Event::ClientError(err) => debug!(error = %err, "NATS client error"),
                other => warn!(event = %other, "NATS connection event"),
            }
        }))
}

/// How often a publish that found no stream may look for it again.
const STREAM_CHECK_INTERVAL: Duration = Duration::from_secs(1);

fn stream_config(config: &JetStreamConfig) -> stream::Config {
    let settings = &config.stream_settings;
    let limit = |value: Option<u64>| value.and_then(|v| i64::try_from(v).ok()).unwrap_or(-1);
    stream::Config {
        name: config.stream.clone(),
        subjects: vec![format!("{}.>", config.stream)],
        // Limits retention, discard old: events are kept for every durable, created now or later
        // (a sensor started after its EventSource still finds them with deliver_all). This is the
        // one place events leave the bus without an ack: past max_age, or pushed out by
        // max_msgs/max_bytes — the operator sizes those limits.
        retention: RetentionPolicy::Limits,
        discard: DiscardPolicy::Old,
        storage: StorageType::File,
        max_age: settings.max_age.unwrap_or(Duration::ZERO),
        max_bytes: limit(settings.max_bytes),
        max_messages: limit(settings.max_msgs),
        num_replicas: settings.replicas.max(1),
        duplicate_window: settings.duplicate_window,
        ..stream::Config::default()
    }
}

#[async_trait]
impl Bus for JetStreamBus {
    /// Returns only once the server acked the store, and answers within `publish_timeout` all
    /// told. While all `max_publishes_in_flight` slots are taken it waits for one; if the deadline
    /// passes before one frees, the answer is [`PublishError::Unavailable`] (nothing was sent). If
    /// it passes while waiting for the server's ack, [`PublishError::Timeout`]: the event may or
    /// may not be stored, and a retry with the same id is deduped within the duplicate window.
    async fn publish(&self, subject: &Subject, event: &Event) -> Result<PublishAck, PublishError> {
        self.publish_bounded(subject, event, usize::MAX).await
    }

    /// Encodes the event once, for the size check and the message.
    async fn publish_bounded(
        &self,
        subject: &Subject,
        event: &Event,
        max_bytes: usize,
    ) -> Result<PublishAck, PublishError> {
        let payload = event.to_json().map_err(PublishError::Encode)?;
        // Why refuse before sending: the server would refuse it on every retry.
        PublishError::check_size(payload.len(), max_bytes)?;
        let inner = &self.inner;
        if inner.closed.load(Ordering::Acquire) {
            return Err(PublishError::Closed);
        }
        // One deadline for the whole publish: waiting for a slot, sending, and the server's ack.
        let deadline = tokio::time::Instant::now() + inner.config.publish_timeout;
        let permit = match tokio::time::timeout_at(deadline, inner.in_flight.acquire()).await {
            Ok(Ok(permit)) => permit,
            // The semaphore is closed only by `close`.
            Ok(Err(_closed)) => return Err(PublishError::Closed),
            // Why no loss: nothing was sent; the caller must not ack its sender.
            Err(_elapsed) => return Err(PublishError::Unavailable),
        };
        // `close` may have started while we waited for the permit: it must not see new publishes.
        if inner.closed.load(Ordering::Acquire) {
            return Err(PublishError::Closed);
        }
        // Fail fast while disconnected: the client would buffer the message and send it on reconnect,
        // so the sender would wait the whole timeout for a 503 — and the event might land after it
        // was refused. Why no loss: nothing was sent; the caller answers 503 and the sender retries.
        if inner.client.connection_state() != async_nats::connection::State::Connected {
            return Err(PublishError::Unavailable);
        }
        let result = self
            .publish_acked(self.nats_subject(subject), payload, event, deadline)
            .await;
        drop(permit);
        result
    }

    fn is_connected(&self) -> bool {
        !self.inner.closed.load(Ordering::Acquire)
            && self.inner.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Gets or creates the durable pull consumer `durable` (its name sanitized, see
    /// [`names::durable_name`]) filtering `<stream>.<eventSourceName>.<eventName>`. An existing
    /// durable keeps its position and settings (ack wait, max deliver, …); only its filter must
    /// match.
    async fn subscribe(
        &self,
        durable: &str,
        filter: SubjectFilter,
        options: SubscribeOptions,
    ) -> Result<Deliveries, SubscribeError> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(SubscribeError::Closed);
        }
        subscription::subscribe(&self.inner, durable, filter, options)
            .await
            .map_err(|err| SubscribeError::Backend(Box::new(err)))
    }

    /// Refuses new publishes and subscriptions, ends every subscription stream, waits (up to
    /// `publish_timeout`) for the acks of publishes in flight, and flushes the connection so acks
    /// already sent by subscribers reach the server. The connection stays open: deliveries still
    /// held can be acked after `close`, and [`context`](Self::context) users keep working.
    async fn close(&self) {
        let inner = &self.inner;
        if !inner.closed.swap(true, Ordering::AcqRel) {
            info!(stream = %inner.config.stream, "closing the JetStream bus");
        }
        // Why no loss: ending the streams takes nothing from the server; unacked deliveries are
        // redelivered after their ack wait, to this process or another replica.
        inner.cancel.cancel();
        let timeout = inner.config.publish_timeout;
        match tokio::time::timeout(timeout, inner.in_flight.acquire_many(inner.permits)).await {
            Ok(Ok(permits)) => drop(permits),
            // Another `close` got there first.
            Ok(Err(_closed)) => {}
            // Their callers get Timeout themselves; nothing more to wait for here.
            Err(_elapsed) => warn!(
                stream = %inner.config.stream,
                "closed with publishes still waiting for their ack"
            ),
        }
        inner.in_flight.close();
        match tokio::time::timeout(timeout, inner.client.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => warn!(error = %err, "failed to flush the NATS connection on close"),
            Err(_elapsed) => warn!("failed to flush the NATS connection on close: timed out"),
        }
    }
}
