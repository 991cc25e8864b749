//! The server against raw sockets on 127.0.0.1: what a hostile or slow client gets, and shutdown.

use std::sync::atomic::AtomicUsize;

use super::*;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn limits() -> ServerLimits {
    ServerLimits {
        header_read_timeout: Duration::from_millis(600),
        idle_timeout: Duration::from_millis(900),
        body_read_timeout: Duration::from_millis(600),
        max_header_bytes: 8 * 1024,
        max_connections: 4,
    }
}

struct Served {
    addr: SocketAddr,
    metrics: ServerMetrics,
    cancel: CancellationToken,
    tracker: TaskTracker,
    /// Bodies `/strict` read whole.
    stored: Arc<AtomicUsize>,
}

async fn serve(limits: ServerLimits) -> anyhow::Result<Served> {
    let stored = Arc::new(AtomicUsize::new(0));
    let strict = stored.clone();
    let router = Router::new()
        .route("/ok", get(|| async { "ok" }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(500)).await;
                "done"
            }),
        )
        // Reads the body as push handlers do: a failed read publishes nothing.
        .route(
            "/strict",
            post(move |req: Request<Body>| {
                let stored = strict.clone();
                async move {
                    match crate::http::read_body(req.into_body(), 1 << 20).await {
                        Ok(_) => {
                            stored.fetch_add(1, Ordering::SeqCst);
                            (StatusCode::OK, "stored").into_response()
                        }
                        Err(e) => (e.status(), e.text()).into_response(),
                    }
                }
            }),
        )
        // A careless handler that answers 200 whatever happened to the body.
        .route(
            "/careless",
            post(|req: Request<Body>| async move {
                let _ = axum::body::to_bytes(req.into_body(), 1 << 20).await;
                "fine"
            }),
        );
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let config = ServerConfig {
        limits,
        metrics: ServerMetrics::default(),
    };
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    spawn(listener, "test", router, &config, cancel.clone(), &tracker);
    Ok(Served {
        addr,
        metrics: config.metrics,
        cancel,
        tracker,
        stored,
    })
}

impl Served {
    fn rejected(&self, reason: &str) -> u64 {
        self.metrics
            .rejected
            .get_or_create(&HttpRejectLabels {
                listener: "test".into(),
                reason: reason.into(),
            })
            .get()
    }
}

/// Reads until the peer closes (or resets) or `within` passes; returns what arrived and whether the
/// connection ended.
async fn read_to_close(stream: &mut TcpStream, within: Duration) -> (String, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return (String::from_utf8_lossy(&got).into_owned(), false),
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&got).into_owned(), true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// Reads one response whose body has a content-length, leaving the connection open.
async fn read_response(stream: &mut TcpStream) -> anyhow::Result<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await??;
        anyhow::ensure!(
            n > 0,
            "closed before a whole response: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let len = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(str::to_owned)
                })
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if got.len() >= end + 4 + len {
                return Ok(text);
            }
        }
    }
}

async fn get_ok(addr: SocketAddr) -> anyhow::Result<String> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(b"GET /ok HTTP/1.1\r\nhost: x\r\n\r\n").await?;
    read_response(&mut s).await
}

#[tokio::test]
async fn serves_keep_alive_requests_then_closes_the_idle_connection() -> anyhow::Result<()> {
    let served = serve(limits()).await?;
    let mut s = TcpStream::connect(served.addr).await?;
    for _ in 0..3 {
        s.write_all(b"GET /ok HTTP/1.1\r\nhost: x\r\n\r\n").await?;
        let res = read_response(&mut s).await?;
        assert!(res.starts_with("HTTP/1.1 200"), "{res}");
    }
    // Idle past the idle timeout (0.9 s), less than twice it: closed, counted as idle, not rejected.
    let started = Instant::now();
    let (rest, closed) = read_to_close(&mut s, Duration::from_secs(5)).await;
    assert!(closed && rest.is_empty(), "{rest:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(800),
        "{:?}",
        started.elapsed()
    );
    let labels = HttpListenerLabels {
        listener: "test".into(),
    };
    assert_eq!(served.metrics.idle_closed.get_or_create(&labels).get(), 1);
    assert_eq!(served.rejected("header_timeout"), 0);
    Ok(())
}

