//! Pure builders of the objects the controller creates for each custom resource: no I/O, so every
//! shape is snapshot-tested. Objects are JSON values ready for server-side apply (each carries its
//! `apiVersion`/`kind`, an owner reference to the CR, and Sluice's labels); a test checks that each
//! one deserializes into its typed Kubernetes struct.
//!
//! Layout: [`workload`] (EventSource and Sensor Deployments, Services, spec ConfigMaps),
//! [`eventbus`] (the NATS StatefulSet of a `jetstream` bus), [`secrets`] (generated bus
//! credentials), [`rbac`] (leader election rights),
//! [`policy`] (what a CR's pod template may ask for) and [`allow`] (the operator's allow-lists of
//! ServiceAccounts and Secrets).

use std::collections::BTreeMap;

use kube::api::ObjectMeta;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

mod allow;
mod eventbus;
mod policy;
mod rbac;
mod secrets;
mod workload;

pub use allow::{check_allowed, AllowList, NamePattern, ParsePatternError, PodUses, Refusal, Use};
pub use eventbus::{jetstream_children, BusChildren, NATS_CLUSTER_PORT, NATS_MONITOR_PORT};
pub use policy::{check_bus, check_template, RUN_AS_ID};
pub use rbac::eventsource_lease_name;
pub use secrets::{
    generate_route_password, jetstream_auth_secrets, jetstream_client_secret_name, jetstream_cluster_secret,
    jetstream_cluster_secret_name, jetstream_server_secret_name, usable_route_password, BusCredentials,
    JS_CLIENT_AUTH_KEY, JS_CLUSTER_AUTH_KEY, JS_ROUTE_PASSWORD_KEY, JS_SERVER_AUTH_KEY,
};
pub use workload::{
    eventsource_children, push_ports, runs_once, sensor_children, use_bus_manifest, WorkloadChildren,
    BUS_FILE,
};

/// Where the spec file is mounted in EventSource and Sensor pods.
pub const SPEC_DIR: &str = "/etc/sluice";
/// Where referenced secrets are mounted (`<dir>/<name>/<key>`, the layout `--secrets-dir` reads); not
/// under [`SPEC_DIR`]: a mount point cannot be created inside a read-only ConfigMap volume.
pub const SECRETS_DIR: &str = "/var/run/sluice/secrets";
/// Where referenced ConfigMaps are mounted (`<dir>/<name>/<key>`, the layout `--configmaps-dir` reads).
pub const CONFIGMAPS_DIR: &str = "/var/run/sluice/configmaps";
/// The port of `/metrics`, `/healthz` and `/readyz` in generated pods.
pub const METRICS_PORT: i32 = 7777;
/// The pod-template annotation holding the hash of the mounted spec: a spec change rolls the pods.
pub const SPEC_HASH_ANNOTATION: &str = "sluice.dev/spec-hash";
/// NATS client port.
pub const NATS_CLIENT_PORT: i32 = 4222;

/// Settings the builders take from the controller's command line.
#[derive(Clone, Debug)]
pub struct BuildConfig {
    /// The `sluice` image run by EventSource and Sensor pods.
    pub image: String,
    /// The NATS image repository for `jetstream` EventBuses (the tag is the bus's `version`).
    pub nats_image: String,
    /// The NATS version used when an EventBus does not name one.
    pub nats_version: String,
    /// Allow hostPath volumes, privileged containers, privilege escalation and added capabilities in
    /// CR pod templates (GHSA-hmp7-x699-cvhq).
    pub allow_privileged: bool,
    /// Egress rules (CIDRs) every Sensor pod gets as `--egress-deny`.
    pub egress_deny: Vec<String>,
    /// Egress exceptions (CIDRs) every Sensor pod gets as `--egress-allow`.
    pub egress_allow: Vec<String>,
    /// The ServiceAccounts CR pod templates may name (`--allowed-service-accounts`); `None` allows
    /// every one. See [`allow`].
    pub allowed_service_accounts: Option<AllowList>,
    /// The Secrets CR pods may read (`--allowed-secrets`); `None` allows every one. See [`allow`].
    pub allowed_secrets: Option<AllowList>,
}

