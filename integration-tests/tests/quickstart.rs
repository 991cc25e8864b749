//! End to end: `sluice run` as a real process on the quickstart manifests, a real POST, and a local
//! HTTP sink that must receive the parameterized payload.

use std::net::TcpListener as StdListener;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use sluice_integration_tests::{free_port, log_lines, workspace_root, Sink, SluiceProcess};

fn start_run(manifests: &Path, log: std::path::PathBuf) -> Result<SluiceProcess> {
    let dir = manifests.to_str().context("path")?;
    SluiceProcess::start(
        &[
            "run",
            dir,
            "--log-format",
            "json",
            "--metrics-address",
            "127.0.0.1:0",
        ],
        log,
        &manifests.join("secrets"),
    )
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
    let sink = Sink::start().await?;
    let port = free_port()?;
    quickstart_copy(dir.path(), port, sink.port)?;
    let sluice = start_run(dir.path(), dir.path().join("sluice.log"))?;
    sluice.wait_healthy(port).await?;

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

    sink.wait_for(1, Duration::from_secs(20)).await;
    // Give a wrongly-fired second trigger a moment to show up before counting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = sink.received();
    assert_eq!(
        got.len(),
        1,
        "exactly one firing expected; log:\n{}",
        sluice.log_text()
    );
    assert_eq!(got[0].path, "/deploy");
    assert_eq!(
        got[0].body,
        json!({"service": "checkout", "version": "1.4.2", "requestedBy": "ada"})
    );
    assert_eq!(
        got[0].headers.get("x-requested-by").and_then(|v| v.to_str().ok()),
        Some("sluice-quickstart")
    );
    let key = got[0].idempotency_key()?;
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

/// The quickstart exactly as the README runs it (port 12000): the `deploy` sensor's http trigger POSTs
/// to the quickstart's own `/deployed` endpoint, and the `audit` sensor's log trigger must print the
/// parameterized payload that arrived there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quickstart_as_shipped_chains_webhook_http_trigger_and_log_trigger() -> Result<()> {
    if StdListener::bind("127.0.0.1:12000").is_err() {
        bail!("port 12000 is in use: stop whatever runs there (a quickstart left running?) and rerun");
    }
    let dir = tempfile::tempdir()?;
    let sluice = start_run(
        &workspace_root().join("examples/quickstart"),
        dir.path().join("sluice.log"),
    )?;
    sluice.wait_healthy(12000).await?;
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

/// Trigger requests never go through a proxy named by the environment (`HTTP_PROXY` and kin,
/// which a pod's environment could carry): a proxy is handed the unresolved host, so the egress
/// guard would never see where the request goes. The proxy here records every request it gets;
/// it must get none, and the sink must get the firing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trigger_requests_ignore_proxy_environment_variables() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let sink = Sink::start().await?;
    let proxy = Sink::start().await?;
    let port = free_port()?;
    quickstart_copy(dir.path(), port, sink.port)?;
    let proxy_url = format!("http://127.0.0.1:{}", proxy.port);
    let sluice = SluiceProcess::start_with_env(
        &[
            "run",
            dir.path().to_str().context("path")?,
            "--log-format",
            "json",
            "--metrics-address",
            "127.0.0.1:0",
        ],
        dir.path().join("sluice.log"),
        &dir.path().join("secrets"),
        &[
            ("HTTP_PROXY", proxy_url.as_str()),
            ("http_proxy", proxy_url.as_str()),
            ("ALL_PROXY", proxy_url.as_str()),
            ("NO_PROXY", ""),
        ],
    )?;
    sluice.wait_healthy(port).await?;
    let r = reqwest::Client::builder()
        .no_proxy()
        .build()?
        .post(format!("http://127.0.0.1:{port}/example"))
        .json(&json!({"type": "deploy", "service": "checkout", "version": "1.4.2", "user": "ada"}))
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    assert_eq!(
        sink.wait_for(1, Duration::from_secs(30)).await,
        1,
        "log:\n{}",
        sluice.log_text()
    );
    assert!(
        proxy.received().is_empty(),
        "the proxy was used: {:?}",
        proxy.received()
    );
    Ok(())
}
