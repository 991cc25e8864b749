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

use crate::common::{KafkaConsumerGroup, Metadata, SASLConfig, SecretKeySelector, Status, TLSConfig};
use crate::validate::{check_duration, Problems, Validate};

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
    /// The JetStream version to run, one the controller's configuration lists, e.g. `2.10.10` or
    /// `latest`. Required.
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
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "quantity")]
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

impl Validate for EventBus {
    fn validate(&self, path: &str, problems: &mut Problems) {
        self.spec.validate(&Problems::at(path, "spec"), problems);
    }
}

impl Validate for EventBusSpec {
    fn validate(&self, path: &str, problems: &mut Problems) {
        match self.kinds().as_slice() {
            [_] => {}
            [] => problems.error(path, "set one of nats, jetstream, jetstreamExotic or kafka"),
            many => problems.error(path, format!("set only one of {}, not all of them", many.join(", "))),
        }
        if let Some(nats) = &self.nats {
            let p = Problems::at(path, "nats");
            match (&nats.native, &nats.exotic) {
                (Some(_), Some(_)) => problems.error(&p, "set either native or exotic, not both"),
                (None, None) => problems.error(&p, "set native or exotic"),
                _ => {}
            }
            if let Some(native) = &nats.native {
                let p = Problems::at(&p, "native");
                check_auth(native.auth.as_deref(), &p, problems);
                for (field, value) in [
                    ("maxAge", &native.max_age),
                    ("raftHeartbeatTimeout", &native.raft_heartbeat_timeout),
                    ("raftElectionTimeout", &native.raft_election_timeout),
                    ("raftLeaseTimeout", &native.raft_lease_timeout),
                    ("raftCommitTimeout", &native.raft_commit_timeout),
                ] {
                    if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
                        check_duration(v, &Problems::at(&p, field), problems);
                    }
                }
            }
            if let Some(exotic) = &nats.exotic {
                let p = Problems::at(&p, "exotic");
                if exotic.url.as_deref().unwrap_or("").is_empty() {
                    problems.error(Problems::at(&p, "url"), "the NATS server URL is required");
                }
                if exotic.cluster_id.is_none() {
                    problems.error(Problems::at(&p, "clusterID"), "the NATS Streaming cluster id is required");
                }
                check_auth(exotic.auth.as_deref(), &p, problems);
            }
        }
        if let Some(js) = &self.jetstream {
            let p = Problems::at(path, "jetstream");
            if js.version.as_deref().unwrap_or("").is_empty() {
                problems.error(
                    Problems::at(&p, "version"),
                    "the JetStream version is required, e.g. \"latest\" or \"2.10.10\"",
                );
            }
            if let Some(r) = js.replicas {
                if r <= 0 || r == 2 {
                    problems.error(
                        Problems::at(&p, "replicas"),
                        format!("{r} replicas cannot form a quorum: use 1, or 3 or more"),
                    );
                }
            }
            if let Some(sc) = &js.stream_config {
                check_stream_config(sc, &Problems::at(&p, "streamConfig"), problems);
            }
        }
        if let Some(js) = &self.jetstream_exotic {
            let p = Problems::at(path, "jetstreamExotic");
            if js.url.as_deref().unwrap_or("").is_empty() {
                problems.error(Problems::at(&p, "url"), "the JetStream server URL is required");
            }
            if let Some(sc) = &js.stream_config {
                check_stream_config(sc, &Problems::at(&p, "streamConfig"), problems);
            }
        }
        if let Some(kafka) = &self.kafka {
            let p = Problems::at(path, "kafka");
            if kafka.url.as_deref().unwrap_or("").is_empty() {
                problems.error(Problems::at(&p, "url"), "the Kafka broker URL is required");
            }
            if let Some(part) = kafka.partitioner.as_deref().filter(|s| !s.is_empty()) {
                if !matches!(part, "random" | "hash" | "roundrobin" | "manual") {
                    problems.warning(
                        Problems::at(&p, "partitioner"),
                        format!("unknown partitioner {part:?}: use random, hash, roundrobin or manual"),
                    );
                }
            }
            if let Some(group) = &kafka.consumer_group {
                if let Some(s) = group.rebalance_strategy.as_deref().filter(|s| !s.is_empty()) {
                    if !matches!(s, "sticky" | "roundrobin" | "range") {
                        problems.warning(
                            Problems::at(&p, "consumerGroup.rebalanceStrategy"),
                            format!("unknown rebalance strategy {s:?}: use range, roundrobin or sticky"),
                        );
                    }
                }
            }
        }
    }
}

fn check_auth(auth: Option<&str>, path: &str, problems: &mut Problems) {
    if let Some(a) = auth.filter(|a| !a.is_empty()) {
        if !matches!(a, "none" | "token") {
            problems.error(Problems::at(path, "auth"), format!("unknown auth strategy {a:?}: use none or token"));
        }
    }
}

