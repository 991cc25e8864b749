//! Durable subscriptions: a pull consumer per durable, its messages as a stream of [`Delivery`],
//! and the acker that settles each one.
//!
//! The stream is driven by the subscriber's polls (no task of ours runs in the background; the
//! client's pull stream runs its own request loop and is stopped when dropped). It survives server
//! restarts: the client reconnects and re-issues its pull by itself; when the pull errors or ends
//! all the same (missed heartbeats, consumer deleted), the consumer is looked up again and the pull
//! restarted, with exponential backoff from 100 ms to 5 s, until it works or the bus closes.
//!
//! A durable found missing on such a restart (deleted by an operator, lost by the server) is
//! created again starting after the ack floor it had when this subscription last (re)started, so
//! no event it had not acked then is skipped; events acked since are delivered again (consumers
//! are idempotent by event id).

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::{self, AckKind};
use async_nats::{Client, Request};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt as _;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::bus::Inner;
use super::error::{chain, JetStreamError};
use super::names;
use crate::{AckError, Acker, Deliveries, Delivery, Event, Subject, SubjectFilter, SubscribeOptions};

/// How often the server sends idle heartbeats on a waiting pull; two missed ones restart the pull.
const HEARTBEAT: Duration = Duration::from_secs(5);
/// How long one pull request waits on the server before the client renews it.
const PULL_EXPIRES: Duration = Duration::from_secs(30);
/// First and longest wait between attempts to restart a failed pull.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Longest nak delay sent (the server reads it as i64 nanoseconds, ~292 years).
const MAX_NAK_DELAY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Creates (or joins) the durable and returns its deliveries.
pub(super) async fn subscribe(
    inner: &Arc<Inner>,
    durable: &str,
    filter: SubjectFilter,
    options: SubscribeOptions,
) -> Result<Deliveries, JetStreamError> {
    let invalid = |reason| {
        Err(JetStreamError::CreateDurable {
            durable: durable.to_owned(),
            reason,
        })
    };
    if options.max_ack_pending == 0 {
        return invalid("max_ack_pending must be at least 1");
    }
    if options.ack_wait.is_zero() {
        return invalid("ack_wait must be longer than zero");
    }
    let stream = inner.config.stream.clone();
    let name = names::durable_name(durable);
    let subject = Subject::new(filter.event_source_name, filter.event_name);
    let filter_subject = names::subject_for(&stream, &subject);
    let consumer_config = pull::Config {
        durable_name: Some(name.clone()),
        description: Some(format!("sluice durable {durable}")),
        filter_subject,
        ack_policy: AckPolicy::Explicit,
        ack_wait: options.ack_wait,
        // 0 is "unlimited" in our API, -1 in JetStream's.
        max_deliver: if options.max_deliver == 0 {
            -1
        } else {
            i64::from(options.max_deliver)
        },
        max_ack_pending: i64::try_from(options.max_ack_pending).unwrap_or(i64::MAX),
        deliver_policy: if options.deliver_all {
            DeliverPolicy::All
        } else {
            DeliverPolicy::New
        },
        ..pull::Config::default()
    };
    let batch = inner.config.pull_batch.min(options.max_ack_pending).max(1);
    let mut subscription = Subscription {
        context: inner.context.clone(),
        cancel: inner.cancel.clone(),
        stream_config: inner.stream_config.clone(),
        stream,
        subject,
        consumer_config,
        batch,
        messages: None,
        advisories: None,
        failures: 0,
        ack_floor: None,
        settle: Arc::new(SettleWith {
            client: inner.client.clone(),
            confirm: inner.config.confirm_acks,
            timeout: inner.config.request_timeout,
            durable: Arc::from(name.as_str()),
        }),
    };
    // The first attempt reports its error to the caller; later ones retry (see `restart`).
    let (messages, ack_floor) = subscription.start().await?;
    subscription.messages = Some(messages);
    subscription.ack_floor = Some(ack_floor);
    // Max-deliveries advisories, so an event the durable gives up on is logged, never silent.
    // Without them the subscription still works; only that log line is missing.
    let advisory_subject = format!(
        "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{}.{name}",
        subscription.stream
    );
    match inner.client.subscribe(advisory_subject).await {
        Ok(advisories) => subscription.advisories = Some(advisories),
        Err(err) => warn!(durable = %name, error = %err, "failed to subscribe to max-deliveries advisories"),
    }
    debug!(durable = %name, "subscribed");
    Ok(
        futures::stream::unfold(subscription, |mut subscription| async move {
            let delivery = subscription.next().await?;
            Some((delivery, subscription))
        })
        .boxed(),
    )
}

