//! How adapters hand events over: an [`EventSender`] publishes and returns only once the bus has
//! stored the event. Adapters never talk to the bus directly, so a test double is a plain channel.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sluice_eventbus::{Bus, Event, PublishAck, PublishError, Subject};

/// Publishes events of one process's sources.
#[async_trait]
pub trait EventSender: Send + Sync + 'static {
    /// Publishes `event` on `subject`; `Ok` means the bus stored it (or already had it).
    async fn send(&self, subject: &Subject, event: &Event) -> Result<PublishAck, PublishError>;
}

/// The production sender: the bus, with a bound on how long one publish may take so a sender is
/// answered (503) rather than left hanging when the bus is unreachable.
#[derive(Clone)]
pub struct BusSender {
    bus: Arc<dyn Bus>,
    timeout: Duration,
}

impl BusSender {
    /// Publishes on `bus`, giving up on one publish after `timeout`.
    pub fn new(bus: Arc<dyn Bus>, timeout: Duration) -> Self {
        Self { bus, timeout }
    }
}

#[async_trait]
impl EventSender for BusSender {
    async fn send(&self, subject: &Subject, event: &Event) -> Result<PublishAck, PublishError> {
        match tokio::time::timeout(self.timeout, self.bus.publish(subject, event)).await {
            Ok(result) => result,
            // Why: the publish may still land; the sender is told to retry, and the retry dedupes on
            // the bus only when the event id is deterministic (a delivery id). Otherwise a duplicate is
            // possible, which is the at-least-once side of the trade.
            Err(_) => Err(PublishError::Timeout(self.timeout)),
        }
    }
}

/// Publishes `event` for a source whose upstream cannot redeliver (core NATS, Redis pub/sub, file
/// notifications): retries with doubling backoff (200 ms to 30 s) until the bus stored it, counting
/// `sent`/`sent_failed`. Returns `false` only when `cancel` fired first.
pub async fn publish_until_stored(
    sender: &dyn EventSender,
    subject: &Subject,
    event: &Event,
    metrics: &crate::metrics::SourceMetrics,
    labels: &crate::metrics::EventLabels,
    cancel: &tokio_util::sync::CancellationToken,
) -> bool {
    let mut wait = Duration::from_millis(200);
    loop {
        let sent = tokio::select! {
            biased;
            _ = cancel.cancelled() => return false,
            s = sender.send(subject, event) => s,
        };
        match sent {
            Ok(ack) => {
                if !ack.filtered {
                    metrics.sent.get_or_create(labels).inc();
                }
                tracing::debug!(eventsource = %subject.event_source_name, event_name = %subject.event_name, event = %event.id(), "published");
                return true;
            }
            Err(e) => {
                // Why retry in hand: the upstream cannot redeliver; giving up would lose the event.
                metrics.sent_failed.get_or_create(labels).inc();
                tracing::warn!(eventsource = %subject.event_source_name, event_name = %subject.event_name, event = %event.id(), error = %e, "bus did not take the event; retrying");
            }
        }
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return false,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = (wait * 2).min(Duration::from_secs(30));
    }
}
