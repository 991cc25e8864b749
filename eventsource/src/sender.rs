//! How adapters hand events over: an [`EventSender`] publishes and returns only once the bus has
//! stored the event. Adapters never talk to the bus directly, so a test double is a plain channel.
//!
//! Pull sources (brokers, watches, schedules; through the skeleton in [`crate::pull`]) and the push
//! route publish through one helper, [`publish`], so counting
//! `sent`/`sent_failed`, ignoring filtered acks and refusing oversized events live in one place:
//!
//! ```text
//! let publisher = Publisher { sender: &*self.sender, metrics: &self.metrics, labels: &labels, cancel: &cancel };
//! match publish(&publisher, &subject, &event, Retry::UntilStored { first: FIRST_BACKOFF }).await {
//!     Outcome::Stored(_) | Outcome::Filtered => { /* ack upstream: the bus has it, or the filter dropped it on purpose */ }
//!     Outcome::Rejected(_) => { /* settle upstream without redelivery: retrying cannot help (logged, counted) */ }
//!     Outcome::Refused(_) => { /* only with Retry::Once: nak upstream so it redelivers */ }
//!     Outcome::Cancelled => { /* stop; leave the message un-acked upstream */ }
//! }
//! ```
//!
//! - [`Retry::UntilStored`] for upstreams that cannot redeliver (core NATS, Redis pub/sub, file
//!   notifications, ticks, watches) or where the source keeps the message in hand (MQTT, Redis
//!   streams, Kafka offsets): doubling backoff from `first` to [`MAX_BACKOFF`].
//! - [`Retry::Once`] for upstreams that redeliver on a nak (AMQP, JetStream, SQS visibility): one
//!   attempt, a refusal comes back as [`Outcome::Refused`] for the caller to nak.
//!
//! Metrics (labels `eventsource_name`, `event_name`): `sent` and `processing_duration` (from the
//! call) when the bus stored the event; `sent_failed` and `processing_failed` on each refusal;
//! `rejected{reason}` and `processing_failed` on a rejection; nothing on a filtered ack (the filter
//! counts its own). Logs carry `eventsource`, `event_name` and `event` (the event id); a rejection
//! is an error line with the size and limit, never the payload.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sluice_eventbus::{Bus, Event, PublishAck, PublishError, Subject};
use tokio_util::sync::CancellationToken;

use crate::metrics::{EventLabels, RejectLabels, SourceMetrics};

/// NATS's default `max_payload` (1 MiB): the default bound on one encoded event. An event the bus
/// would refuse forever is refused by [`BusSender`] once, with its size.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 1024 * 1024;
/// The longest wait between two attempts of [`Retry::UntilStored`].
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The first wait of [`Retry::UntilStored`] for most sources.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(200);

/// Publishes events of one process's sources.
#[async_trait]
pub trait EventSender: Send + Sync + 'static {
    /// Publishes `event` on `subject`; `Ok` means the bus stored it (or already had it).
    async fn send(&self, subject: &Subject, event: &Event) -> Result<PublishAck, PublishError>;
}

/// The production sender: the bus, with a bound on how long one publish may take so a sender is
/// answered (503) rather than left hanging when the bus is unreachable, and a bound on the size of
/// one encoded event ([`DEFAULT_MAX_EVENT_BYTES`] unless set with
/// [`BusSender::with_max_event_bytes`]).
#[derive(Clone)]
pub struct BusSender {
    bus: Arc<dyn Bus>,
    timeout: Duration,
    max_event_bytes: usize,
}

impl BusSender {
    /// Publishes on `bus`, giving up on one publish after `timeout`.
    pub fn new(bus: Arc<dyn Bus>, timeout: Duration) -> Self {
        Self {
            bus,
            timeout,
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
        }
    }

    /// Refuses events whose encoded (CloudEvent JSON) size is above `limit` bytes with
    /// [`PublishError::TooLarge`]. Set it to the bus's `max_payload`.
    pub fn with_max_event_bytes(mut self, limit: usize) -> Self {
        self.max_event_bytes = limit;
        self
    }
}

