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
