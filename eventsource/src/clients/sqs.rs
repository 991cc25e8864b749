//! The SQS poller shared by the `sqs` and `s3` kinds: a [`QueuePoller`] long-polls a queue and
//! deletes a message once its [`MessageHandler`] says so.

use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::aws::{AwsClient, SqsMessage};

/// The longest wait between two failed SQS calls.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What to do with a received message once handled.
#[derive(Debug, PartialEq, Eq)]
pub enum Disposition {
    /// Its events are on the bus (or it carries none): delete it.
    Delete,
    /// Leave it: it becomes visible again after the visibility timeout (publish failed, or it goes
    /// to the dead-letter queue).
    Keep,
}

/// Handles one received message.
#[async_trait]
pub trait MessageHandler: Send + Sync {
    /// Publishes the message's events; says whether to delete it.
    async fn handle(&self, message: &SqsMessage, cancel: &CancellationToken) -> Disposition;
}

/// A queue to poll.
pub struct QueuePoller {
    /// For logs.
    pub event_source: String,
    /// For logs.
    pub event_name: String,
    /// The signing client.
    pub client: AwsClient,
    /// The SQS endpoint.
    pub endpoint: String,
    /// A queue name or URL.
    pub queue: String,
    /// The owning account, for `GetQueueUrl`.
    pub account_id: Option<String>,
    /// The long-poll wait in seconds.
    pub wait_seconds: i64,
    /// `<EventSource>/<event>` on the process's readiness: true after a successful receive, false
    /// while the queue cannot be looked up or received from.
    pub ready: crate::ReadyFlag,
}

impl QueuePoller {
    async fn backoff(&self, delay: &mut Duration, cancel: &CancellationToken) -> bool {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return false,
            _ = tokio::time::sleep(*delay) => {}
        }
        *delay = (*delay * 2).min(MAX_BACKOFF);
        true
    }

    /// Polls until cancelled, handing every message to `handler` and deleting it when told to.
    pub async fn run(&self, handler: &dyn MessageHandler, cancel: CancellationToken) {
        let mut delay = Duration::from_millis(500);
        let queue_url = loop {
            let attempt = tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                r = self.client.sqs_queue_url(&self.endpoint, &self.queue, self.account_id.as_deref()) => r,
            };
            match attempt {
                Ok(url) => break url,
                Err(error) => {
                    self.ready.set(false);
                    tracing::error!(eventsource = %self.event_source, event_name = %self.event_name, queue = %self.queue, error = %sluice_eventbus::error_chain(&error), retry_in_ms = delay.as_millis() as u64, "failed to look up the SQS queue");
                    if !self.backoff(&mut delay, &cancel).await {
                        return;
                    }
                }
            }
        };
        tracing::info!(eventsource = %self.event_source, event_name = %self.event_name, queue = %sluice_eventbus::redact_url(&queue_url), "polling SQS queue");
        delay = Duration::from_millis(500);
        loop {
            let received = tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                r = self.client.sqs_receive(&self.endpoint, &queue_url, self.wait_seconds) => r,
            };
            let messages = match received {
                Ok(m) => {
                    self.ready.set(true);
                    delay = Duration::from_millis(500);
                    m
                }
                Err(error) => {
                    self.ready.set(false);
                    tracing::error!(eventsource = %self.event_source, event_name = %self.event_name, queue = %sluice_eventbus::redact_url(&queue_url), error = %sluice_eventbus::error_chain(&error), retry_in_ms = delay.as_millis() as u64, "failed to receive from SQS");
                    if !self.backoff(&mut delay, &cancel).await {
                        return;
                    }
                    continue;
                }
            };
            for message in &messages {
                if cancel.is_cancelled() {
                    // Why no loss: the rest are undeleted and reappear after the visibility timeout.
                    return;
                }
                if handler.handle(message, &cancel).await == Disposition::Keep {
                    continue;
                }
                // Ack: the handler returned Delete only after the bus stored every event of the message.
                if let Err(error) = self
                    .client
                    .sqs_delete(&self.endpoint, &queue_url, &message.receipt_handle)
                    .await
                {
                    // Not a loss: the message comes back and is published again with the same id,
                    // which the bus dedupes.
                    tracing::warn!(eventsource = %self.event_source, event_name = %self.event_name, message_id = %message.message_id, error = %sluice_eventbus::error_chain(&error), "failed to delete a published SQS message; it will be redelivered");
                }
            }
        }
    }
}
