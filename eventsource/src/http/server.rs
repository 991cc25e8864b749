//! The one HTTP server behind every listener of a process (push-source ports, `/metrics`): an accept
//! loop of our own over hyper's HTTP/1.1 connection, with limits a hostile client cannot get around.
//!
//! Limits ([`ServerLimits`], every one a flag of the commands that listen):
//! - **Header-read timeout**: a request head (request line and headers) must be complete within this
//!   time of the connection opening or of its first byte after an idle wait; else the connection is
//!   closed (slowloris). The clock does not restart per byte, so dribbling cannot extend it.
//! - **Idle keep-alive timeout**: a kept-alive connection with no request in flight and no byte
//!   received for this long is closed.
//! - **Maximum header size**: a head longer than this is answered `431` and the connection closed.
//! - **Connection limit**: past it a new connection is answered a minimal `503` with `Retry-After` and
//!   `Connection: close`, written without waiting, and closed; the accept loop never blocks on it.
//! - **Body-read timeout**: a request body must arrive in full within this time of its head; a body
//!   that stalls makes the read fail (handlers answer without publishing), and the answer is `408`
//!   whatever the handler said, so a stalled body can never produce a 2xx.
//!
//! Why our own timers instead of hyper's `header_read_timeout`: hyper 1.x re-arms that timer when a
//! kept-alive connection goes idle (`State::idle` sets `notify_read`), so there the idle wait and the
//! next head share one budget and cannot be set apart, and hyper does not say which one ran out (we
//! count them apart). One watchdog per connection, fed by the socket's reads and the requests in
//! flight, enforces both.
//!
//! Only HTTP/1.1 (and 1.0) is served: the workspace never enabled axum's or hyper's `http2`, so h2c was
//! not served before either; webhook senders speak HTTP/1.1.
//!
//! Rejections are counted in [`ServerMetrics`] and logged at most once per [`LOG_EVERY`] per listener
//! and reason, with the number of rejections not logged since, so a flood cannot flood the log.

use std::convert::Infallible;
use std::future::Future as _;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, Response, StatusCode};
use axum::Router;
use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::metrics::{HttpListenerLabels, HttpRejectLabels, ServerMetrics};

/// Default header-read timeout.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default idle keep-alive timeout.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default body-read timeout.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Default maximum size of a request head, request line included: 64 KiB (Go's `net/http` allows
/// 1 MiB; no webhook sender needs more than a few KiB).
pub const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;
/// Default connection limit per listener.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// At most one log line per listener and rejection reason this often.
pub const LOG_EVERY: Duration = Duration::from_secs(10);
/// The `Retry-After` of the 503 past the connection limit, in seconds.
const RETRY_AFTER_SECS: u32 = 5;
/// Refused sockets that may linger at once (to let the client read the 503 before the close); past
/// it a refused socket is closed right after the 503 is written. Bounds the descriptors a flood holds.
const MAX_LINGERING: usize = 64;
/// How long a refused socket lingers at most.
const LINGER: Duration = Duration::from_secs(1);
/// hyper's own read-buffer limit (8 KiB + 100 × 4 KiB): never set lower than this.
const HYPER_DEFAULT_MAX_BUF: usize = 8192 + 4096 * 100;

/// The limits of one listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerLimits {
    /// Time to receive a complete request head, from the connection's start or from the first byte
    /// after an idle wait.
    pub header_read_timeout: Duration,
    /// Time a kept-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    /// Time to receive a request's complete body, from its head.
    pub body_read_timeout: Duration,
    /// Largest request head in bytes (request line and headers); larger is answered 431.
    pub max_header_bytes: usize,
    /// Connections served at once; past it new ones are answered 503. At least 1.
    pub max_connections: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// How every listener of a process serves: its limits and where it counts rejections.
#[derive(Clone, Default)]
pub struct ServerConfig {
    /// The limits, the same for every listener (each has its own connection count).
    pub limits: ServerLimits,
    /// The rejection counters (register them with [`ServerMetrics::register`] to export them).
    pub metrics: ServerMetrics,
}

/// Why a connection or request was refused: the `reason` label of
/// `sluice_http_connections_rejected_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reason {
    ConnectionLimit,
    HeaderTimeout,
    HeaderTooLarge,
    BodyTimeout,
}

impl Reason {
    const ALL: [Reason; 4] = [
        Reason::ConnectionLimit,
        Reason::HeaderTimeout,
        Reason::HeaderTooLarge,
        Reason::BodyTimeout,
    ];

