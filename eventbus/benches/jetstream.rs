//! Throughput of the JetStream bus against a real nats-server, and of raw async-nats doing the same
//! work (the baseline).
//!
//! `cargo bench -p sluice-eventbus --bench jetstream` starts its own nats-server (`$NATS_SERVER_BIN`,
//! else the one `scripts/services.sh start nats` installs) on a free loopback port with a temporary
//! store, and for each run on a fresh stream: publishes N events from P tasks (each keeping up to
//! `PER_PUBLISHER_IN_FLIGHT` publishes waiting for their ack) while one subscriber of one durable
//! consumes them and acks each (up to `ACKS_IN_FLIGHT` acks outstanding). It prints events/s for
//! "publish" (all N acked by the server) and "publish → ack" (all N consumed and acked) and writes
//! them to `target/bench/jetstream.json`.
//!
//! Runs: `raw` — async-nats directly, pre-encoded payloads with `Nats-Msg-Id`, plain (unconfirmed)
//! acks; `sluice` — `JetStreamBus` (encode + decode of the CloudEvent included) with confirmed acks
//! (`confirm_acks: true`); `sluice, unconfirmed acks` — the same with the bus's default,
//! `confirm_acks: false`. All use a pull
//! batch of 64 and max_ack_pending 256. Numbers are for comparing runs on one machine, not
//! assertions.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::context::ContextBuilder;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream;
use bytes::Bytes;
use futures::StreamExt as _;
use serde_json::json;
use sluice_eventbus::jetstream::names;
use sluice_eventbus::{
    Bus, Event, EventBuilder, JetStreamBus, JetStreamConfig, Subject, SubjectFilter, SubscribeOptions,
};

const EVENTS: usize = 100_000;
const PUBLISHERS: usize = 8;
const PER_PUBLISHER_IN_FLIGHT: usize = 512;
const ACKS_IN_FLIGHT: usize = 256;
const MAX_ACK_PENDING: usize = 256;
const PULL_BATCH: usize = 64;
const DEFAULT_NATS_SERVER_BIN: &str = "/var/cache/sluice/nats-2.15.1/bin/nats-server";

/// The nats-server of this run, killed on drop.
struct NatsServer {
    child: Child,
    port: u16,
    _store: tempfile::TempDir,
}

