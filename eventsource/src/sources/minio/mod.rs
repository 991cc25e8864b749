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
//! On the pull skeleton ([`crate::pull`]): a session is one open stream and the lines it delivered
//! but not yet handed out; each line is a message. A line that is not a notification document is
//! reported by the skeleton (logged, counted in `processing_failed` and
//! `rejected{reason="malformed"}`) and skipped; a document with no records is skipped quietly, as a
//! keep-alive.
//!
//! Delivery guarantee: the listen API has no acknowledgement (nothing to settle), so a
//! notification is published with retries (backoff, while the stream waits) until the bus stores
//! it; notifications MinIO emits while the connection is down are not replayed by MinIO (for that,
//! use the `s3` kind, a Sluice extension).

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Map, Value};
use sluice_crds::eventsource::S3Artifact;
use sluice_eventbus::deterministic_id;

use crate::aws::AwsClient;
use crate::clients::s3_records::{self, MalformedNotification};
use crate::pull::{Draft, Malformed, Names, Pull, Upstream, UpstreamError};
use crate::push::metadata_value;
use crate::reconnect::Backoff;
use crate::sender::{Retry, FIRST_BACKOFF};
use crate::{BuildError, BuiltEventSource, SourceContext};

/// The CloudEvent `type` of this kind.
pub const SOURCE_TYPE: &str = "minio";

/// Splits the complete lines off `buffer`, leaving an incomplete last one there; blank keep-alive
/// lines are dropped.
pub fn drain_lines(buffer: &mut Vec<u8>) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(pos) = buffer.iter().position(|b| *b == b'\n') {
        let line: Vec<u8> = buffer.drain(..=pos).collect();
        if !line.trim_ascii().is_empty() {
            out.push(line);
        }
    }
    out
}

/// The notification document of one line; the error is why it is not one.
pub fn document(line: &[u8]) -> Result<Value, String> {
    let doc: Value = serde_json::from_slice(line.trim_ascii()).map_err(|e| e.to_string())?;
    s3_records::records(&doc).map_err(|e| e.to_string())?;
    Ok(doc)
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
pub struct MinioUpstream {
    client: AwsClient,
    base: String,
    bucket: String,
    query: Vec<(String, String)>,
    metadata: Option<BTreeMap<String, String>>,
}

/// One open notification stream and the lines it delivered but not yet handed out.
pub struct Listen {
    response: reqwest::Response,
    /// Bytes of a line not complete yet (a document may be split across chunks).
    buffer: Vec<u8>,
    lines: VecDeque<Vec<u8>>,
}

impl MinioUpstream {
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
            client,
            base,
            bucket,
            query,
            metadata: spec.metadata.clone(),
        })
    }
}

#[async_trait]
impl Upstream for MinioUpstream {
    type Session = Listen;
    /// One line of the stream.
    type Message = Vec<u8>;

