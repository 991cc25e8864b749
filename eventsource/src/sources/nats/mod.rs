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

use std::collections::BTreeMap;

use async_trait::async_trait;
use futures::StreamExt;
use serde_json::{json, Value};
use sluice_crds::eventsource::NATSEventsSource;

use crate::clients::body::body_value;
use crate::clients::nats::{connect, headers_value, resolve_auth, Auth};
use crate::pull::{Draft, Malformed, Names, Pull, Upstream, UpstreamError};
use crate::reconnect::Backoff;
use crate::sender::{Retry, FIRST_BACKOFF};
use crate::{BuildError, BuiltEventSource, SourceContext};

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
        let backoff =
            Backoff::from_spec(spec.connection_backoff.as_ref(), Backoff::default()).map_err(|reason| {
                BuildError::InvalidSpec {
                    event_source: es_name.into(),
                    event: event_name.clone(),
                    reason,
                }
            })?;
        let upstream = NatsUpstream {
            spec: spec.clone(),
            auth,
            tls,
            backoff,
        };
        out.tasks
            .push(Box::new(Pull::new(es_name, event_name, upstream, ctx)));
    }
    Ok(())
}

/// One `nats` event: a core NATS subscription.
pub struct NatsUpstream {
    spec: NATSEventsSource,
    auth: Auth,
    /// The `tls` block, resolved.
    tls: Option<crate::tls::Tls>,
    /// Between connection attempts (`connectionBackoff`).
    backoff: Backoff,
}

/// Upstream's event data of one message.
pub fn event_data(m: &async_nats::Message, spec: &NATSEventsSource) -> Value {
    json!({
        "subject": m.subject.as_str(),
        "body": body_value(&m.payload, spec.json_body),
        "header": headers_value(m.headers.as_ref()),
        "metadata": spec.metadata,
    })
}

#[async_trait]
impl Upstream for NatsUpstream {
    type Session = async_nats::Subscriber;
    type Message = async_nats::Message;

    fn kind(&self) -> &'static str {
        SOURCE_TYPE
    }

    /// Why retry in hand: core NATS cannot redeliver, so giving up would lose the message; a
    /// rejected (too large) one is dropped after the sender's error log.
    fn retry(&self) -> Retry {
        Retry::UntilStored { first: FIRST_BACKOFF }
    }

    fn backoff(&self) -> Backoff {
        self.backoff.clone()
    }

    async fn connect(&self, names: &Names) -> Result<Self::Session, UpstreamError> {
        let client = connect(
            &self.spec.url,
            &self.auth,
            self.tls.as_ref(),
            names.client_name(),
            &names.ready,
        )
        .await?;
        let subject = self.spec.subject.clone();
        // async-nats reconnects by itself and keeps the subscription.
        let subscriber = match self.spec.queue.clone() {
            Some(q) => client.queue_subscribe(subject, q).await?,
            None => client.subscribe(subject).await?,
        };
        tracing::info!(eventsource = %names.event_source, event_name = %names.event_name, subject = %self.spec.subject, queue = ?self.spec.queue, "subscribed");
        Ok(subscriber)
    }

    async fn next(&self, session: &mut Self::Session) -> Result<Option<Self::Message>, UpstreamError> {
        Ok(session.next().await)
    }

    fn decode(&self, m: &Self::Message) -> Result<Vec<Draft>, Malformed> {
        Ok(vec![Draft::new(event_data(m, &self.spec))])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json_body: bool) -> NATSEventsSource {
        NATSEventsSource {
            url: "nats://127.0.0.1:4222".into(),
            subject: "orders.>".into(),
            json_body,
            metadata: Some([("team".to_owned(), "billing".to_owned())].into()),
            ..Default::default()
        }
    }

    fn message(payload: &'static [u8], headers: Option<async_nats::HeaderMap>) -> async_nats::Message {
        async_nats::Message {
            subject: "orders.created".into(),
            reply: None,
            payload: bytes::Bytes::from_static(payload),
            headers,
            status: None,
            description: None,
            length: payload.len(),
        }
    }

    #[test]
    fn a_message_becomes_upstreams_data_with_headers_and_metadata() {
        let mut headers = async_nats::HeaderMap::new();
        headers.append("X-Trace", "a");
        headers.append("X-Trace", "b");
        let data = event_data(&message(br#"{"id":7}"#, Some(headers)), &spec(true));
        assert_eq!(
            data,
            json!({
                "subject": "orders.created",
                "body": {"id": 7},
                "header": {"X-Trace": ["a", "b"]},
                "metadata": {"team": "billing"},
            })
        );
    }

    #[test]
    fn without_json_body_or_headers_the_body_is_base64_and_the_header_null() {
        let data = event_data(&message(b"plain", None), &spec(false));
        assert_eq!(data["body"], json!("cGxhaW4="));
        assert_eq!(data["header"], Value::Null);
        let upstream = NatsUpstream {
            spec: spec(false),
            auth: Auth::None,
            tls: None,
            backoff: Backoff::default(),
        };
        let drafts = upstream
            .decode(&message(b"plain", None))
            .expect("a core NATS message always decodes");
        assert_eq!(drafts.len(), 1);
        assert_eq!(
            drafts[0].id, None,
            "core NATS has no message id: a random event id"
        );
    }
}