/// One subscriber of a durable.
struct Subscription {
    context: jetstream::Context,
    /// The bus's token: cancelled by `close`, which ends this stream.
    cancel: CancellationToken,
    /// The bus's stream, created again when it is gone (a NATS server without persistent storage
    /// restarted): without it the durable could never be made again.
    stream_config: jetstream::stream::Config,
    stream: String,
    /// Every delivery's subject: the filter is one exact subject.
    subject: Subject,
    consumer_config: pull::Config,
    batch: usize,
    /// The client's pull stream; `None` after it failed, until `restart` makes a new one.
    messages: Option<pull::Stream>,
    advisories: Option<async_nats::Subscriber>,
    /// Failed pulls since the last message, for the backoff.
    failures: u32,
    /// The durable's ack floor (stream sequence) when it was last (re)started; `None` before the
    /// first start.
    ack_floor: Option<u64>,
    settle: Arc<SettleWith>,
}

impl Subscription {
    fn durable(&self) -> &str {
        &self.settle.durable
    }

    /// Gets (or, if it is gone, creates) the consumer and starts pulling from it; also returns the
    /// consumer's ack floor.
    async fn start(&self) -> Result<(pull::Stream, u64), JetStreamError> {
        let durable = self.durable().to_owned();
        let create = |source| JetStreamError::CreateConsumer {
            stream: self.stream.clone(),
            durable: durable.clone(),
            source,
        };
        let mut stream = self
            .context
            .get_or_create_stream(self.stream_config.clone())
            .await
            .map_err(|err| {
                create(async_nats::jetstream::stream::ConsumerError::with_source(
                    async_nats::jetstream::stream::ConsumerErrorKind::Other,
                    err,
                ))
            })?;
        let last_sequence = stream
            .info()
            .await
            .map(|info| info.state.last_sequence)
            .map_err(|err| {
                create(async_nats::jetstream::stream::ConsumerError::with_source(
                    async_nats::jetstream::stream::ConsumerErrorKind::Other,
                    err,
                ))
            })?;
        let mut config = self.consumer_config.clone();
        match self.ack_floor {
            // The stream is younger than our floor: it was lost and made again, and its sequences
            // started over. Everything in it is new to us; starting after the old floor would skip
            // it all.
            Some(floor) if last_sequence < floor => {
                warn!(durable = %self.durable(), floor, last_sequence, "the stream was recreated; reading it from its start");
                config.deliver_policy = DeliverPolicy::All;
            }
            // Only used if the durable is gone: recreate it where it was, not at "new" (which
            // would skip what was published meanwhile) nor at "all" (the whole stream again).
            Some(floor) => {
                config.deliver_policy = DeliverPolicy::ByStartSequence {
                    start_sequence: floor.saturating_add(1),
                };
            }
            None => {}
        }
        let consumer: PullConsumer = stream
            .get_or_create_consumer(&durable, config)
            .await
            .map_err(create)?;
        let ack_floor = consumer.cached_info().ack_floor.stream_sequence;
        let existing = &consumer.cached_info().config;
        let requested = &self.consumer_config.filter_subject;
        let same_filter = if existing.filter_subjects.is_empty() {
            &existing.filter_subject == requested
        } else {
            existing.filter_subjects.len() == 1 && &existing.filter_subjects[0] == requested
        };
        if !same_filter {
            let existing = if existing.filter_subjects.is_empty() {
                existing.filter_subject.clone()
            } else {
                existing.filter_subjects.join(",")
            };
            return Err(JetStreamError::JoinDurable {
                durable,
                existing,
                requested: requested.clone(),
            });
        }
        consumer
            .stream()
            .max_messages_per_batch(self.batch)
            .heartbeat(HEARTBEAT)
            .expires(PULL_EXPIRES)
            .messages()
            .await
            .map(|messages| (messages, ack_floor))
            .map_err(|source| JetStreamError::StartPull { durable, source })
    }

