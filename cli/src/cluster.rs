//! `sluice eventsource -f ES.yaml --bus …` and `sluice sensor -f SENSOR.yaml --bus …`: one custom
//! resource per process, as the controller runs them in pods. Webhook ports listen on 0.0.0.0 and logs
//! are JSON by default, as a pod wants.

use std::net::IpAddr;
use std::path::PathBuf;

use crate::bus::{open_bus, BusArg};
use crate::manifests::{self, Manifest};
use crate::process::{self, LogFormat, ProcessArgs};

/// Arguments of `sluice eventsource` and `sluice sensor`.
#[derive(clap::Args, Debug)]
pub struct ClusterArgs {
    /// The manifest file holding the one custom resource to run.
    /// (Required; an `Option` only so `sluice sensor test …` parses without it.)
    #[arg(long = "file", short = 'f', required = true)]
    pub file: Option<PathBuf>,
    /// The bus: a NATS URL (`nats://host:4222`, JetStream), an EventBus manifest file, or `embedded`
    /// (only useful for tests: nothing else shares an in-process bus).
    #[arg(long, env = "SLUICE_BUS", required = true)]
    pub bus: Option<BusArg>,
    /// Address the webhook ports listen on.
    #[arg(long, env = "SLUICE_LISTEN_ADDRESS", default_value = "0.0.0.0")]
    pub listen: IpAddr,
    /// Log format.
    #[arg(long, value_enum, env = "SLUICE_LOG_FORMAT", default_value = "json")]
    pub log_format: LogFormat,
    #[command(flatten)]
    pub process: ProcessArgs,
}

/// Which kind a cluster-mode process runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// `sluice eventsource`.
    EventSource,
    /// `sluice sensor`.
    Sensor,
}

impl Role {
    fn kind(self) -> &'static str {
        match self {
            Role::EventSource => "EventSource",
            Role::Sensor => "Sensor",
        }
    }
}

/// Runs the command; returns the exit code.
pub fn main(role: Role, args: ClusterArgs) -> i32 {
    process::init_logging(args.log_format);
    process::block_on(run(role, args))
}

async fn run(role: Role, args: ClusterArgs) -> i32 {
    let command = match role {
        Role::EventSource => "sluice eventsource",
        Role::Sensor => "sluice sensor",
    };
    // clap requires both (unless a subcommand such as `sensor test` was given instead).
    let (Some(file), Some(bus_arg)) = (args.file.clone(), args.bus.clone()) else {
        eprintln!("{command}: give -f FILE and --bus nats://…|EVENTBUS.yaml");
        return 2;
    };
    let docs = match manifests::load(std::slice::from_ref(&file)) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("{command}: {e}");
            return 2;
        }
    };
    if !manifests::report(&docs, command) {
        return 1;
    }
    let mut wanted: Vec<Manifest> = docs
        .into_iter()
        .filter_map(|d| d.manifest)
        .filter(|m| manifests::kind_of(m) == role.kind())
        .collect();
    if wanted.len() != 1 {
        eprintln!(
            "{command}: {} must hold exactly one {}, found {}",
            file.display(),
            role.kind(),
            wanted.len()
        );
        return 2;
    }
    let secrets = process::secrets(&args.process);
    let bus = match open_bus(&bus_arg, 100_000, &secrets).await {
        Ok(b) => b,
        Err(error) => {
            tracing::error!(error = %process::error_chain(&error), "failed to open the bus");
            return 1;
        }
    };
    let (event_sources, sensors) = match wanted.pop() {
        Some(Manifest::EventSource(es)) => (vec![*es], vec![]),
        Some(Manifest::Sensor(s)) => (vec![], vec![*s]),
        _ => (vec![], vec![]),
    };
    process::serve(event_sources, sensors, bus, args.listen, &args.process).await
}
