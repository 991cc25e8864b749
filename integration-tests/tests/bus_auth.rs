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
use sluice_integration_tests::{free_port, nats_server_bin, secrets, wait_port, SluiceProcess};

/// The Secret's value under `key`, as the kubelet writes it into a mounted file.
/// Registers the value of `key` of a generated Secret, so every sluice log is scanned for it.
fn register_secret(secret: &serde_json::Value, key: &str) -> Result<()> {
    let text = String::from_utf8(secret_value(secret, key)?)?;
    secrets::register_text(&format!("generated Secret key {key}"), key, &text);
    Ok(())
}

fn secret_value(secret: &serde_json::Value, key: &str) -> Result<Vec<u8>> {
    let typed: k8s_openapi::api::core::v1::Secret = serde_json::from_value(secret.clone())?;
    Ok(typed.data.context("data")?.get(key).context("key")?.0.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the nats-server binary: scripts/test installs it and runs ignored tests"]
async fn generated_credentials_are_required_by_nats_and_used_by_sluice() -> Result<()> {
    let bus: EventBus = serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "EventBus",
        "metadata": {"name": "default", "namespace": "team", "uid": "1234"},
        "spec": {"jetstream": {"version": "2.10.22", "replicas": 1}},
    }))?;
    let js = bus.spec.jetstream.clone().context("jetstream")?;
    let built = children::jetstream_children(&bus, &js, &BuildConfig::default())?;
    let (server_secret, client_secret) = children::jetstream_auth_secrets(&bus, &BusCredentials::generate())?;
    // The server's auth.conf holds the passwords; the client's file is registered by
    // `SluiceProcess` from the secrets directory it is written to.
    register_secret(&server_secret, children::JS_SERVER_AUTH_KEY)?;

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

/// A nats-server started from files in `dir`, killed on drop, its log kept for failure messages.
struct Server {
    child: std::process::Child,
    log: std::path::PathBuf,
}

