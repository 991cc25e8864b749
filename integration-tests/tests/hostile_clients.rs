//! Hostile clients against a real `sluice run` process (a webhook EventSource on the embedded bus, a
//! Sensor whose http trigger records each event's `id` at a local sink), with raw sockets only:
//! slowloris, an oversize head, a stalled body, and 10,000 idle connections. Through all of them a
//! normal request still gets an answer, and the process's descriptors stay bounded.
//!
//! The time bounds here are generous correctness checks on a shared 2-core machine, not benchmarks.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;
use sluice_integration_tests::{free_port, wait_for, Sink, SluiceProcess};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A `sluice run` with one webhook endpoint (`POST /hook`) and its metrics port.
struct Webhook {
    sluice: SluiceProcess,
    port: u16,
    metrics_port: u16,
    sink: Sink,
    _dir: tempfile::TempDir,
}

impl Webhook {
    /// Starts `sluice run` with `limits` (extra flags such as `--http-header-timeout 2s`).
    async fn start(limits: &[&str]) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let sink = Sink::start().await?;
        let port = free_port()?;
        let metrics_port = free_port()?;
        write_manifests(dir.path(), port, sink.port)?;
        let manifests = dir.path().to_str().context("utf-8 temp path")?.to_string();
        let metrics = format!("127.0.0.1:{metrics_port}");
        let mut args = vec![
            "run",
            &manifests,
            "--log-format",
            "json",
            "--metrics-address",
            &metrics,
        ];
        args.extend_from_slice(limits);
        let secrets = dir.path().join("secrets");
        std::fs::create_dir_all(&secrets)?;
        let sluice = SluiceProcess::start(&args, dir.path().join("sluice.log"), &secrets)?;
        sluice.wait_healthy(port).await?;
        Ok(Self {
            sluice,
            port,
            metrics_port,
            sink,
            _dir: dir,
        })
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A complete, well-formed POST of `{"id": ID}` on a fresh connection; returns the status line.
    async fn post(&self, id: &str) -> Result<String> {
        let body = format!("{{\"id\":\"{id}\"}}");
        let request = format!(
            "POST /hook HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let mut s = TcpStream::connect(self.addr()).await?;
        s.write_all(request.as_bytes()).await?;
        let (text, _) = read_until_closed(&mut s, Duration::from_secs(30)).await;
        Ok(text.lines().next().unwrap_or("").to_string())
    }

    /// `sluice_http_connections_rejected_total{listener="push:PORT",reason}` from `/metrics`.
    async fn rejected(&self, reason: &str) -> Result<u64> {
        let text = http_get(self.metrics_port, "/metrics").await?;
        let wanted = format!("listener=\"push:{}\"", self.port);
        let reason = format!("reason=\"{reason}\"");
        Ok(text
            .lines()
            .filter(|l| l.starts_with("sluice_http_connections_rejected_total{"))
            .filter(|l| l.contains(&wanted) && l.contains(&reason))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum())
    }

    /// The `id`s the sensor's trigger delivered to the sink.
    fn delivered(&self) -> Vec<String> {
        self.sink
            .received()
            .iter()
            .filter_map(|r| r.body.get("id").and_then(Value::as_str).map(str::to_string))
            .collect()
    }

    /// Waits until the sink has `id` (the trigger ran for it).
    async fn wait_delivered(&self, id: &str) -> Result<()> {
        wait_for(Duration::from_secs(30), || async {
            Ok(self.delivered().iter().any(|d| d == id).then_some(()))
        })
        .await
        .with_context(|| format!("{id} not delivered; log:\n{}", self.sluice.log_text()))
    }

    /// How many descriptors the sluice process holds.
    fn open_fds(&self) -> Result<usize> {
        Ok(std::fs::read_dir(format!("/proc/{}/fd", self.sluice.pid()))?.count())
    }
}

fn write_manifests(dir: &Path, port: u16, sink_port: u16) -> Result<()> {
    std::fs::write(
        dir.join("eventsource.yaml"),
        format!(
            r#"apiVersion: argoproj.io/v1alpha1
kind: EventSource
metadata:
  name: hostile
spec:
  webhook:
    hook:
      port: "{port}"
      endpoint: /hook
      method: POST
"#
        ),
    )?;
    std::fs::write(
        dir.join("sensor.yaml"),
        format!(
            r#"apiVersion: argoproj.io/v1alpha1
kind: Sensor
metadata:
  name: record
spec:
  dependencies:
    - name: hook
      eventSourceName: hostile
      eventName: hook
  triggers:
    - template:
        name: to-sink
        http:
          url: http://127.0.0.1:{sink_port}/events
          method: POST
          payload:
            - src:
                dependencyName: hook
                dataKey: body.id
              dest: id
"#
        ),
    )?;
    Ok(())
}

/// Reads until the peer closes or resets, or `within` passes; returns what arrived and whether the
/// connection ended.
async fn read_until_closed(s: &mut TcpStream, within: Duration) -> (String, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return (String::from_utf8_lossy(&got).into_owned(), false),
            Ok(Ok(0) | Err(_)) => return (String::from_utf8_lossy(&got).into_owned(), true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// `GET path` on a raw socket with `connection: close`; the whole response, or an error unless 200.
async fn http_get(port: u16, path: &str) -> Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes())
        .await?;
    let (text, _) = read_until_closed(&mut s, Duration::from_secs(30)).await;
    ensure!(text.starts_with("HTTP/1.1 200"), "GET {path}: {text:?}");
    Ok(text)
}

/// Raises this process's soft descriptor limit to at least `n` (up to the hard limit).
fn raise_fd_limit(n: u64) -> Result<()> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft >= n {
        return Ok(());
    }
    ensure!(
        hard >= n,
        "the descriptor hard limit is {hard}; this test needs {n} (ulimit -Hn)"
    );
    setrlimit(Resource::RLIMIT_NOFILE, n, hard)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_connections_are_closed_at_the_header_timeout_while_normal_posts_succeed() -> Result<()> {
    let hook = Webhook::start(&["--http-header-timeout", "2s"]).await?;
    const SLOW: usize = 500;
    let mut slow = Vec::with_capacity(SLOW);
    for _ in 0..SLOW {
        let mut s = TcpStream::connect(hook.addr()).await?;
        s.write_all(b"POST /hook HTTP/1.1\r\nhost: x\r\n").await?;
        slow.push((Instant::now(), s));
    }
    let opened = Instant::now();
    // Dribble one header byte per connection every 200 ms; note how long after its own start each
    // one is closed.
    let dribble = tokio::spawn(async move {
        let mut closed_after: Vec<Option<Duration>> = vec![None; SLOW];
        let mut probe = [0u8; 256];
        while closed_after.iter().any(Option::is_none) && opened.elapsed() < Duration::from_secs(30) {
            for (i, (since, s)) in slow.iter_mut().enumerate() {
                if closed_after[i].is_some() {
                    continue;
                }
                let gone = match s.try_read(&mut probe) {
                    Ok(0) => true,
                    Ok(_) => false,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => s.try_write(b"a").is_err(),
                    Err(_) => true,
                };
                if gone {
                    closed_after[i] = Some(since.elapsed());
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        closed_after
    });
    // Meanwhile a normal POST is answered 200 promptly and its event delivered.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let status = hook.post("normal-during-slowloris").await?;
    let took = started.elapsed();
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(took < Duration::from_secs(5), "normal POST took {took:?}");
    hook.wait_delivered("normal-during-slowloris").await?;

    let closed_after = dribble.await?;
    let still_open = closed_after.iter().filter(|c| c.is_none()).count();
    assert_eq!(still_open, 0, "every slowloris connection is closed");
    let first = closed_after.iter().flatten().min().copied().unwrap_or_default();
    let last = closed_after.iter().flatten().max().copied().unwrap_or_default();
    // Header timeout 2 s from each connection's start (all opened just before `opened`).
    assert!(
        first >= Duration::from_millis(1500),
        "closed before the timeout: {first:?}"
    );
    assert!(
        last < Duration::from_secs(15),
        "closed long after the timeout: {last:?}"
    );
    assert!(
        hook.rejected("header_timeout").await? >= SLOW as u64,
        "header timeouts are counted"
    );
    // Logged, but rate-limited: not one line per connection.
    let lines = hook
        .sluice
        .log_lines()
        .into_iter()
        .filter(|l| l["reason"] == "header_timeout")
        .count();
    assert!(
        (1..=5).contains(&lines),
        "{lines} header-timeout log lines for {SLOW} connections"
    );
    println!("slowloris: {SLOW} connections closed between {first:?} and {last:?}; normal POST answered in {took:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_header_is_answered_431_or_closed_never_2xx() -> Result<()> {
    let hook = Webhook::start(&[]).await?;
    let big = "a".repeat(200 * 1024);
    let head = format!(
        "POST /hook HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nx-big: {big}\r\ncontent-length: 17\r\n\r\n{{\"id\":\"oversize\"}}"
    );
    let s = TcpStream::connect(hook.addr()).await?;
    let (mut reader, mut writer) = s.into_split();
    // The server stops reading at 64 KiB, answers and closes, so the rest of the write may fail.
    let writing = tokio::spawn(async move { writer.write_all(head.as_bytes()).await.is_ok() });
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(30), reader.read(&mut buf)).await {
            Err(_) => bail!("neither an answer nor a close within 30 s"),
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
    let _ = writing.await;
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 431"),
        "expected 431 or a close: {text:?}"
    );
    assert!(!text.starts_with("HTTP/1.1 2"), "{text:?}");
    assert_eq!(hook.rejected("header_too_large").await?, 1);
    // A normal event still goes through, and the oversize one never did.
    assert_eq!(hook.post("after-oversize").await?, "HTTP/1.1 200 OK");
    hook.wait_delivered("after-oversize").await?;
    assert!(!hook.delivered().iter().any(|d| d == "oversize"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_is_answered_408_and_its_event_never_delivered() -> Result<()> {
    let hook = Webhook::start(&["--http-body-timeout", "1s"]).await?;
    // A whole JSON object, but content-length promises more: a server that handed the partial body
    // on would store this event.
    let sent = "{\"id\":\"stalled\"}";
    let mut s = TcpStream::connect(hook.addr()).await?;
    s.write_all(
        format!(
            "POST /hook HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 200\r\n\r\n{sent}"
        )
        .as_bytes(),
    )
    .await?;
    let started = Instant::now();
    let (text, closed) = read_until_closed(&mut s, Duration::from_secs(30)).await;
    let took = started.elapsed();
    assert!(text.starts_with("HTTP/1.1 408"), "{text:?}");
    assert!(closed, "closed after the 408");
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_secs(10),
        "{took:?}"
    );
    assert_eq!(hook.rejected("body_timeout").await?, 1);
    // The next event is delivered; the sensor takes events in bus order, so had the stalled one been
    // stored it would have arrived first.
    assert_eq!(hook.post("after-stall").await?, "HTTP/1.1 200 OK");
    hook.wait_delivered("after-stall").await?;
    assert_eq!(hook.delivered(), vec!["after-stall".to_string()]);
    Ok(())
}

/// What one of the many idle connections saw.
enum Idle {
    /// Served (a slot): nothing arrives until it sends a request.
    Held(TcpStream),
    /// Answered 503 and closed.
    Refused,
    /// Anything else (text received, or closed without an answer).
    Other(String),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_idle_connections_past_the_limit_get_503_and_descriptors_stay_bounded() -> Result<()> {
    const CONNECTIONS: usize = 10_000;
    const LIMIT: usize = 200;
    raise_fd_limit(CONNECTIONS as u64 + 2_000)?;
    let hook = Webhook::start(&[
        "--http-max-connections",
        "200",
        // Long enough that the held connections stay open for the whole test.
        "--http-header-timeout",
        "60s",
    ])
    .await?;
    let baseline = hook.open_fds()?;

    // Sample the server's descriptors while the flood runs.
    let pid = hook.sluice.pid();
    let sampling = tokio_util::sync::CancellationToken::new();
    let sampler = {
        let stop = sampling.clone();
        tokio::spawn(async move {
            let mut max = 0usize;
            while !stop.is_cancelled() {
                if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
                    max = max.max(dir.count());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            max
        })
    };

    // Open them 256 at a time; each one reads for a moment to see whether it was refused.
    let started = Instant::now();
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(256));
    let addr = hook.addr();
    let mut tasks = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        let permit = gate.clone().acquire_owned().await?;
        let addr = addr.clone();
        tasks.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(&addr).await?;
            let (text, closed) = read_until_closed(&mut s, Duration::from_secs(5)).await;
            // Held until the outcome is known, so no more than 256 connections wait in the listen
            // backlog (1024): past it the kernel would drop handshakes, and a client would think
            // itself connected and hear nothing for seconds.
            drop(permit);
            Ok::<_, anyhow::Error>(if !closed && text.is_empty() {
                Idle::Held(s)
            } else if closed && text.starts_with("HTTP/1.1 503") && text.contains("retry-after:") {
                Idle::Refused
            } else {
                Idle::Other(text)
            })
        }));
    }
    let mut held = Vec::new();
    let (mut refused, mut other) = (0usize, Vec::new());
    for t in tasks {
        match t.await?? {
            Idle::Held(s) => held.push(s),
            Idle::Refused => refused += 1,
            Idle::Other(text) => other.push(text),
        }
    }
    let flood_took = started.elapsed();

    // While all slots are taken: a normal POST is answered (503, in time) rather than left hanging,
    // and the metrics listener, with a limit of its own, still serves.
    let answered_in = Instant::now();
    let status = hook.post("during-flood").await?;
    let answered_in = answered_in.elapsed();
    assert_eq!(status, "HTTP/1.1 503 Service Unavailable");
    assert!(
        answered_in < Duration::from_secs(10),
        "answer took {answered_in:?}"
    );
    let limit_hits = hook.rejected("connection_limit").await?;
    let during = hook.open_fds()?;
    sampling.cancel();
    let max_fds = sampler.await?;

    assert!(
        other.is_empty(),
        "{} unexpected outcomes, e.g. {:?}",
        other.len(),
        other.first()
    );
    assert_eq!(held.len(), LIMIT, "exactly the limit is served");
    assert_eq!(refused, CONNECTIONS - LIMIT);
    assert!(limit_hits >= (CONNECTIONS - LIMIT) as u64, "{limit_hits} counted");
    // The limit, up to 64 refused sockets lingering to deliver their 503, and some slack for the
    // process's own sockets.
    let bound = baseline + LIMIT + 64 + 40;
    assert!(
        max_fds <= bound,
        "server held {max_fds} descriptors (baseline {baseline}, bound {bound})"
    );

    // Once the idle connections go, a normal POST is served again.
    drop(held);
    let served = wait_for(Duration::from_secs(30), || async {
        Ok((hook.post("after-flood").await? == "HTTP/1.1 200 OK").then_some(()))
    })
    .await;
    served.with_context(|| format!("not served after the flood; log:\n{}", hook.sluice.log_text()))?;
    hook.wait_delivered("after-flood").await?;
    assert!(!hook.delivered().iter().any(|d| d == "during-flood"));
    println!(
        "flood: {CONNECTIONS} connections in {flood_took:?}: {} held, {refused} answered 503; normal POST answered in {answered_in:?}; server descriptors: baseline {baseline}, max {max_fds}, after the flood {during}",
        LIMIT
    );
    Ok(())
}
