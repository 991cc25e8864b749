//! `sqs`: messages from an AWS SQS queue (or an SQS-compatible server through `endpoint`).
//!
//! Protocol: long-poll `ReceiveMessage` (up to 10 messages, `waitTimeSeconds`, default 20) over the
//! SQS JSON protocol, signed with SigV4 ([`crate::aws`]); credentials from `accessKey`/`secretKey`
//! (+ `sessionToken`) or the default chain; with `roleARN` those call STS `AssumeRole` and the
//! role's temporary credentials are used (refreshed before they expire; STS at `endpoint` when set).
//!
//! Event: `type` sqs, id = the SQS message id (a redelivery of the same message dedupes on the
//! bus), data `{messageId, messageAttributes, body, metadata}` as upstream: with `jsonBody` the body
//! is the parsed JSON (an S3 notification arrives as its `Records` document, unchanged); a body that
//! is not JSON, or any body without `jsonBody`, is published as a base64 string as upstream does.
//!
//! Delivery guarantee: a message is deleted only after the bus stored its event. When publishing
//! fails the message is left alone: SQS makes it visible again after the queue's visibility timeout
//! and it is received and published again (same id). `dlq: true`: a message whose event cannot be
//! built is left undeleted so the queue's redrive policy moves it to the dead-letter queue; without
//! `dlq` it is deleted with an error log and the `processing_failed` metric.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Map, Value};
use sluice_crds::eventsource::SQSEventSource;
use sluice_eventbus::{EventBuilder, Subject};
use tokio_util::sync::CancellationToken;

use crate::aws::SqsMessage;
use crate::clients::aws::aws_client;
use crate::clients::body::body_value;
use crate::clients::sqs::{Disposition, MessageHandler, QueuePoller};
use crate::metrics::{EventLabels, SourceMetrics};
use crate::push::metadata_value;
use crate::sender::EventSender;
use crate::{BuildError, BuiltEventSource, PullSource, SourceContext, SourceError};

/// The event data of one message, as upstream.
pub fn event_data(
    message: &SqsMessage,
    json_body: bool,
    metadata: Option<&BTreeMap<String, String>>,
) -> Value {
    let mut data = Map::new();
    data.insert("messageId".into(), Value::String(message.message_id.clone()));
    data.insert("messageAttributes".into(), message.message_attributes.clone());
    data.insert("body".into(), body_value(message.body.as_bytes(), json_body));
    if let Some(m) = metadata_value(metadata) {
        data.insert("metadata".into(), m);
    }
    Value::Object(data)
}

struct SqsHandler {
    event_source: String,
    event_name: String,
    json_body: bool,
    dlq: bool,
    metadata: Option<BTreeMap<String, String>>,
    sender: Arc<dyn EventSender>,
    metrics: SourceMetrics,
    labels: EventLabels,
}

#[async_trait]
impl MessageHandler for SqsHandler {
    async fn handle(&self, message: &SqsMessage, cancel: &CancellationToken) -> Disposition {
        let started = tokio::time::Instant::now();
        let event = EventBuilder::new(&self.event_source, &self.event_name, "sqs")
            .id(message.message_id.clone())
            .data_json(event_data(message, self.json_body, self.metadata.as_ref()))
            .build();
        let event = match event {
            Ok(e) => e,
            Err(error) => {
                self.metrics.processing_failed.get_or_create(&self.labels).inc();
                tracing::error!(eventsource = %self.event_source, event_name = %self.event_name, message_id = %message.message_id, %error, dlq = self.dlq, "failed to build the event of an SQS message");
                // Why: with a dead-letter queue the message is left for SQS to move there; without
                // one, keeping it would make it come back forever, so it is dropped, loudly.
                return if self.dlq {
                    Disposition::Keep
                } else {
                    Disposition::Delete
                };
            }
        };
        let subject = Subject::new(&self.event_source, &self.event_name);
        let result = tokio::select! {
            biased;
            _ = cancel.cancelled() => return Disposition::Keep,
            r = self.sender.send(&subject, &event) => r,
        };
        match result {
            Ok(ack) => {
                if !ack.filtered {
                    self.metrics.sent.get_or_create(&self.labels).inc();
                }
                self.metrics
                    .processing_duration
                    .get_or_create(&self.labels)
                    .observe(started.elapsed().as_secs_f64() * 1000.0);
                tracing::info!(eventsource = %self.event_source, event_name = %self.event_name, event = %event.id(), duplicate = ack.duplicate, "published");
                Disposition::Delete
            }
            Err(error) => {
                self.metrics.sent_failed.get_or_create(&self.labels).inc();
                // Why keep: the bus did not store the event; the undeleted message reappears after
                // the visibility timeout and is published again.
                tracing::error!(eventsource = %self.event_source, event_name = %self.event_name, event = %event.id(), %error, "failed to publish an SQS message; leaving it on the queue");
                Disposition::Keep
            }
        }
    }
}