    fn kind(&self) -> &'static str {
        SOURCE_TYPE
    }

    /// Why retry until stored: MinIO will not send this notification again; giving up would lose
    /// it.
    fn retry(&self) -> Retry {
        Retry::UntilStored { first: FIRST_BACKOFF }
    }

    /// From 500 ms, doubling.
    fn backoff(&self) -> Backoff {
        Backoff::new(Duration::from_millis(500), 2.0)
    }

    async fn connect(&self, names: &Names) -> Result<Listen, UpstreamError> {
        let path = format!("/{}", crate::aws::sigv4::uri_encode(&self.bucket, false));
        let response = self.client.stream("s3", &self.base, &path, &self.query).await?;
        tracing::info!(eventsource = %names.event_source, event_name = %names.event_name, bucket = %self.bucket, "listening for MinIO bucket notifications");
        Ok(Listen {
            response,
            buffer: Vec::new(),
            lines: VecDeque::new(),
        })
    }

    /// Cancel-safe: a chunk is taken out of the response only when it is returned, and split into
    /// lines with no await in between.
    async fn next(&self, listen: &mut Listen) -> Result<Option<Vec<u8>>, UpstreamError> {
        loop {
            if let Some(line) = listen.lines.pop_front() {
                return Ok(Some(line));
            }
            let Some(chunk) = listen.response.chunk().await? else {
                return Ok(None);
            };
            listen.buffer.extend_from_slice(&chunk);
            listen.lines.extend(drain_lines(&mut listen.buffer));
        }
    }

    /// One event per notification document, as upstream; none for a document without records.
    fn decode(&self, line: &Vec<u8>) -> Result<Vec<Draft>, Malformed> {
        // MinIO sends no message id: the skeleton's log line names no position either.
        let malformed = |reason: String| Malformed(format!("not a MinIO notification: {reason}"));
        let doc = document(line).map_err(malformed)?;
        let data = event_data(&doc, self.metadata.as_ref()).map_err(|e| malformed(e.to_string()))?;
        if data["notification"].as_array().is_some_and(Vec::is_empty) {
            return Ok(Vec::new());
        }
        let id = document_id(&doc).map_err(|e| malformed(e.to_string()))?;
        Ok(vec![Draft::new(data).with_id(id)])
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
        let upstream = MinioUpstream::build(es_name, event_name, spec, ctx)?;
        out.tasks
            .push(Box::new(Pull::new(es_name, event_name, upstream, ctx)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{context, Recorder, Secrets};
    use serde_json::json;

    fn upstream() -> MinioUpstream {
        let spec = S3Artifact {
            endpoint: "127.0.0.1:9000".into(),
            bucket: Some(serde_json::from_value(json!({"name": "input"})).expect("a bucket")),
            ..Default::default()
        };
        let ctx = context(Secrets::default(), std::sync::Arc::new(Recorder::default()));
        MinioUpstream::build("es", "ev", &spec, &ctx).expect("a valid spec")
    }

    #[test]
    fn decodes_a_stream_split_across_chunks_with_keepalives() {
        let doc = json!({"Records": [{"eventVersion": "2.0", "eventSource": "minio:s3", "eventName": "s3:ObjectCreated:Put",
            "s3": {"bucket": {"name": "input"}, "object": {"key": "a%2Fb.txt", "eTag": "e1", "sequencer": "17B"}}}]});
        let line = format!("{doc}\n");
        let mut buffer = Vec::new();
        buffer.extend_from_slice(b" \n");
        buffer.extend_from_slice(&line.as_bytes()[..10]);
        assert!(drain_lines(&mut buffer).is_empty(), "half a line is kept");
        buffer.extend_from_slice(&line.as_bytes()[10..]);
        buffer.extend_from_slice(b"{\"Records\":[]}\nnot json\n");
        let lines = drain_lines(&mut buffer);
        assert!(buffer.is_empty());
        let decoded: Vec<_> = lines.iter().map(|l| upstream().decode(l)).collect();
        assert_eq!(decoded.len(), 3);
        let drafts = decoded[0].as_ref().expect("a notification");
        assert_eq!(drafts.len(), 1, "one event per document, as upstream");
        assert_eq!(
            drafts[0].data["notification"][0]["s3"]["object"]["key"],
            "a%2Fb.txt"
        );
        assert_eq!(drafts[0].id, document_id(&doc).ok());
        assert!(
            decoded[1].as_ref().is_ok_and(Vec::is_empty),
            "no records: skipped quietly"
        );
        assert!(decoded[2].is_err(), "not JSON: reported");
        assert_eq!(document_id(&doc), document_id(&doc.clone()));
    }

    #[test]
    fn a_line_that_is_not_a_notification_is_reported_not_skipped() {
        // Before, JSON without a `Records` list was skipped like a keep-alive, without a log line.
        let mut buffer =
            b"{\"Records\": \"oops\"}\n{\"Records\": [1]}\n{\"hello\": 1}\n{\"Records\": null}\n".to_vec();
        let results: Vec<_> = drain_lines(&mut buffer)
            .iter()
            .map(|l| upstream().decode(l))
            .collect();
        assert_eq!(results.len(), 4);
        assert!(results[3].as_ref().is_ok_and(Vec::is_empty), "null records: none");
        let reasons: Vec<String> = results[..3]
            .iter()
            .map(|d| {
                d.as_ref()
                    .err()
                    .map(|m| m.0.clone())
                    .expect("each malformed line is an error")
            })
            .collect();
        assert!(reasons[0].contains("`Records` is a string"), "{reasons:?}");
        assert!(reasons[1].contains("record 0 is a number"), "{reasons:?}");
        assert!(reasons[2].contains("no `Records`"), "{reasons:?}");
        assert!(document_id(&serde_json::json!({"Records": 1})).is_err());
    }
}
