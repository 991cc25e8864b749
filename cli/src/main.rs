//! `sluice`: event-driven automation for Kubernetes that runs Argo Events manifests.

mod bus;
mod bus_jetstream;
mod cluster;
mod controller;
mod manifests;
mod observe;
mod process;
mod run;
mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "Event-driven automation that runs Argo Events manifests"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every EventSource and Sensor found under PATH… in one process, on the embedded bus.
    Run(run::RunArgs),
    /// Check manifests offline: parse errors, unknown fields, semantic rules.
    Validate {
        /// Files or directories (walked for .yaml, .yml, .json).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Output format.
        #[arg(long, short, value_enum, default_value = "text")]
        output: validate::Output,
    },
    /// Run one EventSource (as a pod does): `-f ES.yaml --bus nats://…|EVENTBUS.yaml`.
    Eventsource(cluster::ClusterArgs),
    /// Run one Sensor (as a pod does): `-f SENSOR.yaml --bus nats://…|EVENTBUS.yaml`.
    Sensor(cluster::ClusterArgs),
    /// Reconcile EventBus, EventSource and Sensor resources into workloads (the operator).
    Controller(controller::ControllerArgs),
    /// Print the CustomResourceDefinitions of EventSource, Sensor and EventBus as YAML.
    Crds,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Validate { paths, output } => validate::run(&paths, output),
        Command::Crds => match sluice_crds::crd_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                0
            }
            Err(e) => {
                eprintln!("sluice crds: failed to render the CRDs: {e}");
                1
            }
        },
        Command::Run(args) => run::main(args),
        Command::Eventsource(args) => cluster::main(cluster::Role::EventSource, args),
        Command::Sensor(args) => cluster::main(cluster::Role::Sensor, args),
        Command::Controller(args) => controller::main(args),
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
