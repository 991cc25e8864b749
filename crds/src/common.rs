//! Types shared by the EventSource, Sensor and EventBus specs: secret references, TLS, SASL, backoff,
//! statuses. Field names follow upstream `io.argoproj.events.v1alpha1` exactly.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use k8s_openapi::api::core::v1::{ConfigMapKeySelector, SecretKeySelector};

/// An integer or a string, as Kubernetes' `IntOrString` but 64-bit: backoff durations are either
/// nanoseconds (`1000000000`) or Go duration strings (`"1s"`, `"3m"`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Int64OrString {
    /// A whole number (nanoseconds where it is a duration).
    Int(i64),
    /// A string such as `"10s"`.
    String(String),
}

impl Int64OrString {
    /// The value as a duration: an integer is nanoseconds, a string a Go duration (`"1m30s"`).
    pub fn to_duration(&self) -> Result<std::time::Duration, crate::duration::ParseDurationError> {
        match self {
            Int64OrString::Int(n) if *n >= 0 => Ok(std::time::Duration::from_nanos(*n as u64)),
            Int64OrString::Int(n) => Err(crate::duration::ParseDurationError::Negative(n.to_string())),
            Int64OrString::String(s) => crate::duration::parse_go_duration(s),
        }
    }
}

impl fmt::Display for Int64OrString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Int64OrString::Int(n) => write!(f, "{n}"),
            Int64OrString::String(s) => f.write_str(s),
        }
    }
}

impl Serialize for Int64OrString {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Int64OrString::Int(n) => s.serialize_i64(*n),
            Int64OrString::String(v) => s.serialize_str(v),
        }
    }
}

impl<'de> Deserialize<'de> for Int64OrString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(i64),
            Str(String),
        }
        Ok(match Raw::deserialize(d)? {
            Raw::Int(n) => Int64OrString::Int(n),
            Raw::Str(s) => Int64OrString::String(s),
        })
    }
}

impl JsonSchema for Int64OrString {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Int64OrString".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "x-kubernetes-int-or-string": true })
    }
}

/// A decimal amount (backoff `factor`, `jitter`), written as a number (`2`, `0.2`) or a string (`"0.2"`).
/// Kept as text so no precision is lost on a round trip.
#[derive(Clone, Debug, PartialEq)]
pub struct Amount(pub String);

impl Amount {
    /// The amount as a float; `None` when the text is not a number.
    pub fn as_f64(&self) -> Option<f64> {
        self.0.trim().parse().ok()
    }
}

impl Serialize for Amount {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => s.serialize_i64(f as i64),
            Some(f) => s.serialize_f64(f),
            None => s.serialize_str(&self.0),
        }
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(i64),
            Float(f64),
            Str(String),
        }
        Ok(Amount(match Raw::deserialize(d)? {
            Raw::Int(n) => n.to_string(),
            Raw::Float(f) => f.to_string(),
            Raw::Str(s) => s,
        }))
    }
}

impl JsonSchema for Amount {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Amount".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "number" })
    }
}

/// Retry timing, as Kubernetes' `wait.Backoff`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Backoff {
    /// The first wait: nanoseconds, or a duration string such as `"1s"`. Default `1s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<Int64OrString>,
    /// Each wait is the previous one times this factor. Default 1 (constant waits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub factor: Option<Amount>,
    /// Random extra wait, as a fraction of the wait (0.2 adds up to 20%).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter: Option<Amount>,
    /// How many attempts in all. Default 1 for triggers (no retry) unless set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<i32>,
}

/// A user name and password, each read from a Secret.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BasicAuth {
    /// The Secret key holding the user name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<SecretKeySelector>,
    /// The Secret key holding the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<SecretKeySelector>,
}

/// TLS settings for a client connection.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TLSConfig {
    /// The Secret key holding the CA certificate (PEM) used to verify the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert_secret: Option<SecretKeySelector>,
    /// The Secret key holding the client certificate (PEM) for mutual TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert_secret: Option<SecretKeySelector>,
    /// The Secret key holding the client private key (PEM) for mutual TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_secret: Option<SecretKeySelector>,
    /// Skip verifying the server's certificate. Insecure; for tests only. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_skip_verify: bool,
    /// Use TLS with the system's trust store even when no certificate secret is given. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub enabled: bool,
}

/// SASL authentication (Kafka).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SASLConfig {
    /// `PLAIN` (default), `OAUTHBEARER`, `SCRAM-SHA-256`, `SCRAM-SHA-512` or `GSSAPI`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mechanism: Option<String>,
    /// The Secret key holding the user name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_secret: Option<SecretKeySelector>,
    /// The Secret key holding the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret: Option<SecretKeySelector>,
}

/// Where a header value comes from: a Secret or a ConfigMap key.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ValueFromSource {
    /// A Secret key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<SecretKeySelector>,
    /// A ConfigMap key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_key_ref: Option<ConfigMapKeySelector>,
}

/// A header whose value is read from a Secret or ConfigMap (so it never appears in a manifest).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecureHeader {
    /// The header name.
    #[serde(default)]
    pub name: String,
    /// Where the value comes from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<ValueFromSource>,
}

/// Labels and annotations to put on generated objects.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    /// Annotations to add.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<std::collections::BTreeMap<String, String>>,
    /// Labels to add.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<std::collections::BTreeMap<String, String>>,
}

/// A label or field selector term: `key operation value`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Selector {
    /// The label or field key.
    #[serde(default)]
    pub key: String,
    /// `==`, `!=`, `=`, `in`, `notin`, `exists`, `!`, `gt`, `lt`. Default `=`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// The value to compare with.
    #[serde(default)]
    pub value: String,
}

