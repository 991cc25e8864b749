//! `s3` — a Sluice extension beyond upstream Argo Events: object events from any S3-compatible store
//! (AWS S3, MinIO, Ceph, moto), either from S3 event notifications on an SQS queue or by listing the
//! bucket. Both modes publish one S3 event record per object change, in the shape AWS uses, so the
//! same sensors work whichever mode feeds them.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::EventSourceFilter;
use crate::common::SecretKeySelector;

/// Object changes in one bucket of an S3-compatible store (Sluice extension).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3EventSource {
    /// The bucket name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub bucket: String,
    /// The store's base URL, e.g. `http://minio:9000`; requests then use path-style addressing
    /// (`<endpoint>/<bucket>/<key>`), which every S3-compatible store accepts. Default: AWS
    /// (`https://s3.<region>.amazonaws.com`, and `https://sqs.<region>.amazonaws.com` for the queue).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The region requests are signed for. Default `us-east-1`, or `AWS_REGION`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The Secret key holding the access key id. Default: the AWS default credential chain
    /// (environment, shared credentials file, web identity token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key: Option<SecretKeySelector>,
    /// The Secret key holding the secret access key; needed with `accessKey`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<SecretKeySelector>,
    /// The Secret key holding a session token for temporary credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_token: Option<SecretKeySelector>,
    /// Only objects whose key starts with this are reported. Default: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Only objects whose key ends with this are reported. Default: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
    /// Which changes to report: `created`, `removed`. Default: both.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<S3ObjectEvent>,
    /// Where changes come from. Default `notifications` when `queue` is set, else `list`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<S3Mode>,
    /// `notifications` mode: the SQS queue (a name, or a queue URL) the bucket sends its S3 event
    /// notifications to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// `notifications` mode: the account owning the queue, when it is not the caller's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_account_id: Option<String>,
    /// `notifications` mode: the SQS long-poll wait, in seconds (0–20). Default 20.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_time_seconds: Option<i64>,
    /// `list` mode: how often the bucket is listed, a duration such as `30s`. Default `10s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// Extra key/value pairs copied into every event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// Only events matching this filter are published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<EventSourceFilter>,
}

/// A kind of object change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum S3ObjectEvent {
    /// An object was written (`s3:ObjectCreated:*`).
    Created,
    /// An object was deleted (`s3:ObjectRemoved:*`).
    Removed,
}

/// Where an `s3` source learns about changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum S3Mode {
    /// S3 event notifications the bucket sends to the SQS queue `queue`.
    Notifications,
    /// Periodic ListObjectsV2: a new key or ETag is `created`, a key gone is `removed`. Works on
    /// stores without notifications; what was seen is kept in the checkpoint store.
    List,
}

impl S3EventSource {
    /// The mode in effect: `mode`, else `notifications` when a queue is set, else `list`.
    pub fn effective_mode(&self) -> S3Mode {
        match self.mode {
            Some(m) => m,
            None if self.queue.as_deref().is_some_and(|q| !q.trim().is_empty()) => S3Mode::Notifications,
            None => S3Mode::List,
        }
    }

    /// Whether `event` is reported (`events` empty reports both).
    pub fn reports(&self, event: S3ObjectEvent) -> bool {
        self.events.is_empty() || self.events.contains(&event)
    }
}
