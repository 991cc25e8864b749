//! The client auth the controller generates for a `jetstream` EventBus, on a real nats-server: the
//! NATS configuration and the server Secret the controller builds make the server refuse anonymous
//! clients, and `sluice eventsource` given the bus manifest the controller mounts (an `accessSecret`
//! naming the client Secret, mounted under `--secrets-dir`) connects with the generated credentials.

use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::json;
use sluice_controller::children::{self, BuildConfig, BusCredentials};
use sluice_crds::EventBus;
use sluice_integration_tests::{free_port, nats_server_bin, wait_port, SluiceProcess};

/// The Secret's value under `key`, as the kubelet writes it into a mounted file.
fn secret_value(secret: &serde_json::Value, key: &str) -> Result<Vec<u8>> {
    let typed: k8s_openapi::api::core::v1::Secret = serde_json::from_value(secret.clone())?;
    Ok(typed.data.context("data")?.get(key).context("key")?.0.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_credentials_are_required_by_nats_and_used_by_sluice() -> Result<()> {
    let bus: EventBus = serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "EventBus",
        "metadata": {"name": "default", "namespace": "team", "uid": "1234"},
        "spec": {"jetstream": {"version": "2.10.22", "replicas": 1}},
    }))?;
    let js = bus.spec.jetstream.clone().context("jetstream")?;
    let built = children::jetstream_children(&bus, &js, &BuildConfig::default())?;
    let (server_secret, client_secret) = children::jetstream_auth_secrets(&bus, &BusCredentials::generate())?;

    // The controller's files, as the pod sees them: the configuration and the projected auth.conf
    // side by side. Only the pod-specific paths and ports are changed for a local server.
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let monitor = free_port()?;
    let conf = built.config_map["data"]["nats-js.conf"]
        .as_str()
        .context("nats-js.conf")?
        .replace("port: 4222", &format!("port: {port}\nhost: 127.0.0.1"))
        .replace("http: 8222", &format!("http: 127.0.0.1:{monitor}"))
        .replace("/data/jetstream", &dir.path().join("store").display().to_string());
    assert!(conf.contains("include ./auth.conf"), "{conf}");
    std::fs::write(dir.path().join("nats-js.conf"), conf)?;
    std::fs::write(
        dir.path().join("auth.conf"),
        secret_value(&server_secret, children::JS_SERVER_AUTH_KEY)?,
    )?;
    let mut server = Command::new(nats_server_bin()?)
        .arg("--config")
        .arg(dir.path().join("nats-js.conf"))
        .env("POD_NAME", "eventbus-default-js-0")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("nats.log"))?)
        .spawn()?;
    let result = check(dir.path(), port, &built.client_secret, &client_secret).await;
    let _ = server.kill();
    let _ = server.wait();
    result.with_context(|| {
        format!(
            "nats-server log:\n{}",
            std::fs::read_to_string(dir.path().join("nats.log")).unwrap_or_default()
        )
    })
}

async fn check(
    dir: &std::path::Path,
    port: u16,
    client_secret_name: &str,
    client_secret: &serde_json::Value,
) -> Result<()> {
    if !wait_port(port, Duration::from_secs(20)) {
        bail!("nats-server did not listen on {port}");
    }
    let url = format!("nats://127.0.0.1:{port}");
    // Anonymous clients are refused.
    let anonymous = async_nats::ConnectOptions::new()
        .max_reconnects(1)
        .connect(&url)
        .await;
    assert!(anonymous.is_err(), "an anonymous client connected");

    // The pod's view: the client Secret mounted as <secrets-dir>/<name>/<key>, the bus manifest
    // with the status's accessSecret.
    let secrets = dir.join("secrets");
    std::fs::create_dir_all(secrets.join(client_secret_name))?;
    std::fs::write(
        secrets
            .join(client_secret_name)
            .join(children::JS_CLIENT_AUTH_KEY),
        secret_value(client_secret, children::JS_CLIENT_AUTH_KEY)?,
    )?;
    std::fs::write(
        dir.join("eventbus.yaml"),
        format!(
            "apiVersion: argoproj.io/v1alpha1\nkind: EventBus\nmetadata: {{name: default}}\n\
             spec:\n  jetstreamExotic:\n    url: {url}\n    accessSecret: {{name: {client_secret_name}, key: {}}}\n",
            children::JS_CLIENT_AUTH_KEY
        ),
    )?;
    let hook = free_port()?;
    std::fs::write(
        dir.join("eventsource.yaml"),
        format!(
            "apiVersion: argoproj.io/v1alpha1\nkind: EventSource\nmetadata: {{name: hooks}}\n\
             spec:\n  webhook:\n    example: {{port: \"{hook}\", endpoint: /example, method: POST}}\n"
        ),
    )?;
    let es = SluiceProcess::start(
        &[
            "eventsource",
            "-f",
            dir.join("eventsource.yaml").to_str().context("path")?,
            "--bus",
            dir.join("eventbus.yaml").to_str().context("path")?,
            "--listen",
            "127.0.0.1",
            "--metrics-address",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ],
        dir.join("eventsource.log"),
        &secrets,
    )?;
    es.wait_logged("connected to the JetStream bus", Duration::from_secs(60))
        .await?;
    // And it publishes: the webhook answers 200 only once the bus stored the event.
    if !wait_port(hook, Duration::from_secs(30)) {
        bail!("webhook did not listen; log:\n{}", es.log_text());
    }
    let response = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{hook}/example"))
        .body("{\"a\":1}")
        .header("content-type", "application/json")
        .send()
        .await?;
    assert!(
        response.status().is_success(),
        "{}; log:\n{}",
        response.status(),
        es.log_text()
    );
    assert_eq!(es.terminate()?, Some(0));
    Ok(())
}
