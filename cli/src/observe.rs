//! The process's own HTTP endpoints: `/metrics` (Prometheus text), `/healthz` (the process is alive) and
//! `/readyz` (every port listens, every sensor subscribed, and every registered condition holds: the
//! bus connected, each broker source connected), on one port apart from the webhook ports.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::registry::Registry;
use sluice_eventbus::readiness::{Readiness, ReadyFlag};
use sluice_eventsource::http::server::{self, ServerConfig};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Shared state of the observability endpoints.
#[derive(Clone)]
pub struct Observability {
    registry: Arc<Mutex<Registry>>,
    readiness: Readiness,
    started: ReadyFlag,
}

impl Default for Observability {
    fn default() -> Self {
        let readiness = Readiness::default();
        let started = readiness.flag("started");
        Self {
            registry: Arc::default(),
            readiness,
            started,
        }
    }
}

impl Observability {
    /// Registers metric families: `f` gets the registry.
    pub fn register<T>(&self, f: impl FnOnce(&mut Registry) -> T) -> T {
        let mut guard = match self.registry.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }

    /// Marks the process started (or not); `/readyz` also needs every other condition.
    pub fn set_ready(&self, ready: bool) {
        self.started.set(ready);
    }

    /// The readiness conditions, for the parts of the process that register their own.
    pub fn readiness(&self) -> &Readiness {
        &self.readiness
    }

    /// The router, testable without a socket.
    pub fn router(&self) -> Router {
        let registry = self.registry.clone();
        let readiness = self.readiness.clone();
        Router::new()
            .route(
                "/metrics",
                get(move || {
                    let registry = registry.clone();
                    async move {
                        let mut text = String::new();
                        let encoded = match registry.lock() {
                            Ok(r) => prometheus_client::encoding::text::encode(&mut text, &r),
                            Err(poisoned) => {
                                prometheus_client::encoding::text::encode(&mut text, &poisoned.into_inner())
                            }
                        };
                        match encoded {
                            Ok(()) => (
                                StatusCode::OK,
                                [(
                                    header::CONTENT_TYPE,
                                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                                )],
                                text,
                            )
                                .into_response(),
                            Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
                        }
                    }
                }),
            )
            .route("/healthz", get(|| async { "ok" }))
            .route(
                "/readyz",
                get(move || {
                    let unmet = readiness.unmet();
                    async move {
                        if unmet.is_empty() {
                            (StatusCode::OK, "ready".to_string())
                        } else {
                            // Names only (source and condition names), never connection details.
                            (
                                StatusCode::SERVICE_UNAVAILABLE,
                                format!("not ready: {}", unmet.join(", ")),
                            )
                        }
                    }
                }),
            )
    }

    /// Serves on `addr` until `cancel`, through the hardened server with `config`'s limits.
    pub async fn serve(
        &self,
        addr: SocketAddr,
        config: &ServerConfig,
        cancel: CancellationToken,
        tracker: &TaskTracker,
    ) -> std::io::Result<SocketAddr> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        server::spawn(listener, "metrics", self.router(), config, cancel, tracker);
        tracing::info!(addr = %local, "serving /metrics, /healthz and /readyz");
        Ok(local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use prometheus_client::metrics::counter::Counter;
    use tower::ServiceExt;

    async fn get_text(router: Router, uri: &str) -> (StatusCode, String) {
        let req = Request::get(uri)
            .body(Body::empty())
            .expect("the test request is well-formed");
        let res = router.oneshot(req).await.unwrap_or_else(|e| match e {});
        let status = res.status();
        let body = res
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn serves_metrics_health_and_readiness() {
        let obs = Observability::default();
        let counter: Counter = Counter::default();
        obs.register(|r| r.register("argo_events_events_sent", "events sent", counter.clone()));
        counter.inc();
        let (status, text) = get_text(obs.router(), "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(text.contains("argo_events_events_sent_total 1"), "{text}");
        assert_eq!(get_text(obs.router(), "/healthz").await.0, StatusCode::OK);
        assert_eq!(
            get_text(obs.router(), "/readyz").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        obs.set_ready(true);
        assert_eq!(
            get_text(obs.router(), "/readyz").await,
            (StatusCode::OK, "ready".into())
        );
        let broker = obs.readiness().flag("es/orders");
        assert_eq!(
            get_text(obs.router(), "/readyz").await,
            (StatusCode::SERVICE_UNAVAILABLE, "not ready: es/orders".into())
        );
        broker.set(true);
        assert_eq!(get_text(obs.router(), "/readyz").await.0, StatusCode::OK);
    }
}