    /// Restarts the pull after a failure, with backoff; false once the bus is closed.
    async fn restart(&mut self) -> bool {
        loop {
            if self.failures > 0 {
                let delay = BACKOFF_MIN
                    .saturating_mul(1 << self.failures.min(16))
                    .min(BACKOFF_MAX);
                tokio::select! {
                    biased;
                    () = self.cancel.cancelled() => return false,
                    () = tokio::time::sleep(delay) => {}
                }
            }
            self.failures = self.failures.saturating_add(1);
            let started = tokio::select! {
                biased;
                () = self.cancel.cancelled() => return false,
                started = self.start() => started,
            };
            match started {
                Ok((messages, ack_floor)) => {
                    info!(durable = %self.durable(), "resumed pulling");
                    self.messages = Some(messages);
                    self.ack_floor = Some(ack_floor);
                    return true;
                }
                Err(err) => warn!(
                    durable = %self.durable(),
                    attempt = self.failures,
                    error = %chain(&err),
                    "failed to restart pulling; retrying"
                ),
            }
        }
    }

    async fn next(&mut self) -> Option<Delivery> {
        loop {
            let Some(messages) = self.messages.as_mut() else {
                if !self.restart().await {
                    return None;
                }
                continue;
            };
            let advisories = &mut self.advisories;
            let item = tokio::select! {
                biased;
                // Why no loss: ending the stream settles nothing; what this subscriber pulled and
                // did not hand out is redelivered after ack_wait.
                () = self.cancel.cancelled() => return None,
                Some(advisory) = async {
                    match advisories {
                        Some(advisories) => advisories.next().await,
                        None => std::future::pending().await,
                    }
                } => {
                    log_max_deliveries(&self.settle.durable, &advisory.payload);
                    continue;
                }
                item = messages.next() => item,
            };
            match item {
                Some(Ok(message)) => {
                    self.failures = 0;
                    if let Some(delivery) = self.deliver(message).await {
                        return Some(delivery);
                    }
                }
                // Why no loss: messages pulled by the failed stream and not yet handed out are
                // redelivered after ack_wait; the durable keeps its position on the server.
                Some(Err(err)) => {
                    warn!(durable = %self.durable(), error = %chain(&err), "pulling failed; restarting");
                    self.messages = None;
                    self.failures = self.failures.max(1);
                }
                None => {
                    warn!(durable = %self.durable(), "the pull ended; restarting");
                    self.messages = None;
                    self.failures = self.failures.max(1);
                }
            }
        }
    }

    /// The delivery for `message`, or `None` when it was not an event (then it is terminated).
    async fn deliver(&self, message: jetstream::Message) -> Option<Delivery> {
        let (stream_sequence, delivered) = match message.info() {
            Ok(info) => (info.stream_sequence, info.delivered),
            Err(err) => {
                // Not a JetStream delivery (no ack subject to parse), so nothing to settle or lose;
                // the server only sends such messages on this inbox by mistake.
                warn!(
                    durable = %self.durable(),
                    error = %err,
                    "skipped a message without JetStream metadata"
                );
                return None;
            }
        };
        let message = message.message;
        // `info` parsed the reply subject, so it is there; `None` only keeps this total.
        let reply = message.reply?;
        let attempt = u32::try_from(delivered.max(1)).unwrap_or(u32::MAX);
        let acker = JetStreamAcker {
            settle: self.settle.clone(),
            reply,
            stream_sequence,
        };
        match Event::from_json(&message.payload) {
            Ok(event) => Some(Delivery::new(
                event,
                self.subject.clone(),
                attempt,
                Box::new(acker),
            )),
            Err(err) => {
                warn!(
                    durable = %self.durable(),
                    stream_sequence,
                    attempt,
                    error = %chain(&err),
                    "terminating a message that is not a valid event"
                );
                // Term, the poison-message rule: no redelivery can turn these bytes into an event,
                // and redelivering would hold a max_ack_pending slot for ever. The message stays in
                // the stream (inspect it by its sequence); only this durable stops delivering it.
                if let Err(err) = acker.term().await {
                    // Not lost either way: it comes back after ack_wait and is terminated then.
                    warn!(
                        durable = %self.durable(),
                        stream_sequence,
                        error = %chain(&err),
                        "failed to terminate the invalid message"
                    );
                }
                None
            }
        }
    }
}

