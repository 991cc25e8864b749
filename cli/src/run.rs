//! `sluice run PATH…`: every EventSource and Sensor found, in one process, on the embedded bus unless
//! `--bus` names a NATS JetStream server or an EventBus manifest. Secret references resolve from
//! `<secrets-dir>/<name>/<key>`. Ctrl-C or SIGTERM stops taking new requests, lets in-flight ones finish
//! (each either published and answered, or answered 503), lets sensors settle what they hold, and exits 0.

use std::net::IpAddr;
use std::path::PathBuf;

use crate::bus::{open_bus, BusArg};
use crate::manifests::{self, Manifest};
use crate::process::{self, LogFormat, ProcessArgs};

/// Arguments of `sluice run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Files or directories holding EventSource, Sensor (and EventBus) manifests.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// The bus: `embedded` (in-process, the default), a NATS URL (`nats://host:4222`, JetStream), or an
    /// EventBus manifest file.
    #[arg(long, env = "SLUICE_BUS", default_value = "embedded")]
    pub bus: BusArg,
    /// Address the webhook ports listen on (0.0.0.0 to accept requests from other machines).
    #[arg(long, env = "SLUICE_LISTEN_ADDRESS", default_value = "127.0.0.1")]
    pub listen: IpAddr,
    /// Log format.
    #[arg(long, value_enum, env = "SLUICE_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
    /// Capacity of the embedded bus, in events (publishes beyond it are refused with 503).
    #[arg(long, default_value_t = 100_000)]
    pub bus_capacity: usize,
    #[command(flatten)]
    pub process: ProcessArgs,
}

/// Runs the command; returns the exit code.
pub fn main(args: RunArgs) -> i32 {
    process::init_logging(args.log_format);
    process::block_on(run(args))
}

async fn run(args: RunArgs) -> i32 {
    let docs = match manifests::load(&args.paths) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("sluice run: {e}");
            return 2;
        }
    };
    if !manifests::report(&docs, "sluice run") {
        return 1;
    }
    let mut event_sources = Vec::new();
    let mut sensors = Vec::new();
    for doc in docs {
        match doc.manifest {
            Some(Manifest::EventSource(es)) => event_sources.push(*es),
            Some(Manifest::Sensor(s)) => sensors.push(*s),
            Some(Manifest::EventBus(eb)) => {
                tracing::info!(
                    eventbus = %eb.metadata.name.clone().unwrap_or_default(),
                    "EventBus manifest found; pass it with --bus FILE to use it (default: embedded bus)"
                );
            }
            None => {}
        }
    }
    if event_sources.is_empty() && sensors.is_empty() {
        eprintln!("sluice run: no EventSource or Sensor manifests found");
        return 1;
    }
    let secrets = process::secrets(&args.process);
    let bus = match open_bus(&args.bus, args.bus_capacity, &secrets).await {
        Ok(b) => b,
        Err(error) => {
            tracing::error!(error = %process::error_chain(&error), "failed to open the bus");
            return 1;
        }
    };
    process::serve(event_sources, sensors, bus, args.listen, &args.process, None).await
}
