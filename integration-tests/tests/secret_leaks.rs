//! Secrets never leak: triggers and sources made to fail with credentials in every place a spec can
//! hold one — a URL's user info and query (`token`, `access_token`, `sig`), secret headers, basic
//! auth, a Slack token, broker passwords — and every output a user sees scanned for them
//! ([`sluice_integration_tests::secrets`]): the process log (at debug level, scanned when the
//! process ends), the dead-letter payload, `/metrics`, and `sluice sensor test`'s output.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{json, Value};
use sluice_eventsource::testing::setting;
use sluice_integration_tests::{free_port, secrets, sluice_bin, wait_for, Sink, SluiceProcess};

const WAIT: Duration = Duration::from_secs(30);

/// Secret values of the trigger test, by label. Every one is registered before sluice starts.
const URL_PASSWORD: &str = "url-password-5e1f";
const QUERY_TOKEN: &str = "query-token-7c2d";
const ACCESS_TOKEN: &str = "access-token-9a3b";
const QUERY_SIG: &str = "signature-4d8e";
const REFUSED_PASSWORD: &str = "refused-password-3b7c";
const REFUSED_TOKEN: &str = "refused-token-8f1a";
const SLACK_URL_PASSWORD: &str = "slack-url-password-1c9f";
const SLACK_QUERY_TOKEN: &str = "slack-query-token-2b8d";
const NATS_URL_PASSWORD: &str = "nats-url-password-6d2e";
// Written to the secrets directory: registered by `SluiceProcess` itself.
const BEARER: &str = "Bearer header-bearer-token-0f3a";
const API_KEY: &str = "header-api-key-8e4b";
const BASIC_PASSWORD: &str = "basic-auth-password-7d1c";
const SLACK_TOKEN: &str = "xoxb-slack-bot-token-5a6f";

fn write_secret(secrets: &Path, name: &str, key: &str, value: &str) -> Result<()> {
    std::fs::create_dir_all(secrets.join(name))?;
    std::fs::write(secrets.join(name).join(key), value)?;
    Ok(())
}

/// A server answering 500 to everything, on a free loopback port.
async fn failing_server() -> Result<u16> {
    let app =
        axum::Router::new().fallback(|| async { (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "down") });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(port)
}

fn sensor_manifest(failing: u16, closed: u16, sink: u16) -> String {
    format!(
        r#"apiVersion: argoproj.io/v1alpha1
kind: Sensor
metadata: {{name: leaky}}
spec:
  dependencies:
    - {{name: d, eventSourceName: hooks, eventName: in}}
  triggers:
    - template:
        name: http-userinfo-and-query
        http:
          url: "http://leak-user:{URL_PASSWORD}@127.0.0.1:{failing}/fail?token={QUERY_TOKEN}&access_token={ACCESS_TOKEN}&sig={QUERY_SIG}"
          secureHeaders:
            - name: Authorization
              valueFrom: {{secretKeyRef: {{name: target, key: bearer}}}}
            - name: X-Api-Key
              valueFrom: {{secretKeyRef: {{name: target, key: apikey}}}}
          payload:
            - src: {{dependencyName: d, dataKey: body.n}}
              dest: n
      policy: {{status: {{allow: [200]}}}}
      retryStrategy: {{steps: 2, duration: 100ms}}
      dlqTrigger:
        template:
          name: dead-letters
          http:
            url: http://127.0.0.1:{sink}/dlq
            payload:
              - src: {{dependencyName: d, dataKey: body}}
                dest: event
    - template:
        name: http-refused-with-basic-auth
        http:
          url: "http://leak-user:{REFUSED_PASSWORD}@127.0.0.1:{closed}/x?token={REFUSED_TOKEN}"
          basicAuth:
            username: {{name: target, key: username}}
            password: {{name: target, key: basic-password}}
      retryStrategy: {{steps: 1}}
    - template:
        name: slack
        slack:
          slackToken: {{name: slack, key: token}}
          channel: general
          message: hello
      retryStrategy: {{steps: 1}}
    - template:
        name: nats-refused
        nats:
          url: "nats://nats-user:{NATS_URL_PASSWORD}@127.0.0.1:{closed}"
          subject: leaks
          payload:
            - src: {{dependencyName: d, dataKey: body.n}}
              dest: n
      retryStrategy: {{steps: 1}}
"#
    )
}

