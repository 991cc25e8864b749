//! Opening a NATS JetStream bus from URLs (`--bus nats://…`) or an EventBus manifest
//! (`spec.jetstreamExotic`, or `status.config.jetstream` as the controller fills it in).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sluice_eventbus::jetstream::{JetStreamBus, JetStreamConfig};
use sluice_eventbus::secrets::FileSecretResolver;

use crate::bus::{OpenBusError, OpenedBus};
use crate::manifests::{self, Manifest};

/// How long a process keeps trying to reach the bus at startup before giving up (a pod then restarts).
const CONNECT_PATIENCE: Duration = Duration::from_secs(60);

/// Connects to JetStream at `urls`.
pub async fn connect_urls(urls: &[String]) -> Result<OpenedBus, OpenBusError> {
    let Some(first) = urls.first() else {
        return Err(OpenBusError::ConnectJetStream("no NATS URL given".into()));
    };
    let mut config = JetStreamConfig::new(first.clone());
    config.urls = urls.to_vec();
    connect(config).await
}

/// Connects to the JetStream bus an EventBus manifest describes.
pub async fn connect_manifest(path: &Path, secrets: &FileSecretResolver) -> Result<OpenedBus, OpenBusError> {
    let load_error = |reason: String| OpenBusError::LoadEventBus {
        path: path.to_path_buf(),
        reason,
    };
    let docs = manifests::load(&[path.to_path_buf()]).map_err(|e| load_error(e.to_string()))?;
    let mut buses = Vec::new();
    for doc in docs {
        if doc.has_errors() {
            let first = doc
                .problems
                .first()
                .map(|p| format!("{}: {}", p.path, p.reason))
                .unwrap_or_default();
            return Err(load_error(first));
        }
        if let Some(Manifest::EventBus(eb)) = doc.manifest {
            buses.push(eb);
        }
    }
    let [eb] = buses.as_slice() else {
        return Err(load_error(format!(
            "expected exactly one EventBus, found {}",
            buses.len()
        )));
    };
    let spec = eb
        .spec
        .jetstream_exotic
        .as_ref()
        .or_else(|| eb.status.as_ref().and_then(|s| s.config.as_ref()).and_then(|c| c.jetstream.as_ref()))
        .ok_or_else(|| {
            load_error(
                "no jetstreamExotic section (and no status.config.jetstream): only JetStream buses are supported; \
                 for a `jetstream` bus the controller runs, pass the manifest with its status, or --bus nats://…"
                    .into(),
            )
        })?;
    let config = JetStreamConfig::from_exotic(spec, secrets).map_err(|e| load_error(e.to_string()))?;
    connect(config).await
}

async fn connect(config: JetStreamConfig) -> Result<OpenedBus, OpenBusError> {
    let deadline = tokio::time::Instant::now() + CONNECT_PATIENCE;
    let mut delay = Duration::from_millis(200);
    loop {
        match JetStreamBus::connect(config.clone()).await {
            Ok(bus) => {
                tracing::info!(urls = %config.urls.iter().map(|u| sluice_eventbus::redact_url(u)).collect::<Vec<_>>().join(","), stream = %config.stream, "connected to the JetStream bus");
                let context = bus.context().clone();
                return Ok(OpenedBus {
                    bus: Arc::new(bus),
                    jetstream: Some(context),
                    state_replicas: config.stream_settings.replicas.max(1),
                });
            }
            // Why retry: in a cluster the bus may start after us; giving up at once would crash-loop.
            Err(error) if error.is_retryable() && tokio::time::Instant::now() < deadline => {
                tracing::warn!(error = %crate::process::error_chain(&error), retry_in = ?delay, "bus not reachable yet; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(error) => return Err(OpenBusError::ConnectJetStream(Box::new(error))),
        }
    }
}
