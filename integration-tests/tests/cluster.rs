//! Cluster mode against a real nats-server with JetStream: `sluice eventsource` and `sluice sensor` as
//! separate processes, and the delivery contract under faults — a sensor killed with SIGKILL mid-stream,
//! an event source killed during load, the bus stopped and started again, two sensor replicas sharing
//! one durable. Every test owns its nats-server (free port, own store), so tests run in parallel.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{json, Value};
use sluice_integration_tests::{
    bus_settled, free_port, wait_for, Arrivals, NatsServer, Received, Sink, SluiceProcess,
};

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

/// The delivery id a sender gives event `n` (the webhook source takes `Idempotency-Key` as the
/// event id): a sender's retry of `n` is the same event, deduplicated on the bus.
fn delivery_id(n: usize) -> String {
    format!("cluster-delivery-{n}")
}

/// POSTs `{"n": i}` (with `n`'s delivery id) for each i in `ns` from `concurrency` tasks; returns
/// the n of every 2xx answer.
async fn post_all(port: u16, ns: impl IntoIterator<Item = usize>, concurrency: usize) -> BTreeSet<usize> {
    let client = reqwest::Client::new();
    let queue: Arc<Vec<usize>> = Arc::new(ns.into_iter().collect());
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, next, queue) = (client.clone(), next.clone(), queue.clone());
        tasks.push(tokio::spawn(async move {
            let mut ok = Vec::new();
            while let Some(&n) = queue.get(next.fetch_add(1, Ordering::SeqCst)) {
                let sent = client
                    .post(format!("http://127.0.0.1:{port}/in"))
                    .header("Idempotency-Key", delivery_id(n))
                    .json(&json!({"n": n}))
                    .send()
                    .await;
                if matches!(&sent, Ok(r) if r.status().is_success()) {
                    ok.push(n);
                }
            }
            ok
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

/// A sender that retries every event of `sent` not yet accepted until each is (a webhook sender
/// retries what got no 2xx), within `within`; returns them all.
async fn retry_until_accepted(
    port: u16,
    sent: &BTreeSet<usize>,
    mut accepted: BTreeSet<usize>,
    within: Duration,
) -> Result<BTreeSet<usize>> {
    let deadline = tokio::time::Instant::now() + within;
    while !accepted.is_superset(sent) {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{} sent events were still not accepted after {within:?}",
            sent.difference(&accepted).count()
        );
        let todo: Vec<usize> = sent.difference(&accepted).copied().collect();
        accepted.extend(post_all(port, todo, 8).await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(accepted)
}

/// The event `n` a sink request fired for.
fn event_n(r: &Received) -> Option<usize> {
    r.body.get("n").and_then(Value::as_u64).map(|n| n as usize)
}

/// The end of a fault test: waits until every event of `required` arrived at the sink, then until
/// the bus has nothing left to deliver (no pending, no unacknowledged message on any durable),
/// then a quiet second in which nothing more may arrive; returns the arrivals checked against
/// the contract: everything `required` arrived, nothing that is not in `sent`, one non-empty key
/// per event, distinct across events.
async fn settle(
    sink: &Sink,
    bus: &str,
    required: &BTreeSet<usize>,
    sent: &BTreeSet<usize>,
    within: Duration,
) -> Result<Arrivals<usize>> {
    let arrived = sink
        .wait_until("every required event arrived", within, |got| {
            let seen: BTreeSet<usize> = got.iter().filter_map(event_n).collect();
            seen.is_superset(required)
        })
        .await;
    if let Err(e) = arrived {
        // Name what is missing rather than only a count.
        Arrivals::of(&sink.received(), event_n)?.check_between(required, sent)?;
        return Err(e);
    }
    wait_for(Duration::from_secs(60), || bus_settled(bus))
        .await
        .context("the bus has nothing left to deliver")?;
    let received = sink.assert_quiet(Duration::from_secs(1)).await?;
    let arrivals = Arrivals::of(&received, event_n)?;
    arrivals.check_between(required, sent)?;
    Ok(arrivals)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the nats-server binary: scripts/test installs it and runs ignored tests"]
async fn webhook_to_http_across_processes_on_jetstream() -> Result<()> {
    let s = Setup::new().await?;
    let sensor = s.start_sensor("sensor.log").await?;
    let source = s.start_eventsource("eventsource.log").await?;
    let sent: BTreeSet<usize> = (0..300).collect();
    let accepted = post_all(s.port, sent.clone(), 16).await;
    assert_eq!(accepted, sent, "every POST is accepted while the bus is up");
    let arrivals = settle(&s.sink, &s.nats.url(), &sent, &sent, Duration::from_secs(60)).await?;
    assert_eq!(arrivals.total(), 300, "no repeats without faults");
    assert_eq!(source.terminate()?, Some(0));
    assert_eq!(sensor.terminate()?, Some(0));
    Ok(())
}

/// The sink holds its answers while the sensor is killed, so the firings in flight were seen by
/// the target but never acknowledged on the bus: each of them must be delivered again to the
/// restarted sensor and repeat with the same idempotency key.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the nats-server binary: scripts/test installs it and runs ignored tests"]
async fn sensor_killed_mid_stream_loses_nothing_after_restart() -> Result<()> {
    const EVENTS: usize = 10_000;
    // Several firings in flight when the kill comes, so it lands mid-action, not between actions.
    let s = Setup::with_trigger_concurrency(16).await?;
    let sensor = s.start_sensor("sensor-1.log").await?;
    let _source = s.start_eventsource("eventsource.log").await?;
    let sent: BTreeSet<usize> = (0..EVENTS).collect();
    let load = tokio::spawn(post_all(s.port, sent.clone(), 32));
    // Once the sensor has fired part of the load, the target stops answering: the firings in
    // flight from then on are done at the target and unacknowledged on the bus.
    s.sink
        .wait_until("part of the load fired", Duration::from_secs(120), |got| {
            got.len() >= 1500
        })
        .await?;
    s.sink.hold();
    s.sink
        .wait_until("firings are held at the target", Duration::from_secs(60), |got| {
            got.iter().filter(|r| r.held).count() >= 4
        })
        .await?;
    sensor.kill_hard()?;
    s.sink.release();
    // Seen by the target, never answered, so never acknowledged on the bus.
    let held: BTreeSet<usize> = s
        .sink
        .received()
        .iter()
        .filter(|r| r.held)
        .filter_map(event_n)
        .collect();
    let accepted = load.await?;
    assert_eq!(accepted, sent, "the event source does not depend on the sensor");
    let sensor2 = s.start_sensor("sensor-2.log").await?;
    let arrivals = match settle(&s.sink, &s.nats.url(), &sent, &sent, Duration::from_secs(240)).await {
        Ok(a) => a,
        Err(e) => {
            let log = sensor2.log_text();
            eprintln!(
                "restarted sensor's log (tail):\n{}",
                &log[log.len().saturating_sub(6000)..]
            );
            return Err(e);
        }
    };
    // The redelivery the kill forced: every firing the target saw unanswered came again.
    let repeated = arrivals.repeated();
    let not_repeated: Vec<&usize> = held.difference(&repeated).collect();
    assert!(
        not_repeated.is_empty(),
        "firings held at the target when the sensor died were never redelivered: {not_repeated:?}"
    );
    println!(
        "{} events, {} arrivals, {} held at the kill and repeated, {} repeated in all",
        sent.len(),
        arrivals.total(),
        held.len(),
        repeated.len()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the nats-server binary: scripts/test installs it and runs ignored tests"]
async fn eventsource_killed_during_load_every_2xx_fires() -> Result<()> {
    let s = Setup::new().await?;
    let _sensor = s.start_sensor("sensor.log").await?;
    let source = s.start_eventsource("eventsource-1.log").await?;
    let sent: BTreeSet<usize> = (0..3000).collect();
    let load = tokio::spawn(post_all(s.port, sent.clone(), 16));
    s.sink
        .wait_until("part of the load fired", Duration::from_secs(60), |got| {
            got.len() >= 200
        })
        .await?;
    source.kill_hard()?;
    let accepted = load.await?;
    assert!(
        !accepted.is_empty() && accepted.len() < 3000,
        "the kill landed mid-load: {} accepted",
        accepted.len()
    );
    // Every 2xx fires, and nothing fires that was not sent (a request cut off by the kill may
    // have reached the bus without its 2xx).
    settle(&s.sink, &s.nats.url(), &accepted, &sent, Duration::from_secs(60)).await?;
    // The sender retries what got no 2xx, under the same delivery ids, against a new process:
    // in the end every event fires, each once per key, whatever reached the bus before the kill.
    let _source2 = s.start_eventsource("eventsource-2.log").await?;
    let all = retry_until_accepted(s.port, &sent, accepted, Duration::from_secs(120)).await?;
    assert_eq!(all, sent);
    settle(&s.sink, &s.nats.url(), &sent, &sent, Duration::from_secs(60)).await?;
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
    let r = client
        .post(format!("http://127.0.0.1:{}/in", s.port))
        .header("Idempotency-Key", delivery_id(200))
        .json(&json!({"n": 200}))
        .send()
        .await?;
    assert_eq!(r.status(), 503, "no 2xx while the bus is down");
    assert!(r.headers().contains_key("retry-after"));
    let during = post_all(s.port, 200..400, 8).await;
    assert!(during.is_empty(), "accepted while the bus was down: {during:?}");
    s.nats.restart()?;
    // Sources reconnect on their own; the sender retries everything that got a 503 until it is
    // accepted. A 503'd attempt may still have reached the bus (the client flushes what it
    // buffered when the connection returns); with the sender's delivery id the retry dedupes
    // against it: one firing per event.
    let sent: BTreeSet<usize> = (0..600).collect();
    let outage: BTreeSet<usize> = (200..400).collect();
    let accepted = retry_until_accepted(s.port, &outage, before, Duration::from_secs(60)).await?;
    let after = post_all(s.port, 400..600, 8).await;
    let accepted: BTreeSet<usize> = accepted.union(&after).copied().collect();
    assert_eq!(accepted, sent, "every event is accepted once the bus is back");
    let arrivals = settle(&s.sink, &s.nats.url(), &sent, &sent, Duration::from_secs(120)).await?;
    println!(
        "{} events, {} arrivals after the outage",
        sent.len(),
        arrivals.total()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the nats-server binary: scripts/test installs it and runs ignored tests"]
async fn two_sensor_replicas_split_the_work_and_fire_each_event_once() -> Result<()> {
    let s = Setup::new().await?;
    let a = s.start_sensor("sensor-a.log").await?;
    let b = s.start_sensor("sensor-b.log").await?;
    let _source = s.start_eventsource("eventsource.log").await?;
    let sent: BTreeSet<usize> = (0..1000).collect();
    let accepted = post_all(s.port, sent.clone(), 16).await;
    assert_eq!(accepted, sent);
    let arrivals = settle(&s.sink, &s.nats.url(), &sent, &sent, Duration::from_secs(60)).await?;
    assert_eq!(
        arrivals.total(),
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
    wait_for(Duration::from_secs(60), || bus_settled(&url))
        .await
        .context("the bus has nothing left to deliver")?;
    let got = sink.assert_quiet(Duration::from_secs(1)).await?;
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
    let sent: BTreeSet<String> = (0..rounds).map(|i| i.to_string()).collect();
    Arrivals::of(&got, |r| r.body["a"].as_str().map(str::to_owned))?.check(&sent)?;
    Ok(())
}