#[tokio::test]
async fn a_dribbled_head_is_cut_off_at_the_header_timeout() -> anyhow::Result<()> {
    let served = serve(limits()).await?;
    let mut s = TcpStream::connect(served.addr).await?;
    let started = Instant::now();
    // One byte every 100 ms: each byte is activity, but the head's clock does not restart.
    let mut closed_at = None;
    for b in b"GET /ok HTTP/1.1\r\nx-slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter() {
        if s.write_all(&[*b]).await.is_err() {
            closed_at = Some(started.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut probe = [0u8; 1];
        if let Ok(Ok(0) | Err(_)) = tokio::time::timeout(Duration::from_millis(1), s.read(&mut probe)).await {
            closed_at = Some(started.elapsed());
            break;
        }
    }
    let closed_at = closed_at.expect("the server closes a dribbling connection");
    assert!(
        closed_at >= Duration::from_millis(550) && closed_at < Duration::from_secs(3),
        "{closed_at:?}"
    );
    assert_eq!(served.rejected("header_timeout"), 1);
    // A connection that sends nothing at all is closed the same way.
    let mut silent = TcpStream::connect(served.addr).await?;
    let (text, closed) = read_to_close(&mut silent, Duration::from_secs(3)).await;
    assert!(closed && text.is_empty(), "{text:?}");
    assert_eq!(served.rejected("header_timeout"), 2);
    assert!(get_ok(served.addr).await?.starts_with("HTTP/1.1 200"));
    Ok(())
}

#[tokio::test]
async fn an_oversize_head_is_answered_431() -> anyhow::Result<()> {
    let served = serve(limits()).await?;
    let mut s = TcpStream::connect(served.addr).await?;
    let big = "a".repeat(9 * 1024);
    // Within the limit: served.
    let fits = format!(
        "GET /ok HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        &big[..7 * 1024]
    );
    s.write_all(fits.as_bytes()).await?;
    assert!(read_response(&mut s).await?.starts_with("HTTP/1.1 200"));
    let mut s = TcpStream::connect(served.addr).await?;
    let head = format!("GET /ok HTTP/1.1\r\nhost: x\r\nx-big: {big}\r\n\r\n");
    s.write_all(head.as_bytes()).await?;
    let (text, closed) = read_to_close(&mut s, Duration::from_secs(3)).await;
    assert!(closed, "closed after the 431");
    assert!(text.starts_with("HTTP/1.1 431"), "{text:?}");
    assert_eq!(served.rejected("header_too_large"), 1);
    Ok(())
}

#[tokio::test]
async fn a_stalled_body_is_answered_408_and_never_stored() -> anyhow::Result<()> {
    let served = serve(limits()).await?;
    for path in ["/strict", "/careless"] {
        let mut s = TcpStream::connect(served.addr).await?;
        let head = format!("POST {path} HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{{\"half\":");
        s.write_all(head.as_bytes()).await?;
        let started = Instant::now();
        let (text, closed) = read_to_close(&mut s, Duration::from_secs(3)).await;
        assert!(text.starts_with("HTTP/1.1 408"), "{path}: {text:?}");
        assert!(text.to_ascii_lowercase().contains("connection: close"), "{text}");
        assert!(closed, "{path}: closed after the 408");
        assert!(
            started.elapsed() >= Duration::from_millis(500),
            "{:?}",
            started.elapsed()
        );
    }
    assert_eq!(served.stored.load(Ordering::SeqCst), 0);
    assert_eq!(served.rejected("body_timeout"), 2);
    // A body that arrives in time is stored.
    let mut s = TcpStream::connect(served.addr).await?;
    s.write_all(b"POST /strict HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}")
        .await?;
    assert!(read_response(&mut s).await?.starts_with("HTTP/1.1 200"));
    assert_eq!(served.stored.load(Ordering::SeqCst), 1);
    Ok(())
}

#[tokio::test]
async fn past_the_connection_limit_new_connections_get_503_and_freed_slots_serve_again() -> anyhow::Result<()>
{
    let served = serve(ServerLimits {
        header_read_timeout: Duration::from_secs(30),
        ..limits()
    })
    .await?;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(served.addr).await?);
    }
    // Let the accept loop take the four before counting on the fifth being refused.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut extra = TcpStream::connect(served.addr).await?;
    let (text, closed) = read_to_close(&mut extra, Duration::from_secs(3)).await;
    assert!(closed);
    assert!(text.starts_with("HTTP/1.1 503"), "{text:?}");
    assert!(text.contains("retry-after: 5"), "{text}");
    assert!(text.contains("connection: close"), "{text}");
    assert_eq!(served.rejected("connection_limit"), 1);
    // A held connection is served normally.
    held[0].write_all(b"GET /ok HTTP/1.1\r\nhost: x\r\n\r\n").await?;
    assert!(read_response(&mut held[0]).await?.starts_with("HTTP/1.1 200"));
    // Freeing one slot lets a new connection in.
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(r) = get_ok(served.addr).await {
            if r.starts_with("HTTP/1.1 200") {
                break;
            }
        }
        assert!(Instant::now() < deadline, "a freed slot serves again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

#[tokio::test]
async fn shutdown_finishes_requests_in_flight_and_closes_idle_connections() -> anyhow::Result<()> {
    let served = serve(ServerLimits {
        header_read_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(30),
        ..limits()
    })
    .await?;
    let mut idle = TcpStream::connect(served.addr).await?;
    idle.write_all(b"GET /ok HTTP/1.1\r\nhost: x\r\n\r\n").await?;
    read_response(&mut idle).await?;
    let mut busy = TcpStream::connect(served.addr).await?;
    busy.write_all(b"GET /slow HTTP/1.1\r\nhost: x\r\n\r\n").await?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    served.cancel.cancel();
    served.tracker.close();
    let (text, closed) = read_to_close(&mut busy, Duration::from_secs(5)).await;
    assert!(
        text.starts_with("HTTP/1.1 200") && text.ends_with("done"),
        "{text:?}"
    );
    assert!(closed, "closed after the last answer");
    let (text, closed) = read_to_close(&mut idle, Duration::from_secs(5)).await;
    assert!(closed && text.is_empty(), "{text:?}");
    tokio::time::timeout(Duration::from_secs(5), served.tracker.wait()).await?;
    assert!(
        TcpStream::connect(served.addr).await.is_err(),
        "the listener is closed"
    );
    Ok(())
}

#[tokio::test]
async fn throttle_admits_one_per_window_and_counts_the_rest() {
    tokio::time::pause();
    let t = Throttle::new(Duration::from_secs(10));
    assert_eq!(t.admit(), Some(0));
    assert_eq!(t.admit(), None);
    assert_eq!(t.admit(), None);
    tokio::time::advance(Duration::from_secs(11)).await;
    assert_eq!(t.admit(), Some(2));
    assert_eq!(t.admit(), None);
}
