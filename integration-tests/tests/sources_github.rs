//! End to end: a github event source and a sensor under `sluice run`, a signed delivery sent twice
//! (GitHub's redelivery) and a mis-signed one; the sensor's http trigger must fire exactly once with
//! the payload, and the mis-signed delivery must be refused.

use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::json;
use sluice_integration_tests::{free_port, Sink, SluiceProcess};

const SECRET: &str = "e2e-github-secret";

fn sign(body: &[u8], secret: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac =
        Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_push_fires_once_and_a_forged_one_is_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let sink = Sink::start().await?;
    let port = free_port()?;
    std::fs::create_dir_all(dir.path().join("secrets/github"))?;
    std::fs::write(dir.path().join("secrets/github/secret"), SECRET)?;
    let manifests = format!(
        "apiVersion: argoproj.io/v1alpha1
kind: EventSource
metadata: {{name: gh}}
spec:
  github:
    push:
      webhook: {{port: \"{port}\", endpoint: /push, method: POST}}
      webhookSecret: {{name: github, key: secret}}
      events: [push]
      repositories: [{{owner: sluice-test, names: [pipes]}}]
---
apiVersion: argoproj.io/v1alpha1
kind: Sensor
metadata: {{name: gh}}
spec:
  dependencies:
    - {{name: push, eventSourceName: gh, eventName: push}}
  triggers:
    - template:
        name: forward
        http:
          url: http://127.0.0.1:{sink}/pushed
          method: POST
          payload:
            - src: {{dependencyName: push, dataKey: body.ref}}
              dest: ref
            - src: {{dependencyName: push, dataKey: body.X-GitHub-Delivery}}
              dest: delivery
",
        sink = sink.port
    );
    std::fs::write(dir.path().join("github.yaml"), manifests)?;
    let sluice = SluiceProcess::start(
        &[
            "run",
            dir.path().join("github.yaml").to_str().context("path")?,
            "--log-format",
            "json",
            "--metrics-address",
            "127.0.0.1:0",
        ],
        dir.path().join("sluice.log"),
        &dir.path().join("secrets"),
    )?;
    sluice.wait_healthy(port).await?;

    let body = br#"{"ref":"refs/heads/main","after":"0123456789abcdef0123456789abcdef01234567","repository":{"full_name":"sluice-test/pipes"}}"#;
    let client = reqwest::Client::new();
    let deliver = |signature: String| {
        client
            .post(format!("http://127.0.0.1:{port}/push"))
            .header("content-type", "application/json")
            .header("x-github-event", "push")
            .header("x-github-delivery", "e2e-delivery-1")
            .header("x-hub-signature-256", signature)
            .body(body.to_vec())
            .send()
    };
    assert_eq!(deliver(sign(body, "forged")).await?.status(), 401);
    assert_eq!(deliver(sign(body, SECRET)).await?.status(), 200);
    assert_eq!(
        deliver(sign(body, SECRET)).await?.status(),
        200,
        "the redelivery is accepted"
    );

    sink.wait_for(1, Duration::from_secs(20)).await;
    // Give a wrongly-fired second trigger a moment to show up before counting.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let got = sink.received();
    assert_eq!(
        got.len(),
        1,
        "one firing for a delivery and its redelivery: {got:?}"
    );
    assert_eq!(
        got[0].body,
        json!({"ref": "refs/heads/main", "delivery": "e2e-delivery-1"})
    );
    sluice.terminate()?;
    Ok(())
}