fn webhook_manifest(port: u16) -> String {
    format!(
        "apiVersion: argoproj.io/v1alpha1\nkind: EventSource\nmetadata: {{name: hooks}}\nspec:\n  webhook:\n    in: {{port: \"{port}\", endpoint: /in, method: POST}}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_triggers_keep_credentials_out_of_logs_dead_letters_metrics_and_sensor_test() -> Result<()> {
    for (label, value) in [
        ("http url password", URL_PASSWORD),
        ("http query token", QUERY_TOKEN),
        ("http query access_token", ACCESS_TOKEN),
        ("http query sig", QUERY_SIG),
        ("refused url password", REFUSED_PASSWORD),
        ("refused query token", REFUSED_TOKEN),
        ("slack api url password", SLACK_URL_PASSWORD),
        ("slack api query token", SLACK_QUERY_TOKEN),
        ("nats url password", NATS_URL_PASSWORD),
    ] {
        secrets::register(label, value);
    }
    let dir = tempfile::tempdir()?;
    let secrets_dir = dir.path().join("secrets");
    write_secret(&secrets_dir, "target", "bearer", BEARER)?;
    write_secret(&secrets_dir, "target", "apikey", API_KEY)?;
    write_secret(&secrets_dir, "target", "username", "basic-user")?;
    write_secret(&secrets_dir, "target", "basic-password", BASIC_PASSWORD)?;
    write_secret(&secrets_dir, "slack", "token", SLACK_TOKEN)?;

    let failing = failing_server().await?;
    let closed = free_port()?;
    let sink = Sink::start().await?;
    let (port, metrics) = (free_port()?, free_port()?);
    let manifests = dir.path().join("manifests");
    std::fs::create_dir_all(&manifests)?;
    std::fs::write(manifests.join("es.yaml"), webhook_manifest(port))?;
    std::fs::write(
        manifests.join("sensor.yaml"),
        sensor_manifest(failing, closed, sink.port),
    )?;
    let slack_api =
        format!("http://slack-user:{SLACK_URL_PASSWORD}@127.0.0.1:{failing}/api?token={SLACK_QUERY_TOKEN}");
    let metrics_address = format!("127.0.0.1:{metrics}");
    let sluice = SluiceProcess::start_with_env(
        &[
            "run",
            manifests.to_str().context("path")?,
            "--log-format",
            "json",
            "--metrics-address",
            &metrics_address,
            "--slack-api-url",
            &slack_api,
        ],
        dir.path().join("sluice.log"),
        &secrets_dir,
        // Debug level: the request logs too.
        &[("SLUICE_LOG", "debug")],
    )?;
    sluice.wait_healthy(port).await?;
    let r = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/in"))
        .json(&json!({"n": 1}))
        .send()
        .await?;
    assert_eq!(r.status(), 200);

    // Every trigger ends: the first in its dead-letter trigger, the others failed after retries.
    assert!(
        sink.wait_for(1, WAIT).await >= 1,
        "the dlqTrigger never fired; log:\n{}",
        sluice.log_text()
    );
    let failed = wait_for(WAIT, || async {
        let failed: Vec<String> = sluice
            .log_lines()
            .iter()
            .filter(|l| {
                l["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("trigger failed after its retries"))
            })
            .filter_map(|l| l["trigger"].as_str().map(str::to_owned))
            .collect();
        Ok((failed.len() >= 4).then_some(failed))
    })
    .await
    .with_context(|| format!("not every trigger failed; log:\n{}", sluice.log_text()))?;
    for trigger in [
        "http-userinfo-and-query",
        "http-refused-with-basic-auth",
        "slack",
        "nats-refused",
    ] {
        assert!(failed.iter().any(|t| t == trigger), "{trigger}: {failed:?}");
    }
    // The failures name their endpoint, masked.
    let log = sluice.log_text();
    assert!(
        log.contains(&format!(
            "http://***@127.0.0.1:{failing}/fail?token=***&access_token=***&sig=***"
        )),
        "{log}"
    );

    for received in sink.received() {
        secrets::assert_clean(
            "the dead-letter request",
            &format!("{:?}\n{}", received.headers, received.body),
        );
    }
    let scraped = reqwest::get(format!("http://127.0.0.1:{metrics}/metrics"))
        .await?
        .text()
        .await?;
    assert!(scraped.contains("leaky"), "{scraped}");
    secrets::assert_clean("/metrics", &scraped);

    // `sluice sensor test` on the same sensor, for the same event.
    let event = dir.path().join("event.json");
    std::fs::write(&event, r#"{"body": {"n": 1}}"#)?;
    let output = Command::new(sluice_bin()?)
        .args(["sensor", "test"])
        .arg(manifests.join("sensor.yaml"))
        .arg("--event")
        .arg(&event)
        .args(["-o", "json"])
        .env("SLUICE_SECRETS_DIR", &secrets_dir)
        .stdin(Stdio::null())
        .output()?;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let report: Value = serde_json::from_str(&stdout).context("sensor test JSON")?;
    assert!(
        stdout.contains("127.0.0.1"),
        "the plan names the endpoint: {report}"
    );
    secrets::assert_clean(
        "the output of `sluice sensor test`",
        &format!("{stdout}\n{stderr}"),
    );
    let output = Command::new(sluice_bin()?)
        .args(["sensor", "test"])
        .arg(manifests.join("sensor.yaml"))
        .arg("--event")
        .arg(&event)
        .env("SLUICE_SECRETS_DIR", &secrets_dir)
        .stdin(Stdio::null())
        .output()?;
    secrets::assert_clean(
        "the text output of `sluice sensor test`",
        &format!(
            "{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    );

    // The log is scanned when the process ends.
    sluice.terminate()?;
    Ok(())
}

/// Starts `sluice run` on `es` (an EventSource spec under `spec:`), with `secrets` written to its
/// secrets directory, at debug level; returns it once it logged a line containing `until` (or one
/// of its `|`-separated parts).
async fn run_source(
    dir: &Path,
    es: &str,
    secret_files: &[(&str, &str, &str)],
    until: &str,
) -> Result<SluiceProcess> {
    let secrets_dir = dir.join("secrets");
    std::fs::create_dir_all(&secrets_dir)?;
    for (name, key, value) in secret_files {
        write_secret(&secrets_dir, name, key, value)?;
    }
    let manifest = dir.join("es.yaml");
    std::fs::write(
        &manifest,
        format!("apiVersion: argoproj.io/v1alpha1\nkind: EventSource\nmetadata: {{name: leaky-source}}\nspec:\n{es}"),
    )?;
    let sluice = SluiceProcess::start_with_env(
        &[
            "run",
            manifest.to_str().context("path")?,
            "--log-format",
            "json",
            "--metrics-address",
            "127.0.0.1:0",
            "--state-dir",
            dir.join("state").to_str().context("path")?,
        ],
        dir.join("sluice.log"),
        &secrets_dir,
        &[("SLUICE_LOG", "debug")],
    )?;
    wait_for(WAIT, || async {
        let log = sluice.log_text();
        Ok(until.split('|').any(|u| log.contains(u)).then_some(()))
    })
    .await
    .with_context(|| format!("no log line with {until:?}; log:\n{}", sluice.log_text()))?;
    Ok(sluice)
}

/// A nats-server of the test's own requiring a user and password; killed on drop.
struct AuthNats {
    child: std::process::Child,
    port: u16,
}

impl AuthNats {
    fn start(user: &str, password: &str) -> Result<Self> {
        let port = free_port()?;
        let child = Command::new(sluice_integration_tests::nats_server_bin()?)
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "--user",
                user,
                "--pass",
                password,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        anyhow::ensure!(
            sluice_integration_tests::wait_port(port, Duration::from_secs(20)),
            "nats-server did not listen"
        );
        Ok(Self { child, port })
    }
}

impl Drop for AuthNats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server: scripts/test starts it and runs ignored tests"]
async fn a_nats_source_refused_for_its_password_does_not_log_it() -> Result<()> {
    let wrong = "nats-wrong-password-4c1e";
    let wrong_token = "nats-wrong-token-8b2a";
    secrets::register("nats url password", wrong);
    let server = AuthNats::start("leak-user", "nats-right-password-0d9f")?;
    secrets::register("nats server password", "nats-right-password-0d9f");
    let dir = tempfile::tempdir()?;
    // The password in the URL's user info, and a token secret.
    let es = format!(
        "  nats:\n    in-url:\n      url: nats://leak-user:{wrong}@127.0.0.1:{port}\n      subject: leaks\n    \
         in-token:\n      url: nats://127.0.0.1:{port}\n      subject: leaks\n      auth: {{token: {{name: nats, key: token}}}}\n",
        port = server.port
    );
    let sluice = run_source(dir.path(), &es, &[("nats", "token", wrong_token)], "uthorization").await?;
    // Let it retry a few times.
    tokio::time::sleep(Duration::from_secs(2)).await;
    sluice.terminate()?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs rabbitmq: scripts/test starts it and runs ignored tests"]
async fn an_amqp_source_refused_for_its_password_does_not_log_it() -> Result<()> {
    let wrong = "amqp-wrong-password-2f7d";
    secrets::register("amqp url password", wrong);
    let amqp = setting("AMQP_URL");
    let port = amqp
        .rsplit_once(':')
        .and_then(|(_, p)| p.split('/').next())
        .context("AMQP_URL port")?
        .to_owned();
    let dir = tempfile::tempdir()?;
    let es = format!(
        "  amqp:\n    in:\n      url: amqp://guest:{wrong}@127.0.0.1:{port}/%2f?heartbeat=10\n      exchangeName: leaks\n      \
         exchangeType: fanout\n      routingKey: leaks\n      connectionBackoff: {{duration: 200ms, steps: 3}}\n"
    );
    let sluice = run_source(dir.path(), &es, &[], "ACCESS_REFUSED").await?;
    sluice.terminate()?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server: scripts/test starts it and runs ignored tests"]
async fn a_redis_source_refused_for_its_password_does_not_log_it() -> Result<()> {
    let wrong = "redis-wrong-password-9e3c";
    let address = setting("REDIS_URL")
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .to_owned();
    let dir = tempfile::tempdir()?;
    let es = format!(
        "  redis:\n    in:\n      hostAddress: {address}\n      password: {{name: redis, key: password}}\n      \
         channels: [leaks]\n"
    );
    let sluice = run_source(
        dir.path(),
        &es,
        &[("redis", "password", wrong)],
        "\"level\":\"WARN\"|\"level\":\"ERROR\"",
    )
    .await?;
    sluice.terminate()?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_github_hook_registration_that_fails_does_not_log_the_token() -> Result<()> {
    let token = "ghp-hook-registration-token-3a9d";
    let webhook_secret = "github-webhook-secret-6b0e";
    let failing = failing_server().await?;
    let port = free_port()?;
    let dir = tempfile::tempdir()?;
    let es = format!(
        "  github:\n    repo:\n      owner: acme\n      repository: sluice\n      events: [push]\n      \
         apiToken: {{name: github, key: token}}\n      webhookSecret: {{name: github, key: secret}}\n      \
         githubBaseURL: http://api-user:{token}@127.0.0.1:{failing}/api/v3/?access_token={token}\n      \
         githubUploadURL: http://api-user:{token}@127.0.0.1:{failing}/api/uploads/?access_token={token}\n      \
         webhook: {{port: \"{port}\", endpoint: /push, method: POST, url: \"http://127.0.0.1:{port}\"}}\n"
    );
    secrets::register("github base url token", token);
    let sluice = run_source(
        dir.path(),
        &es,
        &[("github", "token", token), ("github", "secret", webhook_secret)],
        "failed to register hook",
    )
    .await?;
    sluice.terminate()?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kafka: scripts/test starts it and runs ignored tests"]
async fn a_kafka_source_with_sasl_against_a_plaintext_broker_does_not_log_the_password() -> Result<()> {
    let brokers = setting("KAFKA_BROKERS");
    let dir = tempfile::tempdir()?;
    // SASL to a broker that speaks none: the handshake fails, and librdkafka and the source say so.
    let es = format!(
        "  kafka:\n    in:\n      url: {brokers}\n      topic: leaks-{}\n      partition: \"0\"\n      \
         sasl: {{mechanism: PLAIN, userSecret: {{name: kafka, key: user}}, passwordSecret: {{name: kafka, key: password}}}}\n      \
         connectionBackoff: {{duration: 200ms, steps: 3}}\n",
        uuid::Uuid::new_v4().simple()
    );
    let sluice = run_source(
        dir.path(),
        &es,
        &[
            ("kafka", "user", "kafka-sasl-user-1f2e"),
            ("kafka", "password", "kafka-sasl-password-9d8c"),
        ],
        "failed to reach the kafka brokers",
    )
    .await?;
    sluice.terminate()?;
    Ok(())
}

/// The scan itself, end to end: a process whose log holds a registered value fails the test, at
/// `scan_log` and again when dropped, and the failure names the log and the label, not the value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_that_logged_a_registered_secret_fails_the_test() -> Result<()> {
    // The webhook's endpoint is logged at start ("listening … endpoint"); only this test uses it.
    let canary = "canary-endpoint-7f3e9a";
    secrets::register("the canary", canary);
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let manifest = dir.path().join("es.yaml");
    std::fs::write(
        &manifest,
        format!(
            "apiVersion: argoproj.io/v1alpha1\nkind: EventSource\nmetadata: {{name: canary}}\nspec:\n  webhook:\n    in: {{port: \"{port}\", endpoint: /{canary}, method: POST}}\n"
        ),
    )?;
    let mut sluice = SluiceProcess::start(
        &[
            "run",
            manifest.to_str().context("path")?,
            "--log-format",
            "json",
            "--metrics-address",
            "127.0.0.1:0",
        ],
        dir.path().join("canary.log"),
        &dir.path().join("secrets"),
    )?;
    sluice.wait_healthy(port).await?;
    let error = sluice.scan_log().expect_err("the endpoint is in the log");
    let message = format!("{error:#}");
    assert!(
        message.contains("canary.log") && message.contains("the canary"),
        "{message}"
    );
    assert!(!message.contains(canary), "{message}");
    assert!(message.contains("<secret the canary>"), "{message}");
    let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(sluice)));
    assert!(
        dropped.is_err(),
        "dropping a process whose log leaked fails the test"
    );
    Ok(())
}
