//! Argo Events `argoproj.io/v1alpha1` custom resource types — `EventSource`, `Sensor`, `EventBus` —
//! typed so upstream manifests parse unchanged, with schemars schemas for the generated CRDs and pure
//! offline validation. No I/O happens in this crate.

pub mod common;
pub mod duration;
pub mod eventbus;
pub mod eventsource;
pub mod refs;
pub mod sensor;
pub mod validate;

pub use eventbus::{EventBus, EventBusSpec};
pub use eventsource::{EventSource, EventSourceSpec};
pub use sensor::{Sensor, SensorSpec};

/// The API group and version of all three kinds.
pub const API_VERSION: &str = "argoproj.io/v1alpha1";

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// The CustomResourceDefinitions of all three kinds, derived from the Rust types: EventSource,
/// Sensor, EventBus. Use these rather than `Kind::crd()`: they are trimmed as described in
/// [`slim_crd`], and are what is checked in under `crds/`.
pub fn crds() -> Vec<CustomResourceDefinition> {
    let mut crds = vec![EventSource::crd(), Sensor::crd(), EventBus::crd()];
    crds.iter_mut().for_each(slim_crd);
    crds
}

/// The file each CRD is checked in as under `crds/` (upstream's names), with its YAML.
pub fn crd_files() -> Result<Vec<(&'static str, String)>, serde_yaml::Error> {
    let names = [
        "argoproj.io_eventsources.yaml",
        "argoproj.io_sensors.yaml",
        "argoproj.io_eventbus.yaml",
    ];
    names
        .into_iter()
        .zip(crds())
        .map(|(name, crd)| Ok((name, crd_document(&crd)?)))
        .collect()
}

/// All three CRDs as one multi-document YAML stream, ready for `kubectl apply -f -`.
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    let docs = crds().iter().map(crd_document).collect::<Result<Vec<_>, _>>()?;
    Ok(docs.join("---\n"))
}

/// One CRD as a YAML document with a header saying where it comes from.
fn crd_document(crd: &CustomResourceDefinition) -> Result<String, serde_yaml::Error> {
    Ok(format!(
        "# Generated from the sluice-crds Rust types; do not edit.\n\
         # Regenerate with: cargo run -p sluice-crds --bin crdgen -- --write\n{}",
        serde_yaml::to_string(crd)?
    ))
}

/// Schema nodes (paths from the root of the schema, through `properties`; list items are entered
/// implicitly) whose descendants lose their descriptions. These are embedded Kubernetes types
/// (volumes, affinity, …), documented by Kubernetes itself, and the dead-letter trigger, which repeats
/// the trigger's documentation. Why: the full text made the Sensor CRD about 380 kB of JSON, over the
/// 256 kB that client-side `kubectl apply` can store in its last-applied annotation.
const UNDOCUMENTED_SUBTREES: &[&[&str]] = &[
    &["spec", "template", "volumes"],
    &["spec", "template", "affinity"],
    &["spec", "template", "tolerations"],
    &["spec", "template", "securityContext"],
    &["spec", "template", "imagePullSecrets"],
    &["spec", "template", "container", "env"],
    &["spec", "template", "container", "envFrom"],
    &["spec", "template", "container", "resources"],
    &["spec", "template", "container", "securityContext"],
    &["spec", "template", "container", "volumeMounts"],
    &["spec", "triggers", "dlqTrigger"],
    &["spec", "nats", "native", "affinity"],
    &["spec", "nats", "native", "tolerations"],
    &["spec", "nats", "native", "securityContext"],
    &["spec", "nats", "native", "containerTemplate"],
    &["spec", "nats", "native", "metricsContainerTemplate"],
    &["spec", "jetstream", "affinity"],
    &["spec", "jetstream", "tolerations"],
    &["spec", "jetstream", "securityContext"],
    &["spec", "jetstream", "containerTemplate"],
    &["spec", "jetstream", "reloaderContainerTemplate"],
    &["spec", "jetstream", "metricsContainerTemplate"],
];

/// Trims a generated CRD: drops the descriptions below [`UNDOCUMENTED_SUBTREES`] (the subtree's own
/// description stays, so `kubectl explain` still says what the field is).
pub fn slim_crd(crd: &mut CustomResourceDefinition) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaProps;

    fn child<'a>(node: &'a mut JSONSchemaProps, name: &str) -> Option<&'a mut JSONSchemaProps> {
        use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaPropsOrArray;
        let node = if matches!(node.items, Some(JSONSchemaPropsOrArray::Schema(_))) {
            match &mut node.items {
                Some(JSONSchemaPropsOrArray::Schema(items)) => items.as_mut(),
                _ => return None,
            }
        } else {
            node
        };
        node.properties.as_mut()?.get_mut(name)
    }

    fn strip_below(node: &mut JSONSchemaProps) {
        use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
            JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
        };
        let mut children: Vec<&mut JSONSchemaProps> = Vec::new();
        if let Some(props) = node.properties.as_mut() {
            children.extend(props.values_mut());
        }
        match node.items.as_mut() {
            Some(JSONSchemaPropsOrArray::Schema(s)) => children.push(s),
            Some(JSONSchemaPropsOrArray::Schemas(list)) => children.extend(list.iter_mut()),
            None => {}
        }
        if let Some(JSONSchemaPropsOrBool::Schema(s)) = node.additional_properties.as_mut() {
            children.push(s);
        }
        for c in children {
            c.description = None;
            strip_below(c);
        }
    }

    /// Drops `format`s the API server does not know (schemars writes `uint64`, `uint32`, … for
    /// unsigned fields, and every `helm install` then warned about them); the `minimum: 0` schemars
    /// writes beside them keeps the meaning.
    fn drop_unknown_formats(node: &mut JSONSchemaProps) {
        use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
            JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
        };
        if node.format.as_deref().is_some_and(|f| f.starts_with("uint")) {
            node.format = None;
        }
        for c in node.properties.iter_mut().flat_map(|p| p.values_mut()) {
            drop_unknown_formats(c);
        }
        match node.items.as_mut() {
            Some(JSONSchemaPropsOrArray::Schema(s)) => drop_unknown_formats(s),
            Some(JSONSchemaPropsOrArray::Schemas(list)) => list.iter_mut().for_each(drop_unknown_formats),
            None => {}
        }
        if let Some(JSONSchemaPropsOrBool::Schema(s)) = node.additional_properties.as_mut() {
            drop_unknown_formats(s);
        }
    }

    for version in &mut crd.spec.versions {
        let Some(root) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        else {
            continue;
        };
        drop_unknown_formats(root);
        for path in UNDOCUMENTED_SUBTREES {
            let mut node = Some(&mut *root);
            for name in *path {
                node = node.and_then(|n| child(n, name));
            }
            if let Some(n) = node {
                strip_below(n);
            }
        }
    }
}
