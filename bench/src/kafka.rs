//! The Kafka half of `scripts/bench kafka`: a producer that floods the input topic with stamped
//! records and a collector that reads the output topic, checks that every id arrived exactly once and
//! records produce → arrival latency. The baseline relay is the `kafka-relay` binary.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde_json::{json, Value};

use crate::hist::Histogram;
use crate::now_us;

/// `kafka-produce`.
#[derive(Args)]
pub struct ProduceArgs {
    /// Bootstrap servers.
    #[arg(long)]
    brokers: String,
    /// The topic to fill.
    #[arg(long)]
    topic: String,
    /// How many records (ids 0..count).
    #[arg(long)]
    count: u64,
}

/// `kafka-collect`.
#[derive(Args)]
pub struct CollectArgs {
    /// Bootstrap servers.
    #[arg(long)]
    brokers: String,
    /// The topic to read from its start.
    #[arg(long)]
    topic: String,
    /// How many distinct ids to wait for.
    #[arg(long)]
    count: u64,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// After the last id arrived, keep reading this long to catch duplicates.
    #[arg(long, default_value_t = 3)]
    settle: u64,
}

/// Produces `{"id": n, "t": <µs since epoch>}` records as fast as the broker takes them (key = id, so
/// they spread over the partitions); prints `{produced, seconds, started_us}`.
pub async fn produce(args: &ProduceArgs) -> anyhow::Result<Value> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &args.brokers)
        .set("linger.ms", "5")
        .create()
        .context("failed to create the producer")?;
    let started_us = now_us();
    let started = Instant::now();
    let mut pending = Vec::with_capacity(args.count as usize);
    for n in 0..args.count {
        let key = n.to_string();
        let value = json!({"id": n, "t": now_us()}).to_string();
        let report = producer
            .send_result(FutureRecord::to(&args.topic).key(&key).payload(&value))
            .map_err(|(e, _)| anyhow::anyhow!("failed to enqueue record {n}: {e}"))?;
        pending.push(report);
    }
    for report in pending {
        match report.await {
            Ok(Ok(_)) => {}
            Ok(Err((e, _))) => bail!("the broker refused a record: {e}"),
            Err(_) => bail!("a delivery report was lost"),
        }
    }
    Ok(json!({"produced": args.count, "seconds": started.elapsed().as_secs_f64(), "started_us": started_us}))
}

fn number(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

/// Reads the output topic until `count` distinct ids arrived (then `settle` seconds more); prints
/// counts, duplicates, the latency summary and the first/last arrival times.
pub fn collect(args: &CollectArgs) -> anyhow::Result<Value> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &args.brokers)
        .set("group.id", format!("bench-collect-{}", now_us()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .context("failed to create the collector")?;
    consumer.subscribe(&[&args.topic])?;
    let latency = Histogram::default();
    let mut seen: HashMap<u64, u32> = HashMap::new();
    let (mut first_us, mut last_us, mut unreadable) = (0u64, 0u64, 0u64);
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    let mut settle_until: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if now >= deadline || settle_until.is_some_and(|s| now >= s) {
            break;
        }
        let Some(msg) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let msg = msg?;
        let arrived = now_us();
        let body: Value = msg
            .payload()
            .and_then(|p| serde_json::from_slice(p).ok())
            .unwrap_or_default();
        let (Some(id), Some(t)) = (number(&body["id"]), number(&body["t"])) else {
            unreadable += 1;
            continue;
        };
        let n = seen.entry(id).or_insert(0);
        *n += 1;
        if *n == 1 {
            latency.record(arrived.saturating_sub(t));
            if first_us == 0 {
                first_us = arrived;
            }
            last_us = arrived;
        }
        if seen.len() as u64 >= args.count && settle_until.is_none() {
            settle_until = Some(Instant::now() + Duration::from_secs(args.settle));
        }
    }
    let duplicates: u64 = seen.values().map(|n| u64::from(n - 1)).sum();
    let missing = (0..args.count).filter(|id| !seen.contains_key(id)).count();
    Ok(json!({
        "distinct": seen.len(),
        "duplicates": duplicates,
        "missing": missing,
        "unreadable": unreadable,
        "first_us": first_us,
        "last_us": last_us,
        "latency": latency.summary(),
    }))
}

/// `kafka-topics`.
#[derive(Args)]
pub struct TopicsArgs {
    /// Bootstrap servers.
    #[arg(long)]
    brokers: String,
    /// Partitions of each topic.
    #[arg(long, default_value_t = 3)]
    partitions: i32,
    /// The topics to create.
    #[arg(required = true)]
    topics: Vec<String>,
}

/// Creates topics (the broker would auto-create them with one partition).
pub async fn create_topics(args: &TopicsArgs) -> anyhow::Result<Value> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &args.brokers)
        .create()?;
    let topics: Vec<NewTopic> = args
        .topics
        .iter()
        .map(|t| NewTopic::new(t, args.partitions, TopicReplication::Fixed(1)))
        .collect();
    for r in admin.create_topics(&topics, &AdminOptions::new()).await? {
        r.map_err(|(t, e)| anyhow::anyhow!("failed to create topic {t}: {e}"))?;
    }
    Ok(json!({"created": args.topics, "partitions": args.partitions}))
}
