//! Cloud provider queues and notifications: AWS SNS and SQS, Google Cloud Pub/Sub, Azure Event
//! Hubs, Queue Storage and Service Bus, and Alibaba Cloud MNS.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{EventSourceFilter, WebhookContext};
use crate::common::{SecretKeySelector, TLSConfig};

/// Notifications from an AWS SNS topic, delivered by SNS to an HTTP endpoint this source serves
/// (the source subscribes the endpoint to the topic).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SNSEventSource {
    /// The HTTP server SNS delivers to; `url` is the public base URL subscribed to the topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookContext>,
    /// The ARN of the SNS topic to subscribe to.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub topic_arn: String,
    /// The Secret key holding the AWS access key id. Default: the ambient AWS credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key: Option<SecretKeySelector>,
    /// The Secret key holding the AWS secret access key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<SecretKeySelector>,
    /// The AWS region of the topic, e.g. `us-east-1`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub region: String,
    /// An IAM role to assume before calling AWS.
    #[serde(rename = "roleARN", default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    /// Extra key/value pairs copied into every event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// Verify each notification's SNS signature and reject unsigned ones. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub validate_signature: bool,
    /// Only notifications matching this filter are published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<EventSourceFilter>,
    /// A custom SNS endpoint URL (e.g. LocalStack) instead of AWS's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

/// Messages from an AWS SQS queue, received by long polling and deleted after publishing.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SQSEventSource {
    /// The Secret key holding the AWS access key id. Default: the ambient AWS credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key: Option<SecretKeySelector>,
    /// The Secret key holding the AWS secret access key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<SecretKeySelector>,
    /// The AWS region of the queue, e.g. `us-east-1`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub region: String,
    /// The queue name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub queue: String,
    /// How long one receive call waits for a message, in seconds (0–20; long polling).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_time_seconds: Option<i64>,
    /// An IAM role to assume before calling AWS.
    #[serde(rename = "roleARN", default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    /// Parse message bodies as JSON, so filters and triggers can address their fields.
    /// Default false (the body is kept as a string).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub json_body: bool,
    /// The AWS account id owning the queue, when it is not the caller's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_account_id: Option<String>,
    /// Extra key/value pairs copied into every event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// The queue has a dead-letter queue: messages that cannot be processed (e.g. invalid JSON
    /// with `jsonBody`) are left undeleted so SQS moves them there. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dlq: bool,
    /// A custom SQS endpoint URL (e.g. LocalStack) instead of AWS's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The Secret key holding an AWS session token for temporary (STS) credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_token: Option<SecretKeySelector>,
    /// Only messages matching this filter are published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<EventSourceFilter>,
}

/// Messages from a Google Cloud Pub/Sub subscription.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PubSubEventSource {
    /// The GCP project of the subscription. Default: the project of the GKE/GCE environment.
    #[serde(rename = "projectID", default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
    /// The GCP project of the topic. Default: `projectID`.
    #[serde(rename = "topicProjectID", default, skip_serializing_if = "Option::is_none")]
    pub topic_project_id: Option<String>,
    /// The topic to subscribe to; needed when the source creates the subscription. With an
    /// existing subscription it is checked that the subscription belongs to this topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// An existing subscription to consume. Default: a name derived from this source's settings
    /// (so changing the settings creates a new subscription).
    #[serde(rename = "subscriptionID", default, skip_serializing_if = "Option::is_none")]
    pub subscription_id: Option<String>,
    /// The Secret key holding a service-account JSON key. Default: Workload Identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_secret: Option<SecretKeySelector>,
    /// Delete the subscription when the source stops. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub delete_subscription_on_finish: bool,
    /// Parse message bodies as JSON. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub json_body: bool,
    /// Extra key/value pairs copied into every event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// Only messages matching this filter are published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<EventSourceFilter>,
}

/// Events from an Azure Event Hub.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AzureEventsHubEventSource {
    /// The fully qualified host name of the Event Hubs namespace
    /// (`<namespace>.servicebus.windows.net`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub fqdn: String,
    /// The Secret key holding the shared access key name. Without both SAS fields, Azure AD
    /// (default credential chain) is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_access_key_name: Option<SecretKeySelector>,
    /// The Secret key holding the shared access key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_access_key: Option<SecretKeySelector>,
    /// The Event Hub name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hub_name: String,
    /// Extra key/value pairs copied into every event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// Only events matching this filter are published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<EventSourceFilter>,
}

/// Messages from an Azure Storage queue.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AzureQueueStorageEventSource {
    /// The storage account holding the queue; used with Azure AD (managed identity) and ignored
    /// when `connectionString` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_account_name: Option<String>,
    /// The Secret key holding the storage connection string. Default: Azure AD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_string: Option<SecretKeySelector>,
    /// The queue name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub queue_name: String,
    /// Parse message bodies as JSON. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub json_body: bool,
    /// The queue has a dead-letter setup: messages with an invalid body are not deleted so they
    /// can be moved there. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dlq: bool,
    /// Extra key/value pairs copied into every event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// Only messages matching this filter are published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<EventSourceFilter>,
    /// Base64-decode message bodies (before `jsonBody` parsing). Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub decode_message: bool,
    /// How long to wait after an empty receive before polling again, in seconds. Default 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_time_in_seconds: Option<i32>,
}

/// Messages from an Azure Service Bus queue, or a topic subscription.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AzureServiceBusEventSource {
    /// The Secret key holding the Service Bus connection string. Default: Azure AD with
    /// `fullyQualifiedNamespace`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_string: Option<SecretKeySelector>,
    /// The queue to receive from; or set `topicName` and `subscriptionName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_name: Option<String>,
    /// The topic to receive from, with `subscriptionName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_name: Option<String>,
    /// The topic subscription to receive from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_name: Option<String>,
    /// TLS settings for the client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TLSConfig>,
    /// Parse message bodies as JSON. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub json_body: bool,
    /// Extra key/value pairs copied into every event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// Only messages matching this filter are published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<EventSourceFilter>,
    /// The namespace host name (`<name>.servicebus.windows.net`), for Azure AD access; ignored
    /// when `connectionString` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fully_qualified_namespace: Option<String>,
    /// Lock messages and delete them only after they were published, instead of deleting them
    /// on receipt, so none is lost if publishing fails. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub defer_delete: bool,
}

/// Messages from an Alibaba Cloud MNS queue.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MNSEventSource {
    /// The Secret key holding the Alibaba Cloud access key id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key: Option<SecretKeySelector>,
    /// The Secret key holding the Alibaba Cloud access key secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<SecretKeySelector>,
    /// The queue name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub queue: String,
    /// Parse message bodies as JSON. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub json_body: bool,
    /// Only messages matching this filter are published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<EventSourceFilter>,
    /// The MNS endpoint URL of the account and region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}
