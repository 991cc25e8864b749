//! Sensors: what happens to events on the bus. A [`SensorRunner`] runs one upstream
//! `argoproj.io/v1alpha1` Sensor: it subscribes per trigger and dependency, applies the dependency
//! filters ([`filters`]), holds events for multi-dependency conditions ([`state`]), resolves trigger
//! parameters ([`params`]) and executes the trigger kinds ([`triggers`]) with retries
//! ([`retry`]) and the dead-letter trigger.
//!
//! Use from a binary:
//!
//! ```text
//! let runner = SensorRunner::new(sensor, bus, Arc::new(FileSecretResolver::new(dir)), reqwest::Client::new(), metrics)?;
//! runner.subscribe().await?;     // before event sources start
//! runner.run(cancel.child_token()).await?;
//! ```

pub mod eval;
pub mod filters;
pub mod firing;
pub mod jsonpath;
pub mod metrics;
pub mod params;
pub mod retry;
pub mod runner;
pub use sluice_eventbus::secrets;
pub mod state;
pub mod transform;
pub mod triggers;

pub use firing::{Firing, FiringId};
pub use runner::{SensorError, SensorRunner, SensorStats, StatsSnapshot};
pub use secrets::{FileSecretResolver, SecretError, SecretResolver};
pub use triggers::{BuildError, ErrorKind, Outcome, Trigger, TriggerError};
