//! `jetstream` (a Sluice extension; upstream has no such kind, argo-events #3160): reads an existing
//! NATS JetStream stream through a durable pull consumer and publishes each message as an event with
//! the data `{subject, body, header, metadata, stream, sequence}` (the `nats` kind's shape plus the
//! stream and the stream sequence).
//!
//! Delivery: at-least-once. A message is acknowledged to JetStream only after the bus stored its
//! event; when the bus refuses, the message is nak'ed with a growing delay and JetStream redelivers
//! it; when the process dies first, the un-acked message is redelivered after the consumer's ack
//! wait. The event id is derived from `stream/sequence`, so a redelivered message has the id it had
//! and the bus drops the duplicate (within its dedupe window). A message whose event is bigger than
//! the bus takes is logged with its size, counted in
//! `sluice_eventsource_events_rejected_total{reason="too_large"}` and terminated (`term`: never
//! redelivered). Readiness: `<eventSource>/<event>` is ready while connected with the consumer bound.
//!
//! The consumer: `consumer` names it (default `sluice-<eventSourceName>-<eventName>`); when it does
//! not exist it is created durable with explicit acks, `filterSubjects` and `deliverPolicy` (`all`
//! by default). Body: with `jsonBody` a payload that parses as JSON is embedded as JSON; any other
//! payload is a base64 string (as upstream marshals bytes), never dropped.
//!
//! TLS: as the `nats` kind, a `tls` block (`caCertSecret`, `clientCertSecret` + `clientKeySecret`,
//! `insecureSkipVerify`; built by [`crate::tls`]) makes TLS required whatever the URL's scheme.

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::{self, AckKind};
use async_trait::async_trait;
use futures::StreamExt;
use serde_json::json;
use sluice_crds::eventsource::JetStreamEventSource;
use sluice_eventbus::event::deterministic_id;

use crate::clients::body::body_value;
use crate::clients::nats::{connect, headers_value, resolve_auth, Auth};
use crate::pull::{Draft, Malformed, Names, Pull, Settle, Upstream, UpstreamError};
use crate::reconnect::Backoff;
use crate::sender::Retry;
use crate::{BuildError, BuiltEventSource, SourceContext};

/// The CloudEvent `type` of this kind.
pub const SOURCE_TYPE: &str = "jetstream";
/// The longest nak delay.
const MAX_NAK_DELAY: Duration = Duration::from_secs(30);
/// The first nak delay.
const MIN_NAK_DELAY: Duration = Duration::from_millis(200);

/// Builds a pull source per `jetstream` event of EventSource `es_name`.
pub fn build(
    es_name: &str,
    events: &BTreeMap<String, JetStreamEventSource>,
    ctx: &SourceContext,
    out: &mut BuiltEventSource,
) -> Result<(), BuildError> {
    let secrets = ctx.secrets.as_ref();
    for (event_name, spec) in events {
        let invalid = |reason: String| BuildError::InvalidSpec {
            event_source: es_name.into(),
            event: event_name.clone(),
            reason,
        };
        if spec.url.is_empty() || spec.stream.is_empty() {
            return Err(invalid("`url` and `stream` are required".into()));
        }
        let deliver_policy = match spec.deliver_policy.as_deref().unwrap_or("all") {
            "all" => DeliverPolicy::All,
            "last" => DeliverPolicy::Last,
            "new" => DeliverPolicy::New,
            "lastPerSubject" => DeliverPolicy::LastPerSubject,
            other => {
                return Err(invalid(format!(
                    "deliverPolicy: `{other}` is not one of all, last, new, lastPerSubject"
                )))
            }
        };
        let auth = resolve_auth(es_name, event_name, spec.auth.as_ref(), secrets)?;
        let tls = spec
            .tls
            .as_ref()
            .map(|t| crate::tls::Tls::build("jetstream", es_name, event_name, t, secrets))
            .transpose()?;
        let consumer = spec
            .consumer
            .clone()
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| format!("sluice-{es_name}-{event_name}"));
        let backoff =
            Backoff::from_spec(spec.connection_backoff.as_ref(), Backoff::default()).map_err(invalid)?;
        let upstream = JetStreamUpstream {
            event_source: es_name.to_owned(),
            event_name: event_name.clone(),
            spec: spec.clone(),
            consumer,
            deliver_policy,
            auth,
            tls,
            backoff,
        };
        out.tasks
            .push(Box::new(Pull::new(es_name, event_name, upstream, ctx)));
    }
    Ok(())
}

