//! A closed-loop HTTP/1.1 load generator: `connections` keep-alive connections, each sending one
//! `POST` and waiting for its answer before the next, until `duration` is over (the request in flight
//! then still finishes). Every body is `{"t": <send time, µs since the epoch>, "id": <unique>}`, so a
//! sink downstream can compute event → trigger latency and tell redeliveries apart. It records the
//! answer latency of every 2xx (the "accept latency"), counts non-2xx by status and transport errors
//! (after which the connection is opened again, at most once per 10 ms), and prints one JSON object.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::hist::Histogram;
use crate::now_us;

/// How long one connect or one request may take before it counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause before reconnecting after an error, so a dead server is not hammered.
const RECONNECT_PAUSE: Duration = Duration::from_millis(10);

/// What to load.
#[derive(clap::Args, Debug, Clone)]
pub struct LoadArgs {
    /// Target URL (`http://127.0.0.1:PORT/path`; plain HTTP on an IP address only).
    #[arg(long)]
    pub url: String,
    /// Concurrent connections, each with one request in flight.
    #[arg(long, default_value_t = 50)]
    pub connections: u64,
    /// Seconds of load.
    #[arg(long, default_value_t = 30.0)]
    pub duration: f64,
    /// Stop after this many requests in all (a burst of a fixed size) even before `duration`.
    #[arg(long)]
    pub requests: Option<u64>,
}

#[derive(Default)]
struct LoadStats {
    ok: AtomicU64,
    errors: AtomicU64,
    non_2xx: Mutex<BTreeMap<u16, u64>>,
    accept: Histogram,
}

/// The requests left to send in all (`None`: no limit).
struct Budget(Option<AtomicU64>);

impl Budget {
    /// Takes one request from the budget; false when none is left.
    fn take(&self) -> bool {
        match &self.0 {
            None => true,
            Some(left) => left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok(),
        }
    }

    fn spent(&self) -> bool {
        self.0
            .as_ref()
            .is_some_and(|left| left.load(Ordering::Relaxed) == 0)
    }
}

