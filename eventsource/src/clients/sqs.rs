//! The SQS queue shared by the `sqs` and `s3` (notifications mode) kinds, as one pull source
//! ([`crate::pull`]): [`QueueUpstream`] looks the queue up and receives a first batch (connect),
//! hands out the batch one message at a time and long-polls for the next one (next), and tells SQS
//! what became of each message (settle). The kinds differ only in what a message's events are
//! (their [`Decode`]).
//!
//! Settling: `Ack` deletes the message (its events are on the bus, or it carries none); `Nak`
//! leaves it, so SQS makes it visible again after the queue's visibility timeout and it is
//! received and published again (same ids); `Term` deletes it, or leaves it when the queue has a
//! dead-letter queue (`dlq`), whose redrive policy then moves it there.

use std::collections::VecDeque;
use std::time::Duration;

use async_trait::async_trait;

use crate::aws::{AwsClient, AwsError, SqsMessage};
use crate::pull::{Draft, Malformed, Names, Settle, Upstream, UpstreamError};
use crate::reconnect::Backoff;
use crate::sender::Retry;

/// A queue to receive from.
pub struct Queue {
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
    /// Leave a message that can never be published (`Term`) for the queue's dead-letter queue
    /// instead of deleting it.
    pub dlq: bool,
}

/// The events of one SQS message, for a kind (pure: no I/O).
pub type Decode = Box<dyn Fn(&SqsMessage) -> Result<Vec<Draft>, Malformed> + Send + Sync>;

/// One event of a kind that reads an SQS queue.
pub struct QueueUpstream {
    /// The CloudEvent `type`.
    pub kind: &'static str,
    /// Where from.
    pub queue: Queue,
    /// What a message's events are.
    pub decode: Decode,
}

/// A looked-up queue and the messages received but not yet handed out.
pub struct Inbox {
    url: String,
    received: VecDeque<SqsMessage>,
    /// For logs.
    names: Names,
}

impl Queue {
    async fn receive(&self, url: &str) -> Result<VecDeque<SqsMessage>, AwsError> {
        let batch = self
            .client
            .sqs_receive(&self.endpoint, url, self.wait_seconds)
            .await?;
        Ok(batch.into())
    }
}

#[async_trait]
impl Upstream for QueueUpstream {
    type Session = Inbox;
    type Message = SqsMessage;

    fn kind(&self) -> &'static str {
        self.kind
    }

    /// Why once: SQS redelivers a message left undeleted (the nak), after the visibility timeout;
    /// the events of it already published dedupe by their ids.
    fn retry(&self) -> Retry {
        Retry::Once
    }

    /// From 500 ms, doubling: between failed lookups or receives.
    fn backoff(&self) -> Backoff {
        Backoff::new(Duration::from_millis(500), 2.0)
    }

    /// Looks the queue up and receives once, so the source is ready only once it can receive.
    async fn connect(&self, names: &Names) -> Result<Inbox, UpstreamError> {
        let q = &self.queue;
        let url = q
            .client
            .sqs_queue_url(&q.endpoint, &q.queue, q.account_id.as_deref())
            .await?;
        tracing::info!(eventsource = %names.event_source, event_name = %names.event_name, queue = %sluice_eventbus::redact_url(&url), "polling SQS queue");
        let received = q.receive(&url).await?;
        Ok(Inbox {
            url,
            received,
            names: names.clone(),
        })
    }

    /// Cancel-safe: a receive cut short loses nothing (its messages reappear after the visibility
    /// timeout).
    async fn next(&self, inbox: &mut Inbox) -> Result<Option<SqsMessage>, UpstreamError> {
        loop {
            if let Some(message) = inbox.received.pop_front() {
                return Ok(Some(message));
            }
            inbox.received = self.queue.receive(&inbox.url).await?;
        }
    }

    fn decode(&self, message: &SqsMessage) -> Result<Vec<Draft>, Malformed> {
        (self.decode)(message)
    }

    /// Deletes the message or leaves it (see the module docs).
    async fn settle(
        &self,
        inbox: &mut Inbox,
        message: SqsMessage,
        settle: Settle,
    ) -> Result<(), UpstreamError> {
        let names = &inbox.names;
        match settle {
            // Ack: every event of the message was stored by the bus (or it carries none).
            Settle::Ack => {}
            // Why keep: the bus did not store an event; the undeleted message reappears after the
            // visibility timeout and is published again, with the same ids.
            Settle::Nak => {
                tracing::error!(eventsource = %names.event_source, event_name = %names.event_name, message_id = %message.message_id, "failed to publish an SQS message; leaving it on the queue");
                return Ok(());
            }
            // Why: with a dead-letter queue the message is left for SQS to move there; without
            // one, keeping it would make it come back forever, so it is dropped (the skeleton or
            // the sender logged and counted why).
            Settle::Term if self.queue.dlq => {
                tracing::error!(eventsource = %names.event_source, event_name = %names.event_name, message_id = %message.message_id, "leaving an SQS message that cannot be published for the dead-letter queue");
                return Ok(());
            }
            Settle::Term => {
                tracing::error!(eventsource = %names.event_source, event_name = %names.event_name, message_id = %message.message_id, "deleting an SQS message that cannot be published");
            }
        }
        // A failed delete is not a loss (logged by the skeleton): the message comes back and is
        // published again with the same ids, which the bus dedupes.
        let q = &self.queue;
        q.client
            .sqs_delete(&q.endpoint, &inbox.url, &message.receipt_handle)
            .await?;
        Ok(())
    }

    fn locate(&self, message: &SqsMessage) -> String {
        format!("message {}", message.message_id)
    }
}
