//! `mqtt`: subscribes to a topic (wildcards allowed) on an MQTT broker and publishes each message
//! with upstream's data `{topic, messageId, body, metadata}`.
//!
//! Delivery: at-least-once, where upstream subscribes at QoS 0. Sluice subscribes at **QoS 1** with a
//! persistent session (`clean_session = false`, keyed by `clientId`) and manual acknowledgement: the
//! PUBACK is sent only after the bus stored the event. While the bus refuses, the message is retried
//! with backoff and not acknowledged; if the process stops first, the broker redelivers the
//! un-acknowledged message when the same `clientId` reconnects, and keeps messages published
//! meanwhile for the session. MQTT packet ids are reused, so event ids are random and a redelivery
//! can be a duplicate on the bus.
//!
//! Too large: a message whose event is bigger than the bus takes is logged with its size, counted
//! in `sluice_eventsource_events_rejected_total{reason="too_large"}` and acknowledged (dropped), so
//! the session is not blocked by it. Readiness: `<eventSource>/<event>` is ready once subscribed and
//! not while the connection is down.
//!
//! Body: with `jsonBody` a payload that parses as JSON is embedded as JSON; any other payload is a
//! base64 string (as upstream marshals bytes), never dropped.
//!
//! TLS: a `tls` block (`caCertSecret`, `clientCertSecret` + `clientKeySecret` for mutual TLS,
//! `insecureSkipVerify`; built by [`crate::tls`]) means TLS, whatever the URL's scheme. Without one,
//! the scheme decides as in paho (upstream's client): `ssl://`, `tls://`, `mqtts://`, `mqtt+ssl://`,
//! `tcps://` (default port 8883) connect over TLS trusting the system's roots; `tcp://`, `mqtt://`
//! in plain text. Differs from paho, which ignores the block with `tcp://` and connects in plain
//! text although upstream's own example writes `tcp://` with a `tls` block.

use crate::{BuiltEventSource, SourceContext};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rumqttc::{
    AsyncClient, Event as MqttEvent, MqttOptions, Packet, Publish, QoS, TlsConfiguration, Transport,
};
use serde_json::json;
use sluice_crds::eventsource::MQTTEventSource;
use sluice_eventbus::{EventBuilder, Subject};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::clients::body::body_value;
use crate::metrics::{EventLabels, SourceMetrics};
use crate::reconnect::Backoff;
use crate::sender::{publish, EventSender, Outcome, Publisher, Retry, FIRST_BACKOFF};
use crate::{BuildError, PullSource, SourceError};
use sluice_eventbus::readiness::ReadyFlag;

/// The CloudEvent `type` of this kind.
pub const SOURCE_TYPE: &str = "mqtt";
/// Messages received but not yet published; the broker holds the rest (bounded in-flight window).
const QUEUE: usize = 64;
/// The largest packet accepted from the broker: MQTT's own maximum (256 MiB). rumqttc's default
/// (10 KiB) would fail the connection on a bigger message, and with QoS 1 the broker would then
/// redeliver it on every reconnect; taken in, a message bigger than the bus takes is rejected once
/// (logged, counted, acknowledged).
const MAX_INCOMING_PACKET: usize = 268_435_455;
/// The largest packet sent (SUBSCRIBE, PUBACK): rumqttc's default.
const MAX_OUTGOING_PACKET: usize = 10 * 1024;

/// A broker URL: where, and whether over TLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerUrl {
    /// The host (name or address).
    pub host: String,
    /// The port (default 1883, or 8883 over TLS).
    pub port: u16,
    /// The scheme asks for TLS: `ssl`, `tls`, `mqtts`, `mqtt+ssl` or `tcps`, as paho (upstream's
    /// client); `tcp` and `mqtt` are plain.
    pub tls: bool,
}

