//! How the EventSource's own Service is shaped: `spec.service` (the ClusterIP Service in front of push
//! sources). The pod `spec.template` is the shared [`crate::common::Template`], the same type Sensors use.

use k8s_openapi::api::core::v1::ServicePort;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::Metadata;

/// The ClusterIP Service the controller creates in front of the EventSource pod, so push sources
/// (webhooks) are reachable inside the cluster. Without it no Service is created.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    /// Labels and annotations added to the Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
    /// The ports the Service exposes; `targetPort` should be the `port` of a webhook event.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ServicePort>,
    /// A fixed cluster IP for the Service. Default: one is assigned. The string `None` makes a
    /// headless Service. Cannot be changed after creation.
    #[serde(rename = "clusterIP", default, skip_serializing_if = "Option::is_none")]
    pub cluster_ip: Option<String>,
}
