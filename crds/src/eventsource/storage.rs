//! Object stores and file systems: MinIO/S3 bucket notifications, NetApp StorageGRID, local
//! files, SFTP and HDFS.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{EventSourceFilter, WebhookContext};
use crate::common::{ConfigMapKeySelector, SecretKeySelector, TLSConfig};

/// Bucket notifications from MinIO (or another S3-compatible server with MinIO's listen API).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3Artifact {
    /// The server's `host:port`, without scheme, e.g. `minio-service.argo-events:9000`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub endpoint: String,
    /// The bucket to watch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<S3Bucket>,
    /// The bucket's region. Default: the server's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Connect with plain HTTP instead of HTTPS. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure: bool,
    /// The Secret key holding the access key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key: Option<SecretKeySelector>,
    /// The Secret key holding the secret key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<SecretKeySelector>,
    /// Notification types to listen for, e.g. `s3:ObjectCreated:Put`, `s3:ObjectRemoved:*`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<String>,
    /// Only objects whose key matches this prefix and suffix are reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<S3Filter>,
    /// Extra key/value pairs copied into every event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// The Secret key holding a CA certificate (PEM) to trust for the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_certificate: Option<SecretKeySelector>,
}

/// An S3 bucket, and optionally one object in it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3Bucket {
    /// An object key within the bucket (unused for notifications).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The bucket name.
    #[serde(default)]
    pub name: String,
}

/// Restricts bucket notifications to object keys with this prefix and suffix.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3Filter {
    /// The key must start with this (empty: any).
    #[serde(default)]
    pub prefix: String,
    /// The key must end with this (empty: any), e.g. `.csv`.
    #[serde(default)]
    pub suffix: String,
}

/// Bucket notifications from NetApp StorageGRID, delivered to an HTTP endpoint this source
/// serves (the source registers the endpoint with StorageGRID's API).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageGridEventSource {
    /// The HTTP server StorageGRID delivers to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookContext>,
    /// Notification types to accept, e.g. `ObjectCreated:*`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<String>,
    /// Only objects whose key matches this prefix and suffix are reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<StorageGridFilter>,
    /// The ARN of the StorageGRID endpoint (topic) notifications are sent to.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub topic_arn: String,
    /// The bucket to register notifications for.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub bucket: String,
    /// The bucket's region. Default `us-east-1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The Secret key holding the StorageGRID API token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_token: Option<SecretKeySelector>,
    /// The base URL of the StorageGRID management API.
    #[serde(rename = "apiURL", default, skip_serializing_if = "String::is_empty")]
    pub api_url: String,
    /// Extra key/value pairs copied into every event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// TLS settings for calls to the StorageGRID API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TLSConfig>,
}

/// Restricts StorageGRID notifications to object keys with this prefix and suffix.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageGridFilter {
    /// The key must start with this (empty: any).
    #[serde(default)]
    pub prefix: String,
    /// The key must end with this (empty: any).
    #[serde(default)]
    pub suffix: String,
}

/// Which files in a directory to watch: one exact relative path, or those matching a regex.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WatchPathConfig {
    /// The directory to watch, e.g. `/data/incoming/`.
    #[serde(default)]
    pub directory: String,
    /// A file path relative to `directory` to watch. Set this or `pathRegexp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// A regular expression (RE2 syntax) matched against paths relative to `directory`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_regexp: Option<String>,
}

/// File system changes in a directory of the EventSource pod (usually a mounted volume).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileEventSource {
    /// The operation to report: `CREATE`, `WRITE`, `REMOVE`, `RENAME` or `CHMOD`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub event_type: String,
    /// Which files to watch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watch_path_config: Option<WatchPathConfig>,
    /// Poll the directory instead of using inotify (for file systems without notifications,
    /// e.g. some network mounts). Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub polling: bool,
    /// Extra key/value pairs copied into every event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// Only changes matching this filter are published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<EventSourceFilter>,
}

/// File changes on an SFTP server, found by polling.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SFTPEventSource {
    /// The operation to report: `CREATE` or `REMOVE`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub event_type: String,
    /// Which remote files to watch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watch_path_config: Option<WatchPathConfig>,
    /// The Secret key holding the user name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<SecretKeySelector>,
    /// The Secret key holding the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<SecretKeySelector>,
    /// The Secret key holding an SSH private key, used instead of a password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_key_secret: Option<SecretKeySelector>,
    /// The Secret key holding the server address, `host:port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<SecretKeySelector>,
    /// Extra key/value pairs copied into every event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// Only changes matching this filter are published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<EventSourceFilter>,
    /// How often to list the remote directory, as a duration (`30s`). Default `10s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_interval_duration: Option<String>,
}

/// File changes in an HDFS directory, found by polling.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HDFSEventSource {
    /// Which files to watch (`directory`, `path`, `pathRegexp` sit directly in this object).
    #[serde(flatten)]
    pub watch_path_config: WatchPathConfig,
    /// The operation to report: `CREATE`, `WRITE`, `REMOVE`, `RENAME` or `CHMOD`.
    #[serde(rename = "type", default, skip_serializing_if = "String::is_empty")]
    pub type_: String,
    /// How often to check the directory, as a duration (`30s`, `2m`). Default `1m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_interval: Option<String>,
    /// NameNode addresses, `host:port`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    /// The HDFS user to act as; ignored with Kerberos.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hdfs_user: Option<String>,
    /// The Secret key holding a Kerberos credential cache. Set this or `krbKeytabSecret` to use
    /// Kerberos.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub krb_c_cache_secret: Option<SecretKeySelector>,
    /// The Secret key holding a Kerberos keytab.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub krb_keytab_secret: Option<SecretKeySelector>,
    /// The Kerberos user name; required with a keytab.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub krb_username: Option<String>,
    /// The Kerberos realm; required with a keytab.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub krb_realm: Option<String>,
    /// The ConfigMap key holding `krb5.conf`; required with Kerberos.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub krb_config_config_map: Option<ConfigMapKeySelector>,
    /// The Kerberos principal of the HDFS service; required with Kerberos.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub krb_service_principal_name: Option<String>,
    /// Extra key/value pairs copied into every event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// Only changes matching this filter are published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<EventSourceFilter>,
}
