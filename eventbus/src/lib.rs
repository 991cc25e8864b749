//! The event bus: the CloudEvents envelope every source publishes and every sensor consumes, the
//! [`Bus`] trait (publish → durable ack; subscribe → deliveries with ack / nak / term), and its
//! backends. `embedded` is in-process for `sluice run`; `jetstream` (its own issue) is for clusters.
//!
//! Delivery contract (ARCHITECTURE.md, "The flow of one event"): `publish` returns only once the
//! backend has stored the event, so a source may then acknowledge its sender; a delivery is
//! redelivered until the consumer acks or terms it.

pub mod embedded;
pub mod event;
pub mod jetstream;
pub mod readiness;
pub mod redact;
pub mod secrets;

use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;

pub use event::{Event, EventBuilder, EventError};

pub use embedded::{EmbeddedBus, EmbeddedConfig};
pub use event::deterministic_id;
pub use jetstream::{JetStreamBus, JetStreamConfig};
pub use redact::redact_url;

/// An error and its sources joined for a log line: "failed to X: failed to Y: reason". Shared by every
/// process (the bus crate is the one runtime crate all of them depend on).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Where an event goes on the bus: the EventSource's name and the event's name inside it.
/// On JetStream this becomes the subject `<stream>.<eventSourceName>.<eventName>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subject {
    /// `metadata.name` of the EventSource.
    pub event_source_name: String,
    /// The key of the event inside the EventSource spec (e.g. `example`).
    pub event_name: String,
}

impl Subject {
    /// A subject for `event_source_name` / `event_name`.
    pub fn new(event_source_name: impl Into<String>, event_name: impl Into<String>) -> Self {
        Self {
            event_source_name: event_source_name.into(),
            event_name: event_name.into(),
        }
    }
}

impl std::fmt::Display for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.event_source_name, self.event_name)
    }
}

/// What a backend says once it has stored an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishAck {
    /// Position of the event in the bus (stream sequence on JetStream, a counter when embedded).
    pub sequence: u64,
    /// True when the bus already held an event with this id (a redelivery from the sender); the
    /// event was not stored twice. The sender may be acknowledged all the same.
    pub duplicate: bool,
    /// True when the event was not published on purpose: the EventSource's `filter.expression`
    /// dropped it. Never set by a bus. The sender may be acknowledged (the drop is intended).
    pub filtered: bool,
}

impl PublishAck {
    /// The bus stored the event at `sequence` (`duplicate` when it already held one with its id).
    pub fn stored(sequence: u64, duplicate: bool) -> Self {
        Self {
            sequence,
            duplicate,
            filtered: false,
        }
    }

    /// The event was dropped by a source-side filter and never reached the bus.
    pub fn filtered() -> Self {
        Self {
            sequence: 0,
            duplicate: false,
            filtered: true,
        }
    }
}

/// Why a publish did not end in a durable ack. Every variant means "not stored": the caller must
/// not acknowledge its sender.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The bus is full or not accepting (backpressure); retry later.
    #[error("failed to publish: the bus is not accepting events right now")]
    Unavailable,
    /// The bus did not acknowledge in time; the event may or may not be stored.
    #[error("failed to publish: no acknowledgement within {0:?}")]
    Timeout(Duration),
    /// The bus has been shut down.
    #[error("failed to publish: the bus is closed")]
    Closed,
    /// The event could not be encoded.
    #[error("failed to encode the event")]
    Encode(#[source] EventError),
    /// The encoded event is bigger than the bus takes: permanent, retrying cannot help.
    #[error("failed to publish: the event is {size} bytes, more than the limit of {limit} bytes")]
    TooLarge {
        /// The encoded event's size in bytes.
        size: usize,
        /// The largest event the bus takes, in bytes.
        limit: usize,
    },
    /// A backend-specific failure.
    #[error("failed to publish to the bus")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Why a subscription could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    /// The bus has been shut down.
    #[error("failed to subscribe: the bus is closed")]
    Closed,
    /// A backend-specific failure.
    #[error("failed to subscribe to the bus")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Why an ack, nak or term did not reach the bus. The delivery will then be redelivered after its
/// ack wait, which is safe: consumers are idempotent by event id.
#[derive(Debug, thiserror::Error)]
pub enum AckError {
    /// The bus has been shut down.
    #[error("failed to acknowledge: the bus is closed")]
    Closed,
    /// A backend-specific failure.
    #[error("failed to acknowledge")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Which events a subscription receives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubjectFilter {
    /// Only events from this EventSource.
    pub event_source_name: String,
    /// Only events with this name.
    pub event_name: String,
}

impl SubjectFilter {
    /// True when `subject` passes the filter.
    pub fn matches(&self, subject: &Subject) -> bool {
        self.event_source_name == subject.event_source_name && self.event_name == subject.event_name
    }
}

/// Settings of a durable subscription.
#[derive(Clone, Debug)]
pub struct SubscribeOptions {
    /// How long a delivery may stay unacknowledged before the bus redelivers it.
    pub ack_wait: Duration,
    /// How many times an event is delivered before the bus gives up on it (0 = unlimited).
    pub max_deliver: u32,
    /// How many deliveries may be unacknowledged at once (backpressure on the consumer).
    pub max_ack_pending: usize,
    /// Start with events stored before the subscription existed (true), or only new ones.
    pub deliver_all: bool,
}

impl Default for SubscribeOptions {
    fn default() -> Self {
        Self {
            ack_wait: Duration::from_secs(30),
            max_deliver: 0,
            max_ack_pending: 256,
            deliver_all: false,
        }
    }
}

/// How a delivery is settled. Implemented by each backend; consumers use [`Delivery`]'s methods.
#[async_trait]
pub trait Acker: Send + Sync {
    /// Done: the bus forgets the event for this durable. May return before the bus applied it
    /// (JetStream without `confirm_acks`): a lost ack means one redelivery.
    async fn ack(&self) -> Result<(), AckError>;
    /// Done, and `Ok` only once the bus confirmed it applied the ack: for callers that must know
    /// the event will not come back (at-most-once). The default is [`ack`](Self::ack), for backends
    /// whose ack is applied when it returns.
    async fn ack_confirmed(&self) -> Result<(), AckError> {
        self.ack().await
    }
    /// Not done: redeliver after `delay`.
    async fn nak(&self, delay: Duration) -> Result<(), AckError>;
    /// Never deliver again (a poison message).
    async fn term(&self) -> Result<(), AckError>;
    /// Still working: restart the ack wait, so a long action is not redelivered to another consumer
    /// while it runs. The default does nothing (for backends without the notion).
    async fn progress(&self) -> Result<(), AckError> {
        Ok(())
    }
}

/// One event handed to a subscriber, to be settled exactly once with ack, nak or term.
pub struct Delivery {
    /// The event.
    pub event: Event,
    /// The subject it was published on.
    pub subject: Subject,
    /// 1 on first delivery, then 2, 3, … on redeliveries.
    pub attempt: u32,
    acker: Box<dyn Acker>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("id", &self.event.id())
            .field("subject", &self.subject)
            .field("attempt", &self.attempt)
            .finish()
    }
}

