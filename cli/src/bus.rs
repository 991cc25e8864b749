//! Choosing and opening the bus of a process: `embedded`, a NATS URL, or an EventBus manifest.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use sluice_eventbus::embedded::{EmbeddedBus, EmbeddedConfig};
use sluice_eventbus::secrets::SecretResolver;
use sluice_eventbus::Bus;

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
    /// A secret the bus needs did not resolve.
    #[error("failed to resolve the bus's access secret")]
    ResolveSecret(#[source] sluice_eventbus::secrets::SecretError),
}

/// Opens the bus `arg` names.
pub async fn open_bus(
    arg: &BusArg,
    embedded_capacity: usize,
    secrets: &dyn SecretResolver,
) -> Result<Arc<dyn Bus>, OpenBusError> {
    match arg {
        BusArg::Embedded => {
            tracing::info!(
                capacity = embedded_capacity,
                "using the embedded bus (in-process, not durable across restarts)"
            );
            Ok(Arc::new(EmbeddedBus::new(EmbeddedConfig {
                capacity: embedded_capacity,
                ..Default::default()
            })))
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
