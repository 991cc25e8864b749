//! `minio`: bucket notifications from MinIO's ListenBucketNotification streaming API
//! (`GET /<bucket>?events=…&prefix=…&suffix=…&ping=10`, SigV4-signed; the answer is a stream of
//! newline-separated `{"Records": [...]}` documents, with blank keep-alive lines).
//!
//! **Not integration-tested here**: no MinIO server can run on this machine, so the source is
//! written against MinIO's documented API; the stream decoding is unit-tested on S3 records written
//! in the same shape.
//!
//! Event: `type` minio, data `{"notification": [records…], "metadata": …}` as upstream (one event per
//! notification document). The id is derived from the records' bucket/key/ETag/sequencer, so the same
//! document published twice is one event on the bus.
//!
//! Delivery guarantee: the listen API has no acknowledgement, so a notification is published with
//! retries (backoff, while the stream waits) until the bus stores it; notifications MinIO emits while
//! the connection is down are not replayed by MinIO (for that, use the `s3` kind, a Sluice extension).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Map, Value};
use sluice_crds::eventsource::S3Artifact;
use sluice_eventbus::{deterministic_id, EventBuilder, Subject};
use tokio_util::sync::CancellationToken;

use crate::aws::AwsClient;
use crate::clients::s3_records::{self, MalformedNotification};
use crate::metrics::{EventLabels, SourceMetrics};
use crate::push::metadata_value;
use crate::sender::EventSender;
use crate::{BuildError, BuiltEventSource, PullSource, SourceContext, SourceError};