/// The payload of `$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.*.*`.
#[derive(Deserialize)]
struct MaxDeliveries {
    stream_seq: u64,
    deliveries: u64,
}

fn log_max_deliveries(durable: &str, payload: &[u8]) {
    match serde_json::from_slice::<MaxDeliveries>(payload) {
        Ok(advisory) => warn!(
            durable,
            stream_sequence = advisory.stream_seq,
            max_deliver = advisory.deliveries,
            "dropped the event: delivered max_deliver times without an ack"
        ),
        Err(_) => warn!(
            durable,
            "dropped an event after max_deliver deliveries (unreadable advisory)"
        ),
    }
}

/// What every acker of one subscription shares.
struct SettleWith {
    client: Client,
    /// Wait for the server's confirmation (see `JetStreamConfig::confirm_acks`).
    confirm: bool,
    timeout: Duration,
    durable: Arc<str>,
}

/// Settles one delivery by replying on its ack subject. Dropped unsettled, it needs no clean-up:
/// the server redelivers the event after `ack_wait`, as for any unacked delivery.
struct JetStreamAcker {
    settle: Arc<SettleWith>,
    reply: async_nats::Subject,
    stream_sequence: u64,
}

impl JetStreamAcker {
    async fn send(&self, action: &'static str, kind: AckKind, confirm: bool) -> Result<(), AckError> {
        let settle = &self.settle;
        let payload: Bytes = kind.into();
        let result: Result<(), Box<dyn std::error::Error + Send + Sync>> = if confirm {
            // A request: the server answers once it has applied the ack ("double ack").
            settle
                .client
                .send_request(
                    self.reply.clone(),
                    Request::new().payload(payload).timeout(Some(settle.timeout)),
                )
                .await
                .map(drop)
                .map_err(Into::into)
        } else {
            settle
                .client
                .publish(self.reply.clone(), payload)
                .await
                .map_err(Into::into)
        };
        result.map_err(|source| {
            AckError::Backend(Box::new(JetStreamError::Settle {
                action,
                durable: settle.durable.to_string(),
                stream_sequence: self.stream_sequence,
                source,
            }))
        })
    }
}

#[async_trait]
impl Acker for JetStreamAcker {
    /// Done: the durable will not deliver this event again. If the ack is lost, the event comes
    /// back after ack_wait — safe, consumers are idempotent by event id.
    async fn ack(&self) -> Result<(), AckError> {
        self.send("ack", AckKind::Ack, self.settle.confirm).await
    }

    /// Done, confirmed by the server (a request/reply), whatever `confirm_acks` says.
    async fn ack_confirmed(&self) -> Result<(), AckError> {
        self.send("ack", AckKind::Ack, true).await
    }

    /// Not done: the server redelivers after `delay` (counting towards max_deliver).
    async fn nak(&self, delay: Duration) -> Result<(), AckError> {
        self.send(
            "nak",
            AckKind::Nak(Some(delay.min(MAX_NAK_DELAY))),
            self.settle.confirm,
        )
        .await
    }

    /// Poison: never delivered to this durable again; the event stays in the stream.
    async fn term(&self) -> Result<(), AckError> {
        self.send("term", AckKind::Term, self.settle.confirm).await
    }

    /// Still working: the server restarts this message's ack wait (JetStream's in-progress ack).
    /// Sent without waiting for a confirmation: a lost heartbeat costs at most an early redelivery,
    /// which the idempotency key makes harmless.
    async fn progress(&self) -> Result<(), AckError> {
        let payload: Bytes = AckKind::Progress.into();
        self.settle
            .client
            .publish(self.reply.clone(), payload)
            .await
            .map_err(|source| {
                AckError::Backend(Box::new(JetStreamError::Settle {
                    action: "progress",
                    durable: self.settle.durable.to_string(),
                    stream_sequence: self.stream_sequence,
                    source: Box::new(source),
                }))
            })
    }
}
