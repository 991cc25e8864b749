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
//! On the pull skeleton ([`crate::pull`]) as the shared [`QueueUpstream`]: a session is the
//! looked-up queue and the batch received last; each SQS message is a message with one event;
//! `settle` deletes it or leaves it.
//!
//! Delivery guarantee: a message is deleted only after the bus stored its event (or the
//! EventSource's filter dropped it). When publishing fails the message is left alone (one attempt,
//! then a nak): SQS makes it visible again after the queue's visibility timeout and it is received
//! and published again (same id). A message whose event can never be stored (it cannot be built,
//! or it is bigger than the bus takes; logged and counted) is deleted, or with `dlq: true` left
//! undeleted so the queue's redrive policy moves it to the dead-letter queue.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use sluice_crds::eventsource::SQSEventSource;

use crate::aws::SqsMessage;
use crate::clients::aws::aws_client;
use crate::clients::body::body_value;
use crate::clients::sqs::{Queue, QueueUpstream};
use crate::pull::{Draft, Pull};
use crate::push::metadata_value;
use crate::{BuildError, BuiltEventSource, SourceContext};

/// The CloudEvent `type` of this kind.
pub const SOURCE_TYPE: &str = "sqs";

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

/// The events of one message: one, its id the SQS message id, so a redelivery dedupes on the bus.
pub fn decode(
    message: &SqsMessage,
    json_body: bool,
    metadata: Option<&BTreeMap<String, String>>,
) -> Vec<Draft> {
    let data = event_data(message, json_body, metadata);
    vec![Draft::new(data).with_id(message.message_id.clone())]
}

/// Resolves one `sqs` event.
pub fn upstream(
    event_source: &str,
    event_name: &str,
    spec: &SQSEventSource,
    ctx: &SourceContext,
) -> Result<QueueUpstream, BuildError> {
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
        spec.role_arn.as_deref(),
        spec.endpoint.as_deref(),
    )?;
    let (json_body, metadata) = (spec.json_body, spec.metadata.clone());
    Ok(QueueUpstream {
        kind: SOURCE_TYPE,
        queue: Queue {
            client,
            endpoint: crate::aws::sqs_endpoint(spec.endpoint.as_deref(), region),
            queue: spec.queue.clone(),
            account_id: spec.queue_account_id.clone(),
            wait_seconds: spec.wait_time_seconds.unwrap_or(20).clamp(0, 20),
            dlq: spec.dlq,
        },
        decode: Box::new(move |message| Ok(decode(message, json_body, metadata.as_ref()))),
    })
}

/// The tasks of the `sqs` events of one EventSource.
pub fn build(
    es_name: &str,
    events: &BTreeMap<String, SQSEventSource>,
    ctx: &SourceContext,
    out: &mut BuiltEventSource,
) -> Result<(), BuildError> {
    for (event_name, spec) in events {
        let upstream = upstream(es_name, event_name, spec, ctx)?;
        out.tasks
            .push(Box::new(Pull::new(es_name, event_name, upstream, ctx)));
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
    fn a_message_is_one_event_with_the_sqs_message_id() {
        let drafts = decode(&message("{}"), true, None);
        assert_eq!(drafts.len(), 1);
        assert_eq!(
            drafts[0].id.as_deref(),
            Some("m-1"),
            "a redelivery dedupes on the bus"
        );
        assert!(drafts[0].data.get("metadata").is_none());
    }

    #[test]
    fn non_json_body_with_json_body_is_base64_like_upstream() {
        assert_eq!(body_value(b"not json", true), json!("bm90IGpzb24="));
        assert_eq!(body_value(b"{\"a\":1}", false), json!("eyJhIjoxfQ=="));
    }
}
