//! `amqp`: consumes a queue of an AMQP 0-9-1 broker (RabbitMQ). As upstream, the source declares
//! the exchange (`exchangeName`, `exchangeType`), declares a queue, binds it with `routingKey`, and
//! consumes it; each message becomes an event with upstream's data (the AMQP properties
//! `contentType` … `appId`, `exchange`, `routingKey`, `body`, `metadata`).
//!
//! Delivery: **at-least-once by default**, where upstream consumes with auto-ack. Unless
//! `consume.autoAck: true` is set, Sluice consumes with manual acknowledgement and sends
//! `basic.ack` (in [`Upstream::settle`]) only after the bus stored the event; when the bus refuses,
//! the message is nacked with requeue after a pause of [`NAK_DELAY`], so the broker hands it out
//! again. If the process dies or stops first, the broker requeues every un-acknowledged message
//! when the connection drops or is closed. The prefetch (`basic.qos`) is bounded, so at most
//! [`PREFETCH`] messages are in flight. A redelivered message gets a new event id (AMQP gives no
//! delivery id that survives a redelivery), so it can be a duplicate on the bus.
//! With `consume.autoAck: true` the broker forgets a message as soon as it is sent: the source
//! retries the bus in hand, and a crash or stop before the bus stored it loses it, as upstream
//! (a stop logs the loss).
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
//! re-declares everything after a broker restart. The waits start over only after a connection
//! that lasted [`MAX_WAIT`], so a broker that drops every connection at once still sees them grow.
//!
//! Body: with `jsonBody` a body that parses as JSON is embedded as JSON; any other body is a base64
//! string (as upstream marshals bytes), never dropped.

mod data;
pub mod tls;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions, ExchangeDeclareOptions,
    QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::uri::AMQPUri;
use lapin::{Channel, Connection, ConnectionProperties, Consumer, ExchangeKind};
use sluice_crds::eventsource::AMQPEventSource;
use tokio::time::Instant;
use tracing::{info, warn};

pub use data::{arguments_table, event_data, go_time_string};

use crate::pull::{Draft, Malformed, Names, Pull, Settle, Upstream, UpstreamError};
use crate::reconnect::{Backoff, MAX_WAIT};
use crate::sender::Retry;
use crate::{BuildError, BuiltEventSource, SourceContext};

/// The CloudEvent `type` of this kind.
pub const SOURCE_TYPE: &str = "amqp";
/// Messages delivered but not yet acknowledged (manual ack): the broker keeps the rest.
pub const PREFETCH: u16 = 64;
/// How long a message the bus refused is held before it is nacked with requeue (manual ack), and
/// the first wait of the in-hand retry (autoAck): a down bus must not make a message spin.
pub const NAK_DELAY: Duration = Duration::from_secs(1);
/// How long a graceful close may take before the connection is dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

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
/// URL and credentials, parses the queue arguments. Connecting happens when the source runs.
pub fn build(
    es_name: &str,
    events: &BTreeMap<String, AMQPEventSource>,
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
        let backoff = Backoff::from_spec(
            spec.connection_backoff.as_ref(),
            Backoff::new(Duration::from_secs(1), 2.0),
        )
        .map_err(invalid)?;
        let upstream = AmqpUpstream {
            event_source: es_name.to_owned(),
            event_name: event_name.clone(),
            mode: AckMode::of(spec),
            spec: spec.clone(),
            uri,
            arguments,
            backoff,
            tls,
        };
        out.tasks
            .push(Box::new(Pull::new(es_name, event_name, upstream, ctx)));
    }
    Ok(())
}

/// One `amqp` event: a consumer of one queue.
pub struct AmqpUpstream {
    event_source: String,
    event_name: String,
    mode: AckMode,
    spec: AMQPEventSource,
    uri: AMQPUri,
    arguments: FieldTable,
    /// Between connection attempts (`connectionBackoff`).
    backoff: Backoff,
    /// The `tls` block's client configuration; `None` leaves TLS to lapin (an `amqps://` URL is
    /// then verified against the system's roots).
    tls: Option<Arc<rustls::ClientConfig>>,
}

/// How messages are acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AckMode {
    /// `basic.ack` after the bus stored the event (Sluice's default).
    AfterBus,
    /// `consume.autoAck: true`: the broker forgets a message once sent.
    Auto,
}

impl AckMode {
    fn of(spec: &AMQPEventSource) -> Self {
        match &spec.consume {
            Some(c) if c.auto_ack => AckMode::Auto,
            _ => AckMode::AfterBus,
        }
    }
}

/// A consuming connection.
pub struct Session {
    connection: Connection,
    /// Kept open for the consumer's deliveries.
    _channel: Channel,
    consumer: Consumer,
    /// A delivery the bus refused (manual ack) and when to nack it with requeue.
    refused: Option<(Delivery, Instant)>,
    /// autoAck: the tag of the delivery handed out and not yet settled, lost if the source stops
    /// now.
    in_hand: Option<u64>,
}

impl AmqpUpstream {
    /// Declares the exchange and the queue, binds them, sets the prefetch and starts consuming.
    async fn open(&self, connection: &Connection) -> Result<(Channel, Consumer, String), ConsumeError> {
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
        let mode = self.mode;
        if mode == AckMode::AfterBus {
            // Bounded in-flight window: the broker keeps the rest until we ack.
            channel
                .basic_qos(PREFETCH, BasicQosOptions { global: false })
                .await
                .map_err(ConsumeError::SetQos)?;
        }
        let c = spec.consume.clone().unwrap_or_default();
        let consumer = channel
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
        Ok((channel, consumer, queue_name))
    }

