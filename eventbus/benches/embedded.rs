//! Throughput of the embedded bus and of the CloudEvents envelope.
//!
//! `cargo bench -p sluice-eventbus --bench embedded` publishes N events from 4 tasks while one
//! subscriber of one durable consumes and acks them, and separately times building and encoding N
//! events (the envelope baseline). Prints events/s and writes the numbers to
//! `target/bench/embedded.json`. Numbers are for comparing runs on one machine, not assertions.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context as _};
use futures::StreamExt as _;
use serde_json::json;
use sluice_eventbus::embedded::{EmbeddedBus, EmbeddedConfig};
use sluice_eventbus::{Bus, EventBuilder, Subject, SubjectFilter, SubscribeOptions};

const EVENTS: usize = 200_000;
const PUBLISHERS: usize = 4;

fn payload(n: usize) -> serde_json::Value {
    json!({
        "header": {"Content-Type": ["application/json"], "X-Request-Id": [format!("req-{n}")]},
        "body": {"n": n, "ref": "refs/heads/main", "repository": {"full_name": "example/repo"}},
    })
}

fn envelope_baseline() -> anyhow::Result<(Duration, usize)> {
    let started = Instant::now();
    let mut bytes = 0;
    for n in 0..EVENTS {
        let event = EventBuilder::new("webhook", "example", "webhook")
            .data_json(payload(n))
            .extension(
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            )
            .build()?;
        bytes += std::hint::black_box(event.to_json()?).len();
    }
    Ok((started.elapsed(), bytes))
}

async fn bus_throughput() -> anyhow::Result<(Duration, Duration)> {
    let bus = EmbeddedBus::new(EmbeddedConfig {
        capacity: EVENTS,
        ..EmbeddedConfig::default()
    });
    let subject = Subject::new("webhook", "example");
    let filter = SubjectFilter {
        event_source_name: "webhook".into(),
        event_name: "example".into(),
    };
    let mut deliveries = bus
        .subscribe("bench", filter, SubscribeOptions::default())
        .await?;

    // Events are built before the clock starts: this measures the bus, the baseline the envelope.
    let mut batches: Vec<Vec<_>> = (0..PUBLISHERS).map(|_| Vec::new()).collect();
    for n in 0..EVENTS {
        let event = EventBuilder::new("webhook", "example", "webhook")
            .data_json(payload(n))
            .build()?;
        batches[n % PUBLISHERS].push(event);
    }

    let started = Instant::now();
    let consumer = tokio::spawn(async move {
        let mut acked = 0;
        while acked < EVENTS {
            let Some(delivery) = deliveries.next().await else {
                break;
            };
            delivery.ack().await?;
            acked += 1;
        }
        anyhow::Ok((acked, started.elapsed()))
    });
    let publishers: Vec<_> = batches
        .into_iter()
        .map(|batch| {
            let bus = bus.clone();
            let subject = subject.clone();
            tokio::spawn(async move {
                for event in batch {
                    bus.publish(&subject, &event).await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for publisher in publishers {
        publisher.await??;
    }
    let published = started.elapsed();
    let (acked, consumed) = consumer.await??;
    ensure!(acked == EVENTS, "only {acked} of {EVENTS} events were consumed");
    ensure!(bus.stored() == 0, "{} events left in the store", bus.stored());
    bus.close().await;
    Ok((published, consumed))
}

fn per_second(duration: Duration) -> f64 {
    EVENTS as f64 / duration.as_secs_f64()
}

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let (published, consumed) = runtime.block_on(bus_throughput())?;
    let (envelope, bytes) = envelope_baseline()?;

    println!("embedded bus: {EVENTS} events, {PUBLISHERS} publishers, 1 durable, 1 subscriber acking each");
    println!(
        "  publish:            {:>10.0} events/s ({published:.2?})",
        per_second(published)
    );
    println!(
        "  publish → ack:      {:>10.0} events/s ({consumed:.2?})",
        per_second(consumed)
    );
    println!(
        "envelope baseline: build + to_json of {EVENTS} events ({} bytes each on average)",
        bytes / EVENTS
    );
    println!(
        "  build + to_json:    {:>10.0} events/s ({envelope:.2?})",
        per_second(envelope)
    );

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
        "bench": "embedded",
        "events": EVENTS,
        "publishers": PUBLISHERS,
        "durables": 1,
        "subscribers": 1,
        "publish_seconds": published.as_secs_f64(),
        "publish_events_per_second": per_second(published),
        "publish_to_ack_seconds": consumed.as_secs_f64(),
        "publish_to_ack_events_per_second": per_second(consumed),
        "envelope_build_to_json_seconds": envelope.as_secs_f64(),
        "envelope_build_to_json_events_per_second": per_second(envelope),
        "envelope_average_bytes": bytes / EVENTS,
    });
    let path = dir.join("embedded.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&report)?)
        .with_context(|| format!("failed to write {}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}
