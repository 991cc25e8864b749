//! End to end: `sluice run` as a real process on the quickstart manifests, a real POST, and a local
//! HTTP sink that must receive the parameterized payload.

use std::net::TcpListener as StdListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use axum::http::HeaderMap;
use axum::routing::post;
use serde_json::{json, Value};

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `sluice` binary built by `cargo build --bin sluice` (scripts/test builds it first).
fn sluice_bin() -> Result<PathBuf> {
    if let Ok(p) = std::env::var("SLUICE_BIN") {
        return Ok(PathBuf::from(p));
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace_root().join("target"));
    let bin = target.join("debug").join("sluice");
    if !bin.exists() {
        bail!(
            "{} not found: run `cargo build --bin sluice` first (scripts/test does)",
            bin.display()
        );
    }
    Ok(bin)
}

fn free_port() -> Result<u16> {
    Ok(StdListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

struct Sluice {
    child: Child,
    log: PathBuf,
}

impl Sluice {
    fn start(manifests: &std::path::Path, log: PathBuf) -> Result<Self> {
        let file = std::fs::File::create(&log)?;
        let child = Command::new(sluice_bin()?)
            .args([
                "run",
                manifests.to_str().context("path")?,
                "--log-format",
                "json",
                "--metrics-address",
                "127.0.0.1:0",
            ])
            .env("SLUICE_SECRETS_DIR", manifests.join("secrets"))
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()?;
        Ok(Self { child, log })
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM and returns the exit code.
    fn terminate(mut self) -> Result<Option<i32>> {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status.code());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                bail!(
                    "sluice did not exit within 20s of SIGTERM; log:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Sluice {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn wait_healthy(port: u16, sluice: &Sluice) -> Result<()> {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(r) = client.get(format!("http://127.0.0.1:{port}/health")).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!(
        "sluice did not listen on {port} within 30s; log:\n{}",
        sluice.log_text()
    )
}

type Received = Arc<Mutex<Vec<(HeaderMap, Value)>>>;

async fn start_sink() -> Result<(u16, Received)> {
    let received: Received = Arc::default();
    let store = received.clone();
    let app = axum::Router::new().route(
        "/deploy",
        post(move |headers: HeaderMap, body: axum::Json<Value>| {
            let store = store.clone();
            async move {
                if let Ok(mut v) = store.lock() {
                    v.push((headers, body.0));
                }
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((port, received))
}

/// Copies examples/quickstart into `dir`, moving the webhook to `port` and the http trigger to the sink.
fn quickstart_copy(dir: &std::path::Path, port: u16, sink_port: u16) -> Result<()> {
    for name in ["eventsource.yaml", "sensor.yaml"] {
        let text = std::fs::read_to_string(workspace_root().join("examples/quickstart").join(name))?;
        let text = text.replace("\"12000\"", &format!("\"{port}\"")).replace(
            "http://127.0.0.1:12000/deployed",
            &format!("http://127.0.0.1:{sink_port}/deploy"),
        );
        std::fs::write(dir.join(name), text)?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quickstart_delivers_the_parameterized_payload_and_drains_on_sigterm() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (sink_port, received) = start_sink().await?;
    let port = free_port()?;
    quickstart_copy(dir.path(), port, sink_port)?;
    let sluice = Sluice::start(dir.path(), dir.path().join("sluice.log"))?;
    wait_healthy(port, &sluice).await?;

    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/example");
    // Filtered out: not a deploy.
    let r = client
        .post(&url)
        .json(&json!({"type": "build", "service": "web"}))
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    // Fires: a deploy.
    let r = client
        .post(&url)
        .json(&json!({"type": "deploy", "service": "checkout", "version": "1.4.2", "user": "ada"}))
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await?, "success");
    // Bad JSON is refused and nothing is published.
    let r = client
        .post(&url)
        .header("Content-Type", "application/json")
        .body("{not json")
        .send()
        .await?;
    assert_eq!(r.status(), 400);

    let deadline = Instant::now() + Duration::from_secs(20);
    while received.lock().map(|v| v.is_empty()).unwrap_or(true) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Give a wrongly-fired second trigger a moment to show up before counting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = received.lock().map(|v| v.clone()).unwrap_or_default();
    assert_eq!(
        got.len(),
        1,
        "exactly one firing expected; log:\n{}",
        sluice.log_text()
    );
    let (headers, body) = &got[0];
    assert_eq!(
        body,
        &json!({"service": "checkout", "version": "1.4.2", "requestedBy": "ada"})
    );
    assert_eq!(
        headers.get("x-requested-by").and_then(|v| v.to_str().ok()),
        Some("sluice-quickstart")
    );
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert_eq!(key.len(), 64, "firing id is a sha256 hex: {key:?}");

    let log = sluice.log_text();
    assert!(
        log.contains("deploy-request"),
        "startup log names the dependencies a sensor waits on:\n{log}"
    );
    let code = sluice.terminate()?;
    assert_eq!(code, Some(0), "sluice exits 0 on SIGTERM");
    Ok(())
}

/// The JSON log lines of `sluice run --log-format json`.
fn log_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The quickstart exactly as the README runs it (port 12000): the `deploy` sensor's http trigger POSTs
/// to the quickstart's own `/deployed` endpoint, and the `audit` sensor's log trigger must print the
/// parameterized payload that arrived there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quickstart_as_shipped_chains_webhook_http_trigger_and_log_trigger() -> Result<()> {
    if StdListener::bind("127.0.0.1:12000").is_err() {
        bail!("port 12000 is in use: stop whatever runs there (a quickstart left running?) and rerun");
    }
    let dir = tempfile::tempdir()?;
    let sluice = Sluice::start(
        &workspace_root().join("examples/quickstart"),
        dir.path().join("sluice.log"),
    )?;
    wait_healthy(12000, &sluice).await?;
    let r = reqwest::Client::new()
        .post("http://127.0.0.1:12000/example")
        .json(&json!({"type": "deploy", "service": "checkout", "version": "1.4.2", "user": "ada"}))
        .send()
        .await?;
    assert_eq!(r.status(), 200);

    let deadline = Instant::now() + Duration::from_secs(20);
    let mut audit = None;
    while audit.is_none() && Instant::now() < deadline {
        audit = log_lines(&sluice.log_text())
            .into_iter()
            .find(|l| l["sensor"] == "audit" && l["trigger"] == "log-deployed" && l["message"] == "event");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let audit =
        audit.with_context(|| format!("the audit sensor never logged; log:\n{}", sluice.log_text()))?;
    let data: Value = serde_json::from_str(audit["data"].as_str().unwrap_or("null"))?;
    assert_eq!(
        data["body"],
        json!({"service": "checkout", "version": "1.4.2", "requestedBy": "ada"})
    );
    assert_eq!(data["header"]["X-Requested-By"], json!(["sluice-quickstart"]));
    let logs = log_lines(&sluice.log_text());
    assert!(
        logs.iter().any(|l| l["sensor"] == "deploy"
            && l["trigger"] == "log-deploy-request"
            && l["message"] == "event"),
        "the deploy sensor's log trigger fired too"
    );
    assert_eq!(sluice.terminate()?, Some(0));
    Ok(())
}