    fn label(self) -> &'static str {
        match self {
            Reason::ConnectionLimit => "connection_limit",
            Reason::HeaderTimeout => "header_timeout",
            Reason::HeaderTooLarge => "header_too_large",
            Reason::BodyTimeout => "body_timeout",
        }
    }

    fn message(self) -> &'static str {
        match self {
            Reason::ConnectionLimit => "refused connection: connection limit reached (answered 503)",
            Reason::HeaderTimeout => {
                "closed connection: request head not received within the header-read timeout"
            }
            Reason::HeaderTooLarge => {
                "refused request: head larger than the maximum header size (answered 431)"
            }
            Reason::BodyTimeout => {
                "refused request: body not received within the body-read timeout (answered 408)"
            }
        }
    }
}

/// Lets one event through per window and counts the ones held back, for rate-limited logs.
#[derive(Debug)]
struct Throttle {
    every: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl Throttle {
    fn new(every: Duration) -> Self {
        Self {
            every,
            state: Mutex::new((None, 0)),
        }
    }

    /// `Some(n)`: log now; `n` events were held back since the last line.
    fn admit(&self) -> Option<u64> {
        let now = Instant::now();
        let mut state = lock(&self.state);
        match state.0 {
            Some(last) if now.duration_since(last) < self.every => {
                state.1 += 1;
                None
            }
            _ => {
                state.0 = Some(now);
                Some(std::mem::take(&mut state.1))
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// What every connection task of one listener shares.
struct Listener {
    name: String,
    limits: ServerLimits,
    metrics: ServerMetrics,
    labels: HttpListenerLabels,
    throttles: [Throttle; 4],
    accept_errors: Throttle,
    /// The 503 written past the connection limit.
    busy_answer: Bytes,
}

impl Listener {
    fn reject(&self, reason: Reason, peer: SocketAddr) {
        self.metrics
            .rejected
            .get_or_create(&HttpRejectLabels {
                listener: self.name.clone(),
                reason: reason.label().into(),
            })
            .inc();
        let index = Reason::ALL.iter().position(|r| *r == reason).unwrap_or(0);
        if let Some(suppressed) = self.throttles[index].admit() {
            tracing::warn!(listener = %self.name, %peer, reason = reason.label(), suppressed, "{}", reason.message());
        }
    }
}

/// Serves `router` on `listener` until `cancel`, on tasks of `tracker`; returns at once. `name` labels
/// the listener in logs and metrics (`push:12000`, `metrics`). On cancel the listener closes, requests
/// in flight finish and are answered, and idle or half-received connections close.
pub fn spawn(
    listener: TcpListener,
    name: impl Into<String>,
    router: Router,
    config: &ServerConfig,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) {
    let name = name.into();
    let limits = config.limits;
    let busy_text = "too many connections, retry later\n";
    let busy_answer = Bytes::from(format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nretry-after: {RETRY_AFTER_SECS}\r\nconnection: close\r\n\r\n{busy_text}",
        busy_text.len()
    ));
    let shared = Arc::new(Listener {
        labels: HttpListenerLabels {
            listener: name.clone(),
        },
        name,
        limits,
        metrics: config.metrics.clone(),
        throttles: [
            Throttle::new(LOG_EVERY),
            Throttle::new(LOG_EVERY),
            Throttle::new(LOG_EVERY),
            Throttle::new(LOG_EVERY),
        ],
        accept_errors: Throttle::new(LOG_EVERY),
        busy_answer,
    });
    let inner = tracker.clone();
    tracker.spawn(accept_loop(listener, router, shared, cancel, inner));
}

async fn accept_loop(
    listener: TcpListener,
    router: Router,
    shared: Arc<Listener>,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    let slots = Arc::new(Semaphore::new(shared.limits.max_connections.max(1)));
    let lingering = Arc::new(Semaphore::new(MAX_LINGERING));
    loop {
        let accepted = tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(error) => {
                shared.metrics.accept_errors.get_or_create(&shared.labels).inc();
                if let Some(suppressed) = shared.accept_errors.admit() {
                    tracing::error!(listener = %shared.name, %error, suppressed, "failed to accept a connection");
                }
                // Why pause: the usual cause is the process's descriptor limit (EMFILE); retrying at
                // once would spin a core until a descriptor frees.
                tokio::select! {
                    biased;
                    () = cancel.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
                continue;
            }
        };
        match slots.clone().try_acquire_owned() {
            Ok(slot) => {
                tracker.spawn(serve_connection(
                    stream,
                    peer,
                    router.clone(),
                    shared.clone(),
                    cancel.child_token(),
                    slot,
                ));
            }
            Err(_) => refuse(stream, peer, &shared, &lingering, &cancel, &tracker),
        }
    }
    tracing::debug!(listener = %shared.name, "stopped accepting connections");
}

/// Past the limit: the 503 goes into the fresh socket's empty send buffer without waiting; then the
/// socket lingers briefly (write side shut, reading what the client sent) so a client that already
/// sent its request reads the 503 instead of a reset, or is closed at once when too many linger.
fn refuse(
    stream: TcpStream,
    peer: SocketAddr,
    shared: &Listener,
    lingering: &Arc<Semaphore>,
    cancel: &CancellationToken,
    tracker: &TaskTracker,
) {
    shared.reject(Reason::ConnectionLimit, peer);
    // Written through the std socket (non-blocking): tokio's `try_write` trusts the readiness it has
    // cached, which a socket accepted a moment ago does not have yet, and would give up untried.
    let Ok(socket) = stream.into_std() else {
        return;
    };
    if io::Write::write(&mut &socket, &shared.busy_answer).is_err() {
        return;
    }
    let Ok(permit) = lingering.clone().try_acquire_owned() else {
        return;
    };
    let Ok(stream) = TcpStream::from_std(socket) else {
        return;
    };
    let cancel = cancel.clone();
    tracker.spawn(async move {
        let _permit = permit;
        let mut stream = stream;
        let drain = async {
            let _ = stream.shutdown().await;
            let mut sink = [0u8; 4096];
            let mut total = 0usize;
            while total < 64 * 1024 {
                match stream.read(&mut sink).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => total += n,
                }
            }
        };
        tokio::select! {
            biased;
            () = cancel.cancelled() => {}
            _ = tokio::time::timeout(LINGER, drain) => {}
        }
    });
}

/// Where a connection is in its life, for the watchdog.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Receiving a request head that began at `since` (the connection opened, or a byte arrived
    /// after an idle wait).
    Head { since: Instant },
    /// `requests` requests handed to the router and not yet answered: no connection deadline (the
    /// body has its own).
    Busy { requests: usize },
    /// Waiting for the next request since `since`.
    Idle { since: Instant },
}

/// A connection's phase, moved by its reads and its requests, watched by its task.
#[derive(Debug)]
struct Activity {
    phase: Mutex<Phase>,
    changed: Notify,
}

impl Activity {
    fn new() -> Self {
        Self {
            phase: Mutex::new(Phase::Head {
                since: Instant::now(),
            }),
            changed: Notify::new(),
        }
    }

    fn set(&self, f: impl FnOnce(Phase) -> Phase) {
        let mut phase = lock(&self.phase);
        let next = f(*phase);
        if next != *phase {
            *phase = next;
            drop(phase);
            // notify_one keeps a permit when the watchdog is not waiting yet, so no change is missed.
            self.changed.notify_one();
        }
    }

    fn on_read(&self) {
        self.set(|p| match p {
            Phase::Idle { .. } => Phase::Head {
                since: Instant::now(),
            },
            other => other,
        });
    }

    fn begin_request(self: &Arc<Self>) -> RequestGuard {
        self.set(|p| match p {
            Phase::Busy { requests } => Phase::Busy {
                requests: requests + 1,
            },
            Phase::Head { .. } | Phase::Idle { .. } => Phase::Busy { requests: 1 },
        });
        RequestGuard(self.clone())
    }

    fn phase(&self) -> Phase {
        *lock(&self.phase)
    }
}

/// Marks one request in flight until dropped (answered, or its future dropped).
struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.set(|p| match p {
            Phase::Busy { requests } if requests > 1 => Phase::Busy {
                requests: requests - 1,
            },
            _ => Phase::Idle {
                since: Instant::now(),
            },
        });
    }
}

