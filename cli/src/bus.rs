//! Choosing and opening the bus of a process: `embedded`, a NATS URL, or an EventBus manifest.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use sluice_eventbus::embedded::{EmbeddedBus, EmbeddedConfig};
use sluice_eventbus::secrets::FileSecretResolver;
use sluice_eventbus::Bus;

/// An open bus, with the JetStream context when it is JetStream (sensors keep their state there).
pub struct OpenedBus {
    /// The bus.
    pub bus: Arc<dyn Bus>,
    /// The JetStream context, for the sensors' key-value state.
    pub jetstream: Option<async_nats::jetstream::Context>,
    /// How many servers keep a copy of each sensor's key-value state: the event stream's replicas, so
    /// trigger state survives losing a server exactly as the events do.
    pub state_replicas: usize,
}

/// The `--bus` argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BusArg {
    /// The in-process bus.
    Embedded,
    /// NATS JetStream at these URLs (comma-separated on the command line).
    Nats(Vec<String>),
    /// An EventBus manifest whose `jetstreamExotic` (or `jetstream`) section says where the bus is.
    EventBusFile(PathBuf),
}

impl FromStr for BusArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err("empty --bus: use `embedded`, a nats:// URL or an EventBus manifest file".into());
        }
        if s == "embedded" {
            return Ok(BusArg::Embedded);
        }
        if s.contains("://") {
            let urls: Vec<String> = s
                .split(',')
                .map(|u| u.trim().to_string())
                .filter(|u| !u.is_empty())
                .collect();
            for u in &urls {
                if !(u.starts_with("nats://") || u.starts_with("tls://")) {
                    return Err(format!("unsupported bus URL {u:?}: use nats:// or tls://"));
                }
            }
            return Ok(BusArg::Nats(urls));
        }
        Ok(BusArg::EventBusFile(PathBuf::from(s)))
    }
}

/// Why the bus could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenBusError {
    /// The EventBus manifest could not be read or is invalid.
    #[error("failed to load the EventBus manifest {path}: {reason}")]
    LoadEventBus { path: PathBuf, reason: String },
    /// Connecting to JetStream failed.
    #[error("failed to connect to the JetStream bus")]
    ConnectJetStream(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Opens the bus `arg` names.
pub async fn open_bus(
    arg: &BusArg,
    embedded_capacity: usize,
    secrets: &FileSecretResolver,
) -> Result<OpenedBus, OpenBusError> {
    match arg {
        BusArg::Embedded => {
            tracing::info!(
                capacity = embedded_capacity,
                "using the embedded bus (in-process, not durable across restarts)"
            );
            let bus = EmbeddedBus::new(EmbeddedConfig {
                capacity: embedded_capacity,
                ..Default::default()
            });
            Ok(OpenedBus {
                bus: Arc::new(bus),
                jetstream: None,
                state_replicas: 1,
            })
        }
        BusArg::Nats(urls) => crate::bus_jetstream::connect_urls(urls).await,
        BusArg::EventBusFile(path) => crate::bus_jetstream::connect_manifest(path, secrets).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_forms() {
        assert_eq!("embedded".parse::<BusArg>(), Ok(BusArg::Embedded));
        assert_eq!(
            "nats://a:4222, nats://b:4222".parse::<BusArg>(),
            Ok(BusArg::Nats(vec!["nats://a:4222".into(), "nats://b:4222".into()]))
        );
        assert_eq!(
            "bus.yaml".parse::<BusArg>(),
            Ok(BusArg::EventBusFile("bus.yaml".into()))
        );
        assert!("http://x".parse::<BusArg>().is_err());
        assert!("".parse::<BusArg>().is_err());
    }
}