impl NatsServer {
    fn start() -> anyhow::Result<Self> {
        let bin = std::env::var_os("NATS_SERVER_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_NATS_SERVER_BIN));
        if !bin.exists() {
            bail!(
                "nats-server not found at {}: run `scripts/services.sh start nats` or set NATS_SERVER_BIN",
                bin.display()
            );
        }
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let store = tempfile::tempdir()?;
        let child = Command::new(&bin)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("failed to start {}", bin.display()))?;
        let server = Self {
            child,
            port,
            _store: store,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            ensure!(Instant::now() < deadline, "nats-server did not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn payload(n: usize) -> serde_json::Value {
    json!({
        "header": {"Content-Type": ["application/json"], "X-Request-Id": [format!("req-{n}")]},
        "body": {"n": n, "ref": "refs/heads/main", "repository": {"full_name": "example/repo"}},
    })
}

/// The events, split over the publishers, built before any clock starts.
fn events() -> anyhow::Result<Vec<Vec<Event>>> {
    let mut batches: Vec<Vec<Event>> = (0..PUBLISHERS).map(|_| Vec::new()).collect();
    for n in 0..EVENTS {
        let event = EventBuilder::new("webhook", "example", "webhook")
            .id(format!("event-{n}"))
            .data_json(payload(n))
            .build()?;
        batches[n % PUBLISHERS].push(event);
    }
    Ok(batches)
}

struct Run {
    name: &'static str,
    publish: Duration,
    publish_to_ack: Duration,
    bytes_per_event: usize,
}

fn per_second(duration: Duration) -> f64 {
    EVENTS as f64 / duration.as_secs_f64()
}

async fn sluice_run(url: &str, stream: &str, confirm_acks: bool, name: &'static str) -> anyhow::Result<Run> {
    let batches = events()?;
    let bytes_per_event = batches[0][0].to_json()?.len();
    let mut config = JetStreamConfig::new(url).with_stream(stream);
    config.confirm_acks = confirm_acks;
    config.pull_batch = PULL_BATCH;
    config.publish_timeout = Duration::from_secs(30);
    let bus = JetStreamBus::connect(config).await?;
    let subject = Subject::new("webhook", "example");
    let filter = SubjectFilter {
        event_source_name: "webhook".into(),
        event_name: "example".into(),
    };
    let deliveries = bus
        .subscribe(
            "bench",
            filter,
            SubscribeOptions {
                max_ack_pending: MAX_ACK_PENDING,
                deliver_all: true,
                ..SubscribeOptions::default()
            },
        )
        .await?;

    let started = Instant::now();
    let failures = Arc::new(AtomicUsize::new(0));
    let consumer = tokio::spawn({
        let failures = failures.clone();
        async move {
            deliveries
                .take(EVENTS)
                .for_each_concurrent(ACKS_IN_FLIGHT, |delivery| {
                    let failures = failures.clone();
                    async move {
                        if delivery.ack().await.is_err() {
                            failures.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
                .await;
            started.elapsed()
        }
    });
    let publishers: Vec<_> = batches
        .into_iter()
        .map(|batch| {
            let (bus, subject) = (bus.clone(), subject.clone());
            tokio::spawn(async move {
                let acks: Vec<_> = futures::stream::iter(batch)
                    .map(|event| {
                        let (bus, subject) = (&bus, &subject);
                        async move { bus.publish(subject, &event).await }
                    })
                    .buffer_unordered(PER_PUBLISHER_IN_FLIGHT)
                    .collect()
                    .await;
                acks.into_iter().try_for_each(|ack| ack.map(drop))
            })
        })
        .collect();
    for publisher in publishers {
        publisher.await??;
    }
    let publish = started.elapsed();
    let publish_to_ack = consumer.await?;
    ensure!(failures.load(Ordering::Relaxed) == 0, "some acks failed");
    bus.close().await;
    Ok(Run {
        name,
        publish,
        publish_to_ack,
        bytes_per_event,
    })
}

async fn raw_run(url: &str, stream_name: &str) -> anyhow::Result<Run> {
    // Pre-encoded: the baseline is the transport alone.
    let batches: Vec<Vec<(String, Bytes)>> = events()?
        .into_iter()
        .map(|batch| {
            batch
                .into_iter()
                .map(|event| Ok((event.id().to_owned(), Bytes::from(event.to_json()?))))
                .collect::<anyhow::Result<_>>()
        })
        .collect::<anyhow::Result<_>>()?;
    let bytes_per_event = batches[0][0].1.len();
    let client = async_nats::connect(url).await?;
    let context = ContextBuilder::new()
        .max_ack_inflight(PUBLISHERS * PER_PUBLISHER_IN_FLIGHT)
        .backpressure_on_inflight(true)
        .build(client);
    let subject = names::subject_for(stream_name, &Subject::new("webhook", "example"));
    let stream = context
        .get_or_create_stream(stream::Config {
            name: stream_name.to_owned(),
            subjects: vec![format!("{stream_name}.>")],
            ..stream::Config::default()
        })
        .await?;
    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some("bench".into()),
            filter_subject: subject.clone(),
            ack_policy: AckPolicy::Explicit,
            deliver_policy: DeliverPolicy::All,
            max_ack_pending: MAX_ACK_PENDING as i64,
            ..pull::Config::default()
        })
        .await?;
    let messages = consumer
        .stream()
        .max_messages_per_batch(PULL_BATCH)
        .messages()
        .await?;

    let started = Instant::now();
    let failures = Arc::new(AtomicUsize::new(0));
    let consumer = tokio::spawn({
        let failures = failures.clone();
        async move {
            messages
                .take(EVENTS)
                .for_each_concurrent(ACKS_IN_FLIGHT, |message| {
                    let failures = failures.clone();
                    async move {
                        let acked = match message {
                            Ok(message) => message.ack().await.is_ok(),
                            Err(_) => false,
                        };
                        if !acked {
                            failures.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
                .await;
            started.elapsed()
        }
    });
    let publishers: Vec<_> = batches
        .into_iter()
        .map(|batch| {
            let (context, subject) = (context.clone(), subject.clone());
            tokio::spawn(async move {
                let acks: Vec<_> = futures::stream::iter(batch)
                    .map(|(id, payload)| {
                        let (context, subject) = (&context, &subject);
                        async move {
                            let message = PublishMessage::build().payload(payload).message_id(id);
                            context.send_publish(subject.clone(), message).await?.await
                        }
                    })
                    .buffer_unordered(PER_PUBLISHER_IN_FLIGHT)
                    .collect()
                    .await;
                acks.into_iter().try_for_each(|ack| ack.map(drop))
            })
        })
        .collect();
    for publisher in publishers {
        publisher.await??;
    }
    let publish = started.elapsed();
    let publish_to_ack = consumer.await?;
    ensure!(failures.load(Ordering::Relaxed) == 0, "some raw acks failed");
    Ok(Run {
        name: "raw async-nats",
        publish,
        publish_to_ack,
        bytes_per_event,
    })
}

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let server = NatsServer::start()?;
    let url = server.url();
    let runs = runtime.block_on(async {
        // Wait for JetStream on the fresh server.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let client = async_nats::connect(&url).await?;
            if async_nats::jetstream::new(client).query_account().await.is_ok() {
                break;
            }
            ensure!(Instant::now() < deadline, "JetStream did not become ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::Ok(vec![
            raw_run(&url, "bench_raw").await?,
            sluice_run(&url, "bench_sluice", true, "sluice").await?,
            sluice_run(
                &url,
                "bench_sluice_unconfirmed",
                false,
                "sluice, unconfirmed acks",
            )
            .await?,
        ])
    })?;
    drop(server);

    println!(
        "jetstream bus: {EVENTS} events, {PUBLISHERS} publishers × {PER_PUBLISHER_IN_FLIGHT} in flight, \
         1 durable, 1 subscriber acking each ({ACKS_IN_FLIGHT} acks in flight), pull batch {PULL_BATCH}"
    );
    let mut report = Vec::new();
    for run in &runs {
        println!("{} ({} bytes per event)", run.name, run.bytes_per_event);
        println!(
            "  publish:            {:>10.0} events/s ({:.2?})",
            per_second(run.publish),
            run.publish
        );
        println!(
            "  publish → ack:      {:>10.0} events/s ({:.2?})",
            per_second(run.publish_to_ack),
            run.publish_to_ack
        );
        report.push(json!({
            "run": run.name,
            "bytes_per_event": run.bytes_per_event,
            "publish_seconds": run.publish.as_secs_f64(),
            "publish_events_per_second": per_second(run.publish),
            "publish_to_ack_seconds": run.publish_to_ack.as_secs_f64(),
            "publish_to_ack_events_per_second": per_second(run.publish_to_ack),
        }));
    }

    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("target")
        });
    let dir = target.join("bench");
    std::fs::create_dir_all(&dir).with_context(|| format!("failed to create {}", dir.display()))?;
    let report = json!({
        "bench": "jetstream",
        "events": EVENTS,
        "publishers": PUBLISHERS,
        "publishes_in_flight_per_publisher": PER_PUBLISHER_IN_FLIGHT,
        "durables": 1,
        "subscribers": 1,
        "acks_in_flight": ACKS_IN_FLIGHT,
        "max_ack_pending": MAX_ACK_PENDING,
        "pull_batch": PULL_BATCH,
        "runs": report,
    });
    let path = dir.join("jetstream.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&report)?)
        .with_context(|| format!("failed to write {}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}