/// One `sqs` event, resolved.
pub struct SqsSource {
    poller: QueuePoller,
    handler: SqsHandler,
}

impl SqsSource {
    /// Resolves one `sqs` event.
    pub fn build(
        event_source: &str,
        event_name: &str,
        spec: &SQSEventSource,
        ctx: &SourceContext,
    ) -> Result<Self, BuildError> {
        let region = if spec.region.trim().is_empty() {
            "us-east-1"
        } else {
            spec.region.trim()
        };
        let client = aws_client(
            event_source,
            event_name,
            ctx,
            spec.access_key.as_ref(),
            spec.secret_key.as_ref(),
            spec.session_token.as_ref(),
            region,
            spec.role_arn
                .as_deref()
                .map(|r| (r, crate::aws::sts_endpoint(spec.endpoint.as_deref(), region)))
                .as_ref()
                .map(|(r, e)| (*r, e.as_str())),
        )?;
        Ok(Self {
            poller: QueuePoller {
                event_source: event_source.into(),
                event_name: event_name.into(),
                client,
                endpoint: crate::aws::sqs_endpoint(spec.endpoint.as_deref(), region),
                queue: spec.queue.clone(),
                account_id: spec.queue_account_id.clone(),
                wait_seconds: spec.wait_time_seconds.unwrap_or(20).clamp(0, 20),
                ready: ctx.readiness.flag(format!("{event_source}/{event_name}")),
            },
            handler: SqsHandler {
                event_source: event_source.into(),
                event_name: event_name.into(),
                json_body: spec.json_body,
                dlq: spec.dlq,
                metadata: spec.metadata.clone(),
                sender: ctx.sender.clone(),
                metrics: ctx.metrics.clone(),
                labels: SourceMetrics::labels(event_source, event_name),
            },
        })
    }
}

#[async_trait]
impl PullSource for SqsSource {
    fn describe(&self) -> String {
        format!("{}/{} sqs", self.poller.event_source, self.poller.event_name)
    }

    async fn run(self: Box<Self>, cancel: CancellationToken) -> Result<(), SourceError> {
        self.poller.run(&self.handler, cancel).await;
        Ok(())
    }
}

/// The tasks of the `sqs` events of one EventSource.
pub fn build(
    es_name: &str,
    events: &BTreeMap<String, SQSEventSource>,
    ctx: &SourceContext,
    out: &mut BuiltEventSource,
) -> Result<(), BuildError> {
    for (event_name, spec) in events {
        out.tasks
            .push(Box::new(SqsSource::build(es_name, event_name, spec, ctx)?));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn message(body: &str) -> SqsMessage {
        SqsMessage {
            message_id: "m-1".into(),
            receipt_handle: "r".into(),
            body: body.into(),
            message_attributes: json!({"team": {"DataType": "String", "StringValue": "data"}}),
        }
    }

    #[test]
    fn json_body_is_parsed_and_s3_records_arrive_unchanged() {
        let body = r#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"object":{"key":"a%20b"}}}]}"#;
        let meta = BTreeMap::from([("env".to_string(), "test".to_string())]);
        let data = event_data(&message(body), true, Some(&meta));
        assert_eq!(
            data,
            json!({
                "messageId": "m-1",
                "messageAttributes": {"team": {"DataType": "String", "StringValue": "data"}},
                "body": serde_json::from_str::<Value>(body).unwrap_or_default(),
                "metadata": {"env": "test"},
            })
        );
    }

    #[test]
    fn non_json_body_with_json_body_is_base64_like_upstream() {
        assert_eq!(body_value(b"not json", true), json!("bm90IGpzb24="));
        assert_eq!(body_value(b"{\"a\":1}", false), json!("eyJhIjoxfQ=="));
    }
}