/// Splits `http://IP:PORT/path` into the socket address, the Host header and the path.
fn parse_url(url: &str) -> anyhow::Result<(SocketAddr, String, String)> {
    let rest = url
        .strip_prefix("http://")
        .context("the URL must start with http://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr: SocketAddr = authority
        .parse()
        .with_context(|| format!("`{authority}` is not IP:PORT"))?;
    Ok((addr, authority.to_owned(), path.to_owned()))
}

/// One connection's loop: connect, send until `deadline`, reconnect after an error.
async fn connection(
    conn: u64,
    addr: SocketAddr,
    host: Arc<str>,
    path: Arc<str>,
    deadline: Instant,
    stats: Arc<LoadStats>,
    budget: Arc<Budget>,
) {
    let mut seq: u64 = 0;
    while Instant::now() < deadline && !budget.spent() {
        let connected = tokio::time::timeout(REQUEST_TIMEOUT, async {
            let stream = TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            anyhow::Ok(hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?)
        })
        .await;
        let (mut sender, driver) = match connected {
            Ok(Ok(pair)) => pair,
            _ => {
                stats.errors.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(RECONNECT_PAUSE).await;
                continue;
            }
        };
        // The connection's I/O runs beside the request loop and stops with it (select, no spawn).
        let requests = async {
            while Instant::now() < deadline && budget.take() {
                // Ids are unique per run: the connection number in the high bits, a counter below.
                let id = (conn << 40) | seq;
                seq += 1;
                let body = format!(r#"{{"t":{},"id":{id}}}"#, now_us());
                let Ok(req) = Request::post(&*path)
                    .header(HOST, &*host)
                    .header(CONTENT_TYPE, "application/json")
                    .body(Full::new(Bytes::from(body)))
                else {
                    stats.errors.fetch_add(1, Ordering::Relaxed);
                    return;
                };
                let sent = Instant::now();
                let answer = tokio::time::timeout(REQUEST_TIMEOUT, async {
                    let resp = sender.send_request(req).await?;
                    let status = resp.status();
                    resp.into_body().collect().await?;
                    anyhow::Ok(status)
                })
                .await;
                match answer {
                    Ok(Ok(status)) if status.is_success() => {
                        stats.ok.fetch_add(1, Ordering::Relaxed);
                        stats.accept.record(sent.elapsed().as_micros() as u64);
                    }
                    Ok(Ok(status)) => {
                        *stats
                            .non_2xx
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .entry(status.as_u16())
                            .or_default() += 1;
                    }
                    _ => {
                        stats.errors.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                }
            }
        };
        tokio::select! {
            () = requests => {}
            _ = driver => {
                // The connection closed under us: count it and open a new one.
                stats.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        if Instant::now() < deadline && !budget.spent() {
            tokio::time::sleep(RECONNECT_PAUSE).await;
        }
    }
}

/// Runs the load; returns its report.
pub async fn run(args: &LoadArgs) -> anyhow::Result<Value> {
    anyhow::ensure!(args.connections > 0, "--connections must be at least 1");
    anyhow::ensure!(
        args.duration > 0.0 && args.duration <= 3600.0,
        "--duration must be in (0, 3600] seconds"
    );
    let (addr, host, path) = parse_url(&args.url)?;
    let (host, path): (Arc<str>, Arc<str>) = (host.into(), path.into());
    let stats = Arc::new(LoadStats::default());
    let budget = Arc::new(Budget(args.requests.map(AtomicU64::new)));
    let start_us = now_us();
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(args.duration);
    let mut tasks = JoinSet::new();
    for conn in 0..args.connections {
        tasks.spawn(connection(
            conn,
            addr,
            host.clone(),
            path.clone(),
            deadline,
            stats.clone(),
            budget.clone(),
        ));
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = start.elapsed().as_secs_f64();
    let end_us = now_us();
    let ok = stats.ok.load(Ordering::Relaxed);
    let non_2xx = stats.non_2xx.lock().unwrap_or_else(|p| p.into_inner()).clone();
    Ok(json!({
        "url": args.url,
        "connections": args.connections,
        "duration_s": args.duration,
        "elapsed_s": elapsed,
        "start_us": start_us,
        "end_us": end_us,
        "ok": ok,
        "ok_per_second": ok as f64 / elapsed,
        "non_2xx": non_2xx.values().sum::<u64>(),
        "non_2xx_by_status": non_2xx,
        "errors": stats.errors.load(Ordering::Relaxed),
        "accept_latency": stats.accept.summary(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() -> anyhow::Result<()> {
        let (addr, host, path) = parse_url("http://127.0.0.1:8080/in")?;
        assert_eq!(addr.port(), 8080);
        assert_eq!(host, "127.0.0.1:8080");
        assert_eq!(path, "/in");
        assert_eq!(parse_url("http://127.0.0.1:1")?.2, "/");
        assert!(parse_url("https://127.0.0.1:1/").is_err());
        assert!(parse_url("http://localhost:1/").is_err());
        Ok(())
    }

    #[tokio::test]
    async fn loads_a_server_and_counts_answers() -> anyhow::Result<()> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move { axum::serve(listener, crate::servers::hello_router()).await });
        let report = run(&LoadArgs {
            url: format!("http://{addr}/x"),
            connections: 4,
            duration: 0.3,
            requests: None,
        })
        .await?;
        assert!(report["ok"].as_u64().unwrap_or(0) > 0, "{report}");
        assert_eq!(report["non_2xx"], 0);
        assert_eq!(report["errors"], 0);

        // A fixed burst: exactly that many requests, however many connections share it.
        let burst = run(&LoadArgs {
            url: format!("http://{addr}/x"),
            connections: 7,
            duration: 60.0,
            requests: Some(100),
        })
        .await?;
        server.abort();
        assert_eq!(burst["ok"], 100, "{burst}");
        Ok(())
    }
}
