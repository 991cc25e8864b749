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

use std::collections::BTreeMap;
use std::pin::Pin;

use async_trait::async_trait;
use futures::{Stream, StreamExt};
use serde_json::{json, Value};
use sluice_crds::eventsource::RedisEventSource;

use crate::clients::body::text_body_value;
use crate::clients::redis::redis_client;
use crate::pull::{Draft, Malformed, Names, Pull, Upstream, UpstreamError};
use crate::sender::{Retry, FIRST_BACKOFF};
use crate::{BuildError, BuiltEventSource, SourceContext};

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
    for (event_name, spec) in events {
        let invalid = |reason: String| BuildError::InvalidSpec {
            event_source: es_name.into(),
            event: event_name.clone(),
            reason,
        };
        if spec.host_address.is_empty() || spec.channels.is_empty() {
            return Err(invalid("`hostAddress` and `channels` are required".into()));
        }
        let password = spec
            .password
            .as_ref()
            .map(|s| crate::resolve_secret(secrets, es_name, event_name, s))
            .transpose()?;
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
        let upstream = RedisUpstream {
            spec: spec.clone(),
            client,
        };
        out.tasks
            .push(Box::new(Pull::new(es_name, event_name, upstream, ctx)));
    }
    Ok(())
}

/// One `redis` event: a pattern subscription.
pub struct RedisUpstream {
    spec: RedisEventSource,
    client: redis::Client,
}

/// The messages of one subscription.
type Messages = Pin<Box<dyn Stream<Item = redis::Msg> + Send>>;

/// Upstream's event data of one message on `channel` (matched by `pattern`).
pub fn event_data(channel: &str, pattern: &str, payload: &[u8], spec: &RedisEventSource) -> Value {
    let mut data = json!({
        "channel": channel,
        "pattern": pattern,
        "body": text_body_value(payload, spec.json_body),
    });
    if let Some(md) = &spec.metadata {
        data["metadata"] = json!(md);
    }
    data
}

#[async_trait]
impl Upstream for RedisUpstream {
    type Session = Messages;
    type Message = redis::Msg;

    fn kind(&self) -> &'static str {
        SOURCE_TYPE
    }

    /// Why retry in hand: pub/sub cannot redeliver, so giving up would lose the message; a
    /// rejected (too large) one is dropped after the sender's error log.
    fn retry(&self) -> Retry {
        Retry::UntilStored { first: FIRST_BACKOFF }
    }

    async fn connect(&self, names: &Names) -> Result<Self::Session, UpstreamError> {
        let mut pubsub = self.client.get_async_pubsub().await?;
        pubsub.psubscribe(&self.spec.channels).await?;
        tracing::info!(eventsource = %names.event_source, event_name = %names.event_name, channels = ?self.spec.channels, "subscribed");
        Ok(Box::pin(pubsub.into_on_message()))
    }

    async fn next(&self, session: &mut Self::Session) -> Result<Option<Self::Message>, UpstreamError> {
        Ok(session.next().await)
    }

    fn decode(&self, m: &Self::Message) -> Result<Vec<Draft>, Malformed> {
        // A PSUBSCRIBE delivery always names its pattern; an empty one is what upstream publishes
        // for a plain SUBSCRIBE delivery.
        let pattern: String = m.get_pattern().unwrap_or_default();
        Ok(vec![Draft::new(event_data(
            m.get_channel_name(),
            &pattern,
            m.get_payload_bytes(),
            &self.spec,
        ))])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json_body: bool) -> RedisEventSource {
        RedisEventSource {
            host_address: "127.0.0.1:6379".into(),
            channels: vec!["orders.*".into()],
            json_body,
            metadata: Some([("team".to_owned(), "billing".to_owned())].into()),
            ..Default::default()
        }
    }

    #[test]
    fn a_message_becomes_upstreams_data() {
        assert_eq!(
            event_data("orders.created", "orders.*", br#"{"id":7}"#, &spec(true)),
            json!({"channel": "orders.created", "pattern": "orders.*", "body": {"id": 7}, "metadata": {"team": "billing"}})
        );
    }

    #[test]
    fn the_body_is_text_without_json_body_and_base64_when_json_body_cannot_parse() {
        assert_eq!(
            event_data("c", "c*", b"plain text", &spec(false))["body"],
            json!("plain text")
        );
        assert_eq!(
            event_data("c", "c*", b"plain", &spec(true))["body"],
            json!("cGxhaW4=")
        );
        let mut bare = spec(false);
        bare.metadata = None;
        assert!(
            event_data("c", "c*", b"x", &bare).get("metadata").is_none(),
            "no metadata key without metadata"
        );
    }
}
