//! `mqtt`: subscribes to a topic (wildcards allowed) on an MQTT broker and publishes each message
//! with upstream's data `{topic, messageId, body, metadata}`.
//!
//! Delivery: at-least-once, where upstream subscribes at QoS 0. Sluice subscribes at **QoS 1** with a
//! persistent session (`clean_session = false`, keyed by `clientId`) and manual acknowledgement: the
//! PUBACK is sent in [`Upstream::settle`], only after the bus stored the event. While the bus
//! refuses, the message is retried in hand ([`Retry::UntilStored`]) and not acknowledged; if the
//! process stops first, the broker redelivers the un-acknowledged message when the same `clientId`
//! reconnects, and keeps messages published meanwhile for the session. MQTT packet ids are reused,
//! so event ids are random and a redelivery can be a duplicate on the bus.
//!
//! Too large: a message whose event is bigger than the bus takes is logged with its size, counted
//! in `sluice_eventsource_events_rejected_total{reason="too_large"}` and acknowledged (dropped), so
//! the session is not blocked by it.
//!
//! Connection: rumqttc's event loop reconnects by itself, so one session of the pull skeleton
//! lasts the whole run: a poller task (aborted when the session is dropped) drives the event loop,
//! (re)subscribes on every CONNACK, forwards publishes over a bounded channel and waits
//! `connectionBackoff` (default 200 ms doubling to 30 s, starting over once connected) between
//! attempts. Readiness: `<eventSource>/<event>` is ready once subscribed and not while the
//! connection is down.
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

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rumqttc::{
    AsyncClient, Event as MqttEvent, MqttOptions, Packet, Publish, QoS, TlsConfiguration, Transport,
};
use serde_json::{json, Value};
use sluice_crds::eventsource::MQTTEventSource;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use tracing::{info, warn};

use crate::clients::body::body_value;
use crate::pull::{Draft, Malformed, Names, Pull, Settle, Upstream, UpstreamError};
use crate::reconnect::Backoff;
use crate::sender::{Retry, FIRST_BACKOFF};
use crate::{BuildError, BuiltEventSource, SourceContext};

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
            crate::resolve_secret(secrets, es_name, event_name, s)
        };
        let credentials = match &spec.auth {
            Some(a) => match (&a.username, &a.password) {
                (Some(u), Some(p)) => Some((resolve(u)?, resolve(p)?)),
                _ => return Err(invalid("auth needs username and password".into())),
            },
            None => None,
        };
        let backoff =
            Backoff::from_spec(spec.connection_backoff.as_ref(), Backoff::default()).map_err(invalid)?;
        let upstream = MqttUpstream {
            spec: spec.clone(),
            host: url.host,
            port: url.port,
            tls,
            credentials,
            backoff,
        };
        out.tasks
            .push(Box::new(Pull::new(es_name, event_name, upstream, ctx)));
    }
    Ok(())
}

/// Upstream's event data of one message: `{topic, messageId, body, metadata}`.
pub fn event_data(message: &Publish, spec: &MQTTEventSource) -> Value {
    json!({
        "topic": message.topic,
        "messageId": message.pkid,
        "body": body_value(&message.payload, spec.json_body),
        "metadata": spec.metadata,
    })
}

/// One `mqtt` event: a persistent QoS 1 subscription.
pub struct MqttUpstream {
    spec: MQTTEventSource,
    host: String,
    port: u16,
    /// The client configuration when the URL's scheme asks for TLS.
    tls: Option<Arc<rustls::ClientConfig>>,
    credentials: Option<(String, String)>,
    /// Between connection attempts (`connectionBackoff`), inside the poller.
    backoff: Backoff,
}

/// A client, the publishes its poller forwards, and the poller (aborted on drop: dropping the
/// connection without DISCONNECT keeps the broker's session and its un-acknowledged messages).
pub struct Session {
    client: AsyncClient,
    messages: mpsc::Receiver<Publish>,
    _poller: AbortOnDropHandle<()>,
}

/// What the poller needs besides the event loop.
struct Poller {
    client: AsyncClient,
    topic: String,
    messages: mpsc::Sender<Publish>,
    /// Told on the first SUBACK, so `connect` returns once subscribed.
    subscribed: Option<oneshot::Sender<()>>,
    names: Names,
    backoff: Backoff,
}

impl Poller {
    /// Drives the connection: (re)connects with backoff, (re)subscribes on every CONNACK, and
    /// forwards publishes. Ends when the session's receiver is gone.
    async fn run(mut self, mut eventloop: rumqttc::EventLoop) {
        let (es, ev) = (&self.names.event_source, &self.names.event_name);
        // Never cancelled: the poller stops by being aborted with its session.
        let never = CancellationToken::new();
        loop {
            match eventloop.poll().await {
                Ok(MqttEvent::Incoming(Packet::ConnAck(ack))) => {
                    self.backoff.reset();
                    info!(eventsource = %es, event_name = %ev, session_present = ack.session_present, "connected to the MQTT broker");
                    if let Err(e) = self.client.try_subscribe(self.topic.clone(), QoS::AtLeastOnce) {
                        warn!(eventsource = %es, event_name = %ev, error = %e, "failed to subscribe");
                    }
                }
                Ok(MqttEvent::Incoming(Packet::SubAck(_))) => {
                    self.names.ready.set(true);
                    if let Some(subscribed) = self.subscribed.take() {
                        // Only `connect` waits on it; gone when it was cancelled.
                        let _ = subscribed.send(());
                    }
                }
                Ok(MqttEvent::Incoming(Packet::Publish(p))) => {
                    if self.messages.send(p).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    self.names.ready.set(false);
                    warn!(eventsource = %es, event_name = %ev, error = %e, retry_in = ?self.backoff.wait(), "MQTT connection failed; reconnecting");
                    if self.messages.is_closed() {
                        return;
                    }
                    self.backoff.sleep(&never).await;
                }
            }
        }
    }
}

