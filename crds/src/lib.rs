//! Argo Events `argoproj.io/v1alpha1` custom resource types — `EventSource`, `Sensor`, `EventBus` —
//! typed so upstream manifests parse unchanged, with schemars schemas for the generated CRDs and pure
//! offline validation. No I/O happens in this crate.

pub mod common;
pub mod duration;
pub mod eventbus;
pub mod eventsource;
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
/// Sensor, EventBus.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![EventSource::crd(), Sensor::crd(), EventBus::crd()]
}

/// The file each CRD is checked in as under `crds/` (upstream's names), with its YAML.
pub fn crd_files() -> Result<Vec<(&'static str, String)>, serde_yaml::Error> {
    let files = [
        ("argoproj.io_eventsources.yaml", EventSource::crd()),
        ("argoproj.io_sensors.yaml", Sensor::crd()),
        ("argoproj.io_eventbus.yaml", EventBus::crd()),
    ];
    files.into_iter().map(|(name, crd)| Ok((name, crd_document(&crd)?))).collect()
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
