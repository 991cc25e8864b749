//! The `EventBus` custom resource: the message bus EventSources publish to and Sensors read from.
//! One of four kinds: `nats` (legacy NATS Streaming, native or an existing server), `jetstream` (a
//! NATS JetStream cluster the controller runs), `jetstreamExotic` (an existing JetStream server) or
//! `kafka` (an existing Kafka cluster). Field names follow upstream `io.argoproj.events.v1alpha1`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, LocalObjectReference, PodSecurityContext, ResourceRequirements, SecurityContext, Toleration,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

mod validate;

use crate::common::{KafkaConsumerGroup, Metadata, SASLConfig, SecretKeySelector, Status, TLSConfig};

/// The desired state of an EventBus. Exactly one of the four kinds is set.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "argoproj.io",
    version = "v1alpha1",
    kind = "EventBus",
    namespaced,
    derive = "PartialEq",
    derive = "Default",
    status = "EventBusStatus",
    shortname = "eb",
    plural = "eventbus"
)]
#[serde(rename_all = "camelCase")]
pub struct EventBusSpec {
    /// A NATS Streaming bus (deprecated upstream): run by the controller, or an existing server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nats: Option<NATSBus>,
    /// A NATS JetStream cluster run by the controller as a StatefulSet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jetstream: Option<JetStreamBus>,
    /// An existing Kafka cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka: Option<KafkaBus>,
    /// An existing NATS JetStream server, not managed by the controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jetstream_exotic: Option<JetStreamConfig>,
}

/// The observed state of an EventBus: conditions, and the connection settings clients should use.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventBusStatus {
    /// Conditions and the generation they describe.
    #[serde(flatten)]
    pub status: Status,
    /// The resolved connection settings, written by the controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<BusConfig>,
}

/// How EventSources and Sensors reach the bus, as resolved by the controller.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BusConfig {
    /// NATS Streaming connection settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nats: Option<NATSConfig>,
    /// JetStream connection settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jetstream: Option<JetStreamConfig>,
    /// Kafka connection settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka: Option<KafkaBus>,
}

/// A NATS Streaming bus: exactly one of `native` and `exotic`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NATSBus {
    /// Have the controller run a NATS Streaming StatefulSet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub native: Option<NativeStrategy>,
    /// Use an existing NATS Streaming server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exotic: Option<NATSConfig>,
}

/// A NATS Streaming server run by the controller.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NativeStrategy {
    /// Number of server pods. Default 3; fewer than 3 is raised to 3 upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Client authentication: `none` (default) or `token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<String>,
    /// A PersistentVolumeClaim per pod for message storage. Unset: an `emptyDir`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistence: Option<PersistenceStrategy>,
    /// Overrides for the NATS server container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_template: Option<ContainerTemplate>,
    /// Overrides for the metrics exporter container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_container_template: Option<ContainerTemplate>,
    /// Node labels the pods' nodes must carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    /// Taints the pods tolerate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,
    /// Labels and annotations put on the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
    /// Pod-level security settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<PodSecurityContext>,
    /// How long messages are kept, a duration such as `72h`. Default 72h.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<String>,
    /// Secrets for pulling the images from private registries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_secrets: Option<Vec<LocalObjectReference>>,
    /// The ServiceAccount the pods run as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// The pods' PriorityClass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    /// The pods' numeric priority (normally set from `priorityClassName`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    /// Node and pod (anti-)affinity rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Most messages kept per channel; 0 is unlimited. Default 1,000,000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_msgs: Option<u64>,
    /// Most bytes kept per channel, e.g. `1GB`; 0 is unlimited. Default 1GB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<String>,
    /// Most subscriptions per channel; 0 is unlimited. Default 1000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_subs: Option<u64>,
    /// Largest message payload, e.g. `1MB`; 0 is unlimited. Default 1MB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_payload: Option<String>,
    /// Raft: how long a follower waits without a leader before calling an election. Default `2s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raft_heartbeat_timeout: Option<String>,
    /// Raft: how long a candidate waits without a leader before a new election. Default `2s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raft_election_timeout: Option<String>,
    /// Raft: how long a leader keeps leading without reaching a quorum. Default `1s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raft_lease_timeout: Option<String>,
    /// Raft: the longest time without an apply before a heartbeat forces a commit. Default `100ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raft_commit_timeout: Option<String>,
}

/// Connection settings of an existing NATS Streaming server.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NATSConfig {
    /// The server URL, e.g. `nats://nats:4222`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The NATS Streaming cluster id.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "clusterID")]
    pub cluster_id: Option<String>,
    /// Client authentication: `none` (default) or `token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<String>,
    /// The Secret key with the credentials for `auth`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_secret: Option<SecretKeySelector>,
}

