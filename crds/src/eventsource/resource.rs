//! Kubernetes object changes: the `resource` source watches one resource type (group, version,
//! resource) in one namespace or all of them.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::Selector;

/// Add, update and delete notifications for Kubernetes objects of one type.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceEventSource {
    /// The namespace to watch. Empty: all namespaces (needs cluster-wide RBAC).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Narrows which objects are watched; objects failing it produce no events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<ResourceFilter>,
    /// The API group of the resource, e.g. `apps` or `argoproj.io`; empty for the core group.
    #[serde(default)]
    pub group: String,
    /// The API version of the resource, e.g. `v1`.
    #[serde(default)]
    pub version: String,
    /// The plural resource name, e.g. `deployments`, `workflows`, `configmaps`.
    #[serde(default)]
    pub resource: String,
    /// The changes to report: any of `ADD`, `UPDATE`, `DELETE`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub event_types: Vec<String>,
    /// Extra key/value pairs copied into every event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
}

/// Conditions on an object's metadata; all given conditions must hold.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceFilter {
    /// The object name must start with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Label selector terms, passed to the API server's list/watch. Several values for `in` and
    /// `notin` are written comma-separated in one `value`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<Selector>,
    /// Field terms on any field path of the object (e.g. `spec.serviceAccountName`), checked by
    /// the source; the value may be a regular expression. Operators `=`, `==`, `!=`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<Selector>,
    /// Only objects created before this time (RFC 3339) are reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<Time>,
    /// Only objects created after the source started are reported. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub after_start: bool,
}