/// The socket, telling `Activity` when bytes arrive.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.activity.on_read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The error a stalled body's read ends with.
#[derive(Debug, thiserror::Error)]
#[error("failed to read the request body within {0:?}")]
pub struct BodyReadTimeout(pub Duration);

/// A request body that fails with [`BodyReadTimeout`] once its deadline passes.
pub struct TimedBody {
    inner: Incoming,
    deadline: Instant,
    timeout: Duration,
    /// Made on the first read that has to wait, so bodies that arrive at once cost no timer.
    sleep: Option<Pin<Box<Sleep>>>,
    timed_out: Arc<AtomicBool>,
}

impl hyper::body::Body for TimedBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let deadline = this.deadline;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.as_mut().poll(cx).is_ready() {
            this.timed_out.store(true, Ordering::Release);
            return Poll::Ready(Some(Err(Box::new(BodyReadTimeout(this.timeout)))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    shared: Arc<Listener>,
    cancel: CancellationToken,
    _slot: OwnedSemaphorePermit,
) {
    let open = shared.metrics.open.get_or_create(&shared.labels).clone();
    open.inc();
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
    });
    let limits = shared.limits;
    let service = {
        let activity = activity.clone();
        let shared = shared.clone();
        hyper::service::service_fn(move |req: Request<Incoming>| {
            // Marked busy here, synchronously as hyper hands the request over, so the watchdog never
            // sees a parsed request as a half-received head.
            let guard = activity.begin_request();
            let router = router.clone();
            let shared = shared.clone();
            async move {
                let timed_out = Arc::new(AtomicBool::new(false));
                let req = req.map(|inner| {
                    Body::new(TimedBody {
                        inner,
                        deadline: Instant::now() + limits.body_read_timeout,
                        timeout: limits.body_read_timeout,
                        sleep: None,
                        timed_out: timed_out.clone(),
                    })
                });
                let response = match router.oneshot(req).await {
                    Ok(r) => r,
                    Err(never) => match never {},
                };
                let response = if timed_out.load(Ordering::Acquire) {
                    // Why override the handler: its body read failed, so it cannot have stored the
                    // event the body carried; whatever it answered, the sender must hear a failure
                    // (never a 2xx) and retry.
                    shared.reject(Reason::BodyTimeout, peer);
                    body_timeout_response()
                } else {
                    response
                };
                drop(guard);
                Ok::<_, Infallible>(response)
            }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .keep_alive(true)
        // Our watchdog times heads and idle waits (see the module doc); hyper's timer is off.
        .header_read_timeout(None)
        .max_header_size(limits.max_header_bytes)
        .max_buf_size(HYPER_DEFAULT_MAX_BUF.max(limits.max_header_bytes.saturating_add(8192)));
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let mut shutting_down = false;
    loop {
        let deadline = match activity.phase() {
            Phase::Head { since } => Some(since + limits.header_read_timeout),
            Phase::Idle { since } => Some(since + limits.idle_timeout),
            Phase::Busy { .. } => None,
        };
        let expired = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            result = conn.as_mut() => {
                if let Err(error) = result {
                    if error.is_parse_too_large() {
                        shared.reject(Reason::HeaderTooLarge, peer);
                    } else {
                        tracing::debug!(listener = %shared.name, %peer, %error, "connection ended with an error");
                    }
                }
                break;
            }
            () = cancel.cancelled(), if !shutting_down => {
                shutting_down = true;
                // Requests in flight finish and are answered (hyper then closes); a connection with
                // none closes now.
                conn.as_mut().graceful_shutdown();
                if !matches!(activity.phase(), Phase::Busy { .. }) {
                    break;
                }
            }
            () = activity.changed.notified() => {}
            () = expired => {
                // Dropping the connection closes the socket. Safe: no request is in flight in
                // these phases, so no event is cut off.
                match activity.phase() {
                    Phase::Head { since } if since + limits.header_read_timeout <= Instant::now() => {
                        shared.reject(Reason::HeaderTimeout, peer);
                        break;
                    }
                    Phase::Idle { since } if since + limits.idle_timeout <= Instant::now() => {
                        shared.metrics.idle_closed.get_or_create(&shared.labels).inc();
                        tracing::debug!(listener = %shared.name, %peer, "closed an idle keep-alive connection");
                        break;
                    }
                    _ => {}
                }
            }
        }
    }
    open.dec();
}

fn body_timeout_response() -> Response<Body> {
    let mut response = Response::new(Body::from("request body not received in time\n"));
    *response.status_mut() = StatusCode::REQUEST_TIMEOUT;
    response
        .headers_mut()
        .insert(header::CONNECTION, header::HeaderValue::from_static("close"));
    response
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