#[async_trait]
impl EventSender for BusSender {
    async fn send(&self, subject: &Subject, event: &Event) -> Result<PublishAck, PublishError> {
        // Why refuse oversized events (TooLarge, before anything is sent): the bus would refuse it
        // on every retry, so a source retrying in hand would loop forever on this one message.
        let publish = self.bus.publish_bounded(subject, event, self.max_event_bytes);
        match tokio::time::timeout(self.timeout, publish).await {
            Ok(result) => result,
            // Why: the publish may still land; the sender is told to retry, and the retry dedupes on
            // the bus only when the event id is deterministic (a delivery id). Otherwise a duplicate is
            // possible, which is the at-least-once side of the trade.
            Err(_) => Err(PublishError::Timeout(self.timeout)),
        }
    }
}

/// What one source needs to publish: where, how to count, when to stop.
pub struct Publisher<'a> {
    /// The sender (the bus behind the EventSource's filter).
    pub sender: &'a dyn EventSender,
    /// Metric families.
    pub metrics: &'a SourceMetrics,
    /// This event's labels.
    pub labels: &'a EventLabels,
    /// Stops retrying.
    pub cancel: &'a CancellationToken,
}

/// How [`publish`] treats a refusal by the bus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// Retries in hand with doubling backoff from `first` to [`MAX_BACKOFF`] until the bus stored
    /// the event, the event is rejected, or the source is cancelled.
    UntilStored {
        /// The first wait.
        first: Duration,
    },
    /// One attempt; a refusal is returned as [`Outcome::Refused`] (the upstream redelivers on a nak).
    Once,
}

/// Why an event can never be stored, so retrying it is pointless.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// The encoded event is bigger than the bus takes.
    TooLarge {
        /// Encoded size in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },
}

impl Rejection {
    /// The `reason` label of `sluice_eventsource_events_rejected_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::TooLarge { .. } => "too_large",
        }
    }
}

/// What became of one event handed to [`publish`].
#[derive(Debug)]
pub enum Outcome {
    /// The bus stored the event (or already had it): the upstream may be acknowledged.
    Stored(PublishAck),
    /// The EventSource's `filter.expression` dropped it on purpose: acknowledge upstream all the same.
    Filtered,
    /// It can never be stored (logged and counted): settle upstream without redelivery.
    Rejected(Rejection),
    /// Only with [`Retry::Once`]: the bus did not take it this time; nak upstream.
    Refused(PublishError),
    /// `cancel` fired before the bus stored it: leave it un-acknowledged upstream.
    Cancelled,
}

impl Outcome {
    /// True when the upstream may forget the message: stored, filtered on purpose, or rejected for
    /// good (logged and counted). False when cancelled, or refused under [`Retry::Once`].
    pub fn settled(&self) -> bool {
        match self {
            Outcome::Stored(_) | Outcome::Filtered | Outcome::Rejected(_) => true,
            Outcome::Refused(_) | Outcome::Cancelled => false,
        }
    }
}

