//! The shared HTTP server of push sources: one axum server per port, shared by every event (of every
//! EventSource in the process) that listens on it, routed by endpoint and method. `GET /health` answers
//! 200 on every port, as upstream.
//!
//! Routes are collected into a [`RouteTable`] first, so collisions and invalid endpoints are reported
//! as errors before anything listens (axum would panic on them). Every port is served by
//! [`server::spawn`], the hardened server with header, idle and body timeouts, a header size limit and
//! a connection limit.

pub mod server;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter};
use axum::Router;
use bytes::Bytes;
use futures::future::BoxFuture;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Handles one request on a route. Boxed so routes of different source kinds share a table.
pub type RouteHandler = Arc<dyn Fn(Request<Body>) -> BoxFuture<'static, Response> + Send + Sync>;

/// One endpoint of a push source.
#[derive(Clone)]
pub struct Route {
    /// TCP port.
    pub port: u16,
    /// Path, starting with `/`.
    pub endpoint: String,
    /// The one method this event accepts.
    pub method: Method,
    /// Who owns the route, for messages: `EventSource/event`.
    pub owner: String,
    /// The handler.
    pub handler: RouteHandler,
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Route")
            .field("port", &self.port)
            .field("endpoint", &self.endpoint)
            .field("method", &self.method)
            .field("owner", &self.owner)
            .finish()
    }
}

/// Why routes could not be mounted or served.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// Two events claim the same port, endpoint and method.
    #[error("failed to add route {method} :{port}{endpoint} for {owner}: already used by {other}")]
    AddRouteCollision {
        port: u16,
        endpoint: String,
        method: Method,
        owner: String,
        other: String,
    },
    /// The endpoint is not a path axum can route literally.
    #[error("failed to add route :{port}{endpoint} for {owner}: {reason}")]
    AddRouteInvalid {
        port: u16,
        endpoint: String,
        owner: String,
        reason: String,
    },
    /// The port could not be bound.
    #[error("failed to listen on {addr}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Routes grouped by port, checked for collisions.
#[derive(Default, Debug)]
pub struct RouteTable {
    by_port: BTreeMap<u16, Vec<Route>>,
}

/// Checks that `endpoint` is a literal path axum accepts without panicking.
pub fn check_endpoint(endpoint: &str) -> Result<(), String> {
    if !endpoint.starts_with('/') {
        return Err("the endpoint must start with '/'".into());
    }
    if endpoint.contains(['{', '}']) {
        return Err("the endpoint must not contain '{' or '}'".into());
    }
    if endpoint
        .split('/')
        .any(|seg| seg.starts_with(':') || seg.starts_with('*'))
    {
        return Err("path segments must not start with ':' or '*'".into());
    }
    if endpoint == "/health" {
        return Err("/health is reserved for the health check on every port".into());
    }
    Ok(())
}

impl RouteTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a route, refusing invalid endpoints and (port, endpoint, method) collisions.
    pub fn add(&mut self, route: Route) -> Result<(), RouteError> {
        check_endpoint(&route.endpoint).map_err(|reason| RouteError::AddRouteInvalid {
            port: route.port,
            endpoint: route.endpoint.clone(),
            owner: route.owner.clone(),
            reason,
        })?;
        let routes = self.by_port.entry(route.port).or_default();
        if let Some(other) = routes
            .iter()
            .find(|r| r.endpoint == route.endpoint && r.method == route.method)
        {
            return Err(RouteError::AddRouteCollision {
                port: route.port,
                endpoint: route.endpoint.clone(),
                method: route.method.clone(),
                owner: route.owner.clone(),
                other: other.owner.clone(),
            });
        }
        routes.push(route);
        Ok(())
    }

    /// True when no route was added.
    pub fn is_empty(&self) -> bool {
        self.by_port.is_empty()
    }

    /// The ports with routes.
    pub fn ports(&self) -> impl Iterator<Item = u16> + '_ {
        self.by_port.keys().copied()
    }

    /// All routes, by port.
    pub fn routes(&self) -> impl Iterator<Item = &Route> {
        self.by_port.values().flatten()
    }

    /// The axum router serving `port`: its routes, `GET /health`, 404 elsewhere and 405 for a known
    /// endpoint with another method.
    pub fn router(&self, port: u16) -> Router {
        let mut by_endpoint: BTreeMap<&str, Vec<&Route>> = BTreeMap::new();
        for r in self.by_port.get(&port).into_iter().flatten() {
            by_endpoint.entry(r.endpoint.as_str()).or_default().push(r);
        }
        let mut router = Router::new().route("/health", axum::routing::get(|| async { "OK" }));
        for (endpoint, routes) in by_endpoint {
            let mut method_router = axum::routing::MethodRouter::new();
            for r in routes {
                let handler = r.handler.clone();
                let Ok(filter) = MethodFilter::try_from(r.method.clone()) else {
                    // An extension method axum cannot route: answer it from a fallback below.
                    continue;
                };
                method_router = method_router.merge(on(filter, move |req: Request<Body>| handler(req)));
            }
            router = router.route(endpoint, method_router);
        }
        router.fallback(|| async { (StatusCode::NOT_FOUND, "not found").into_response() })
    }

    /// [`serve_with`](Self::serve_with) the default limits, counting into metrics nobody exports.
    pub async fn serve(
        self,
        ip: IpAddr,
        cancel: CancellationToken,
        tracker: &TaskTracker,
    ) -> Result<Vec<SocketAddr>, RouteError> {
        self.serve_with(ip, &server::ServerConfig::default(), cancel, tracker)
            .await
    }

    /// Binds every port on `ip` (all before serving, so a port in use fails startup) and serves until
    /// `cancel` with `config`'s limits (each port its own connection limit); in-flight requests finish
    /// first (graceful shutdown), so no accepted event is cut off. Returns the bound addresses (port 0
    /// binds an ephemeral port, for tests).
    pub async fn serve_with(
        self,
        ip: IpAddr,
        config: &server::ServerConfig,
        cancel: CancellationToken,
        tracker: &TaskTracker,
    ) -> Result<Vec<SocketAddr>, RouteError> {
        let mut listeners = Vec::new();
        for port in self.ports() {
            let addr = SocketAddr::new(ip, port);
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| RouteError::Bind { addr, source })?;
            let local = listener
                .local_addr()
                .map_err(|source| RouteError::Bind { addr, source })?;
            listeners.push((port, local, listener));
        }
        let mut bound = Vec::new();
        for (port, local, listener) in listeners {
            let router = self.router(port);
            let token = cancel.child_token();
            for r in self.by_port.get(&port).into_iter().flatten() {
                tracing::info!(port = local.port(), endpoint = %r.endpoint, method = %r.method, owner = %r.owner, "listening");
            }
            server::spawn(
                listener,
                format!("push:{}", local.port()),
                router,
                config,
                token,
                tracker,
            );
            bound.push(local);
        }
        Ok(bound)
    }
}