/// One status condition, as upstream and Kubernetes conventions.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// The condition type, e.g. `Deployed`, `SourcesProvided`.
    #[serde(rename = "type", default)]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    #[serde(default)]
    pub status: String,
    /// When the status last changed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    /// A CamelCase reason for the last transition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A human-readable message about the last transition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The status shared by all three kinds: conditions, and the generation they describe (a Sluice
/// extension, as Kubernetes conventions ask).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// The current conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Sluice extension: the `metadata.generation` these conditions were computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Overrides for the main container of a generated pod (the sensor or event-source pod): extra
/// environment, resources, mounts. The image and command are chosen by the controller.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    /// Extra environment variables for the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<k8s_openapi::api::core::v1::EnvVar>>,
    /// Sources (ConfigMaps, Secrets) whose keys all become environment variables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_from: Option<Vec<k8s_openapi::api::core::v1::EnvFromSource>>,
    /// When to pull the image: `Always`, `IfNotPresent` or `Never`. Kubernetes' default applies when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<String>,
    /// CPU and memory requests and limits of the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<k8s_openapi::api::core::v1::ResourceRequirements>,
    /// Container-level security settings (user, capabilities, read-only root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<k8s_openapi::api::core::v1::SecurityContext>,
    /// Where the pod's `volumes` are mounted in the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_mounts: Option<Vec<k8s_openapi::api::core::v1::VolumeMount>>,
}

/// How the controller shapes the pod it runs for a Sensor or an EventSource: service account,
/// scheduling, security, volumes and the main container's overrides. Every field is optional.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Template {
    /// Labels and annotations put on the pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
    /// The ServiceAccount the pod runs as. Default: the namespace's `default` account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// Overrides for the main container (env, resources, mounts, security).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<Container>,
    /// Volumes the pod declares, mounted through `container.volumeMounts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<Vec<k8s_openapi::api::core::v1::Volume>>,
    /// Pod-level security settings (user, group, fsGroup, seccomp).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<k8s_openapi::api::core::v1::PodSecurityContext>,
    /// Node labels the pod's node must carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<std::collections::BTreeMap<String, String>>,
    /// Taints the pod tolerates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<k8s_openapi::api::core::v1::Toleration>>,
    /// Node and pod (anti-)affinity rules for scheduling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<k8s_openapi::api::core::v1::Affinity>,
    /// Secrets used to pull the container image from private registries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_secrets: Option<Vec<k8s_openapi::api::core::v1::LocalObjectReference>>,
    /// The pod's PriorityClass; higher classes are scheduled first and evicted last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    /// The pod's numeric priority. Normally filled in from `priorityClassName` by the admission
    /// controller; set it only when that controller is off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
}

/// An object in an S3-compatible store (AWS S3, MinIO, …), with the credentials to reach it. Used by
/// the k8s trigger's `source.s3` and the MinIO event source.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3Artifact {
    /// The store's endpoint, `host:port` without a scheme, e.g. `minio.local:9000`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub endpoint: String,
    /// The bucket, and for an artifact the object key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<S3Bucket>,
    /// The region of the bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Use plain HTTP instead of HTTPS. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure: bool,
    /// The Secret key with the access key id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key: Option<SecretKeySelector>,
    /// The Secret key with the secret access key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<SecretKeySelector>,
    /// Bucket notification types to listen for (event sources only), e.g. `s3:ObjectCreated:Put`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<String>>,
    /// Only objects whose key has this prefix and suffix (event sources only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<S3Filter>,
    /// Extra metadata passed along with requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<std::collections::BTreeMap<String, String>>,
    /// The Secret key with a CA certificate (PEM) to trust for the endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_certificate: Option<SecretKeySelector>,
}

/// A bucket and, where it names one object, the key.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3Bucket {
    /// The bucket's name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The object key within the bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// Object key filter for bucket notifications.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3Filter {
    /// Keys must start with this text.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prefix: String,
    /// Keys must end with this text.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub suffix: String,
}

/// Credentials of a GitHub App installation (instead of a personal token).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GithubAppCreds {
    /// The Secret key with the App's private key (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<SecretKeySelector>,
    /// The App's numeric id.
    #[serde(default, rename = "appID", skip_serializing_if = "is_zero_i64")]
    pub app_id: i64,
    /// The numeric id of the App's installation on the organisation or repository.
    #[serde(default, rename = "installationID", skip_serializing_if = "is_zero_i64")]
    pub installation_id: i64,
}

/// How to authenticate to a NATS server. Set at most one method.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NATSAuth {
    /// User name and password from Secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic: Option<BasicAuth>,
    /// The Secret key with a token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<SecretKeySelector>,
    /// The Secret key with an NKey seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nkey: Option<SecretKeySelector>,
    /// The Secret key with a credentials file (JWT and NKey seed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<SecretKeySelector>,
}

/// A Confluent-compatible schema registry, for Avro-encoded Kafka messages.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SchemaRegistryConfig {
    /// The registry's base URL.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub url: String,
    /// The id of the schema messages are encoded with.
    #[serde(default, rename = "schemaId", skip_serializing_if = "is_zero_i32")]
    pub schema_id: i32,
    /// Basic authentication for the registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<BasicAuth>,
}

/// A Kafka consumer group.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaConsumerGroup {
    /// The group's name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub group_name: String,
    /// A new group starts from the oldest retained message (`true`) or only sees new ones (`false`,
    /// default).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub oldest: bool,
    /// How partitions are shared among members: `range` (default), `roundrobin` or `sticky`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rebalance_strategy: Option<String>,
}

/// `skip_serializing_if` for whole numbers where 0 means unset.
fn is_zero_i64(n: &i64) -> bool {
    *n == 0
}

/// `skip_serializing_if` for whole numbers where 0 means unset.
fn is_zero_i32(n: &i32) -> bool {
    *n == 0
}
