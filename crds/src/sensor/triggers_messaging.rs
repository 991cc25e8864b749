//! Messaging trigger actions: Kafka, NATS, Apache Pulsar, Azure Event Hubs and Azure Service Bus. Each
//! builds a message body from its `payload` parameters and sends it.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::serde_util::{is_false, null_as_default};
use super::trigger::TriggerParameter;
use crate::common::{
    Backoff, NATSAuth, SASLConfig, SchemaRegistryConfig, SecretKeySelector, SecureHeader, TLSConfig,
};

/// Produces a message to a Kafka topic.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaTrigger {
    /// Broker addresses, `host:port`, comma-separated.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub url: String,
    /// The topic to produce to.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub topic: String,
    /// Deprecated and ignored: the partition is chosen from `partitioningKey`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<i32>,
    /// Values from the events applied to this Kafka spec.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub parameters: Vec<TriggerParameter>,
    /// How many broker acknowledgements to wait for: 0 none, 1 the leader (default), -1 all in-sync replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_acks: Option<i32>,
    /// Compress messages with snappy. Default false.
    #[serde(default, skip_serializing_if = "is_false")]
    pub compress: bool,
    /// How often to flush batched messages, in milliseconds. Default 500.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flush_frequency: Option<i32>,
    /// TLS settings for the broker connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TLSConfig>,
    /// Builds the message value (JSON).
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub payload: Vec<TriggerParameter>,
    /// The message key, which picks the partition. Unset: no key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitioning_key: Option<String>,
    /// The Kafka protocol version to speak, e.g. `2.5.0`. Default `1.0.0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// SASL authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sasl: Option<SASLConfig>,
    /// Encode the message with Avro using a schema from this registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_registry: Option<SchemaRegistryConfig>,
    /// Fixed message headers.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub headers: BTreeMap<String, String>,
    /// Message headers whose values are read from Secrets or ConfigMaps.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub secure_headers: Vec<SecureHeader>,
}

/// Publishes a message on a NATS subject.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NATSTrigger {
    /// The NATS server URL, e.g. `nats://nats.default:4222`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub url: String,
    /// The subject to publish on.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subject: String,
    /// Builds the message body (JSON).
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub payload: Vec<TriggerParameter>,
    /// Values from the events applied to this NATS spec.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub parameters: Vec<TriggerParameter>,
    /// TLS settings for the connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TLSConfig>,
    /// How to authenticate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<NATSAuth>,
    /// Sluice extension: publish through JetStream and count the firing done only once a stream
    /// stored the message (its ack), with `Nats-Msg-Id` = the firing id so a repeated firing is
    /// deduplicated by the stream. Default false: a core NATS publish, confirmed by a flush.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub jet_stream: bool,
}

/// Produces a message to an Apache Pulsar topic.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PulsarTrigger {
    /// The Pulsar service URL, e.g. `pulsar://pulsar:6650`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub url: String,
    /// The topic to produce to.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub topic: String,
    /// Values from the events applied to this Pulsar spec.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub parameters: Vec<TriggerParameter>,
    /// Builds the message body (JSON).
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub payload: Vec<TriggerParameter>,
    /// The Secret key with a CA certificate file to trust.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_trust_certs_secret: Option<SecretKeySelector>,
    /// Accept an untrusted broker certificate. Insecure. Default false.
    #[serde(default, skip_serializing_if = "is_false")]
    pub tls_allow_insecure_connection: bool,
    /// Check that the broker certificate matches its host name. Default false.
    #[serde(default, skip_serializing_if = "is_false")]
    pub tls_validate_hostname: bool,
    /// TLS client certificate settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TLSConfig>,
    /// The Secret key with a token for token authentication (instead of Athenz).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_token_secret: Option<SecretKeySelector>,
    /// Retry timing for connecting to the broker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_backoff: Option<Backoff>,
    /// Athenz authentication parameters (provider domain, tenant, …). Needs `authAthenzSecret`.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub auth_athenz_params: BTreeMap<String, String>,
    /// The Secret key with the Athenz private key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_athenz_secret: Option<SecretKeySelector>,
}

/// Sends an event to an Azure Event Hub.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AzureEventHubsTrigger {
    /// The namespace host name, `<namespace>.servicebus.windows.net`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub fqdn: String,
    /// The Event Hub to send to.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hub_name: String,
    /// The Secret key with the name of the shared access key (policy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_access_key_name: Option<SecretKeySelector>,
    /// The Secret key with the shared access key itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_access_key: Option<SecretKeySelector>,
    /// Builds the event body (JSON).
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub payload: Vec<TriggerParameter>,
    /// Values from the events applied to this Event Hubs spec.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub parameters: Vec<TriggerParameter>,
}

/// Sends a message to an Azure Service Bus queue, or to a topic.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AzureServiceBusTrigger {
    /// The Secret key with the namespace connection string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_string: Option<SecretKeySelector>,
    /// The queue to send to (or set `topicName`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_name: Option<String>,
    /// The topic to send to (or set `queueName`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_name: Option<String>,
    /// The topic subscription (used with `topicName`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_name: Option<String>,
    /// TLS settings for the connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TLSConfig>,
    /// Builds the message body (JSON).
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub payload: Vec<TriggerParameter>,
    /// Values from the events applied to this Service Bus spec.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub parameters: Vec<TriggerParameter>,
}
