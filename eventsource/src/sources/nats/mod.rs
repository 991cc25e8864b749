//! `nats` (core NATS): subscribes to a subject (wildcards allowed; in a `queue` group when set) and
//! publishes each message with upstream's data `{subject, body, header, metadata}`.
//!
//! Delivery: **at-most-once by nature.** Core NATS has no acknowledgement and no redelivery: a
//! message that arrives while the bus refuses is retried here with backoff, but one that arrives
//! while Sluice is down or disconnected, or is in hand when the process stops, is lost. Use the
//! `jetstream` kind when every message matters.
//!
//! Readiness: `<eventSource>/<event>` is ready while subscribed and connected. A message whose
//! event is bigger than the bus takes is logged with its size, counted in
//! `sluice_eventsource_events_rejected_total{reason="too_large"}` and dropped.
//!
//! Body: with `jsonBody` a payload that parses as JSON is embedded as JSON; any other payload is a
//! base64 string (as upstream marshals bytes), never dropped.
//!
//! TLS: a `tls` block (`caCertSecret`, `clientCertSecret` + `clientKeySecret`,
//! `insecureSkipVerify`; built by [`crate::tls`]) makes TLS required, whatever the URL's scheme (as
//! upstream's `nats.Secure`); a `tls://` URL without it uses the system's roots.

use crate::{BuiltEventSource, SourceContext};
use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use serde_json::{json, Value};
use sluice_crds::eventsource::NATSEventsSource;
use sluice_eventbus::{EventBuilder, Subject};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::clients::body::body_value;
use crate::clients::nats::{connect, resolve_auth, Auth};
use crate::metrics::{EventLabels, SourceMetrics};
use crate::reconnect::Backoff;
use crate::sender::{publish, EventSender, Publisher, Retry, FIRST_BACKOFF};
use crate::{BuildError, PullSource, SourceError};
use sluice_eventbus::readiness::ReadyFlag;

/// The CloudEvent `type` of this kind.
pub const SOURCE_TYPE: &str = "nats";

/// Builds a pull source per `nats` event of EventSource `es_name`.
pub fn build(
    es_name: &str,
    events: &BTreeMap<String, NATSEventsSource>,
    ctx: &SourceContext,
    out: &mut BuiltEventSource,
) -> Result<(), BuildError> {
    let secrets = ctx.secrets.as_ref();
    let (sender, metrics) = (&ctx.sender, &ctx.metrics);
    for (event_name, spec) in events {
        if spec.url.is_empty() || spec.subject.is_empty() {
            return Err(BuildError::InvalidSpec {
                event_source: es_name.into(),
                event: event_name.clone(),
                reason: "`url` and `subject` are required".into(),
            });
        }
        let auth = resolve_auth(es_name, event_name, spec.auth.as_ref(), secrets)?;
        let tls = spec
            .tls
            .as_ref()
            .map(|t| crate::tls::Tls::build("nats", es_name, event_name, t, secrets))
            .transpose()?;
        out.tasks.push(Box::new(NatsSource {
            ready: ctx.readiness.flag(format!("{es_name}/{event_name}")),
            event_source: es_name.to_owned(),
            event_name: event_name.clone(),
            spec: spec.clone(),
            auth,
            tls,
            sender: sender.clone(),
            metrics: metrics.clone(),
        }));
    }
    Ok(())
}

/// One `nats` event: a core NATS subscription.
pub struct NatsSource {
    event_source: String,
    event_name: String,
    spec: NATSEventsSource,
    auth: Auth,
    /// The `tls` block, resolved.
    tls: Option<crate::tls::Tls>,
    sender: Arc<dyn EventSender>,
    metrics: SourceMetrics,
    /// Set while subscribed and connected.
    ready: ReadyFlag,
}

impl NatsSource {
    /// Publishes until the bus stored it; `false` when cancelled first (the message is lost: core
    /// NATS cannot redeliver).
    async fn publish(
        &self,
        m: &async_nats::Message,
        labels: &EventLabels,
        cancel: &CancellationToken,
    ) -> bool {
        let header: Value = match &m.headers {
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
            "subject": m.subject.as_str(),
            "body": body_value(&m.payload, self.spec.json_body),
            "header": header,
            "metadata": self.spec.metadata,
        });
        let event = match EventBuilder::new(&self.event_source, &self.event_name, SOURCE_TYPE)
            .data_json(data)
            .build()
        {
            Ok(e) => e,
            Err(e) => {
                // Cannot happen with these attributes; the message is lost (logged and counted).
                warn!(eventsource = %self.event_source, event_name = %self.event_name, error = %e, "failed to build a nats event; dropped");
                self.metrics.processing_failed.get_or_create(labels).inc();
                return true;
            }
        };
        let subject = Subject::new(&self.event_source, &self.event_name);
        let p = Publisher {
            sender: &*self.sender,
            metrics: &self.metrics,
            labels,
            cancel,
        };
        let retry = Retry::UntilStored { first: FIRST_BACKOFF };
        // Settled includes a rejected (too large) message: dropped after the helper's error log,
        // as core NATS cannot be told no. Not settled means cancelled: the message is lost.
        publish(&p, &subject, &event, retry).await.settled()
    }
}

#[async_trait]
impl PullSource for NatsSource {
    fn describe(&self) -> String {
        format!("{}/{}", self.event_source, self.event_name)
    }

    async fn run(self: Box<Self>, cancel: CancellationToken) -> Result<(), SourceError> {
        let labels = EventLabels {
            eventsource_name: self.event_source.clone(),
            event_name: self.event_name.clone(),
        };
        let mut backoff = Backoff::default();
        loop {
            let client = tokio::select! {
                biased;
                _ = cancel.cancelled() => return Ok(()),
                c = connect(&self.spec.url, &self.auth, self.tls.as_ref(), format!("sluice-{}-{}", self.event_source, self.event_name), &self.ready) => c,
            };
            let subscribed = match client {
                Ok(client) => {
                    let subject = self.spec.subject.clone();
                    match self.spec.queue.clone() {
                        Some(q) => client.queue_subscribe(subject, q).await,
                        None => client.subscribe(subject).await,
                    }
                    .map_err(|e| e.to_string())
                }
                Err(e) => Err(e.to_string()),
            };
            match subscribed {
                Ok(mut sub) => {
                    info!(eventsource = %self.event_source, event_name = %self.event_name, subject = %self.spec.subject, "subscribed");
                    self.ready.set(true);
                    backoff.reset();
                    // async-nats reconnects by itself and keeps the subscription.
                    loop {
                        let m = tokio::select! {
                            biased;
                            _ = cancel.cancelled() => return Ok(()),
                            m = sub.next() => m,
                        };
                        let Some(m) = m else { break };
                        if !self.publish(&m, &labels, &cancel).await {
                            return Ok(());
                        }
                    }
                    self.ready.set(false);
                    warn!(eventsource = %self.event_source, event_name = %self.event_name, "nats subscription ended; resubscribing");
                }
                Err(e) => {
                    self.ready.set(false);
                    warn!(eventsource = %self.event_source, event_name = %self.event_name, error = %e, retry_in = ?backoff.wait(), "failed to subscribe to nats; retrying");
                }
            }
            if !backoff.sleep(&cancel).await {
                return Ok(());
            }
        }
    }
}
