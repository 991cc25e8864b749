//! Broker-backed pull sources with rich client settings: AMQP (RabbitMQ) and Kafka, plus the
//! `generic` source, which streams events from a user-provided gRPC server.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::EventSourceFilter;
use crate::common::{Backoff, BasicAuth, SASLConfig, SecretKeySelector, TLSConfig};

/// Messages from an AMQP 0-9-1 broker (RabbitMQ): the source declares an exchange and a queue,
/// binds them with `routingKey` and consumes the queue.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AMQPEventSource {
    /// The broker URL, e.g. `amqp://guest:guest@rabbitmq:5672/`. Set this or `urlSecret`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The exchange to declare and bind the queue to.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub exchange_name: String,
    /// The exchange type: `direct`, `fanout`, `topic` or `headers`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub exchange_type: String,
    /// The binding key between the exchange and the queue.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub routing_key: String,
    /// How to retry connecting to the broker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_backoff: Option<Backoff>,
    /// Parse message bodies as JSON, so filters and triggers can address their fields.
    /// Default false (the body is kept as a string).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub json_body: bool,
    /// TLS settings for the broker connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TLSConfig>,
    /// Extra key/value pairs copied into every event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// How the exchange is declared. Default: durable, not auto-deleted, not internal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exchange_declare: Option<AMQPExchangeDeclareConfig>,
    /// How the queue is declared. Default: a server-named, exclusive, non-durable queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_declare: Option<AMQPQueueDeclareConfig>,
    /// How the queue is bound to the exchange.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_bind: Option<AMQPQueueBindConfig>,
    /// How the queue is consumed. Default: not exclusive, and each message acknowledged only after
    /// the bus stored its event (upstream auto-acks when this block is omitted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consume: Option<AMQPConsumeConfig>,
    /// User name and password for the broker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<BasicAuth>,
    /// The Secret key holding the broker URL (when it embeds credentials). Set this or `url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_secret: Option<SecretKeySelector>,
    /// Only messages matching this filter are published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<EventSourceFilter>,
}

/// Flags of the AMQP `exchange.declare` call.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AMQPExchangeDeclareConfig {
    /// The exchange survives a broker restart. Default false when this block is given.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub durable: bool,
    /// The exchange is deleted when its last binding goes away. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub auto_delete: bool,
    /// The exchange accepts no publishes from clients, only from other exchanges. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub internal: bool,
    /// Do not wait for the broker to confirm the declaration. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_wait: bool,
}

/// Settings of the AMQP `queue.declare` call.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AMQPQueueDeclareConfig {
    /// The queue name. Default: empty, so the broker generates a unique name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The queue survives a broker restart. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub durable: bool,
    /// The queue is deleted when its last consumer goes away. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub auto_delete: bool,
    /// Only this connection may use the queue, and it is deleted when the connection closes.
    /// Default false when this block is given.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub exclusive: bool,
    /// Do not wait for the broker to confirm the declaration. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_wait: bool,
    /// Queue arguments (`x-arguments`, e.g. `x-queue-type`) as a JSON object in a string, e.g.
    /// `'{"x-queue-type": "quorum"}'`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<String>,
}

/// Settings of the AMQP `queue.bind` call.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AMQPQueueBindConfig {
    /// Do not wait for the broker to confirm the binding; a failed bind then closes the
    /// channel. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_wait: bool,
}

/// Settings of the AMQP `basic.consume` call.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AMQPConsumeConfig {
    /// The consumer tag identifying this consumer in deliveries. Default: generated by the
    /// broker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_tag: Option<String>,
    /// Let the broker consider a message acknowledged as soon as it is sent (at-most-once: a crash
    /// before the bus stored the event loses it). Default false: Sluice acknowledges each message
    /// after the bus stored its event, and nacks it with requeue when the bus refuses.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub auto_ack: bool,
    /// Be the queue's only consumer. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub exclusive: bool,
    /// Do not deliver messages published on this connection. RabbitMQ ignores it. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_local: bool,
    /// Do not wait for the broker to confirm the consumer. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_wait: bool,
}

/// Records from a Kafka topic, read as a consumer group member or from one partition.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaEventSource {
    /// Bootstrap brokers, comma-separated `host:port` (e.g. `kafka-0:9092,kafka-1:9092`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub url: String,
    /// The partition to read when no `consumerGroup` is set (a number, as a string).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    /// The topic to read.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub topic: String,
    /// How to retry connecting to the brokers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_backoff: Option<Backoff>,
    /// TLS settings for the broker connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TLSConfig>,
    /// Parse record values as JSON. Default false (the value is kept as a string).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub json_body: bool,
    /// Extra key/value pairs copied into every event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// Join this consumer group and read all partitions assigned to it, committing offsets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_group: Option<KafkaConsumerGroup>,
    /// The most records read per second (a rate limit). Default: unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_events_per_second: Option<i64>,
    /// The Kafka protocol version to speak, e.g. `2.5.0`. Default `1.0.0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// SASL authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sasl: Option<SASLConfig>,
    /// Only records matching this filter are published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<EventSourceFilter>,
    /// Advanced client settings: a YAML document laid out like the Go Sarama client's config
    /// (e.g. `consumer: {fetch: {min: 1}}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    /// Decode Avro record values with a Confluent schema registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_registry: Option<SchemaRegistryConfig>,
    /// Authenticate to Amazon MSK with AWS IAM (SASL/OAUTHBEARER). Turns TLS on and overrides
    /// `sasl`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_msk_iam_auth: Option<AWSMSKIAMConfig>,
}

/// A Kafka consumer group membership.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaConsumerGroup {
    /// The consumer group id.
    #[serde(default)]
    pub group_name: String,
    /// For a group with no committed offsets, start at the oldest record instead of the newest.
    /// Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub oldest: bool,
    /// How partitions are assigned within the group: `range` (default), `roundrobin` or
    /// `sticky`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rebalance_strategy: Option<String>,
}

/// A Confluent-compatible schema registry used to decode Avro records.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SchemaRegistryConfig {
    /// The registry's base URL.
    #[serde(default)]
    pub url: String,
    /// The id of the schema to decode with.
    #[serde(default)]
    pub schema_id: i32,
    /// User name and password for the registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<BasicAuth>,
}

/// AWS IAM authentication to Amazon MSK; credentials come from the pod's environment (IRSA web
/// identity, instance profile or static environment variables).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AWSMSKIAMConfig {
    /// The AWS region of the MSK cluster, e.g. `us-east-1`.
    #[serde(default)]
    pub region: String,
}

/// Events streamed from a user-provided gRPC server implementing the generic event source
/// protocol; the server is configured with `config`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GenericEventSource {
    /// The gRPC server address, e.g. `generic-server.argo-events.svc:8080`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub url: String,
    /// Configuration handed to the server as-is (usually YAML or JSON text).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub config: String,
    /// Connect without TLS. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure: bool,
    /// Parse event payloads as JSON. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub json_body: bool,
    /// Extra key/value pairs copied into every event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// Only events matching this filter are published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<EventSourceFilter>,
    /// The Secret key holding a bearer token sent to the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_secret: Option<SecretKeySelector>,
}
