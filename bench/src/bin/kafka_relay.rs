//! `kafka-relay`: the baseline of `scripts/bench kafka` — a raw rdkafka consume → produce loop with
//! the same guarantees Sluice gives by default: records of a partition handled one at a time in
//! offset order, each produced record's delivery report awaited before its input offset is stored
//! for commit. No bus, no sensor.
//!
//! `kafka-relay --brokers B --input IN --output OUT --group G --count N` exits after relaying N
//! records (or `--timeout` seconds) and prints `{"relayed": n, "seconds": s}`.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

#[derive(Parser)]
#[command(
    name = "kafka-relay",
    about = "Baseline: consume → produce, delivery report before commit"
)]
struct Args {
    #[arg(long)]
    brokers: String,
    #[arg(long)]
    input: String,
    #[arg(long)]
    output: String,
    #[arg(long)]
    group: String,
    #[arg(long)]
    count: u64,
    #[arg(long, default_value_t = 600)]
    timeout: u64,
}

async fn relay(args: &Args) -> anyhow::Result<(u64, f64)> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &args.brokers)
        .set("group.id", &args.group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false")
        .create()?;
    consumer.subscribe(&[&args.input])?;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &args.brokers)
        .set("acks", "all")
        // Why 0: each record waits for its own delivery report, so lingering for a batch only adds
        // latency (librdkafka's default is 5 ms).
        .set("linger.ms", "0")
        .create()?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.timeout);
    let mut started: Option<Instant> = None;
    let mut relayed = 0u64;
    while relayed < args.count {
        let msg = match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Ok(m) => m?,
            Err(_) => break,
        };
        started.get_or_insert_with(Instant::now);
        let mut record = FutureRecord::to(&args.output);
        if let Some(k) = msg.key() {
            record = record.key(k);
        }
        if let Some(p) = msg.payload() {
            record = record.payload(p);
        }
        producer
            .send(record, Duration::from_secs(30))
            .await
            .map_err(|(e, _)| anyhow::anyhow!("failed to produce: {e}"))?;
        // Only now is the input record safe to commit: its copy is on the output topic.
        consumer.store_offset_from_message(&msg)?;
        relayed += 1;
    }
    let _ = consumer.commit_consumer_state(CommitMode::Sync);
    Ok((relayed, started.map_or(0.0, |s| s.elapsed().as_secs_f64())))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(relay(&args)));
    match result {
        Ok((relayed, seconds)) => {
            println!("{}", serde_json::json!({"relayed": relayed, "seconds": seconds}));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kafka-relay: {e:#}");
            ExitCode::FAILURE
        }
    }
}