/// Why a request body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadBodyError {
    /// Longer than the limit, or the connection broke mid-body (no answer reaches that client anyway).
    TooLarge,
    /// It did not arrive within the server's body-read timeout ([`server::BodyReadTimeout`]).
    TimedOut,
}

impl ReadBodyError {
    /// The answer: 413, or 408 for a stalled body.
    pub fn status(self) -> StatusCode {
        match self {
            Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::TimedOut => StatusCode::REQUEST_TIMEOUT,
        }
    }

    /// The answer's text.
    pub fn text(self) -> &'static str {
        match self {
            Self::TooLarge => "request body too large",
            Self::TimedOut => "request body not received in time",
        }
    }
}

/// Reads a whole request body of at most `limit` bytes. Push handlers read the body completely before
/// anything is published, so a body that fails here never becomes an event.
pub async fn read_body(body: Body, limit: usize) -> Result<Bytes, ReadBodyError> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(c) = cause {
            if c.is::<server::BodyReadTimeout>() {
                return ReadBodyError::TimedOut;
            }
            cause = c.source();
        }
        ReadBodyError::TooLarge
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    fn route(port: u16, endpoint: &str, method: Method, owner: &str, reply: &'static str) -> Route {
        Route {
            port,
            endpoint: endpoint.into(),
            method,
            owner: owner.into(),
            handler: Arc::new(move |_req| Box::pin(async move { reply.into_response() })),
        }
    }

    async fn call(router: Router, method: Method, uri: &str) -> anyhow::Result<(StatusCode, String)> {
        let res = router
            .oneshot(Request::builder().method(method).uri(uri).body(Body::empty())?)
            .await?;
        let status = res.status();
        let body = res.into_body().collect().await?.to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }

    #[tokio::test]
    async fn routes_by_endpoint_and_method_with_health() -> anyhow::Result<()> {
        let mut t = RouteTable::new();
        t.add(route(1, "/a", Method::POST, "es/a", "a-post"))?;
        t.add(route(1, "/a", Method::GET, "es/a2", "a-get"))?;
        t.add(route(1, "/b", Method::POST, "es/b", "b"))?;
        t.add(route(2, "/a", Method::POST, "es/c", "c"))?;
        assert_eq!(
            call(t.router(1), Method::POST, "/a").await?,
            (StatusCode::OK, "a-post".into())
        );
        assert_eq!(
            call(t.router(1), Method::GET, "/a").await?,
            (StatusCode::OK, "a-get".into())
        );
        assert_eq!(
            call(t.router(1), Method::POST, "/b").await?,
            (StatusCode::OK, "b".into())
        );
        assert_eq!(
            call(t.router(2), Method::POST, "/a").await?,
            (StatusCode::OK, "c".into())
        );
        assert_eq!(
            call(t.router(1), Method::PUT, "/b").await?.0,
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(
            call(t.router(1), Method::POST, "/nope").await?.0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            call(t.router(2), Method::GET, "/health").await?,
            (StatusCode::OK, "OK".into())
        );
        Ok(())
    }

    #[test]
    fn refuses_collisions_and_bad_endpoints() {
        let mut t = RouteTable::new();
        assert!(t.add(route(1, "/a", Method::POST, "es/a", "")).is_ok());
        let err = t
            .add(route(1, "/a", Method::POST, "other/b", ""))
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("failed to add route POST :1/a for other/b: already used by es/a")
        );
        for bad in ["a", "/{x}", "/:x", "/*rest", "/health"] {
            assert!(
                matches!(
                    t.add(route(1, bad, Method::POST, "es", "")),
                    Err(RouteError::AddRouteInvalid { .. })
                ),
                "{bad}"
            );
        }
    }
}