impl Default for BuildConfig {
    fn default() -> Self {
        Self {
            image: format!("ghcr.io/sluice-dev/sluice:{}", env!("CARGO_PKG_VERSION")),
            nats_image: "nats".into(),
            nats_version: "2.15.1".into(),
            allow_privileged: false,
            egress_deny: Vec::new(),
            egress_allow: Vec::new(),
            allowed_service_accounts: None,
            allowed_secrets: None,
        }
    }
}

/// Why a CR's children cannot be built.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BuildError {
    /// The pod template asks for something only `--allow-privileged` permits.
    #[error("{path}: {reason} (the controller runs without --allow-privileged)")]
    RejectPrivileged { path: String, reason: String },
    /// The pods would run as a ServiceAccount or read a Secret outside the operator's allow-lists.
    #[error("{}", refusals(.refused))]
    RejectNotAllowed { refused: Vec<Refusal> },
    /// The object has no name, namespace or uid (it was not read from the API server).
    #[error("failed to build children: the object has no {field}")]
    MissingMetadata { field: &'static str },
    /// Serializing the spec for the mounted file failed.
    #[error("failed to encode the spec: {0}")]
    EncodeSpec(String),
}

fn refusals(refused: &[Refusal]) -> String {
    refused
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

struct Owner<'a> {
    kind: &'static str,
    name: &'a str,
    namespace: &'a str,
    uid: &'a str,
}

fn owner<'a>(kind: &'static str, meta: &'a ObjectMeta) -> Result<Owner<'a>, BuildError> {
    Ok(Owner {
        kind,
        name: meta
            .name
            .as_deref()
            .ok_or(BuildError::MissingMetadata { field: "name" })?,
        namespace: meta
            .namespace
            .as_deref()
            .ok_or(BuildError::MissingMetadata { field: "namespace" })?,
        uid: meta
            .uid
            .as_deref()
            .ok_or(BuildError::MissingMetadata { field: "uid" })?,
    })
}

impl Owner<'_> {
    /// Metadata of a child: name, namespace, labels, and a controller owner reference so the
    /// garbage collector deletes the child with the CR.
    fn meta(&self, name: &str, labels: &BTreeMap<String, String>) -> Value {
        json!({
            "name": name,
            "namespace": self.namespace,
            "labels": labels,
            "ownerReferences": [{
                "apiVersion": sluice_crds::API_VERSION,
                "kind": self.kind,
                "name": self.name,
                "uid": self.uid,
                "controller": true,
                "blockOwnerDeletion": true,
            }],
        })
    }
}

fn labels(component: &str, owner_label: &str, name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), "sluice".to_string()),
        ("app.kubernetes.io/component".to_string(), component.to_string()),
        (
            "app.kubernetes.io/managed-by".to_string(),
            "sluice-controller".to_string(),
        ),
        (owner_label.to_string(), name.to_string()),
    ])
}

/// The selector labels (a subset of [`labels`] that never changes).
fn selector(component: &str, owner_label: &str, name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/component".to_string(), component.to_string()),
        (owner_label.to_string(), name.to_string()),
    ])
}

fn hash(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn merge_map(target: &mut Value, field: &str, extra: Option<&BTreeMap<String, String>>) {
    let Some(extra) = extra else { return };
    if !target[field].is_object() {
        target[field] = Value::Object(Map::new());
    }
    if let Some(map) = target[field].as_object_mut() {
        for (k, v) in extra {
            // Sluice's own labels win: they are the Deployment's selector.
            map.entry(k.clone()).or_insert_with(|| json!(v));
        }
    }
}

#[cfg(test)]
mod tests;