/// Why the consumer could not be reached.
#[derive(Debug, thiserror::Error)]
enum ConsumeError {
    #[error("failed to connect to NATS")]
    Connect(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("failed to find stream {stream}")]
    GetStream {
        stream: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("failed to get or create consumer {consumer} on stream {stream}")]
    Consumer {
        stream: String,
        consumer: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("failed to pull messages of consumer {consumer}")]
    Pull {
        consumer: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// One `jetstream` event: a durable pull consumer.
pub struct JetStreamUpstream {
    event_source: String,
    event_name: String,
    spec: JetStreamEventSource,
    consumer: String,
    deliver_policy: DeliverPolicy,
    auth: Auth,
    /// The `tls` block, resolved.
    tls: Option<crate::tls::Tls>,
    /// Between connection attempts (`connectionBackoff`).
    backoff: Backoff,
}

/// A bound consumer's message stream, and the delay of the next nak.
pub struct Session {
    messages: pull::Stream,
    /// Doubles with each nak in a row, up to [`MAX_NAK_DELAY`]; an ack resets it.
    nak_delay: Duration,
}

impl JetStreamUpstream {
    /// Upstream's `nats` data plus the stream and its sequence; the id is derived from
    /// `stream/sequence`, so a redelivered message dedupes on the bus.
    pub fn draft(&self, message: &async_nats::Message, stream: &str, sequence: u64) -> Draft {
        let data = json!({
            "subject": message.subject.as_str(),
            "body": body_value(&message.payload, self.spec.json_body),
            "header": headers_value(message.headers.as_ref()),
            "metadata": self.spec.metadata,
            "stream": stream,
            "sequence": sequence,
        });
        let id = deterministic_id(&[
            SOURCE_TYPE,
            &self.event_source,
            &self.event_name,
            stream,
            &sequence.to_string(),
        ]);
        Draft::new(data).with_id(id)
    }
}

#[async_trait]
impl Upstream for JetStreamUpstream {
    type Session = Session;
    type Message = jetstream::Message;

    fn kind(&self) -> &'static str {
        SOURCE_TYPE
    }

    /// Why once: JetStream redelivers a nak'ed message, so the stream keeps it, not this process.
    fn retry(&self) -> Retry {
        Retry::Once
    }

    fn backoff(&self) -> Backoff {
        self.backoff.clone()
    }

    async fn connect(&self, names: &Names) -> Result<Session, UpstreamError> {
        let client = connect(
            &self.spec.url,
            &self.auth,
            self.tls.as_ref(),
            names.client_name(),
            &names.ready,
        )
        .await
        .map_err(ConsumeError::Connect)?;
        let context = jetstream::new(client);
        let stream = context
            .get_stream(&self.spec.stream)
            .await
            .map_err(|e| ConsumeError::GetStream {
                stream: self.spec.stream.clone(),
                source: Box::new(e),
            })?;
        let config = pull::Config {
            durable_name: Some(self.consumer.clone()),
            filter_subjects: self.spec.filter_subjects.clone(),
            deliver_policy: self.deliver_policy,
            ack_policy: AckPolicy::Explicit,
            ..Default::default()
        };
        let consumer = stream
            .get_or_create_consumer::<pull::Config>(&self.consumer, config)
            .await
            .map_err(|e| ConsumeError::Consumer {
                stream: self.spec.stream.clone(),
                consumer: self.consumer.clone(),
                source: Box::new(e),
            })?;
        let messages = consumer.messages().await.map_err(|e| ConsumeError::Pull {
            consumer: self.consumer.clone(),
            source: Box::new(e),
        })?;
        tracing::info!(eventsource = %names.event_source, event_name = %names.event_name, stream = %self.spec.stream, consumer = %self.consumer, "consuming");
        Ok(Session {
            messages,
            nak_delay: MIN_NAK_DELAY,
        })
    }

    async fn next(&self, session: &mut Session) -> Result<Option<Self::Message>, UpstreamError> {
        match session.messages.next().await {
            Some(Ok(m)) => Ok(Some(m)),
            Some(Err(e)) => Err(ConsumeError::Pull {
                consumer: self.consumer.clone(),
                source: Box::new(e),
            }
            .into()),
            None => Ok(None),
        }
    }

    fn decode(&self, message: &Self::Message) -> Result<Vec<Draft>, Malformed> {
        // A message without metadata did not come from a stream consumer: nothing to keep.
        let info = message
            .info()
            .map_err(|e| Malformed(format!("a message without JetStream metadata: {e}")))?;
        Ok(vec![self.draft(message, info.stream, info.stream_sequence)])
    }

    async fn settle(
        &self,
        session: &mut Session,
        message: Self::Message,
        settle: Settle,
    ) -> Result<(), UpstreamError> {
        let kind = match settle {
            Settle::Ack => {
                session.nak_delay = MIN_NAK_DELAY;
                // Why ack now: the bus stored the event, so JetStream may forget the message.
                AckKind::Ack
            }
            Settle::Nak => {
                // Why nak: the bus refused; JetStream redelivers after the delay, nothing lost.
                let delay = session.nak_delay;
                session.nak_delay = (delay * 2).min(MAX_NAK_DELAY);
                AckKind::Nak(Some(delay))
            }
            // Why term (the message is dropped): it is bigger than the bus takes or not a stream
            // message, so every redelivery would fail again; it was logged and counted.
            Settle::Term => AckKind::Term,
        };
        message.ack_with(kind).await
    }

    fn locate(&self, message: &Self::Message) -> String {
        format!("subject {}", message.subject)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(json_body: bool) -> JetStreamUpstream {
        JetStreamUpstream {
            event_source: "es".into(),
            event_name: "orders".into(),
            spec: JetStreamEventSource {
                url: "nats://127.0.0.1:4222".into(),
                stream: "ORDERS".into(),
                json_body,
                ..Default::default()
            },
            consumer: "sluice-es-orders".into(),
            deliver_policy: DeliverPolicy::All,
            auth: Auth::None,
            tls: None,
            backoff: Backoff::default(),
        }
    }

    fn message(payload: &'static [u8]) -> async_nats::Message {
        async_nats::Message {
            subject: "orders.created".into(),
            reply: None,
            payload: bytes::Bytes::from_static(payload),
            headers: None,
            status: None,
            description: None,
            length: payload.len(),
        }
    }

    #[test]
    fn a_stream_message_carries_its_stream_and_sequence_and_a_stable_id() {
        let u = upstream(true);
        let draft = u.draft(&message(br#"{"id":7}"#), "ORDERS", 42);
        assert_eq!(
            draft.data,
            json!({"subject": "orders.created", "body": {"id": 7}, "header": null, "metadata": null, "stream": "ORDERS", "sequence": 42})
        );
        let again = u.draft(&message(br#"{"id":7}"#), "ORDERS", 42);
        assert_eq!(draft.id, again.id, "a redelivery has the id it had");
        assert!(draft.id.is_some());
        assert_ne!(draft.id, u.draft(&message(br#"{"id":7}"#), "ORDERS", 43).id);
        assert_ne!(draft.id, u.draft(&message(br#"{"id":7}"#), "OTHER", 42).id);
    }
}