/// Parses `scheme://host[:port]` (schemes as paho: `tcp`, `mqtt`; over TLS `ssl`, `tls`, `mqtts`,
/// `mqtt+ssl`, `tcps`).
pub fn broker_url(url: &str) -> Result<BrokerUrl, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("url: `{url}` has no scheme (tcp://, mqtt://, ssl://, tls://, mqtts://)"))?;
    let tls = match scheme.to_ascii_lowercase().as_str() {
        "tcp" | "mqtt" => false,
        "ssl" | "tls" | "mqtts" | "mqtt+ssl" | "tcps" => true,
        other => {
            return Err(format!(
                "url: scheme `{other}` is not one of tcp, mqtt, ssl, tls, mqtts, mqtt+ssl, tcps"
            ))
        }
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (
            h,
            p.parse::<u16>()
                .map_err(|_| format!("url: `{p}` is not a port number"))?,
        ),
        None => (rest, if tls { 8883 } else { 1883 }),
    };
    if host.is_empty() {
        return Err(format!("url: `{url}` has no host"));
    }
    Ok(BrokerUrl {
        host: host.to_owned(),
        port,
        tls,
    })
}

/// `scheme://host:port` → (host, port); see [`broker_url`].
pub fn parse_url(url: &str) -> Result<(String, u16), String> {
    broker_url(url).map(|u| (u.host, u.port))
}

/// Builds a pull source per `mqtt` event of EventSource `es_name`.
pub fn build(
    es_name: &str,
    events: &BTreeMap<String, MQTTEventSource>,
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
        if spec.url.is_empty() || spec.topic.is_empty() || spec.client_id.is_empty() {
            return Err(invalid("`url`, `topic` and `clientId` are required".into()));
        }
        let url = broker_url(&spec.url).map_err(invalid)?;
        let tls = match (&spec.tls, url.tls) {
            // With tcp:// or mqtt:// too: paho (upstream's client) would ignore the block there and
            // connect in plain text, yet upstream's own example pairs tcp:// with a `tls` block. The
            // block states the intent, so the connection is TLS, never silently plain.
            (Some(t), _) => Some(crate::tls::Tls::build("mqtt", es_name, event_name, t, secrets)?.config),
            // An ssl:// URL without a `tls` block: the system's roots, as paho.
            (None, true) => Some(
                crate::tls::client_config(&crate::tls::TlsMaterial::default())
                    .map_err(|e| invalid(format!("spec.mqtt.{event_name}.{e}")))?,
            ),
            (None, false) => None,
        };
        let resolve = |s: &sluice_crds::common::SecretKeySelector| {
            secrets.resolve_secret(s).map_err(|e| BuildError::ResolveSecret {
                event_source: es_name.into(),
                event: event_name.clone(),
                source: Box::new(e),
            })
        };
        let credentials = match &spec.auth {
            Some(a) => match (&a.username, &a.password) {
                (Some(u), Some(p)) => Some((resolve(u)?, resolve(p)?)),
                _ => return Err(invalid("auth needs username and password".into())),
            },
            None => None,
        };
        out.tasks.push(Box::new(MqttSource {
            ready: ctx.readiness.flag(format!("{es_name}/{event_name}")),
            event_source: es_name.to_owned(),
            event_name: event_name.clone(),
            spec: spec.clone(),
            host: url.host,
            port: url.port,
            tls,
            credentials,
            sender: sender.clone(),
            metrics: metrics.clone(),
        }));
    }
    Ok(())
}

/// One `mqtt` event: a persistent QoS 1 subscription.
pub struct MqttSource {
    event_source: String,
    event_name: String,
    spec: MQTTEventSource,
    host: String,
    port: u16,
    /// The client configuration when the URL's scheme asks for TLS.
    tls: Option<Arc<rustls::ClientConfig>>,
    credentials: Option<(String, String)>,
    sender: Arc<dyn EventSender>,
    metrics: SourceMetrics,
    /// Set once subscribed, cleared while the connection is down.
    ready: ReadyFlag,
}

impl MqttSource {
    /// Drives the connection: (re)connects with backoff, (re)subscribes on every CONNACK, and
    /// forwards publishes. Ends when `tx` is closed.
    async fn poll(
        mut eventloop: rumqttc::EventLoop,
        client: AsyncClient,
        topic: String,
        tx: mpsc::Sender<Publish>,
        describe: String,
        ready: ReadyFlag,
        cancel: CancellationToken,
    ) {
        let mut backoff = Backoff::default();
        loop {
            match eventloop.poll().await {
                Ok(MqttEvent::Incoming(Packet::ConnAck(ack))) => {
                    backoff.reset();
                    info!(source = %describe, session_present = ack.session_present, "connected to the MQTT broker");
                    if let Err(e) = client.try_subscribe(topic.clone(), QoS::AtLeastOnce) {
                        warn!(source = %describe, error = %e, "failed to subscribe");
                    }
                }
                Ok(MqttEvent::Incoming(Packet::SubAck(_))) => ready.set(true),
                Ok(MqttEvent::Incoming(Packet::Publish(p))) => {
                    if tx.send(p).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    ready.set(false);
                    warn!(source = %describe, error = %e, retry_in = ?backoff.wait(), "MQTT connection failed; reconnecting");
                    if tx.is_closed() || !backoff.sleep(&cancel).await {
                        return;
                    }
                }
            }
        }
    }