/// Checks JetStream `streamConfig` YAML: it parses, and its duration settings are durations.
fn check_stream_config(text: &str, path: &str, problems: &mut Problems) {
    let value: serde_yaml::Value = match serde_yaml::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            problems.error(path, format!("stream settings are not valid YAML: {e}"));
            return;
        }
    };
    let Some(map) = value.as_mapping() else {
        if !value.is_null() {
            problems.error(path, "stream settings must be a YAML mapping such as `maxAge: 72h`");
        }
        return;
    };
    for (key, v) in map {
        let Some(key) = key.as_str() else { continue };
        if matches!(key, "maxAge" | "duplicates") {
            if let Some(s) = v.as_str() {
                check_duration(s, &Problems::at(path, key), problems);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> EventBus {
        let text = if yaml.contains("metadata") { yaml.to_string() } else { format!("metadata: {{name: default}}\n{yaml}") };
        serde_yaml::from_str(&text).expect("test manifest parses")
    }

    fn problems(bus: &EventBus) -> Vec<String> {
        let mut p = Problems::new();
        bus.validate("", &mut p);
        p.into_vec().into_iter().map(|p| p.to_string()).collect()
    }

    fn round_trip(bus: &EventBus) {
        let text = serde_yaml::to_string(bus).expect("serializes");
        let again: EventBus = serde_yaml::from_str(&text).expect("parses again");
        assert_eq!(&again, bus, "{text}");
    }

    const JETSTREAM: &str = r#"
apiVersion: argoproj.io/v1alpha1
kind: EventBus
metadata:
  name: default
spec:
  jetstream:
    version: "2.10.10"
    replicas: 3
    persistence:
      storageClassName: standard
      accessMode: ReadWriteOnce
      volumeSize: 10Gi
    containerTemplate:
      resources:
        limits:
          cpu: 100m
          memory: 128Mi
    streamConfig: |
      maxAge: 24h
      duplicates: 5m
      replicas: 3
    settings: |
      max_file_store: 1TB
    startArgs: ["-D"]
    maxPayload: 2MB
"#;

    #[test]
    fn jetstream_parses_validates_and_round_trips() {
        let bus = parse(JETSTREAM);
        let js = bus.spec.jetstream.as_ref().expect("jetstream set");
        assert_eq!(js.version.as_deref(), Some("2.10.10"));
        assert_eq!(js.persistence.as_ref().and_then(|p| p.volume_size.clone()), Some(Quantity("10Gi".into())));
        assert_eq!(js.start_args.as_deref(), Some(&["-D".to_string()][..]));
        assert!(problems(&bus).is_empty(), "{:?}", problems(&bus));
        round_trip(&bus);
    }

    #[test]
    fn native_nats_parses_and_validates() {
        let bus = parse(
            r#"
apiVersion: argoproj.io/v1alpha1
kind: EventBus
metadata: {name: default}
spec:
  nats:
    native:
      replicas: 3
      auth: token
      maxAge: 72h
      maxMsgs: 1000000
      raftHeartbeatTimeout: 2s
      persistence:
        volumeSize: 1
"#,
        );
        assert!(problems(&bus).is_empty(), "{:?}", problems(&bus));
        round_trip(&bus);
    }

    #[test]
    fn exotic_kinds_parse_and_validate() {
        let exotic_nats = parse(
            "spec:\n  nats:\n    exotic:\n      url: nats://x:4222\n      clusterID: c\n      auth: token\n      accessSecret: {name: s, key: k}\n",
        );
        assert!(problems(&exotic_nats).is_empty(), "{:?}", problems(&exotic_nats));
        round_trip(&exotic_nats);
        let exotic_js = parse(
            "spec:\n  jetstreamExotic:\n    url: nats://js:4222\n    accessSecret: {name: s, key: k}\n    streamConfig: \"maxAge: 1h\"\n",
        );
        assert!(problems(&exotic_js).is_empty(), "{:?}", problems(&exotic_js));
        round_trip(&exotic_js);
        let kafka = parse(
            r#"
spec:
  kafka:
    url: kafka:9092
    topic: argo-events
    version: "2.5.0"
    partitioner: hash
    consumerGroup:
      groupName: sensors
      oldest: true
      rebalanceStrategy: sticky
    sasl:
      mechanism: PLAIN
      userSecret: {name: k, key: user}
"#,
        );
        assert!(problems(&kafka).is_empty(), "{:?}", problems(&kafka));
        round_trip(&kafka);
    }

    #[test]
    fn exactly_one_kind() {
        assert!(problems(&parse("spec: {}"))[0].contains("set one of nats"));
        let two = parse("spec:\n  jetstream: {version: latest}\n  kafka: {url: k:9092}\n");
        assert!(problems(&two)[0].contains("jetstream, kafka"), "{:?}", problems(&two));
    }

    #[test]
    fn required_fields() {
        assert_eq!(problems(&parse("spec:\n  jetstream: {}\n")).len(), 1);
        assert!(problems(&parse("spec:\n  jetstream: {}\n"))[0].starts_with("spec.jetstream.version"));
        assert!(problems(&parse("spec:\n  jetstreamExotic: {}\n"))[0].starts_with("spec.jetstreamExotic.url"));
        assert!(problems(&parse("spec:\n  kafka: {}\n"))[0].starts_with("spec.kafka.url"));
        assert!(problems(&parse("spec:\n  nats: {}\n"))[0].contains("native or exotic"));
        let both = parse("spec:\n  nats:\n    native: {}\n    exotic: {url: u, clusterID: c}\n");
        assert!(problems(&both)[0].contains("not both"));
    }

    #[test]
    fn jetstream_replicas_form_a_quorum() {
        assert!(problems(&parse("spec:\n  jetstream: {version: latest, replicas: 1}\n")).is_empty());
        assert!(problems(&parse("spec:\n  jetstream: {version: latest, replicas: 2}\n"))[0].contains("quorum"));
    }

    #[test]
    fn durations_are_checked() {
        let bad = parse("spec:\n  jetstream:\n    version: latest\n    streamConfig: \"maxAge: 3 days\"\n");
        assert!(problems(&bad)[0].starts_with("spec.jetstream.streamConfig.maxAge"), "{:?}", problems(&bad));
        let bad = parse("spec:\n  nats:\n    native: {maxAge: forever}\n");
        assert!(problems(&bad)[0].starts_with("spec.nats.native.maxAge"));
        let bad = parse("spec:\n  jetstreamExotic: {url: u, streamConfig: \"[1, 2]\"}\n");
        assert!(problems(&bad)[0].contains("mapping"));
    }
}