/// Publishes `event` on `subject` (see the module docs for retries, metrics and logs).
pub async fn publish(p: &Publisher<'_>, subject: &Subject, event: &Event, retry: Retry) -> Outcome {
    let started = tokio::time::Instant::now();
    let mut wait = match retry {
        Retry::UntilStored { first } => first,
        Retry::Once => Duration::ZERO,
    };
    loop {
        let sent = tokio::select! {
            biased;
            _ = p.cancel.cancelled() => return Outcome::Cancelled,
            s = p.sender.send(subject, event) => s,
        };
        let error = match sent {
            Ok(ack) if ack.filtered => {
                tracing::debug!(eventsource = %subject.event_source_name, event_name = %subject.event_name, event = %event.id(), "filtered out");
                return Outcome::Filtered;
            }
            Ok(ack) => {
                p.metrics.sent.get_or_create(p.labels).inc();
                p.metrics
                    .processing_duration
                    .get_or_create(p.labels)
                    .observe(started.elapsed().as_secs_f64() * 1000.0);
                tracing::debug!(eventsource = %subject.event_source_name, event_name = %subject.event_name, event = %event.id(), duplicate = ack.duplicate, "published");
                return Outcome::Stored(ack);
            }
            Err(PublishError::TooLarge { size, limit }) => {
                let rejection = Rejection::TooLarge { size, limit };
                p.metrics.processing_failed.get_or_create(p.labels).inc();
                p.metrics
                    .rejected
                    .get_or_create(&RejectLabels {
                        eventsource_name: p.labels.eventsource_name.clone(),
                        event_name: p.labels.event_name.clone(),
                        reason: rejection.reason().into(),
                    })
                    .inc();
                // Why the payload is not logged: it may hold anything (secrets, personal data) and
                // is at least a mebibyte.
                tracing::error!(eventsource = %subject.event_source_name, event_name = %subject.event_name, event = %event.id(), size, limit, "rejected an event bigger than the bus takes; it is dropped");
                return Outcome::Rejected(rejection);
            }
            Err(e) => e,
        };
        p.metrics.sent_failed.get_or_create(p.labels).inc();
        p.metrics.processing_failed.get_or_create(p.labels).inc();
        if retry == Retry::Once {
            tracing::warn!(eventsource = %subject.event_source_name, event_name = %subject.event_name, event = %event.id(), error = %error, "bus did not take the event; it is left to the upstream to redeliver");
            return Outcome::Refused(error);
        }
        // Why retry in hand: the upstream cannot redeliver (or the source holds the message un-acked
        // and reads nothing else meanwhile); giving up would lose the event.
        tracing::warn!(eventsource = %subject.event_source_name, event_name = %subject.event_name, event = %event.id(), error = %error, retry_in = ?wait, "bus did not take the event; retrying");
        tokio::select! {
            biased;
            _ = p.cancel.cancelled() => return Outcome::Cancelled,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = (wait * 2).min(MAX_BACKOFF);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use sluice_eventbus::EventBuilder;

    use super::*;

    /// Answers each send with the next scripted result (the last one repeats).
    struct Scripted(Mutex<Vec<Result<PublishAck, PublishError>>>);

    impl Scripted {
        fn new(answers: Vec<Result<PublishAck, PublishError>>) -> Self {
            Self(Mutex::new(answers))
        }
    }

    #[async_trait]
    impl EventSender for Scripted {
        async fn send(&self, _: &Subject, _: &Event) -> Result<PublishAck, PublishError> {
            let mut answers = self.0.lock().map_err(|_| PublishError::Closed)?;
            if answers.len() > 1 {
                answers.remove(0)
            } else {
                match answers.first() {
                    Some(Ok(ack)) => Ok(ack.clone()),
                    Some(Err(PublishError::TooLarge { size, limit })) => Err(PublishError::TooLarge {
                        size: *size,
                        limit: *limit,
                    }),
                    _ => Err(PublishError::Unavailable),
                }
            }
        }
    }

    fn event() -> Event {
        EventBuilder::new("es", "ev", "test")
            .data_json(serde_json::json!({"a": 1}))
            .build()
            .expect("a test event with JSON data builds")
    }

    async fn run(sender: Scripted, retry: Retry, cancel: &CancellationToken) -> (Outcome, SourceMetrics) {
        let metrics = SourceMetrics::default();
        let labels = SourceMetrics::labels("es", "ev");
        let p = Publisher {
            sender: &sender,
            metrics: &metrics,
            labels: &labels,
            cancel,
        };
        let outcome = publish(&p, &Subject::new("es", "ev"), &event(), retry).await;
        (outcome, metrics)
    }

    fn count(metrics: &SourceMetrics) -> (u64, u64, u64, u64) {
        let labels = SourceMetrics::labels("es", "ev");
        let rejected = metrics
            .rejected
            .get_or_create(&RejectLabels {
                eventsource_name: "es".into(),
                event_name: "ev".into(),
                reason: "too_large".into(),
            })
            .get();
        (
            metrics.sent.get_or_create(&labels).get(),
            metrics.sent_failed.get_or_create(&labels).get(),
            metrics.processing_failed.get_or_create(&labels).get(),
            rejected,
        )
    }

    const UNTIL_STORED: Retry = Retry::UntilStored { first: FIRST_BACKOFF };

    #[tokio::test(start_paused = true)]
    async fn retries_until_stored_counting_each_refusal() {
        let sender = Scripted::new(vec![
            Err(PublishError::Unavailable),
            Err(PublishError::Unavailable),
            Ok(PublishAck::stored(7, false)),
        ]);
        let (outcome, metrics) = run(sender, UNTIL_STORED, &CancellationToken::new()).await;
        assert!(matches!(outcome, Outcome::Stored(ack) if ack.sequence == 7));
        assert_eq!(count(&metrics), (1, 2, 2, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_filtered_ack_settles_without_counting_sent() {
        let sender = Scripted::new(vec![Ok(PublishAck::filtered())]);
        let (outcome, metrics) = run(sender, UNTIL_STORED, &CancellationToken::new()).await;
        assert!(matches!(outcome, Outcome::Filtered));
        assert!(outcome.settled());
        assert_eq!(count(&metrics), (0, 0, 0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_too_large_event_is_rejected_once_not_retried() {
        let sender = Scripted::new(vec![Err(PublishError::TooLarge {
            size: 2_000_000,
            limit: DEFAULT_MAX_EVENT_BYTES,
        })]);
        let (outcome, metrics) = run(sender, UNTIL_STORED, &CancellationToken::new()).await;
        assert!(matches!(
            outcome,
            Outcome::Rejected(Rejection::TooLarge {
                size: 2_000_000,
                limit: DEFAULT_MAX_EVENT_BYTES
            })
        ));
        assert!(outcome.settled());
        assert_eq!(count(&metrics), (0, 0, 1, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn once_returns_the_refusal_for_the_caller_to_nak() {
        let sender = Scripted::new(vec![Err(PublishError::Unavailable)]);
        let (outcome, metrics) = run(sender, Retry::Once, &CancellationToken::new()).await;
        assert!(matches!(outcome, Outcome::Refused(PublishError::Unavailable)));
        assert!(!outcome.settled());
        assert_eq!(count(&metrics), (0, 1, 1, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn cancelling_stops_the_retries() {
        let cancel = CancellationToken::new();
        let stopper = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            stopper.cancel();
        });
        let sender = Scripted::new(vec![Err(PublishError::Unavailable)]);
        let (outcome, metrics) = run(sender, UNTIL_STORED, &cancel).await;
        assert!(matches!(outcome, Outcome::Cancelled));
        assert!(!outcome.settled());
        assert!(count(&metrics).1 >= 2, "retried before the cancel");
    }

    #[tokio::test]
    async fn the_bus_sender_refuses_an_event_above_its_limit_with_its_size() {
        let bus = Arc::new(sluice_eventbus::embedded::EmbeddedBus::new(Default::default()));
        let small = BusSender::new(bus.clone(), Duration::from_secs(5)).with_max_event_bytes(10);
        let e = event();
        let size = e.to_json().map(|j| j.len()).unwrap_or_default();
        let refused = small.send(&Subject::new("es", "ev"), &e).await;
        assert!(
            matches!(refused, Err(PublishError::TooLarge { size: s, limit: 10 }) if s == size),
            "{refused:?}"
        );
        let default = BusSender::new(bus, Duration::from_secs(5));
        assert!(default.send(&Subject::new("es", "ev"), &e).await.is_ok());
    }
}