const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Splits complete lines off `buffer` and returns the notification documents among them (blank
/// keep-alive lines and documents with an empty `Records` are skipped; a line that is not JSON, or
/// not a notification, is an `Err` with the reason, which the caller logs and counts).
pub fn drain_documents(buffer: &mut Vec<u8>) -> Vec<Result<Value, String>> {
    let mut out = Vec::new();
    while let Some(pos) = buffer.iter().position(|b| *b == b'\n') {
        let line: Vec<u8> = buffer.drain(..=pos).collect();
        let text = String::from_utf8_lossy(&line);
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        match serde_json::from_str::<Value>(text) {
            Ok(doc) => match s3_records::records(&doc) {
                Ok(records) if records.is_empty() => {}
                Ok(_) => out.push(Ok(doc)),
                Err(e) => out.push(Err(e.to_string())),
            },
            Err(e) => out.push(Err(e.to_string())),
        }
    }
    out
}

/// The event id of one notification document.
pub fn document_id(doc: &Value) -> Result<String, MalformedNotification> {
    let ids: Vec<String> = s3_records::records(doc)?
        .iter()
        .map(|r| s3_records::event_id(r).unwrap_or_else(|| r.to_string()))
        .collect();
    let parts: Vec<&str> = ids.iter().map(String::as_str).collect();
    Ok(deterministic_id(&parts))
}

/// The event data of one document, as upstream.
pub fn event_data(
    doc: &Value,
    metadata: Option<&BTreeMap<String, String>>,
) -> Result<Value, MalformedNotification> {
    let mut data = Map::new();
    data.insert("notification".into(), Value::Array(s3_records::records(doc)?));
    if let Some(m) = metadata_value(metadata) {
        data.insert("metadata".into(), m);
    }
    Ok(Value::Object(data))
}

/// One `minio` event, resolved.
pub struct MinioSource {
    event_source: String,
    event_name: String,
    client: AwsClient,
    base: String,
    bucket: String,
    query: Vec<(String, String)>,
    metadata: Option<BTreeMap<String, String>>,
    sender: Arc<dyn EventSender>,
    metrics: SourceMetrics,
    labels: EventLabels,
    /// True while the notification stream is open, false while it cannot be opened.
    ready: crate::ReadyFlag,
}

impl MinioSource {
    /// Resolves one `minio` event.
    pub fn build(
        event_source: &str,
        event_name: &str,
        spec: &S3Artifact,
        ctx: &SourceContext,
    ) -> Result<Self, BuildError> {
        let bucket = spec.bucket.as_ref().map(|b| b.name.clone()).unwrap_or_default();
        if bucket.trim().is_empty() || spec.endpoint.trim().is_empty() {
            return Err(BuildError::InvalidSpec {
                event_source: event_source.into(),
                event: event_name.into(),
                reason: format!("spec.minio.{event_name}: endpoint and bucket.name are required"),
            });
        }
        let region = spec
            .region
            .clone()
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| "us-east-1".into());
        let client = crate::clients::aws::aws_client(
            event_source,
            event_name,
            ctx,
            spec.access_key.as_ref(),
            spec.secret_key.as_ref(),
            None,
            &region,
            None,
        )?;
        let scheme = if spec.insecure { "http" } else { "https" };
        let base = if spec.endpoint.contains("://") {
            spec.endpoint.trim_end_matches('/').to_string()
        } else {
            format!("{scheme}://{}", spec.endpoint.trim_end_matches('/'))
        };
        let mut query: Vec<(String, String)> = spec
            .events
            .iter()
            .map(|e| ("events".to_string(), e.clone()))
            .collect();
        if let Some(f) = &spec.filter {
            query.push(("prefix".into(), f.prefix.clone()));
            query.push(("suffix".into(), f.suffix.clone()));
        }
        query.push(("ping".into(), "10".into()));
        Ok(Self {
            event_source: event_source.into(),
            event_name: event_name.into(),
            client,
            base,
            bucket,
            query,
            metadata: spec.metadata.clone(),
            sender: ctx.sender.clone(),
            metrics: ctx.metrics.clone(),
            labels: SourceMetrics::labels(event_source, event_name),
            ready: ctx.readiness.flag(format!("{event_source}/{event_name}")),
        })
    }

    /// Publishes one document, retrying until the bus stores it; `false` when cancelled first.
    async fn publish(&self, doc: &Value, cancel: &CancellationToken) -> bool {
        let decoded = document_id(doc).and_then(|id| Ok((id, event_data(doc, self.metadata.as_ref())?)));
        let (id, data) = match decoded {
            Ok(decoded) => decoded,
            Err(error) => {
                // Not reached for documents from `drain_documents`, which already refused them.
                self.metrics.processing_failed.get_or_create(&self.labels).inc();
                tracing::error!(eventsource = %self.event_source, event_name = %self.event_name, %error, "skipping a MinIO line that is not a notification");
                return true;
            }
        };
        let event = match EventBuilder::new(&self.event_source, &self.event_name, "minio")
            .id(id)
            .data_json(data)
            .build()
        {
            Ok(e) => e,
            Err(error) => {
                self.metrics.processing_failed.get_or_create(&self.labels).inc();
                tracing::error!(eventsource = %self.event_source, event_name = %self.event_name, %error, "failed to build a MinIO notification event");
                return true;
            }
        };
        let subject = Subject::new(&self.event_source, &self.event_name);
        // Why retry until stored (the shared helper): MinIO will not send this notification again;
        // giving up would lose it.
        crate::sender::publish_until_stored(
            self.sender.as_ref(),
            &subject,
            &event,
            &self.metrics,
            &self.labels,
            cancel,
        )
        .await
    }

    async fn listen_once(&self, cancel: &CancellationToken) -> Result<(), String> {
        let path = format!("/{}", crate::aws::sigv4::uri_encode(&self.bucket, false));
        let mut response = self
            .client
            .stream("s3", &self.base, &path, &self.query)
            .await
            .map_err(|e| sluice_eventbus::error_chain(&e))?;
        self.ready.set(true);
        tracing::info!(eventsource = %self.event_source, event_name = %self.event_name, bucket = %self.bucket, "listening for MinIO bucket notifications");
        let mut buffer = Vec::new();
        loop {
            let chunk = tokio::select! {
                biased;
                _ = cancel.cancelled() => return Ok(()),
                c = response.chunk() => c.map_err(|e| e.to_string())?,
            };
            let Some(chunk) = chunk else {
                return Err("the stream ended".into());
            };
            buffer.extend_from_slice(&chunk);
            for doc in drain_documents(&mut buffer) {
                match doc {
                    Ok(doc) => {
                        if !self.publish(&doc, cancel).await {
                            return Ok(());
                        }
                    }
                    Err(error) => {
                        self.metrics.processing_failed.get_or_create(&self.labels).inc();
                        tracing::error!(eventsource = %self.event_source, event_name = %self.event_name, %error, "skipping a MinIO line that is not a notification (MinIO sends no message id)");
                    }
                }
            }
        }
    }
}