    /// Publishes `p` until the bus stored it; `false` when cancelled first.
    async fn publish(&self, p: &Publish, labels: &EventLabels, cancel: &CancellationToken) -> bool {
        let data = json!({
            "topic": p.topic,
            "messageId": p.pkid,
            "body": body_value(&p.payload, self.spec.json_body),
            "metadata": self.spec.metadata,
        });
        let event = match EventBuilder::new(&self.event_source, &self.event_name, SOURCE_TYPE)
            .data_json(data)
            .build()
        {
            Ok(e) => e,
            Err(e) => {
                // Cannot happen with these attributes; not acked, so the broker keeps it.
                warn!(eventsource = %self.event_source, event_name = %self.event_name, error = %e, "failed to build an mqtt event");
                self.metrics.processing_failed.get_or_create(labels).inc();
                return false;
            }
        };
        let subject = Subject::new(&self.event_source, &self.event_name);
        let publisher = Publisher {
            sender: &*self.sender,
            metrics: &self.metrics,
            labels,
            cancel,
        };
        let retry = Retry::UntilStored { first: FIRST_BACKOFF };
        // While the bus refuses, no PUBACK: the helper retries here, and the broker redelivers
        // after a restart.
        match publish(&publisher, &subject, &event, retry).await {
            Outcome::Stored(_) | Outcome::Filtered => {
                debug!(eventsource = %self.event_source, event_name = %self.event_name, event = %event.id(), topic = %p.topic, "published");
                true
            }
            // Why PUBACK a rejected message (it is dropped after the helper's error log): it is
            // bigger than the bus takes, so keeping it un-acked would block the session forever.
            Outcome::Rejected(_) => true,
            Outcome::Refused(_) | Outcome::Cancelled => false,
        }
    }
}

#[async_trait]
impl PullSource for MqttSource {
    fn describe(&self) -> String {
        format!("{}/{}", self.event_source, self.event_name)
    }

    async fn run(self: Box<Self>, cancel: CancellationToken) -> Result<(), SourceError> {
        let labels = EventLabels {
            eventsource_name: self.event_source.clone(),
            event_name: self.event_name.clone(),
        };
        let mut options = MqttOptions::new(self.spec.client_id.clone(), self.host.clone(), self.port);
        options
            .set_keep_alive(Duration::from_secs(30))
            .set_clean_session(false)
            .set_manual_acks(true)
            .set_max_packet_size(MAX_INCOMING_PACKET, MAX_OUTGOING_PACKET);
        if let Some((user, password)) = &self.credentials {
            options.set_credentials(user.clone(), password.clone());
        }
        if let Some(config) = &self.tls {
            options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
                config.clone(),
            )));
        }
        let (client, eventloop) = AsyncClient::new(options, QUEUE);
        let (tx, mut rx) = mpsc::channel(QUEUE);
        let poller = tokio::spawn(Self::poll(
            eventloop,
            client.clone(),
            self.spec.topic.clone(),
            tx,
            self.describe(),
            self.ready.clone(),
            cancel.clone(),
        ));
        loop {
            let p = tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                p = rx.recv() => match p { Some(p) => p, None => break },
            };
            if !self.publish(&p, &labels, &cancel).await {
                break;
            }
            // Why PUBACK now: the bus stored the event, so the broker may forget the message.
            if let Err(e) = client.ack(&p).await {
                warn!(eventsource = %self.event_source, event_name = %self.event_name, error = %e, "failed to acknowledge an mqtt message; the broker redelivers it");
            }
        }
        // Dropping the connection without DISCONNECT keeps the session and its un-acked messages.
        poller.abort();
        self.ready.set(false);
        Ok(())
    }
}