    /// Nacks `delivery`; a failure is logged (the broker requeues it when the connection closes).
    async fn nack(&self, delivery: &Delivery, requeue: bool) {
        let options = BasicNackOptions {
            multiple: false,
            requeue,
        };
        if let Err(e) = delivery.nack(options).await {
            warn!(eventsource = %self.event_source, event_name = %self.event_name, error = %e, requeue, "failed to nack an AMQP message; the broker requeues it when the connection closes");
        }
    }
}

/// Closes `connection`, waiting at most [`CLOSE_TIMEOUT`]; closing hands every un-acknowledged
/// delivery back to the queue (as dropping it does, later).
async fn close(connection: Connection) {
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, connection.close(200, "bye")).await;
}

#[async_trait]
impl Upstream for AmqpUpstream {
    type Session = Session;
    type Message = Delivery;

    fn kind(&self) -> &'static str {
        SOURCE_TYPE
    }

    fn retry(&self) -> Retry {
        match self.mode {
            // Why once: the broker redelivers a message nacked with requeue, so the queue keeps
            // it, not this process.
            AckMode::AfterBus => Retry::Once,
            // Why in hand: with autoAck the broker forgot the message when it sent it; giving up
            // would lose it.
            AckMode::Auto => Retry::UntilStored { first: NAK_DELAY },
        }
    }

    fn backoff(&self) -> Backoff {
        self.backoff.clone()
    }

    fn reconnect_message(&self) -> Option<&'static str> {
        Some("AMQP consumer stopped; reconnecting")
    }

    /// Why only after [`MAX_WAIT`]: a broker that drops every connection at once must still see
    /// the waits grow.
    fn steady_after(&self) -> Duration {
        MAX_WAIT
    }

    async fn connect(&self, _: &Names) -> Result<Session, UpstreamError> {
        let properties = ConnectionProperties::default();
        let connection = match &self.tls {
            Some(config) => {
                Connection::connector(self.uri.clone(), tls::connector(config.clone()), properties).await
            }
            None => Connection::connect_uri(self.uri.clone(), properties).await,
        }
        .map_err(ConsumeError::Connect)?;
        match self.open(&connection).await {
            Ok((channel, consumer, queue)) => {
                info!(eventsource = %self.event_source, event_name = %self.event_name, queue = %queue, ack = ?self.mode, "consuming the AMQP queue");
                Ok(Session {
                    connection,
                    _channel: channel,
                    consumer,
                    refused: None,
                    in_hand: None,
                })
            }
            Err(error) => {
                close(connection).await;
                Err(error.into())
            }
        }
    }

    /// Nacks a refused delivery once its pause is over, then takes the next one. Cancel-safe: the
    /// refused delivery stays in the session until it is nacked.
    async fn next(&self, session: &mut Session) -> Result<Option<Delivery>, UpstreamError> {
        if let Some((_, at)) = &session.refused {
            tokio::time::sleep_until(*at).await;
        }
        if let Some((delivery, _)) = session.refused.take() {
            // Why nack with requeue after the pause: the bus did not store the event; the broker
            // hands the message out again (to this or another consumer), and the pause keeps a
            // down bus from making it spin.
            self.nack(&delivery, true).await;
        }
        let delivery = match session.consumer.next().await {
            Some(Ok(d)) => d,
            Some(Err(e)) => return Err(ConsumeError::Receive(e).into()),
            None => return Err(ConsumeError::ConsumerEnded.into()),
        };
        if self.mode == AckMode::Auto {
            session.in_hand = Some(delivery.delivery_tag);
        }
        Ok(Some(delivery))
    }

    fn decode(&self, d: &Delivery) -> Result<Vec<Draft>, Malformed> {
        Ok(vec![Draft::new(event_data(
            &d.properties,
            d.exchange.as_str(),
            d.routing_key.as_str(),
            &d.data,
            self.spec.json_body,
            self.spec.metadata.as_ref(),
        ))])
    }

    async fn settle(
        &self,
        session: &mut Session,
        delivery: Delivery,
        settle: Settle,
    ) -> Result<(), UpstreamError> {
        if self.mode == AckMode::Auto {
            // Nothing to tell the broker: it forgot the message when it sent it.
            session.in_hand = None;
            return Ok(());
        }
        match settle {
            // Why ack now: the bus stored the event (or the filter dropped it on purpose), so the
            // broker may forget the message.
            Settle::Ack => {
                delivery.ack(BasicAckOptions::default()).await?;
            }
            // Nacked with requeue by `next` after the pause (or requeued by the close).
            Settle::Nak => session.refused = Some((delivery, Instant::now() + NAK_DELAY)),
            // Why nack without requeue (the message leaves the queue): it can never be stored (too
            // large; logged and counted), so a requeue would loop forever. The broker dead-letters
            // it when the queue has a dead-letter exchange, else drops it.
            Settle::Term => self.nack(&delivery, false).await,
        }
        Ok(())
    }

    async fn close(&self, session: Session) {
        if let Some(tag) = session.in_hand {
            // Why this loses the message: autoAck was asked for, so the broker has already
            // forgotten it (as with autoAck upstream).
            warn!(eventsource = %self.event_source, event_name = %self.event_name, delivery = tag, "stopped before the bus stored an auto-acked AMQP message; it is lost");
        }
        // Not acked (in flight, or refused and not yet nacked): closing requeues them.
        close(session.connection).await;
    }

    fn locate(&self, d: &Delivery) -> String {
        format!(
            "delivery {} (exchange {}, routing key {})",
            d.delivery_tag, d.exchange, d.routing_key
        )
    }
}
