//! Lightweight pub/sub pull sources: MQTT, NATS, NSQ, Apache Pulsar, Redis pub/sub, Redis
//! streams and Emitter.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::EventSourceFilter;
use crate::common::{Backoff, BasicAuth, SecretKeySelector, TLSConfig};

/// Messages from an MQTT broker topic.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MQTTEventSource {
    /// The broker URL, e.g. `tcp://mqtt.example.com:1883`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub url: String,
    /// The topic (filter) to subscribe to; MQTT wildcards `+` and `#` are allowed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub topic: String,
    /// The client id presented to the broker; unique per connected client.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub client_id: String,
    /// How to retry connecting to the broker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_backoff: Option<Backoff>,
    /// Parse message payloads as JSON. Default false (kept as a string).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub json_body: bool,
    /// TLS settings for the broker connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TLSConfig>,
    /// Extra key/value pairs copied into every event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// Only messages matching this filter are published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<EventSourceFilter>,
    /// User name and password for the broker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<BasicAuth>,
}

/// Messages from a NATS subject (core NATS, not JetStream).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NATSEventsSource {
    /// The server URL, e.g. `nats://nats.example.com:4222`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub url: String,
    /// The subject to subscribe to; NATS wildcards `*` and `>` are allowed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subject: String,
    /// How to retry connecting to the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_backoff: Option<Backoff>,
    /// Parse message payloads as JSON. Default false (kept as a string).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub json_body: bool,
    /// TLS settings for the server connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TLSConfig>,
    /// Extra key/value pairs copied into every event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// Credentials for the server; set at most one method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<NATSAuth>,
    /// Only messages matching this filter are published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<EventSourceFilter>,
    /// Subscribe as a member of this queue group, so replicas share the messages. Default: a
    /// plain subscription (every replica gets every message).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
}

/// Messages of an existing NATS JetStream stream, read through a durable pull consumer and
/// acknowledged only after the bus stored the event (a Sluice extension; upstream has no such kind).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JetStreamEventSource {
    /// The server URL, e.g. `nats://nats.example.com:4222`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub url: String,
    /// The stream to read; it must exist.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stream: String,
    /// The durable consumer to read through. When it does not exist it is created (explicit ack,
    /// `filterSubjects`, `deliverPolicy`). Default: `sluice-<eventSourceName>-<eventName>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer: Option<String>,
    /// The subjects of the stream to read when the consumer is created. Default: all of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filter_subjects: Vec<String>,
    /// Where a created consumer starts: `all` (default), `last`, `new`, `lastPerSubject`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deliver_policy: Option<String>,
    /// How to retry connecting to the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_backoff: Option<Backoff>,
    /// Parse message payloads as JSON. Default false (kept as a string).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub json_body: bool,
    /// TLS settings for the server connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TLSConfig>,
    /// Extra key/value pairs copied into every event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// Credentials for the server; set at most one method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<NATSAuth>,
    /// Only messages matching this filter are published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<EventSourceFilter>,
}

/// How to authenticate to a NATS server.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NATSAuth {
    /// User name and password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic: Option<BasicAuth>,
    /// The Secret key holding an authentication token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<SecretKeySelector>,
    /// The Secret key holding an NKey seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nkey: Option<SecretKeySelector>,
    /// The Secret key holding a `.creds` file (JWT and NKey seed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<SecretKeySelector>,
}

/// Messages from an NSQ topic channel.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NSQEventSource {
    /// The `nsqlookupd` HTTP address used to find producers, e.g. `nsqlookupd:4161`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host_address: String,
    /// The topic to read.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub topic: String,
    /// The channel to consume the topic through.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub channel: String,
    /// How to retry connecting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_backoff: Option<Backoff>,
    /// Parse message bodies as JSON. Default false (kept as a string).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub json_body: bool,
    /// TLS settings for the connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TLSConfig>,
    /// Extra key/value pairs copied into every event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// Only messages matching this filter are published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<EventSourceFilter>,
}

/// Messages from Apache Pulsar topics.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PulsarEventSource {
    /// The topics to subscribe to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topics: Vec<String>,
    /// The subscription type: `exclusive` (default) or `shared`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// The service URL, e.g. `pulsar://pulsar:6650`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub url: String,
    /// The Secret key holding trusted CA certificates for TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_trust_certs_secret: Option<SecretKeySelector>,
    /// Accept an untrusted broker certificate. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tls_allow_insecure_connection: bool,
    /// Check that the broker certificate matches its host name. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tls_validate_hostname: bool,
    /// TLS settings (client certificates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TLSConfig>,
    /// How to retry connecting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_backoff: Option<Backoff>,
    /// Parse message payloads as JSON. Default false (kept as a string).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub json_body: bool,
    /// Extra key/value pairs copied into every event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// The Secret key holding a JWT authentication token. Use this or Athenz, not both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_token_secret: Option<SecretKeySelector>,
    /// Only messages matching this filter are published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<EventSourceFilter>,
    /// Athenz authentication parameters (e.g. `providerDomain`, `tenantDomain`,
    /// `tenantService`, `privateKey`, `keyId`). Needs `authAthenzSecret`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_athenz_params: Option<BTreeMap<String, String>>,
    /// The Secret key holding the Athenz private key; required with `authAthenzParams`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_athenz_secret: Option<SecretKeySelector>,
}

/// Messages from Redis pub/sub channels.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RedisEventSource {
    /// The Redis server address, `host:port`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host_address: String,
    /// The Secret key holding the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<SecretKeySelector>,
    /// Deprecated: the namespace the password Secret lives in; only used with `password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The database number to select. Default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db: Option<i32>,
    /// The channels to subscribe to; glob patterns (`news.*`) are allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<String>,
    /// TLS settings for the connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TLSConfig>,
    /// Extra key/value pairs copied into every event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// Only messages matching this filter are published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<EventSourceFilter>,
    /// Parse message payloads as JSON. Default false (kept as a string).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub json_body: bool,
    /// The user name for Redis 6+ ACL authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
}

/// Entries from Redis streams, read through a consumer group (XREADGROUP) and acknowledged
/// (XACK) after publishing.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RedisStreamEventSource {
    /// The Redis server (master) address, `host:port`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host_address: String,
    /// The Secret key holding the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<SecretKeySelector>,
    /// The database number to select. Default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db: Option<i32>,
    /// The streams to read; one consumer group is used on all of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub streams: Vec<String>,
    /// The most entries read per stream in one XREADGROUP call (its COUNT). Default 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_msg_count_per_read: Option<i32>,
    /// The consumer group, created on every stream if missing. Default `argo-events-cg`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_group: Option<String>,
    /// TLS settings for the connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TLSConfig>,
    /// Extra key/value pairs copied into every event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// Only entries matching this filter are published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<EventSourceFilter>,
    /// The user name for Redis 6+ ACL authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
}

/// Messages from an Emitter (emitter.io) channel.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EmitterEventSource {
    /// The broker URI, e.g. `tcp://emitter:8080`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub broker: String,
    /// The channel key granting access to the channel.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub channel_key: String,
    /// The channel to subscribe to.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub channel_name: String,
    /// The Secret key holding the broker user name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<SecretKeySelector>,
    /// The Secret key holding the broker password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<SecretKeySelector>,
    /// How to retry connecting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_backoff: Option<Backoff>,
    /// Parse message payloads as JSON. Default false (kept as a string).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub json_body: bool,
    /// TLS settings for the connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TLSConfig>,
    /// Extra key/value pairs copied into every event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// Only messages matching this filter are published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<EventSourceFilter>,
}
