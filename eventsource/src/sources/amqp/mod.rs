//! `amqp`: consumes a queue of an AMQP 0-9-1 broker (RabbitMQ). As upstream, the source declares
//! the exchange (`exchangeName`, `exchangeType`), declares a queue, binds it with `routingKey`, and
//! consumes it; each message becomes an event with upstream's data (the AMQP properties
//! `contentType` … `appId`, `exchange`, `routingKey`, `body`, `metadata`).
//!
//! Delivery: **at-least-once by default**, where upstream consumes with auto-ack. Unless
//! `consume.autoAck: true` is set, Sluice consumes with manual acknowledgement and sends
//! `basic.ack` only after the bus stored the event; when the bus refuses, the message is nacked with
//! requeue after a backoff, so the broker hands it out again. If the process dies first, the broker
//! requeues every un-acknowledged message when the connection drops. The prefetch (`basic.qos`) is
//! bounded, so at most [`PREFETCH`] messages are in flight. A redelivered message gets a new event
//! id (AMQP gives no delivery id that survives a redelivery), so it can be a duplicate on the bus.
//! With `consume.autoAck: true` the broker forgets a message as soon as it is sent: a crash before
//! the bus stored it loses it, as upstream.
//!
//! Too large: a message whose event is bigger than the bus takes (`--max-event-bytes`) is logged
//! with its size, counted in `sluice_eventsource_events_rejected_total{reason="too_large"}` and
//! nacked without requeue, so the broker dead-letters it (when the queue has a dead-letter exchange)
//! or drops it instead of handing it out forever.
//!
//! TLS: the `tls` block (`caCertSecret`, `clientCertSecret` + `clientKeySecret`,
//! `insecureSkipVerify`, built by [`crate::tls`]) needs an `amqps://` URL; see [`tls`].
//!
//! Readiness: `<eventSource>/<event>` is ready while the source consumes the queue.
//!
//! Connection: (re)connects with backoff (`connectionBackoff`, else 1s doubling to 30s) and
//! re-declares everything after a broker restart.
//!
//! Body: with `jsonBody` a body that parses as JSON is embedded as JSON; any other body is a base64
//! string (as upstream marshals bytes), never dropped.

mod data;
pub mod tls;

use crate::{BuiltEventSource, SourceContext};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions, ExchangeDeclareOptions,
    QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::uri::AMQPUri;
use lapin::{Connection, ConnectionProperties, ExchangeKind};
use sluice_crds::eventsource::AMQPEventSource;
use sluice_eventbus::{EventBuilder, Subject};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use data::{arguments_table, event_data, go_time_string};

use crate::metrics::{EventLabels, SourceMetrics};
use crate::reconnect::{Backoff, MAX_WAIT};
use crate::sender::{publish, EventSender, Outcome, Publisher, Retry};
use crate::{BuildError, PullSource, SourceError};
use sluice_eventbus::readiness::ReadyFlag;

/// The CloudEvent `type` of this kind.
pub const SOURCE_TYPE: &str = "amqp";
/// Messages delivered but not yet acknowledged (manual ack): the broker keeps the rest.
pub const PREFETCH: u16 = 64;
const MIN_BACKOFF: Duration = Duration::from_millis(200);