/// A NATS JetStream cluster run by the controller.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JetStreamBus {
    /// The NATS version to run, the tag of the controller's NATS image, e.g. `2.10.10` or
    /// `latest`. Default: the controller's `--nats-version` (the chart's `nats.version`); upstream
    /// requires it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Number of server pods: 1, or 3 and more (Raft needs a majority). Default 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Overrides for the NATS server container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_template: Option<ContainerTemplate>,
    /// Overrides for the configuration reloader container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reloader_container_template: Option<ContainerTemplate>,
    /// Overrides for the metrics exporter container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_container_template: Option<ContainerTemplate>,
    /// A PersistentVolumeClaim per pod for the stream store. Unset: an `emptyDir`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistence: Option<PersistenceStrategy>,
    /// Labels and annotations put on the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
    /// Node labels the pods' nodes must carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    /// Taints the pods tolerate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,
    /// Pod-level security settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<PodSecurityContext>,
    /// Secrets for pulling the images from private registries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_secrets: Option<Vec<LocalObjectReference>>,
    /// The pods' PriorityClass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    /// The pods' numeric priority (normally set from `priorityClassName`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    /// Node and pod (anti-)affinity rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// The ServiceAccount the pods run as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// The `jetstream { … }` block of the NATS server configuration (NATS config syntax, e.g.
    /// `max_file_store: 1TB`). Unset: the controller's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<String>,
    /// Extra `nats-server` command-line arguments, e.g. `-D` for debug logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_args: Option<Vec<String>>,
    /// Stream settings as YAML (`maxMsgs`, `maxAge`, `maxBytes`, `replicas`, `duplicates`, …), merged
    /// over the controller's defaults. Durations are Go duration strings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_config: Option<String>,
    /// Largest message payload, e.g. `1MB`; 0 is unlimited. Default 1MB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_payload: Option<String>,
}

/// Connection settings of a JetStream server: the one the controller runs, or an existing one.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JetStreamConfig {
    /// The server URL, e.g. `nats://nats.argo-events:4222`. Required for `jetstreamExotic`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The Secret key with the credentials (user/password or token, as upstream's format).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_secret: Option<SecretKeySelector>,
    /// Stream settings as YAML, as in [`JetStreamBus::stream_config`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_config: Option<String>,
    /// TLS settings for the connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TLSConfig>,
}

/// An existing Kafka cluster used as the bus.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaBus {
    /// Broker addresses, `host:port`, comma-separated. Required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The topic events go to. Default `<namespace>-<eventbus name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// The Kafka protocol version to speak, e.g. `2.5.0`. Default: the client's oldest stable one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// TLS settings for the connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TLSConfig>,
    /// SASL authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sasl: Option<SASLConfig>,
    /// The consumer group sensors read with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_group: Option<KafkaConsumerGroup>,
    /// How producers pick a partition: `random` (default), `hash`, `roundrobin` or `manual`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitioner: Option<String>,
}

/// Storage for a bus StatefulSet: one PersistentVolumeClaim per pod.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PersistenceStrategy {
    /// The StorageClass of the claims. Default: the cluster's default class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// The access mode, e.g. `ReadWriteOnce` (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_mode: Option<String>,
    /// The size of each claim, e.g. `10Gi`. Default 20Gi.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "quantity"
    )]
    pub volume_size: Option<Quantity>,
}

/// Overrides for one container of a bus pod.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContainerTemplate {
    /// CPU and memory requests and limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// When to pull the image: `Always`, `IfNotPresent` or `Never`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<String>,
    /// Container-level security settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<SecurityContext>,
}

/// Reads a quantity written as a string (`10Gi`) or a bare number (`10`).
fn quantity<'de, D: Deserializer<'de>>(de: D) -> Result<Option<Quantity>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Int(i64),
        Float(f64),
        Str(String),
    }
    Ok(Option::<Raw>::deserialize(de)?.map(|raw| {
        Quantity(match raw {
            Raw::Int(n) => n.to_string(),
            Raw::Float(f) => f.to_string(),
            Raw::Str(s) => s,
        })
    }))
}

impl EventBusSpec {
    /// The names of the kinds that are set (`nats`, `jetstream`, `jetstreamExotic`, `kafka`).
    pub fn kinds(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.nats.is_some() {
            out.push("nats");
        }
        if self.jetstream.is_some() {
            out.push("jetstream");
        }
        if self.jetstream_exotic.is_some() {
            out.push("jetstreamExotic");
        }
        if self.kafka.is_some() {
            out.push("kafka");
        }
        out
    }
}
