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

use crate::{BuiltEventSource, SourceContext};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::{self, AckKind};
use async_trait::async_trait;
use futures::StreamExt;
use serde_json::{json, Value};
use sluice_crds::eventsource::JetStreamEventSource;
use sluice_eventbus::event::deterministic_id;
use sluice_eventbus::{EventBuilder, Subject};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::clients::nats::{connect, resolve_auth, Auth};
use crate::metrics::{EventLabels, SourceMetrics};
use crate::reconnect::Backoff;
use crate::sender::{publish, EventSender, Outcome, Publisher, Retry};
use crate::{BuildError, PullSource, SourceError};
use sluice_eventbus::readiness::ReadyFlag;

/// The CloudEvent `type` of this kind.
pub const SOURCE_TYPE: &str = "jetstream";
/// The longest wait between connection attempts and the longest nak delay.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The first nak delay / reconnect wait.
const MIN_BACKOFF: Duration = Duration::from_millis(200);

/// Builds a pull source per `jetstream` event of EventSource `es_name`.
pub fn build(
    es_name: &str,
    events: &BTreeMap<String, JetStreamEventSource>,
    ctx: &SourceContext,
    out: &mut BuiltEventSource,
) -> Result<(), BuildError> {
    let secrets = ctx.secrets.as_ref();
    let (sender, metrics) = (&ctx.sender, &ctx.metrics);
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
        out.tasks.push(Box::new(JetStreamSource {
            ready: ctx.readiness.flag(format!("{es_name}/{event_name}")),
            event_source: es_name.to_owned(),
            event_name: event_name.clone(),
            spec: spec.clone(),
            consumer,
            deliver_policy,
            auth,
            tls,
            sender: sender.clone(),
            metrics: metrics.clone(),
        }));
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
pub struct JetStreamSource {
    event_source: String,
    event_name: String,
    spec: JetStreamEventSource,
    consumer: String,
    deliver_policy: DeliverPolicy,
    auth: Auth,
    /// The `tls` block, resolved.
    tls: Option<crate::tls::Tls>,
    sender: Arc<dyn EventSender>,
    metrics: SourceMetrics,
    /// Set while connected with the consumer bound.
    ready: ReadyFlag,
}

/// How one message is settled with JetStream.
enum Settle {
    /// The bus stored it (or the filter dropped it, or it has no JetStream metadata).
    Ack,
    /// The bus refused it: redeliver after a delay.
    Nak,
    /// It can never be stored (too large): JetStream must not redeliver it.
    Term,
    /// Cancelled mid-publish: leave it un-acked.
    Stop,
}

use crate::clients::body::body_value;

impl JetStreamSource {
    async fn connect(&self) -> Result<PullConsumer, ConsumeError> {
        let client = connect(
            &self.spec.url,
            &self.auth,
            self.tls.as_ref(),
            format!("sluice-{}-{}", self.event_source, self.event_name),
            &self.ready,
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
        stream
            .get_or_create_consumer(&self.consumer, config)
            .await
            .map_err(|e| ConsumeError::Consumer {
                stream: self.spec.stream.clone(),
                consumer: self.consumer.clone(),
                source: Box::new(e),
            })
    }

    /// Publishes one message once; how to settle it.
    async fn publish(
        &self,
        message: &jetstream::Message,
        labels: &EventLabels,
        cancel: &CancellationToken,
    ) -> Settle {
        let (stream, sequence) = match message.info() {
            Ok(info) => (info.stream.to_owned(), info.stream_sequence),
            Err(e) => {
                // Why ack: a message without metadata is not from a stream consumer; nothing to keep.
                warn!(eventsource = %self.event_source, event_name = %self.event_name, error = %e, "skipped a message without JetStream metadata");
                return Settle::Ack;
            }
        };
        let header: Value = match &message.headers {
            None => Value::Null,
            Some(h) => {
                let mut map = serde_json::Map::new();
                for (k, vs) in h.iter() {
                    let values: Vec<Value> = vs.iter().map(|v| Value::String(v.to_string())).collect();
                    map.insert(k.to_string(), Value::Array(values));
                }
                Value::Object(map)
            }
        };
        let data = json!({
            "subject": message.subject.as_str(),
            "body": body_value(&message.payload, self.spec.json_body),
            "header": header,
            "metadata": self.spec.metadata,
            "stream": stream,
            "sequence": sequence,
        });
        let id = deterministic_id(&[
            SOURCE_TYPE,
            &self.event_source,
            &self.event_name,
            &stream,
            &sequence.to_string(),
        ]);
        let event = match EventBuilder::new(&self.event_source, &self.event_name, SOURCE_TYPE)
            .id(id)
            .data_json(data)
            .build()
        {
            Ok(e) => e,
            Err(e) => {
                // Cannot happen with these attributes; treated as a bus refusal so it is not lost.
                warn!(eventsource = %self.event_source, event_name = %self.event_name, error = %e, "failed to build a jetstream event");
                self.metrics.processing_failed.get_or_create(labels).inc();
                return Settle::Nak;
            }
        };
        let subject = Subject::new(&self.event_source, &self.event_name);
        let p = Publisher {
            sender: &*self.sender,
            metrics: &self.metrics,
            labels,
            cancel,
        };
        match publish(&p, &subject, &event, Retry::Once).await {
            Outcome::Stored(_) | Outcome::Filtered => {
                debug!(eventsource = %self.event_source, event_name = %self.event_name, event = %event.id(), sequence, "published");
                Settle::Ack
            }
            Outcome::Rejected(_) => Settle::Term,
            Outcome::Refused(_) => Settle::Nak,
            Outcome::Cancelled => Settle::Stop,
        }
    }

    /// Consumes until cancelled (`Ok`) or the connection fails (`Err`, the caller reconnects).
    async fn consume(
        &self,
        consumer: PullConsumer,
        cancel: &CancellationToken,
        labels: &EventLabels,
        nak_delay: &mut Duration,
    ) -> Result<(), ConsumeError> {
        let mut messages = consumer.messages().await.map_err(|e| ConsumeError::Pull {
            consumer: self.consumer.clone(),
            source: Box::new(e),
        })?;
        loop {
            let next = tokio::select! {
                biased;
                _ = cancel.cancelled() => return Ok(()),
                n = messages.next() => n,
            };
            let message = match next {
                Some(Ok(m)) => m,
                Some(Err(e)) => {
                    return Err(ConsumeError::Pull {
                        consumer: self.consumer.clone(),
                        source: Box::new(e),
                    })
                }
                None => {
                    return Err(ConsumeError::Pull {
                        consumer: self.consumer.clone(),
                        source: "the message stream ended".into(),
                    })
                }
            };
            let settle = match self.publish(&message, labels, cancel).await {
                // Why no ack here: the message is still un-acked, JetStream redelivers it after
                // the ack wait, so cancelling mid-publish loses nothing.
                Settle::Stop => return Ok(()),
                Settle::Ack => {
                    *nak_delay = MIN_BACKOFF;
                    // Why ack now: the bus stored the event, so JetStream may forget the message.
                    message.ack_with(AckKind::Ack).await
                }
                Settle::Nak => {
                    // Why nak: the bus refused; JetStream redelivers after the delay, nothing lost.
                    let delay = *nak_delay;
                    *nak_delay = (*nak_delay * 2).min(MAX_BACKOFF);
                    message.ack_with(AckKind::Nak(Some(delay))).await
                }
                // Why term (the message is dropped): it is bigger than the bus takes, so every
                // redelivery would be refused again; the helper logged its size and counted it.
                Settle::Term => message.ack_with(AckKind::Term).await,
            };
            if let Err(e) = settle {
                // An ack that did not arrive means a redelivery, deduped on the bus by its id.
                warn!(eventsource = %self.event_source, event_name = %self.event_name, error = %e, "failed to settle a jetstream message; it will be redelivered");
            }
        }
    }
}

#[async_trait]
impl PullSource for JetStreamSource {
    fn describe(&self) -> String {
        format!("{}/{}", self.event_source, self.event_name)
    }

    async fn run(self: Box<Self>, cancel: CancellationToken) -> Result<(), SourceError> {
        let labels = EventLabels {
            eventsource_name: self.event_source.clone(),
            event_name: self.event_name.clone(),
        };
        let mut backoff = Backoff::default();
        let mut nak_delay = MIN_BACKOFF;
        loop {
            let attempt = tokio::select! {
                biased;
                _ = cancel.cancelled() => return Ok(()),
                c = self.connect() => c,
            };
            let result = match attempt {
                Ok(consumer) => {
                    info!(eventsource = %self.event_source, event_name = %self.event_name, stream = %self.spec.stream, consumer = %self.consumer, "consuming");
                    self.ready.set(true);
                    backoff.reset();
                    self.consume(consumer, &cancel, &labels, &mut nak_delay).await
                }
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => return Ok(()),
                Err(e) => {
                    self.ready.set(false);
                    warn!(eventsource = %self.event_source, event_name = %self.event_name, error = %e, retry_in = ?backoff.wait(), "jetstream consumer failed; reconnecting");
                }
            }
            if !backoff.sleep(&cancel).await {
                return Ok(());
            }
        }
    }
}