impl Server {
    fn start(dir: &std::path::Path, args: &[String], pod_name: &str) -> Result<Self> {
        let log = dir.join("nats.log");
        let child = Command::new(nats_server_bin()?)
            .args(args)
            .env("POD_NAME", pod_name)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()?;
        Ok(Self { child, log })
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The names of the servers `monitor`'s server has a route to.
async fn route_peers(monitor: u16) -> Result<std::collections::BTreeSet<String>> {
    let routez: serde_json::Value = reqwest::get(format!("http://127.0.0.1:{monitor}/routez"))
        .await?
        .json()
        .await?;
    Ok(routez["routes"]
        .as_array()
        .map(|routes| {
            routes
                .iter()
                .filter_map(|r| r["remote_name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default())
}

/// Polls until `done` holds for the peers of `monitor`, or the deadline passes.
async fn wait_peers(
    monitor: u16,
    within: Duration,
    done: impl Fn(&std::collections::BTreeSet<String>) -> bool,
) -> Result<std::collections::BTreeSet<String>> {
    let deadline = std::time::Instant::now() + within;
    loop {
        let peers = route_peers(monitor).await.unwrap_or_default();
        if done(&peers) || std::time::Instant::now() > deadline {
            return Ok(peers);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The high finding of the security review: with more than one replica the bus's route port took
/// any server that named the cluster, so a rogue pod could join, read every event and inject
/// forged ones. The three servers the controller's files describe must form their cluster, and a
/// rogue server must not join it, neither anonymously nor with a guessed password; the same rogue
/// with the generated credentials does join, which shows the refusal is the credentials' doing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the nats-server binary: scripts/test installs it and runs ignored tests"]
async fn a_rogue_server_cannot_join_the_generated_cluster() -> Result<()> {
    let bus: EventBus = serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "EventBus",
        "metadata": {"name": "routes", "namespace": "team", "uid": "5678"},
        "spec": {"jetstream": {"replicas": 3}},
    }))?;
    let js = bus.spec.jetstream.clone().context("jetstream")?;
    let built = children::jetstream_children(&bus, &js, &BuildConfig::default())?;
    assert_eq!(built.routes.len(), 3);
    let (server_secret, _) = children::jetstream_auth_secrets(&bus, &BusCredentials::generate())?;
    register_secret(&server_secret, children::JS_SERVER_AUTH_KEY)?;
    let password = children::generate_route_password();
    secrets::register("the generated route password", &password);
    let cluster_secret = children::jetstream_cluster_secret(&bus, &built.routes, &password)?;

    // The controller's files, as each pod sees them; only addresses change: every server on
    // loopback with ports of its own, and each pod's DNS name in the routes replaced by the
    // loopback port its server listens for routes on.
    let root = tempfile::tempdir()?;
    // Nine ports, all different: free_port releases each at once, so two calls may name the
    // same one (seen once: two servers got the same route port and the cluster never formed).
    let mut distinct = std::collections::BTreeSet::new();
    let mut picked = Vec::new();
    while picked.len() < 9 {
        let port = free_port()?;
        if distinct.insert(port) {
            picked.push(port);
        }
    }
    let ports: Vec<(u16, u16, u16)> = picked.chunks(3).map(|p| (p[0], p[1], p[2])).collect();
    let mut cluster_conf = String::from_utf8(secret_value(&cluster_secret, children::JS_CLUSTER_AUTH_KEY)?)?;
    for (route, (_, route_port, _)) in built.routes.iter().zip(&ports) {
        assert!(
            cluster_conf.contains(route.as_str()),
            "{route} missing from the routes"
        );
        cluster_conf = cluster_conf.replace(route.as_str(), &format!("127.0.0.1:{route_port}"));
    }
    let base_conf = built.config_map["data"]["nats-js.conf"]
        .as_str()
        .context("nats-js.conf")?;
    assert!(base_conf.contains("include ./cluster-auth.conf"), "{base_conf}");
    let mut servers = Vec::new();
    for (i, (client, route_port, monitor)) in ports.iter().enumerate() {
        let dir = root.path().join(format!("pod-{i}"));
        std::fs::create_dir_all(&dir)?;
        let conf = base_conf
            .replace("port: 4222", &format!("port: {client}\nhost: 127.0.0.1"))
            .replace("http: 8222", &format!("http: 127.0.0.1:{monitor}"))
            .replace(
                "  port: 6222",
                &format!("  port: {route_port}\n  host: 127.0.0.1"),
            )
            .replace("/data/jetstream", &dir.join("store").display().to_string());
        std::fs::write(dir.join("nats-js.conf"), conf)?;
        std::fs::write(
            dir.join("auth.conf"),
            secret_value(&server_secret, children::JS_SERVER_AUTH_KEY)?,
        )?;
        std::fs::write(dir.join("cluster-auth.conf"), &cluster_conf)?;
        let args = vec![
            "--config".to_string(),
            dir.join("nats-js.conf").display().to_string(),
        ];
        servers.push(Server::start(&dir, &args, &format!("eventbus-routes-js-{i}"))?);
    }
    let logs = |servers: &[Server]| {
        servers
            .iter()
            .enumerate()
            .map(|(i, s)| format!("--- server {i}\n{}", s.log_text()))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let others = |i: usize| -> std::collections::BTreeSet<String> {
        (0..3)
            .filter(|j| *j != i)
            .map(|j| format!("eventbus-routes-js-{j}"))
            .collect()
    };
    for (i, (_, _, monitor)) in ports.iter().enumerate() {
        let peers = wait_peers(*monitor, Duration::from_secs(30), |p| *p == others(i)).await?;
        assert_eq!(
            peers,
            others(i),
            "server {i} did not form the cluster\n{}",
            logs(&servers)
        );
    }

    let (_, first_route, first_monitor) = ports[0];
    let rogue = |dir: &std::path::Path, route_url: String| -> Result<Server> {
        std::fs::create_dir_all(dir)?;
        let client_port = free_port()?;
        let mut cluster_port = free_port()?;
        while cluster_port == client_port {
            cluster_port = free_port()?;
        }
        let args: Vec<String> = [
            "-a",
            "127.0.0.1",
            "-p",
            &client_port.to_string(),
            "--name",
            "rogue",
            "--cluster_name",
            "routes",
            "--cluster",
            &format!("nats://127.0.0.1:{cluster_port}"),
            "--routes",
            &route_url,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        Server::start(dir, &args, "rogue")
    };
    for (name, url) in [
        ("anonymous", format!("nats://127.0.0.1:{first_route}")),
        (
            "guessed",
            format!(
                "nats://route:{}@127.0.0.1:{first_route}",
                children::generate_route_password()
            ),
        ),
    ] {
        let server = rogue(&root.path().join(name), url)?;
        // The refusal is logged by the rogue once its route was turned away; only then is the
        // absence of the rogue among the peers a result rather than a race.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !server.log_text().contains("Authorization Violation") {
            if std::time::Instant::now() > deadline {
                bail!(
                    "the {name} rogue was not refused; its log:\n{}",
                    server.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for (i, (_, _, monitor)) in ports.iter().enumerate() {
            assert_eq!(
                route_peers(*monitor).await?,
                others(i),
                "the {name} rogue joined server {i}\n{}",
                logs(&servers)
            );
        }
    }
    // The control: the same rogue with the generated credentials is taken in.
    let insider = rogue(
        &root.path().join("insider"),
        format!("nats://route:{password}@127.0.0.1:{first_route}"),
    )?;
    let peers = wait_peers(first_monitor, Duration::from_secs(30), |p| p.contains("rogue")).await?;
    assert!(
        peers.contains("rogue"),
        "a server with the credentials did not join: {peers:?}\n{}",
        insider.log_text()
    );
    Ok(())
}
