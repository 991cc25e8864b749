//! Opening a NATS JetStream bus from URLs or an EventBus manifest (filled in with the JetStream backend).

use std::path::Path;
use std::sync::Arc;

use sluice_eventbus::secrets::SecretResolver;
use sluice_eventbus::Bus;

use crate::bus::OpenBusError;

/// Connects to JetStream at `urls`.
pub async fn connect_urls(urls: &[String]) -> Result<Arc<dyn Bus>, OpenBusError> {
    Err(OpenBusError::ConnectJetStream(
        format!("JetStream backend not built yet ({})", urls.join(",")).into(),
    ))
}

/// Connects to the JetStream bus an EventBus manifest describes.
pub async fn connect_manifest(
    path: &Path,
    _secrets: &dyn SecretResolver,
) -> Result<Arc<dyn Bus>, OpenBusError> {
    Err(OpenBusError::LoadEventBus {
        path: path.to_path_buf(),
        reason: "JetStream backend not built yet".into(),
    })
}
