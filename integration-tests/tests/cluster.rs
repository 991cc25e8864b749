//! Cluster mode against a real nats-server with JetStream: `sluice eventsource` and `sluice sensor` as
//! separate processes, and the delivery contract under faults — a sensor killed with SIGKILL mid-stream,
//! an event source killed during load, the bus stopped and started again, two sensor replicas sharing
//! one durable. Every test owns its nats-server (free port, own store), so tests run in parallel.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{json, Value};
use sluice_integration_tests::{free_port, NatsServer, Sink, SluiceProcess};

/// Manifests of one test: a webhook EventSource and a Sensor forwarding `body` to the sink.
struct Setup {
    dir: tempfile::TempDir,
    port: u16,
    nats: NatsServer,
    sink: Sink,
}

impl Setup {
    async fn new() -> Result<Self> {
        Self::with_trigger_concurrency(1).await
    }

    /// The trigger with `concurrency` deliveries in flight (1: in bus order, the default).
    async fn with_trigger_concurrency(concurrency: u32) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let nats = NatsServer::start()?;
        let sink = Sink::start().await?;
        std::fs::write(
            dir.path().join("eventsource.yaml"),
            format!(
                "apiVersion: argoproj.io/v1alpha1\nkind: EventSource\nmetadata: {{name: hooks}}\nspec:\n  webhook:\n    \
                 in: {{port: \"{port}\", endpoint: /in, method: POST}}\n"
            ),
        )?;
        std::fs::write(
            dir.path().join("sensor.yaml"),
            format!(
                "apiVersion: argoproj.io/v1alpha1\nkind: Sensor\nmetadata: {{name: fwd}}\nspec:\n  dependencies:\n    \
                 - {{name: d, eventSourceName: hooks, eventName: in}}\n  triggers:\n    - template:\n        \
                 name: forward\n        http:\n          url: http://127.0.0.1:{}/hook\n          payload:\n            \
                 - src: {{dependencyName: d, dataKey: body}}\n              dest: \"\"\n      retryStrategy: {{steps: 5, \
                 duration: 100ms}}\n      concurrency: {concurrency}\n",
                sink.port
            ),
        )?;
        Ok(Self {
            dir,
            port,
            nats,
            sink,
        })
    }

    fn log(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn start(&self, kind: &str, log: &str) -> Result<SluiceProcess> {
        let file = self.dir.path().join(format!("{kind}.yaml"));
        let file = file.to_str().context("path")?;
        let url = self.nats.url();
        SluiceProcess::start(
            &[
                kind,
                "-f",
                file,
                "--bus",
                &url,
                "--listen",
                "127.0.0.1",
                "--metrics-address",
                "127.0.0.1:0",
            ],
            self.log(log),
            self.dir.path(),
        )
    }

    async fn start_sensor(&self, log: &str) -> Result<SluiceProcess> {
        let p = self.start("sensor", log)?;
        p.wait_logged("sensor started", Duration::from_secs(30)).await?;
        Ok(p)
    }

    async fn start_eventsource(&self, log: &str) -> Result<SluiceProcess> {
        let p = self.start("eventsource", log)?;
        p.wait_healthy(self.port).await?;
        Ok(p)
    }
}

/// POSTs `{"n": i}` for each i in `range` from `concurrency` tasks; returns the n of every 2xx answer.
async fn post_all(port: u16, range: std::ops::Range<usize>, concurrency: usize) -> BTreeSet<usize> {
    let client = reqwest::Client::new();
    let next = Arc::new(AtomicUsize::new(range.start));
    let end = range.end;
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, next) = (client.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut ok = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::SeqCst);
                if n >= end {
                    return ok;
                }
                let sent = client
                    .post(format!("http://127.0.0.1:{port}/in"))
                    .json(&json!({"n": n}))
                    .send()
                    .await;
                if matches!(&sent, Ok(r) if r.status().is_success()) {
                    ok.push(n);
                }
            }
        }));
    }
    let mut accepted = BTreeSet::new();
    for t in tasks {
        if let Ok(ok) = t.await {
            accepted.extend(ok);
        }
    }
    accepted
}

