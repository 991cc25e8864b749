//! `sluice eventsource -f ES.yaml --bus …` and `sluice sensor -f SENSOR.yaml --bus …`: one custom
//! resource per process, as the controller runs them in pods. Webhook ports listen on 0.0.0.0 and logs
//! are JSON by default, as a pod wants.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use sluice_controller::children::eventsource_lease_name;
use sluice_controller::leader::LeaseConfig;
use sluice_crds::eventsource::EventSourceKind;
use sluice_crds::EventSource;

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
    #[command(flatten)]
    pub election: ElectionArgs,
}

/// Leader election among the replicas of one EventSource (set by the controller in pods).
#[derive(clap::Args, Debug, Clone)]
pub struct ElectionArgs {
    /// Run the events of kinds that must not run twice (calendar, kafka, nats, …) only while holding
    /// a `coordination.k8s.io/v1` Lease; push kinds are served by every replica. Needs the
    /// Kubernetes API (in-cluster config or KUBECONFIG). `sluice eventsource` only.
    #[arg(long)]
    pub leader_elect: bool,
    /// Name of the Lease (default: `<EventSource name>-eventsource`).
    #[arg(long)]
    pub lease_name: Option<String>,
    /// Namespace of the Lease (default: $POD_NAMESPACE, else the EventSource's namespace, else `default`).
    #[arg(long, env = "POD_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// This replica's identity in the Lease (default: $POD_NAME, from the downward API, else
    /// `<hostname>-<pid>`).
    #[arg(long, env = "POD_NAME")]
    pub lease_identity: Option<String>,
    /// How long the Lease stays valid without renewal: a standby takes over this long after the
    /// leader stopped renewing.
    #[arg(long, default_value = "15s", value_parser = crate::process::parse_duration)]
    pub lease_duration: Duration,
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
    if args.election.leader_elect && role != Role::EventSource {
        eprintln!("{command}: --leader-elect is for `sluice eventsource` only (Sensor replicas share their consumers)");
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
    let (mut event_sources, sensors) = match wanted.pop() {
        Some(Manifest::EventSource(es)) => (vec![*es], vec![]),
        Some(Manifest::Sensor(s)) => (vec![], vec![*s]),
        _ => (vec![], vec![]),
    };
    let mut elected = None;
    if args.election.leader_elect {
        if let Some(es) = event_sources.pop() {
            let (shared, once) = match split_run_once(&es) {
                Ok(halves) => halves,
                Err(error) => {
                    tracing::error!(%error, "failed to split the EventSource for leader election");
                    return 1;
                }
            };
            event_sources.push(shared);
            if let Some(once) = once {
                let client = match kube::Client::try_default().await {
                    Ok(c) => c,
                    Err(error) => {
                        tracing::error!(%error, "failed to connect to the Kubernetes API for leader election (in-cluster config or KUBECONFIG)");
                        return 1;
                    }
                };
                let lease = lease_config(&args.election, &once);
                elected = Some(process::Elected {
                    event_source: once,
                    client,
                    lease,
                });
            } else {
                tracing::info!("no event of a kind that must not run twice: every replica runs everything");
            }
        }
    }
    process::serve(event_sources, sensors, bus, args.listen, &args.process, elected).await
}

fn lease_config(args: &ElectionArgs, es: &EventSource) -> LeaseConfig {
    let name = es.metadata.name.clone().unwrap_or_default();
    LeaseConfig {
        namespace: args
            .lease_namespace
            .clone()
            .or_else(|| es.metadata.namespace.clone())
            .unwrap_or_else(|| "default".into()),
        name: args
            .lease_name
            .clone()
            .unwrap_or_else(|| eventsource_lease_name(&name)),
        identity: args.lease_identity.clone().unwrap_or_else(|| {
            let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "sluice".into());
            format!("{host}-{}", std::process::id())
        }),
        duration: args.lease_duration,
    }
}

/// Splits an EventSource into the events every replica runs and those of the kinds that must not
/// run twice ([`EventSourceKind::needs_single_active`])
/// (`None` when it has none), each half keeping the non-event fields (template, service, …).
fn split_run_once(es: &EventSource) -> Result<(EventSource, Option<EventSource>), serde_json::Error> {
    let whole = serde_json::to_value(es)?;
    let mut shared = whole.clone();
    let mut once = whole;
    let mut has_once = false;
    for kind in EventSourceKind::ALL {
        let field = kind.field_name();
        let is_once = kind.needs_single_active();
        if is_once {
            has_once |= once["spec"][field]
                .as_object()
                .is_some_and(|events| !events.is_empty());
        }
        let drop_from = if is_once { &mut shared } else { &mut once };
        if let Some(spec) = drop_from.get_mut("spec").and_then(Value::as_object_mut) {
            spec.remove(field);
        }
    }
    let shared: EventSource = serde_json::from_value(shared)?;
    let once = if has_once {
        Some(serde_json::from_value(once)?)
    } else {
        None
    };
    Ok((shared, once))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_eventsource_splits_into_active_active_and_run_once_halves() {
        let es: EventSource = serde_yaml::from_str(
            "apiVersion: argoproj.io/v1alpha1\nkind: EventSource\nmetadata: {name: mixed, namespace: team}\n\
             spec:\n  replicas: 2\n  webhook:\n    hook: {port: \"12000\", endpoint: /h, method: POST}\n  \
             calendar:\n    tick: {interval: 10s}\n",
        )
        .expect("fixture parses");
        let (shared, once) = split_run_once(&es).expect("splits");
        let once = once.expect("calendar runs once");
        assert!(shared.spec.calendar.is_none());
        assert_eq!(shared.spec.webhook.as_ref().map(|w| w.len()), Some(1));
        assert!(once.spec.webhook.is_none());
        assert_eq!(once.spec.calendar.as_ref().map(|c| c.len()), Some(1));
        assert_eq!(once.spec.replicas, Some(2));
        assert_eq!(once.metadata.name.as_deref(), Some("mixed"));

        let push_only: EventSource = serde_yaml::from_str(
            "apiVersion: argoproj.io/v1alpha1\nkind: EventSource\nmetadata: {name: p}\n\
             spec:\n  webhook:\n    hook: {port: \"12000\", endpoint: /h, method: POST}\n",
        )
        .expect("fixture parses");
        let (shared, once) = split_run_once(&push_only).expect("splits");
        assert!(once.is_none());
        assert_eq!(shared.spec.webhook.as_ref().map(|w| w.len()), Some(1));

        let args = ElectionArgs {
            leader_elect: true,
            lease_name: None,
            lease_namespace: None,
            lease_identity: Some("pod-a".into()),
            lease_duration: Duration::from_secs(15),
        };
        let lease = lease_config(&args, &es);
        assert_eq!(
            (
                lease.namespace.as_str(),
                lease.name.as_str(),
                lease.identity.as_str()
            ),
            ("team", "mixed-eventsource", "pod-a")
        );
    }
}
