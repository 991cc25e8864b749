//! `sluice`: event-driven automation for Kubernetes that runs Argo Events manifests.

mod bus;
mod bus_jetstream;
mod cluster;
mod controller;
mod manifests;
mod observe;
mod process;
mod run;
mod sensor_test;
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
    /// Run one Sensor (as a pod does): `-f SENSOR.yaml --bus nats://…|EVENTBUS.yaml`; or
    /// `sensor test SENSOR.yaml --event FILE…` for a dry run.
    Sensor(SensorCommand),
    /// Reconcile EventBus, EventSource and Sensor resources into workloads (the operator).
    Controller(controller::ControllerArgs),
    /// Print the CustomResourceDefinitions of EventSource, Sensor and EventBus as YAML.
    Crds,
}

/// `sluice sensor`: run one Sensor (`-f … --bus …`), or the `test` subcommand.
#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
struct SensorCommand {
    #[command(subcommand)]
    command: Option<SensorSubcommand>,
    #[command(flatten)]
    run: cluster::ClusterArgs,
}

#[derive(Subcommand)]
enum SensorSubcommand {
    /// Dry-run a Sensor over event files: filter verdicts, dependencies, conditions and the exact
    /// actions it would take. Nothing is executed.
    Test(sensor_test::TestArgs),
}

/// mimalloc instead of glibc's malloc: per-thread free lists without the arena locks and chunk
/// consolidation that showed up in the end-to-end profile (many small, short-lived allocations per
/// event: headers, JSON values, futures). See bench/README.md for the measured difference.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        Command::Sensor(SensorCommand {
            command: Some(SensorSubcommand::Test(args)),
            ..
        }) => sensor_test::run(&args),
        Command::Sensor(SensorCommand { run, .. }) => cluster::main(cluster::Role::Sensor, run),
        Command::Controller(args) => controller::main(args),
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