/// n → the idempotency keys of the firings the sink saw for it.
fn firings(sink: &Sink) -> BTreeMap<usize, BTreeSet<String>> {
    let mut out: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
    for r in sink.received() {
        if let Some(n) = r.body.get("n").and_then(Value::as_u64) {
            out.entry(n as usize).or_default().insert(r.idempotency_key());
        }
    }
    out
}

/// Waits until every accepted n has fired at least once.
async fn wait_all_fired(
    sink: &Sink,
    accepted: &BTreeSet<usize>,
    within: Duration,
) -> BTreeMap<usize, BTreeSet<String>> {
    let deadline = std::time::Instant::now() + within;
    loop {
        let f = firings(sink);
        if accepted.iter().all(|n| f.contains_key(n)) || std::time::Instant::now() > deadline {
            return f;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn assert_every_accepted_fired_once_per_key(
    accepted: &BTreeSet<usize>,
    f: &BTreeMap<usize, BTreeSet<String>>,
) {
    let missing: Vec<&usize> = accepted.iter().filter(|n| !f.contains_key(n)).collect();
    assert!(
        missing.is_empty(),
        "{} accepted events never fired, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    for (n, keys) in f {
        // Why one key per event: a repeat (after a crash) carries the same idempotency key.
        assert_eq!(
            keys.len(),
            1,
            "event {n} fired under several idempotency keys: {keys:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the nats-server binary: scripts/test installs it and runs ignored tests"]
async fn webhook_to_http_across_processes_on_jetstream() -> Result<()> {
    let s = Setup::new().await?;
    let sensor = s.start_sensor("sensor.log").await?;
    let source = s.start_eventsource("eventsource.log").await?;
    let accepted = post_all(s.port, 0..300, 16).await;
    assert_eq!(accepted.len(), 300, "every POST is accepted while the bus is up");
    let f = wait_all_fired(&s.sink, &accepted, Duration::from_secs(60)).await;
    assert_every_accepted_fired_once_per_key(&accepted, &f);
    assert_eq!(s.sink.received().len(), 300, "no repeats without faults");
    assert_eq!(source.terminate()?, Some(0));
    assert_eq!(sensor.terminate()?, Some(0));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the nats-server binary: scripts/test installs it and runs ignored tests"]
async fn sensor_killed_mid_stream_loses_nothing_after_restart() -> Result<()> {
    const EVENTS: usize = 10_000;
    // Several firings in flight when the kill comes, so it lands mid-action, not between actions.
    let s = Setup::with_trigger_concurrency(16).await?;
    let sensor = s.start_sensor("sensor-1.log").await?;
    let _source = s.start_eventsource("eventsource.log").await?;
    let load = tokio::spawn(post_all(s.port, 0..EVENTS, 32));
    // Kill the sensor once it has fired part of the load.
    s.sink.wait_for(1500, Duration::from_secs(120)).await;
    sensor.kill_hard()?;
    let accepted = load.await?;
    assert_eq!(
        accepted.len(),
        EVENTS,
        "the event source does not depend on the sensor"
    );
    let sensor2 = s.start_sensor("sensor-2.log").await?;
    let f = wait_all_fired(&s.sink, &accepted, Duration::from_secs(240)).await;
    if accepted.iter().any(|n| !f.contains_key(n)) {
        let log = sensor2.log_text();
        eprintln!(
            "restarted sensor's log (tail):\n{}",
            &log[log.len().saturating_sub(6000)..]
        );
    }
    assert_every_accepted_fired_once_per_key(&accepted, &f);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the nats-server binary: scripts/test installs it and runs ignored tests"]
async fn eventsource_killed_during_load_every_2xx_fires() -> Result<()> {
    let s = Setup::new().await?;
    let _sensor = s.start_sensor("sensor.log").await?;
    let source = s.start_eventsource("eventsource-1.log").await?;
    let load = tokio::spawn(post_all(s.port, 0..3000, 16));
    s.sink.wait_for(200, Duration::from_secs(60)).await;
    source.kill_hard()?;
    let accepted = load.await?;
    assert!(
        !accepted.is_empty() && accepted.len() < 3000,
        "the kill landed mid-load: {} accepted",
        accepted.len()
    );
    let f = wait_all_fired(&s.sink, &accepted, Duration::from_secs(60)).await;
    assert_every_accepted_fired_once_per_key(&accepted, &f);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the nats-server binary: scripts/test installs it and runs ignored tests"]
async fn bus_outage_answers_503_and_loses_nothing_it_accepted() -> Result<()> {
    let mut s = Setup::new().await?;
    let _sensor = s.start_sensor("sensor.log").await?;
    let _source = s.start_eventsource("eventsource.log").await?;
    let before = post_all(s.port, 0..200, 8).await;
    assert_eq!(before.len(), 200);
    s.nats.stop();
    // A sender that gives a delivery id (Idempotency-Key) and retries after a 503.
    let client = reqwest::Client::new();
    let keyed = |client: &reqwest::Client| {
        client
            .post(format!("http://127.0.0.1:{}/in", s.port))
            .header("Idempotency-Key", "outage-delivery-1")
            .json(&json!({"n": 100_000}))
    };
    let r = keyed(&client).send().await?;
    assert_eq!(r.status(), 503, "no 2xx while the bus is down");
    assert!(r.headers().contains_key("retry-after"));
    let during = post_all(s.port, 200..400, 8).await;
    s.nats.restart()?;
    // Sources reconnect on their own; wait for the first accepted request after the restart.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut after = BTreeSet::new();
    while after.is_empty() && std::time::Instant::now() < deadline {
        after = post_all(s.port, 400..401, 1).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let after_rest = post_all(s.port, 401..600, 8).await;
    let r = keyed(&client).send().await?;
    assert_eq!(
        r.status(),
        200,
        "the sender's retry is accepted once the bus is back"
    );
    let accepted: BTreeSet<usize> = before
        .iter()
        .chain(&during)
        .chain(&after)
        .chain(&after_rest)
        .copied()
        .collect();
    assert!(
        !after.is_empty(),
        "the event source reconnected after the bus came back"
    );
    let f = wait_all_fired(&s.sink, &accepted, Duration::from_secs(120)).await;
    assert_every_accepted_fired_once_per_key(&accepted, &f);
    // The 503'd attempt may still have reached the bus (the client flushes what it buffered when the
    // connection returns); with the sender's delivery id the retry dedupes against it: one firing.
    let outage: Vec<_> = s
        .sink
        .received()
        .into_iter()
        .filter(|r| r.body["n"] == 100_000)
        .collect();
    assert_eq!(outage.len(), 1, "the retried delivery fired exactly once");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the nats-server binary: scripts/test installs it and runs ignored tests"]
async fn two_sensor_replicas_split_the_work_and_fire_each_event_once() -> Result<()> {
    let s = Setup::new().await?;
    let a = s.start_sensor("sensor-a.log").await?;
    let b = s.start_sensor("sensor-b.log").await?;
    let _source = s.start_eventsource("eventsource.log").await?;
    let accepted = post_all(s.port, 0..1000, 16).await;
    assert_eq!(accepted.len(), 1000);
    let f = wait_all_fired(&s.sink, &accepted, Duration::from_secs(60)).await;
    assert_every_accepted_fired_once_per_key(&accepted, &f);
    assert_eq!(
        s.sink.received().len(),
        1000,
        "each firing executed once in steady state"
    );
    let fired = |p: &SluiceProcess| {
        p.log_lines()
            .iter()
            .filter(|l| l["message"] == "trigger fired")
            .count()
    };
    let (fa, fb) = (fired(&a), fired(&b));
    assert_eq!(fa + fb, 1000);
    assert!(fa > 0 && fb > 0, "both replicas did work: {fa} and {fb}");
    Ok(())
}

/// The #3326 scenario: `a && b` across two event sources, events arriving interleaved and at the same
/// time, two sensor replicas sharing the durables and the KV state. Every complete pair fires exactly
/// once: pairs are posted in rounds (a_i and b_i together), each round waits for its firing, so the
/// expected firings are known exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the nats-server binary: scripts/test installs it and runs ignored tests"]
async fn and_condition_across_two_sources_fires_every_pair_once_with_two_replicas() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let nats = NatsServer::start()?;
    let sink = Sink::start().await?;
    let (pa, pb) = (free_port()?, free_port()?);
    for (name, port) in [("a", pa), ("b", pb)] {
        std::fs::write(
            dir.path().join(format!("es-{name}.yaml")),
            format!(
                "apiVersion: argoproj.io/v1alpha1\nkind: EventSource\nmetadata: {{name: src-{name}}}\nspec:\n  \
                 webhook:\n    ev: {{port: \"{port}\", endpoint: /ev, method: POST}}\n"
            ),
        )?;
    }
    std::fs::write(
        dir.path().join("sensor.yaml"),
        format!(
            "apiVersion: argoproj.io/v1alpha1\nkind: Sensor\nmetadata: {{name: pairs}}\nspec:\n  dependencies:\n    \
             - {{name: a, eventSourceName: src-a, eventName: ev}}\n    - {{name: b, eventSourceName: src-b, eventName: ev}}\n  \
             triggers:\n    - template:\n        name: pair\n        conditions: a && b\n        http:\n          \
             url: http://127.0.0.1:{}/pair\n          payload:\n            - {{src: {{dependencyName: a, dataKey: body.i}}, \
             dest: a}}\n            - {{src: {{dependencyName: b, dataKey: body.i}}, dest: b}}\n",
            sink.port
        ),
    )?;
    let url = nats.url();
    let start = |args: Vec<String>, log: &str| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        SluiceProcess::start(&args, dir.path().join(log), dir.path())
    };
    let common = |kind: &str, file: &str| -> Vec<String> {
        let file = dir.path().join(file).display().to_string();
        [
            kind,
            "-f",
            &file,
            "--bus",
            &url,
            "--listen",
            "127.0.0.1",
            "--metrics-address",
            "127.0.0.1:0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let r1 = start(common("sensor", "sensor.yaml"), "r1.log")?;
    let r2 = start(common("sensor", "sensor.yaml"), "r2.log")?;
    r1.wait_logged("sensor started", Duration::from_secs(30)).await?;
    r2.wait_logged("sensor started", Duration::from_secs(30)).await?;
    let sa = start(common("eventsource", "es-a.yaml"), "es-a.log")?;
    let sb = start(common("eventsource", "es-b.yaml"), "es-b.log")?;
    sa.wait_healthy(pa).await?;
    sb.wait_healthy(pb).await?;

    let client = reqwest::Client::new();
    let rounds = 30;
    for i in 0..rounds {
        // a_i and b_i at the same moment, in alternating order.
        let post = |port: u16| {
            client
                .post(format!("http://127.0.0.1:{port}/ev"))
                .json(&json!({"i": i}))
                .send()
        };
        let (ra, rb) = if i % 2 == 0 {
            tokio::join!(post(pa), post(pb))
        } else {
            let (rb, ra) = tokio::join!(post(pb), post(pa));
            (ra, rb)
        };
        assert!(ra?.status().is_success() && rb?.status().is_success());
        let got = sink.wait_for(i + 1, Duration::from_secs(30)).await;
        assert_eq!(got, i + 1, "round {i}: the pair fired");
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let got = sink.received();
    assert_eq!(
        got.len(),
        rounds,
        "every pair fired exactly once, no extra firings"
    );
    for (i, r) in got.iter().enumerate() {
        assert_eq!(
            r.body,
            json!({"a": i.to_string(), "b": i.to_string()}),
            "pair {i} used a_i and b_i"
        );
    }
    let keys: BTreeSet<String> = got.iter().map(|r| r.idempotency_key()).collect();
    assert_eq!(keys.len(), rounds);
    Ok(())
}
