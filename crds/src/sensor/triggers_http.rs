//! Request-style trigger actions: HTTP, AWS Lambda, OpenWhisk, custom gRPC servers, Slack, email and
//! the log trigger.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::serde_util::{is_false, null_as_default};
use super::trigger::TriggerParameter;
use crate::common::{BasicAuth, SecretKeySelector, SecureHeader, TLSConfig};

/// Sends an HTTP request whose JSON body is built from the triggering events.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HTTPTrigger {
    /// The URL to send the request to. The older spelling `serverURL` is accepted too.
    #[serde(default, alias = "serverURL", skip_serializing_if = "String::is_empty")]
    pub url: String,
    /// Builds the JSON request body: each parameter's `dest` is a path in the body object. Without
    /// payload parameters the body is empty.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub payload: Vec<TriggerParameter>,
    /// The request method, e.g. `GET`, `PUT`. Default `POST`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Values from the events applied to this HTTP spec (e.g. `dest: url`).
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub parameters: Vec<TriggerParameter>,
    /// Seconds to wait for the response. Default 60.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
    /// TLS settings of the client (CA, client certificate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TLSConfig>,
    /// Basic authentication with credentials from Secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuth>,
    /// Fixed request headers.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub headers: BTreeMap<String, String>,
    /// Request headers whose values are read from Secrets or ConfigMaps.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub secure_headers: Vec<SecureHeader>,
    /// Request headers taken from the events: each parameter's `dest` is the header name.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub dynamic_headers: Vec<TriggerParameter>,
    /// Overrides the `Host` header (virtual hosting).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

/// Writes the triggering events to the sensor's log. Useful for debugging a sensor.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LogTrigger {
    /// Log at most once per this many seconds; firings in between are counted, not logged. Default 0
    /// (log every firing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_seconds: Option<u64>,
}

/// Invokes an AWS Lambda function with a JSON payload built from the events.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AWSLambdaTrigger {
    /// The function's name or ARN.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub function_name: String,
    /// The Secret key with the AWS access key id. Unset: the pod's default AWS credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key: Option<SecretKeySelector>,
    /// The Secret key with the AWS secret access key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<SecretKeySelector>,
    /// The AWS region, e.g. `us-east-1`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub region: String,
    /// Builds the JSON payload the function receives.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub payload: Vec<TriggerParameter>,
    /// Values from the events applied to this Lambda spec.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub parameters: Vec<TriggerParameter>,
    /// `RequestResponse` (default: wait for the result), `Event` (asynchronous) or `DryRun` (only
    /// check permissions and input).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invocation_type: Option<String>,
    /// An IAM role to assume before invoking.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "roleARN")]
    pub role_arn: Option<String>,
}

/// Hands the firing to an external gRPC trigger server, which interprets `spec` itself.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomTrigger {
    /// Address of the gRPC server, `host:port`.
    #[serde(default, rename = "serverURL", skip_serializing_if = "String::is_empty")]
    pub server_url: String,
    /// Connect with TLS. Default false (plain text).
    #[serde(default, skip_serializing_if = "is_false")]
    pub secure: bool,
    /// The Secret key with the server's certificate (PEM), used when `secure` is true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_secret: Option<SecretKeySelector>,
    /// The name to verify the server certificate against, when it differs from the address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name_override: Option<String>,
    /// The resource spec passed to the server, as string keys and values.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub spec: BTreeMap<String, String>,
    /// Values from the events applied to `spec`.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub parameters: Vec<TriggerParameter>,
    /// Builds the JSON payload sent to the server.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub payload: Vec<TriggerParameter>,
}

/// Invokes an Apache OpenWhisk action.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OpenWhiskTrigger {
    /// Base URL of the OpenWhisk API host.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host: String,
    /// API version. Default `v1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The action's namespace. Default `_` (the caller's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The Secret key with the API auth token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_token: Option<SecretKeySelector>,
    /// The action (function) to invoke.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub action_name: String,
    /// Builds the JSON payload the action receives.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub payload: Vec<TriggerParameter>,
    /// Values from the events applied to this OpenWhisk spec.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub parameters: Vec<TriggerParameter>,
}

/// Posts a message to a Slack channel.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SlackTrigger {
    /// Values from the events applied to this Slack spec (e.g. `dest: message`).
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub parameters: Vec<TriggerParameter>,
    /// The Secret key with the Slack bot token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack_token: Option<SecretKeySelector>,
    /// The channel name or id to post to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// The message text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Slack message attachments, as a JSON array in a string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachments: Option<String>,
    /// Slack Block Kit blocks, as a JSON array in a string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocks: Option<String>,
    /// Post into a thread rather than the channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread: Option<SlackThread>,
    /// The name and icon the message appears under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<SlackSender>,
}

/// Threading of Slack messages.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SlackThread {
    /// Messages with the same key go to the same thread (the first one starts it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_aggregation_key: Option<String>,
    /// Also show thread replies in the channel. Default false.
    #[serde(default, skip_serializing_if = "is_false")]
    pub broadcast_message_to_channel: bool,
}

/// How the Slack app presents itself on a message.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SlackSender {
    /// The display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// An emoji (`:robot_face:`) or image URL used as the icon.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon: Option<String>,
}

/// Sends an email over SMTP.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EmailTrigger {
    /// Values from the events applied to this email spec (e.g. `dest: body`).
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub parameters: Vec<TriggerParameter>,
    /// The SMTP user name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The Secret key with the SMTP password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp_password: Option<SecretKeySelector>,
    /// The SMTP server's host name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The SMTP server's port. Default 0 (the client library's choice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
    /// Recipient addresses.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub to: Vec<String>,
    /// The sender address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The subject line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The message body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Send `username`/`smtpPassword` even when the server offers no TLS (Sluice extension).
    /// Default false: with credentials set, the connection must be TLS (port 465) or upgraded
    /// with STARTTLS, so a man in the middle who strips STARTTLS never sees the password.
    /// Without credentials, TLS is used when the server offers it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plaintext_auth: Option<bool>,
}
