//! `sluice-bench`: the Rust half of `scripts/bench e2e` (the orchestrator is `bench/e2e.py`).
//!
//! - `sluice-bench sink --addr 127.0.0.1:0`: the HTTP sink the sensor's trigger posts to; records
//!   arrivals and event → trigger latency, answers `GET /stats`, prints the stats on SIGTERM;
//! - `sluice-bench hello --addr 127.0.0.1:0`: an axum hello-world server, the accept-rate baseline;
//! - `sluice-bench load --url http://127.0.0.1:P/in --connections 50 --duration 30`: a closed-loop
//!   load generator that stamps each body with its send time and prints a JSON report (`--requests N`
//!   for a fixed burst);
//! - `sluice-bench kube-create --namespace NS --count 1000 --concurrency 32`: Workflows created
//!   straight through the Kubernetes API, the ceiling of `scripts/bench kube`;
//! - `sluice-bench kafka-produce` / `kafka-collect`: the input flood and the output check of
//!   `scripts/bench kafka` (the baseline relay is the `kafka-relay` binary);
//! - `sluice-bench soak-load` / `soak-sink`: the open-loop load and the checking trigger target of
//!   `scripts/soak` (the orchestrator is `bench/soak.py`).
//!
//! Numbers are for comparing runs on one machine; nothing here asserts on timing.

mod hist;
mod kafka;
mod kube_create;
mod load;
mod servers;
mod soak;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "sluice-bench", about = "Helpers of the end-to-end benchmark")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The trigger sink: counts arrivals, records `now − body.t` latencies; `GET /stats`.
    Sink {
        /// Address to listen on (port 0 picks a free port, printed as `{"listening": …}`).
        #[arg(long, default_value = "127.0.0.1:0")]
        addr: SocketAddr,
    },
    /// An axum hello-world server (the baseline).
    Hello {
        /// Address to listen on (port 0 picks a free port, printed as `{"listening": …}`).
        #[arg(long, default_value = "127.0.0.1:0")]
        addr: SocketAddr,
    },
    /// Closed-loop load; prints a JSON report on stdout.
    Load(load::LoadArgs),
    /// Creates Workflows straight through the Kubernetes API (the kube benchmark's ceiling); prints
    /// a JSON report on stdout.
    KubeCreate(kube_create::KubeCreateArgs),
    /// Floods a topic with stamped records; prints a JSON report.
    KafkaProduce(kafka::ProduceArgs),
    /// Reads a topic: exactly-once check and latency; prints a JSON report.
    KafkaCollect(kafka::CollectArgs),
    /// Creates topics with N partitions; prints a JSON report.
    KafkaTopics(kafka::TopicsArgs),
    /// Open-loop webhook + Kafka load for the soak; prints which ids were accepted.
    SoakLoad(soak::SoakLoadArgs),
    /// The soak's trigger target: records every firing with its idempotency key.
    SoakSink {
        /// Address to listen on (port 0 picks a free port, printed as `{"listening": …}`).
        #[arg(long, default_value = "127.0.0.1:0")]
        addr: SocketAddr,
    },
}

/// Microseconds since the Unix epoch (0 if the clock is before it).
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Sink { addr } => {
            let stats = Arc::new(servers::SinkStats::default());
            let router = servers::sink_router(stats.clone());
            servers::serve(addr, router, || println!("{}", stats.to_json())).await
        }
        Command::Hello { addr } => servers::serve(addr, servers::hello_router(), || ()).await,
        Command::Load(args) => {
            let report = tokio::select! {
                r = load::run(&args) => r?,
                () = shutdown_signal() => anyhow::bail!("interrupted"),
            };
            println!("{report}");
            Ok(())
        }
        Command::KafkaProduce(args) => {
            println!("{}", kafka::produce(&args).await?);
            Ok(())
        }
        Command::KafkaTopics(args) => {
            println!("{}", kafka::create_topics(&args).await?);
            Ok(())
        }
        Command::KafkaCollect(args) => {
            let report = tokio::task::spawn_blocking(move || kafka::collect(&args)).await??;
            println!("{report}");
            Ok(())
        }
        Command::SoakLoad(args) => {
            println!("{}", soak::load(&args).await?);
            Ok(())
        }
        Command::SoakSink { addr } => {
            let sink = Arc::new(soak::Sink::default());
            servers::serve(addr, soak::sink_router(sink), || ()).await
        }
        Command::KubeCreate(args) => {
            let report = tokio::select! {
                r = kube_create::run(&args) => r?,
                () = shutdown_signal() => anyhow::bail!("interrupted"),
            };
            println!("{report}");
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(run(cli.command)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sluice-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
