//! The NATS JetStream bus backend: [`JetStreamBus`], for clusters. Events survive process and
//! server restarts (file storage), sensors scale out by sharing durables.
//!
//! # Layout (ARCHITECTURE.md, "JetStream layout")
//! - One stream per EventBus, named by [`JetStreamConfig::stream`] (default `default`), with the
//!   subjects `<stream>.>`; it is created on connect if missing, with limits retention,
//!   discard-old, file storage and the [`StreamSettings`] given. An existing stream keeps its
//!   settings.
//! - An event of EventSource `es`, event name `ev` is published on `<stream>.<es>.<ev>`, names
//!   encoded into single subject tokens by the rule in [`names`] (`.`, `*`, `>`, spaces and any
//!   byte outside `A-Za-z0-9-_` become `%HH`), so any name is safe and recoverable
//!   ([`names::decode_subject`]). The payload is the event as structured CloudEvents JSON
//!   ([`Event::to_json`](crate::Event::to_json)); the header `Nats-Msg-Id` is the event id, so the
//!   server drops a re-publish of the same id within the duplicate window (reported as
//!   `PublishAck { duplicate: true }`).
//! - Each durable of [`Bus::subscribe`](crate::Bus::subscribe) is a durable *pull* consumer (name
//!   sanitized by [`names::durable_name`]) with explicit acks, filtering one subject. Every process
//!   subscribing to the same durable pulls from it, so each event goes to one of them: that is how
//!   sensor replicas scale out. A durable that already exists keeps its position and settings
//!   (`deliver_all`, `ack_wait`, … of later calls are ignored); its filter must match.
//!
//! # Delivery guarantee
//! At least once. [`Bus::publish`](crate::Bus::publish) returns `Ok` only after the server's
//! publish ack (the event is stored, replicated per the stream's replicas); every failure — server
//! down, timeout, no responders, closed — is an error, and the caller must not ack its sender.
//! A delivery is redelivered until it is acked or termed: after a nak (after its delay), after
//! `ack_wait` without a settle, after a crash. `max_deliver` ends redelivery (logged from the
//! server's advisory). A message that is not a valid event is logged and termed (poison), never
//! handed out. Events leave the stream unacked only by the stream's limits (max age, bytes, msgs).
//!
//! # Where acks happen
//! - Publish: the server's ack to `publish` is awaited inside `publish`; many publishes pipeline
//!   on the one connection (up to [`JetStreamConfig::max_publishes_in_flight`]; further callers
//!   wait for a slot, within [`JetStreamConfig::publish_timeout`], else `Unavailable`).
//! - Consume: `Delivery::ack` / `nak(delay)` / `term` reply on the message's ack subject, fire and
//!   forget by default (a lost ack is one redelivery, which consumers handle by event and firing
//!   id); with [`JetStreamConfig::confirm_acks`] they wait for the server's confirmation.
//!   `Delivery::ack_confirmed` always waits: the sensor's at-most-once mode uses it so it runs an
//!   action only once the server confirmed the event will not come back. The bus itself only terms
//!   poison messages.
//!
//! # Shutdown
//! [`Bus::close`](crate::Bus::close) refuses new publishes
//! ([`PublishError::Closed`](crate::PublishError::Closed)), ends every subscription stream, waits
//! for in-flight publish acks (bounded by `publish_timeout`) and flushes the connection. Deliveries
//! already handed out can still be acked afterwards.
//!
//! The connection is shared: [`JetStreamBus::context`] and [`JetStreamBus::client`] give it to
//! other JetStream users (the sensor's key-value trigger state).

mod bus;
mod config;
mod error;
mod exotic;
pub mod names;
mod subscription;

pub use bus::JetStreamBus;
pub use config::{
    JetStreamAuth, JetStreamConfig, JetStreamTls, StreamSettings, DEFAULT_DUPLICATE_WINDOW, DEFAULT_MAX_AGE,
    DEFAULT_MAX_BYTES, DEFAULT_MAX_MSGS, DEFAULT_MAX_PUBLISHES_IN_FLIGHT, DEFAULT_PUBLISH_TIMEOUT,
    DEFAULT_PULL_BATCH, DEFAULT_REQUEST_TIMEOUT, DEFAULT_STREAM,
};
pub use error::{ConnectError, JetStreamError};
pub use exotic::FromExoticError;