/// The poller ended before the first SUBACK (it does not, short of a panic).
#[derive(Debug, thiserror::Error)]
#[error("the MQTT poller stopped before the subscription was in place")]
struct PollerStopped;

#[async_trait]
impl Upstream for MqttUpstream {
    type Session = Session;
    type Message = Publish;

    fn kind(&self) -> &'static str {
        SOURCE_TYPE
    }

    /// Why retry in hand: the message stays un-acknowledged while the bus refuses, and the broker
    /// redelivers it only when the session reconnects, not on a nak.
    fn retry(&self) -> Retry {
        Retry::UntilStored { first: FIRST_BACKOFF }
    }

    fn backoff(&self) -> Backoff {
        self.backoff.clone()
    }

    /// Starts the client and its poller and returns once subscribed; the poller logs and retries
    /// failed connection attempts meanwhile.
    async fn connect(&self, names: &Names) -> Result<Session, UpstreamError> {
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
        let (tx, messages) = mpsc::channel(QUEUE);
        let (subscribed, on_subscribed) = oneshot::channel();
        let poller = Poller {
            client: client.clone(),
            topic: self.spec.topic.clone(),
            messages: tx,
            subscribed: Some(subscribed),
            names: names.clone(),
            backoff: self.backoff.clone(),
        };
        // Aborted when this future is dropped (cancelled) or the session is.
        let poller = AbortOnDropHandle::new(tokio::spawn(poller.run(eventloop)));
        on_subscribed.await.map_err(|_| PollerStopped)?;
        Ok(Session {
            client,
            messages,
            _poller: poller,
        })
    }

    async fn next(&self, session: &mut Session) -> Result<Option<Publish>, UpstreamError> {
        Ok(session.messages.recv().await)
    }

    fn decode(&self, message: &Publish) -> Result<Vec<Draft>, Malformed> {
        Ok(vec![Draft::new(event_data(message, &self.spec))])
    }

    async fn settle(
        &self,
        session: &mut Session,
        message: Publish,
        settle: Settle,
    ) -> Result<(), UpstreamError> {
        match settle {
            // Why PUBACK now: the bus stored the event (or the filter dropped it on purpose), so
            // the broker may forget the message.
            Settle::Ack => session.client.ack(&message).await?,
            // Why PUBACK a message that can never be stored (too large; logged and counted): kept
            // un-acknowledged it would block the session forever.
            Settle::Term => session.client.ack(&message).await?,
            // Why no PUBACK: the broker redelivers the message when the session reconnects. Not
            // reached: the bus is retried in hand ([`Retry::UntilStored`]).
            Settle::Nak => {}
        }
        Ok(())
    }

    fn locate(&self, message: &Publish) -> String {
        format!("topic {} packet {}", message.topic, message.pkid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json_body: bool) -> MQTTEventSource {
        MQTTEventSource {
            url: "tcp://127.0.0.1:1883".into(),
            topic: "orders/#".into(),
            client_id: "sluice-test".into(),
            json_body,
            metadata: Some([("team".to_owned(), "billing".to_owned())].into()),
            ..Default::default()
        }
    }

    fn publish(payload: &'static [u8], pkid: u16) -> Publish {
        let mut p = Publish::new("orders/created", QoS::AtLeastOnce, payload);
        p.pkid = pkid;
        p
    }

    #[test]
    fn a_message_becomes_upstreams_data() {
        assert_eq!(
            event_data(&publish(br#"{"id":7}"#, 3), &spec(true)),
            json!({"topic": "orders/created", "messageId": 3, "body": {"id": 7}, "metadata": {"team": "billing"}})
        );
    }

    #[test]
    fn the_body_is_base64_unless_json_body_parses_and_metadata_is_null_when_unset() {
        assert_eq!(
            event_data(&publish(br#"{"id":7}"#, 1), &spec(false))["body"],
            json!("eyJpZCI6N30=")
        );
        assert_eq!(
            event_data(&publish(b"plain", 1), &spec(true))["body"],
            json!("cGxhaW4=")
        );
        let mut bare = spec(false);
        bare.metadata = None;
        assert_eq!(event_data(&publish(b"x", 1), &bare)["metadata"], Value::Null);
    }

    #[test]
    fn urls_follow_paho_schemes_and_default_ports() {
        assert_eq!(
            broker_url("tcp://broker").expect("plain"),
            BrokerUrl {
                host: "broker".into(),
                port: 1883,
                tls: false
            }
        );
        assert_eq!(parse_url("ssl://broker").expect("tls"), ("broker".into(), 8883));
        assert_eq!(
            parse_url("mqtt://10.0.0.1:1999/").expect("port"),
            ("10.0.0.1".into(), 1999)
        );
        assert!(broker_url("broker:1883").is_err(), "no scheme");
        assert!(broker_url("ws://broker").is_err(), "not an MQTT scheme");
        assert!(broker_url("tcp://:1883").is_err(), "no host");
    }
}