/// Why one connection of the source ended.
#[derive(Debug, thiserror::Error)]
enum ConsumeError {
    #[error("failed to connect to the AMQP broker")]
    Connect(#[source] lapin::Error),
    #[error("failed to open a channel")]
    OpenChannel(#[source] lapin::Error),
    #[error("failed to declare exchange {exchange}")]
    DeclareExchange {
        exchange: String,
        #[source]
        source: lapin::Error,
    },
    #[error("failed to declare queue {queue:?}")]
    DeclareQueue {
        queue: String,
        #[source]
        source: lapin::Error,
    },
    #[error("failed to bind queue {queue} to exchange {exchange} with routing key {routing_key}")]
    BindQueue {
        queue: String,
        exchange: String,
        routing_key: String,
        #[source]
        source: lapin::Error,
    },
    #[error("failed to set the prefetch")]
    SetQos(#[source] lapin::Error),
    #[error("failed to start consuming queue {queue}")]
    Consume {
        queue: String,
        #[source]
        source: lapin::Error,
    },
    #[error("failed to receive a delivery")]
    Receive(#[source] lapin::Error),
    #[error("the broker cancelled the consumer")]
    ConsumerEnded,
}

fn exchange_kind(t: &str) -> ExchangeKind {
    match t {
        "direct" => ExchangeKind::Direct,
        "fanout" => ExchangeKind::Fanout,
        "topic" => ExchangeKind::Topic,
        "headers" => ExchangeKind::Headers,
        other => ExchangeKind::Custom(other.to_owned()),
    }
}

/// Builds a pull source per `amqp` event of EventSource `es_name`: checks the spec, resolves the
/// URL and credentials, parses the queue arguments. Connecting happens in `run`.
pub fn build(
    es_name: &str,
    events: &BTreeMap<String, AMQPEventSource>,
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
        let resolve = |s: &sluice_crds::common::SecretKeySelector| {
            crate::resolve_secret(secrets, es_name, event_name, s)
        };
        if spec.exchange_name.is_empty() || spec.exchange_type.is_empty() || spec.routing_key.is_empty() {
            return Err(invalid(
                "`exchangeName`, `exchangeType` and `routingKey` are required".into(),
            ));
        }
        let url = match (&spec.url, &spec.url_secret) {
            (Some(u), None) if !u.is_empty() => u.clone(),
            (None, Some(s)) => resolve(s)?,
            (Some(u), Some(_)) if !u.is_empty() => {
                return Err(invalid("set `url` or `urlSecret`, not both".into()))
            }
            _ => return Err(invalid("`url` or `urlSecret` is required".into())),
        };
        // The URL may embed credentials: never put it in a message.
        let mut uri: AMQPUri = url
            .parse()
            .map_err(|_| invalid("url: not an amqp:// URL (the value is a secret, not shown)".into()))?;
        if let Some(auth) = &spec.auth {
            match (&auth.username, &auth.password) {
                (Some(u), Some(p)) => {
                    uri.authority.userinfo.username = resolve(u)?;
                    uri.authority.userinfo.password = resolve(p)?;
                }
                _ => return Err(invalid("auth needs username and password".into())),
            }
        }
        let tls = match &spec.tls {
            None => None,
            Some(t) => {
                if uri.scheme != lapin::uri::AMQPScheme::AMQPS {
                    // Upstream would connect in plain text here, silently; refused instead.
                    return Err(invalid(
                        "tls is set but the url is not amqps:// (the url is a secret, not shown)".into(),
                    ));
                }
                Some(crate::tls::Tls::build("amqp", es_name, event_name, t, secrets)?.config)
            }
        };
        let arguments = arguments_table(spec.queue_declare.as_ref().and_then(|q| q.arguments.as_deref()))
            .map_err(invalid)?;
        let backoff = backoff_of(spec).map_err(invalid)?;
        out.tasks.push(Box::new(AmqpSource {
            ready: ctx.readiness.flag(format!("{es_name}/{event_name}")),
            tls,
            event_source: es_name.to_owned(),
            event_name: event_name.clone(),
            spec: spec.clone(),
            uri,
            arguments,
            backoff,
            sender: sender.clone(),
            metrics: metrics.clone(),
        }));
    }
    Ok(())
}

/// The first reconnect wait and its factor, from `connectionBackoff` (default 1s, doubling).
fn backoff_of(spec: &AMQPEventSource) -> Result<(Duration, f64), String> {
    let Some(b) = &spec.connection_backoff else {
        return Ok((Duration::from_secs(1), 2.0));
    };
    let first = match &b.duration {
        Some(d) => d
            .to_duration()
            .map_err(|e| format!("connectionBackoff.duration: {e}"))?,
        None => Duration::from_secs(1),
    };
    let factor = b
        .factor
        .as_ref()
        .and_then(|f| f.as_f64())
        .filter(|f| *f >= 1.0)
        .unwrap_or(1.0);
    Ok((first.max(MIN_BACKOFF), factor))
}

/// One `amqp` event: a consumer of one queue.
pub struct AmqpSource {
    event_source: String,
    event_name: String,
    spec: AMQPEventSource,
    uri: AMQPUri,
    arguments: FieldTable,
    backoff: (Duration, f64),
    sender: Arc<dyn EventSender>,
    metrics: SourceMetrics,
    /// The `tls` block's client configuration; `None` leaves TLS to lapin (an `amqps://` URL is
    /// then verified against the system's roots).
    tls: Option<Arc<rustls::ClientConfig>>,
    /// Set while consuming.
    ready: ReadyFlag,
}

/// How messages are acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AckMode {
    /// `basic.ack` after the bus stored the event (Sluice's default).
    AfterBus,
    /// `consume.autoAck: true`: the broker forgets a message once sent.
    Auto,
}

impl AmqpSource {
    fn ack_mode(&self) -> AckMode {
        match &self.spec.consume {
            Some(c) if c.auto_ack => AckMode::Auto,
            _ => AckMode::AfterBus,
        }
    }

    /// Connects, declares, binds and consumes until cancelled (`Ok`) or the connection fails.
    async fn consume(&self, labels: &EventLabels, cancel: &CancellationToken) -> Result<(), ConsumeError> {
        let properties = ConnectionProperties::default();
        let connection = match &self.tls {
            Some(config) => {
                Connection::connector(self.uri.clone(), tls::connector(config.clone()), properties).await
            }
            None => Connection::connect_uri(self.uri.clone(), properties).await,
        }
        .map_err(ConsumeError::Connect)?;
        let result = self.consume_on(&connection, labels, cancel).await;
        // Closing hands every un-acknowledged delivery back to the queue.
        let _ = connection.close(200, "bye").await;
        result
    }

    async fn consume_on(
        &self,
        connection: &Connection,
        labels: &EventLabels,
        cancel: &CancellationToken,
    ) -> Result<(), ConsumeError> {
        let spec = &self.spec;
        let channel = connection
            .create_channel()
            .await
            .map_err(ConsumeError::OpenChannel)?;
        // Upstream's defaults when a block is omitted: a durable exchange; a server-named,
        // exclusive queue.
        let ex =
            spec.exchange_declare
                .clone()
                .unwrap_or(sluice_crds::eventsource::AMQPExchangeDeclareConfig {
                    durable: true,
                    ..Default::default()
                });
        channel
            .exchange_declare(
                spec.exchange_name.as_str(),
                exchange_kind(&spec.exchange_type),
                ExchangeDeclareOptions {
                    passive: false,
                    durable: ex.durable,
                    auto_delete: ex.auto_delete,
                    internal: ex.internal,
                    nowait: ex.no_wait,
                },
                FieldTable::default(),
            )
            .await
            .map_err(|source| ConsumeError::DeclareExchange {
                exchange: spec.exchange_name.clone(),
                source,
            })?;
        let q = spec
            .queue_declare
            .clone()
            .unwrap_or(sluice_crds::eventsource::AMQPQueueDeclareConfig {
                exclusive: true,
                ..Default::default()
            });
        let queue_name = q.name.clone().unwrap_or_default();
        let queue = channel
            .queue_declare(
                queue_name.as_str(),
                QueueDeclareOptions {
                    passive: false,
                    durable: q.durable,
                    exclusive: q.exclusive,
                    auto_delete: q.auto_delete,
                    nowait: q.no_wait,
                },
                self.arguments.clone(),
            )
            .await
            .map_err(|source| ConsumeError::DeclareQueue {
                queue: queue_name.clone(),
                source,
            })?;
        let queue_name = if q.no_wait {
            queue_name
        } else {
            queue.name().as_str().to_owned()
        };
        let bind_no_wait = spec.queue_bind.as_ref().is_some_and(|b| b.no_wait);
        channel
            .queue_bind(
                queue_name.as_str(),
                spec.exchange_name.as_str(),
                spec.routing_key.as_str(),
                QueueBindOptions { nowait: bind_no_wait },
                FieldTable::default(),
            )
            .await
            .map_err(|source| ConsumeError::BindQueue {
                queue: queue_name.clone(),
                exchange: spec.exchange_name.clone(),
                routing_key: spec.routing_key.clone(),
                source,
            })?;
        let mode = self.ack_mode();
        if mode == AckMode::AfterBus {
            // Bounded in-flight window: the broker keeps the rest until we ack.
            channel
                .basic_qos(PREFETCH, BasicQosOptions { global: false })
                .await
                .map_err(ConsumeError::SetQos)?;
        }
        let c = spec.consume.clone().unwrap_or_default();
        let mut consumer = channel
            .basic_consume(
                queue_name.as_str(),
                c.consumer_tag.clone().unwrap_or_default().as_str(),
                BasicConsumeOptions {
                    no_local: c.no_local,
                    no_ack: mode == AckMode::Auto,
                    exclusive: c.exclusive,
                    nowait: c.no_wait,
                },
                FieldTable::default(),
            )
            .await
            .map_err(|source| ConsumeError::Consume {
                queue: queue_name.clone(),
                source,
            })?;
        info!(eventsource = %self.event_source, event_name = %self.event_name, queue = %queue_name, ack = ?mode, "consuming the AMQP queue");
        self.ready.set(true);
        loop {
            let delivery = tokio::select! {
                biased;
                _ = cancel.cancelled() => return Ok(()),
                d = consumer.next() => match d {
                    Some(Ok(d)) => d,
                    Some(Err(e)) => return Err(ConsumeError::Receive(e)),
                    None => return Err(ConsumeError::ConsumerEnded),
                },
            };
            let data = event_data(
                &delivery.properties,
                delivery.exchange.as_str(),
                delivery.routing_key.as_str(),
                &delivery.data,
                spec.json_body,
                spec.metadata.as_ref(),
            );
            let Some(event) = self.event(data, labels) else {
                if mode == AckMode::AfterBus {
                    // Cannot happen with these attributes; nacked with requeue, so the broker keeps it.
                    nack(&delivery, true, self).await;
                }
                continue;
            };
            let subject = Subject::new(&self.event_source, &self.event_name);
            let publisher = Publisher {
                sender: &*self.sender,
                metrics: &self.metrics,
                labels,
                cancel,
            };
            if mode == AckMode::Auto {
                // The broker already forgot the message: retry in-process until the bus stores it.
                let retry = Retry::UntilStored {
                    first: MIN_BACKOFF * 5,
                };
                if !publish(&publisher, &subject, &event, retry).await.settled() {
                    // Why this loses the message: autoAck was asked for, so the broker has already
                    // forgotten it (as with autoAck upstream).
                    warn!(eventsource = %self.event_source, event_name = %self.event_name, event = %event.id(), "stopped before the bus stored an auto-acked AMQP message; it is lost");
                    return Ok(());
                }
                continue;
            }
            match publish(&publisher, &subject, &event, Retry::Once).await {
                Outcome::Stored(_) | Outcome::Filtered => {
                    // Why ack now: the bus stored the event, so the broker may forget the message.
                    if let Err(e) = delivery.ack(BasicAckOptions::default()).await {
                        warn!(eventsource = %self.event_source, event_name = %self.event_name, error = %e, "failed to acknowledge an AMQP message; the broker redelivers it");
                    }
                }
                Outcome::Refused(_) => {
                    // Why wait, then nack with requeue: the bus did not store the event; the broker
                    // hands the message out again (to this or another consumer), and the wait keeps
                    // a down bus from making it spin.
                    tokio::select! {
                        biased;
                        // Not acked: closing the connection requeues it.
                        _ = cancel.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(MIN_BACKOFF * 5) => {}
                    }
                    nack(&delivery, true, self).await;
                }
                Outcome::Rejected(_) => {
                    // Why nack without requeue (the message leaves the queue): it is bigger than
                    // the bus takes, so a requeue would loop forever. The broker dead-letters it
                    // when the queue has a dead-letter exchange, else drops it; the helper logged
                    // its size and counted it.
                    nack(&delivery, false, self).await;
                }
                // Not acked: closing the connection requeues it.
                Outcome::Cancelled => return Ok(()),
            }
        }
    }

    /// The event of one message; `None` (logged, counted) when it cannot be built.
    fn event(&self, data: serde_json::Value, labels: &EventLabels) -> Option<sluice_eventbus::Event> {
        match EventBuilder::new(&self.event_source, &self.event_name, SOURCE_TYPE)
            .data_json(data)
            .build()
        {
            Ok(e) => Some(e),
            Err(e) => {
                warn!(eventsource = %self.event_source, event_name = %self.event_name, error = %e, "failed to build an amqp event");
                self.metrics.processing_failed.get_or_create(labels).inc();
                None
            }
        }
    }
}

/// `basic.nack`s one delivery; a failure is logged (the broker requeues it when the connection
/// closes).
async fn nack(delivery: &lapin::message::Delivery, requeue: bool, s: &AmqpSource) {
    if let Err(e) = delivery
        .nack(BasicNackOptions {
            multiple: false,
            requeue,
        })
        .await
    {
        warn!(eventsource = %s.event_source, event_name = %s.event_name, error = %e, requeue, "failed to nack an AMQP message; the broker requeues it when the connection closes");
    }
}

#[async_trait]
impl PullSource for AmqpSource {
    fn describe(&self) -> String {
        format!("{}/{}", self.event_source, self.event_name)
    }

    async fn run(self: Box<Self>, cancel: CancellationToken) -> Result<(), SourceError> {
        let labels = EventLabels {
            eventsource_name: self.event_source.clone(),
            event_name: self.event_name.clone(),
        };
        let (first, factor) = self.backoff;
        let mut backoff = Backoff::new(first, factor);
        loop {
            let started = std::time::Instant::now();
            match self.consume(&labels, &cancel).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    self.ready.set(false);
                    // Why only after a long connection: a broker that drops every connection at
                    // once must still see the waits grow.
                    if started.elapsed() > MAX_WAIT {
                        backoff.reset();
                    }
                    warn!(eventsource = %self.event_source, event_name = %self.event_name, error = %e, source_error = ?std::error::Error::source(&e).map(ToString::to_string), retry_in = ?backoff.wait(), "AMQP consumer stopped; reconnecting");
                }
            }
            if !backoff.sleep(&cancel).await {
                return Ok(());
            }
        }
    }
}