#[async_trait]
impl PullSource for MinioSource {
    fn describe(&self) -> String {
        format!("{}/{} minio", self.event_source, self.event_name)
    }

    async fn run(self: Box<Self>, cancel: CancellationToken) -> Result<(), SourceError> {
        let mut delay = Duration::from_millis(500);
        while !cancel.is_cancelled() {
            if let Err(error) = self.listen_once(&cancel).await {
                self.ready.set(false);
                tracing::error!(eventsource = %self.event_source, event_name = %self.event_name, %error, retry_in_ms = delay.as_millis() as u64, "MinIO notification stream failed; reconnecting");
                tokio::select! {
                    biased;
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(MAX_BACKOFF);
            }
        }
        Ok(())
    }
}

/// The tasks of the `minio` events of one EventSource.
pub fn build(
    es_name: &str,
    events: &BTreeMap<String, S3Artifact>,
    ctx: &SourceContext,
    out: &mut BuiltEventSource,
) -> Result<(), BuildError> {
    for (event_name, spec) in events {
        out.tasks
            .push(Box::new(MinioSource::build(es_name, event_name, spec, ctx)?));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decodes_a_stream_split_across_chunks_with_keepalives() {
        let doc = json!({"Records": [{"eventVersion": "2.0", "eventSource": "minio:s3", "eventName": "s3:ObjectCreated:Put",
            "s3": {"bucket": {"name": "input"}, "object": {"key": "a%2Fb.txt", "eTag": "e1", "sequencer": "17B"}}}]});
        let line = format!("{doc}\n");
        let mut buffer = Vec::new();
        buffer.extend_from_slice(b" \n");
        buffer.extend_from_slice(&line.as_bytes()[..10]);
        assert!(drain_documents(&mut buffer).is_empty(), "half a line is kept");
        buffer.extend_from_slice(&line.as_bytes()[10..]);
        buffer.extend_from_slice(b"{\"Records\":[]}\nnot json\n");
        let docs = drain_documents(&mut buffer);
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].as_ref().ok(), Some(&doc));
        assert!(docs[1].is_err());
        assert!(buffer.is_empty());
        let data = event_data(&doc, None).expect("a notification");
        assert_eq!(data["notification"][0]["s3"]["object"]["key"], "a%2Fb.txt");
        assert_eq!(document_id(&doc), document_id(&doc.clone()));
    }

    #[test]
    fn a_line_that_is_not_a_notification_is_reported_not_skipped() {
        // Before, JSON without a `Records` list was skipped like a keep-alive, without a log line.
        let mut buffer =
            b"{\"Records\": \"oops\"}\n{\"Records\": [1]}\n{\"hello\": 1}\n{\"Records\": null}\n".to_vec();
        let docs = drain_documents(&mut buffer);
        let reasons: Vec<String> = docs
            .into_iter()
            .map(|d| d.expect_err("each malformed line is an error"))
            .collect();
        assert_eq!(reasons.len(), 3, "{reasons:?}");
        assert!(reasons[0].contains("`Records` is a string"), "{reasons:?}");
        assert!(reasons[1].contains("record 0 is a number"), "{reasons:?}");
        assert!(reasons[2].contains("no `Records`"), "{reasons:?}");
        assert!(document_id(&serde_json::json!({"Records": 1})).is_err());
    }
}