impl Delivery {
    /// A delivery settled through `acker` (for backends).
    pub fn new(event: Event, subject: Subject, attempt: u32, acker: Box<dyn Acker>) -> Self {
        Self {
            event,
            subject,
            attempt,
            acker,
        }
    }

    /// Done with this event. A lost ack means a redelivery (see [`Acker::ack`]).
    pub async fn ack(self) -> Result<(), AckError> {
        self.acker.ack().await
    }

    /// Done with this event; `Ok` only once the bus confirmed it will not redeliver it.
    pub async fn ack_confirmed(self) -> Result<(), AckError> {
        self.acker.ack_confirmed().await
    }

    /// Redeliver after `delay`.
    pub async fn nak(self, delay: Duration) -> Result<(), AckError> {
        self.acker.nak(delay).await
    }

    /// Never deliver again.
    pub async fn term(self) -> Result<(), AckError> {
        self.acker.term().await
    }

    /// Still working on it: restarts the ack wait (JetStream's in-progress ack). Call it at intervals
    /// shorter than the ack wait while an action runs, so the ack wait can stay short and a crashed
    /// consumer's events come back quickly.
    pub async fn progress(&self) -> Result<(), AckError> {
        self.acker.progress().await
    }
}

impl PublishError {
    /// [`PublishError::TooLarge`] when `size` (an encoded event's bytes) is over `limit`.
    pub fn check_size(size: usize, limit: usize) -> Result<(), PublishError> {
        if size > limit {
            return Err(PublishError::TooLarge { size, limit });
        }
        Ok(())
    }
}

/// The deliveries of one durable subscription. Ends when the bus closes.
pub type Deliveries = BoxStream<'static, Delivery>;

/// An event bus backend.
#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Stores `event` under `subject` and returns once it is durable. Dedupes on the event id within
    /// the bus's duplicate window. Many publishes may be in flight at once.
    async fn publish(&self, subject: &Subject, event: &Event) -> Result<PublishAck, PublishError>;

    /// [`publish`](Self::publish), refusing with [`PublishError::TooLarge`] (nothing sent) an event
    /// whose encoded form is over `max_bytes`. The default encodes once to measure and then
    /// publishes; a backend that encodes anyway (JetStream) overrides it to encode once.
    async fn publish_bounded(
        &self,
        subject: &Subject,
        event: &Event,
        max_bytes: usize,
    ) -> Result<PublishAck, PublishError> {
        PublishError::check_size(event.encoded_len().map_err(PublishError::Encode)?, max_bytes)?;
        self.publish(subject, event).await
    }

    /// Joins (or creates) the durable consumer `durable`. Several subscribers to the same durable share
    /// its events (each event goes to one of them), which is how sensor replicas scale out.
    async fn subscribe(
        &self,
        durable: &str,
        filter: SubjectFilter,
        options: SubscribeOptions,
    ) -> Result<Deliveries, SubscribeError>;

    /// Stops accepting publishes and ends every subscription once in-flight work settles.
    async fn close(&self);

    /// Whether the bus can take a publish now (connected to its server); `/readyz` asks it. An
    /// in-process bus always can.
    fn is_connected(&self) -> bool {
        true
    }
}
