//! The `EventSource` custom resource (`argoproj.io/v1alpha1`): one manifest declares any number of
//! named events, grouped by kind (`webhook`, `github`, `kafka`, `calendar`, …). Each event is
//! published on the bus under the subject `<eventSourceName>.<eventName>`, so event names are unique
//! across all kinds of one EventSource.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

mod webhook;

pub use webhook::{EventSourceFilter, WebhookContext, WebhookEventSource};

/// The desired state of an EventSource: the events to produce, and how to run the process producing them.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "argoproj.io",
    version = "v1alpha1",
    kind = "EventSource",
    namespaced,
    status = "EventSourceStatus",
    shortname = "es",
    plural = "eventsources"
)]
#[serde(rename_all = "camelCase")]
pub struct EventSourceSpec {
    /// The name of the EventBus events are published to. Default `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_bus_name: Option<String>,
    /// Plain HTTP endpoints, keyed by event name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<BTreeMap<String, WebhookEventSource>>,
}

/// The observed state of an EventSource: its conditions (`SourcesProvided`, `Deployed`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventSourceStatus {
    /// Conditions at the top level of `status`, as upstream.
    #[serde(flatten)]
    pub status: crate::common::Status,
}
