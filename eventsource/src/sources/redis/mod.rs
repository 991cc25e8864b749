//! `redis` (pub/sub): subscribes to `channels` with PSUBSCRIBE (glob patterns allowed, as upstream)
//! and publishes each message with upstream's data `{channel, pattern, body, metadata}`.
//!
//! Delivery: **at-most-once by nature.** Redis pub/sub has no acknowledgement and no redelivery: a
//! message that arrives while the bus refuses is retried here with backoff, but one published while
//! Sluice is down or disconnected, or in hand when the process stops, is lost. Use `redisStream`
//! when every message matters.
//!
//! Readiness: `<eventSource>/<event>` is ready while subscribed and connected. A message whose
//! event is bigger than the bus takes is logged with its size, counted in
//! `sluice_eventsource_events_rejected_total{reason="too_large"}` and dropped.
//!
//! Body: the payload as a string, as upstream; with `jsonBody` a payload that parses as JSON is
//! embedded as JSON and any other payload is a base64 string, never dropped.
//!
//! TLS: with a `tls` block (`caCertSecret`, `clientCertSecret` + `clientKeySecret`,
//! `insecureSkipVerify`; checked by [`crate::tls`]) the source speaks TLS to `hostAddress`, as
//! upstream; see [`crate::clients::redis::redis_client`].

use crate::{BuiltEventSource, SourceContext};
use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use serde_json::json;
use sluice_crds::eventsource::RedisEventSource;
use sluice_eventbus::{EventBuilder, Subject};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::clients::body::text_body_value;
use crate::clients::redis::redis_client;
use crate::metrics::{EventLabels, SourceMetrics};
use crate::reconnect::Backoff;
use crate::sender::{publish, EventSender, Publisher, Retry, FIRST_BACKOFF};
use crate::{BuildError, PullSource, SourceError};
use sluice_eventbus::readiness::ReadyFlag;

/// The CloudEvent `type` of this kind.
pub const SOURCE_TYPE: &str = "redis";

/// Builds a pull source per `redis` event of EventSource `es_name`.
pub fn build(
    es_name: &str,
    events: &BTreeMap<String, RedisEventSource>,
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
        if spec.host_address.is_empty() || spec.channels.is_empty() {
            return Err(invalid("`hostAddress` and `channels` are required".into()));
        }
        let password = match &spec.password {
            Some(s) => Some(secrets.resolve_secret(s).map_err(|e| BuildError::ResolveSecret {
                event_source: es_name.into(),
                event: event_name.clone(),
                source: Box::new(e),
            })?),
            None => None,
        };
        let client = redis_client(
            "redis",
            es_name,
            event_name,
            &spec.host_address,
            spec.username.as_deref(),
            password.as_deref(),
            spec.db.unwrap_or(0),
            spec.tls.as_ref(),
            secrets,
        )?;
        out.tasks.push(Box::new(RedisSource {
            ready: ctx.readiness.flag(format!("{es_name}/{event_name}")),
            event_source: es_name.to_owned(),
            event_name: event_name.clone(),
            spec: spec.clone(),
            client,
            sender: sender.clone(),
            metrics: metrics.clone(),
        }));
    }
    Ok(())
}

/// One `redis` event: a pattern subscription.
pub struct RedisSource {
    event_source: String,
    event_name: String,
    spec: RedisEventSource,
    client: redis::Client,
    sender: Arc<dyn EventSender>,
    metrics: SourceMetrics,
    /// Set while subscribed.
    ready: ReadyFlag,
}

impl RedisSource {
    /// Publishes until the bus stored it; `false` when cancelled first (then the message is lost:
    /// pub/sub cannot redeliver).
    async fn publish(&self, m: &redis::Msg, labels: &EventLabels, cancel: &CancellationToken) -> bool {
        let pattern: String = m.get_pattern().unwrap_or_default();
        let mut data = json!({
            "channel": m.get_channel_name(),
            "pattern": pattern,
            "body": text_body_value(m.get_payload_bytes(), self.spec.json_body),
        });
        if let Some(md) = &self.spec.metadata {
            data["metadata"] = json!(md);
        }
        let event = match EventBuilder::new(&self.event_source, &self.event_name, SOURCE_TYPE)
            .data_json(data)
            .build()
        {
            Ok(e) => e,
            Err(e) => {
                // Cannot happen with these attributes; the message is lost (logged and counted).
                warn!(eventsource = %self.event_source, event_name = %self.event_name, error = %e, "failed to build a redis event; dropped");
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
        // Settled includes a rejected (too large) message: dropped after the helper's error log, as
        // pub/sub cannot be told no. Not settled means cancelled: the message is lost.
        publish(&p, &subject, &event, retry).await.settled()
    }
}

#[async_trait]
impl PullSource for RedisSource {
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
            let subscribed = tokio::select! {
                biased;
                _ = cancel.cancelled() => return Ok(()),
                s = async {
                    let mut pubsub = self.client.get_async_pubsub().await?;
                    pubsub.psubscribe(&self.spec.channels).await?;
                    Ok::<_, redis::RedisError>(pubsub)
                } => s,
            };
            match subscribed {
                Ok(pubsub) => {
                    info!(eventsource = %self.event_source, event_name = %self.event_name, channels = ?self.spec.channels, "subscribed");
                    self.ready.set(true);
                    backoff.reset();
                    let mut messages = pubsub.into_on_message();
                    loop {
                        let m = tokio::select! {
                            biased;
                            _ = cancel.cancelled() => return Ok(()),
                            m = messages.next() => m,
                        };
                        let Some(m) = m else { break };
                        if !self.publish(&m, &labels, &cancel).await {
                            return Ok(());
                        }
                    }
                    self.ready.set(false);
                    warn!(eventsource = %self.event_source, event_name = %self.event_name, "redis connection lost; resubscribing");
                }
                Err(e) => {
                    self.ready.set(false);
                    warn!(eventsource = %self.event_source, event_name = %self.event_name, error = %e, retry_in = ?backoff.wait(), "failed to subscribe to redis; retrying");
                }
            }
            if !backoff.sleep(&cancel).await {
                return Ok(());
            }
        }
    }
}
