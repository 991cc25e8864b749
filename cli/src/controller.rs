//! `sluice controller`: reconciles EventBus, EventSource and Sensor resources (one namespace or all),
//! leader-elected with a Lease, serving `/metrics`, `/healthz` and `/readyz`; SIGTERM stops it cleanly.

use std::net::SocketAddr;
use std::time::Duration;

use sluice_controller::children::{AllowList, NamePattern};
use sluice_controller::leader::LeaseConfig;
use sluice_controller::{BuildConfig, ControllerConfig};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::observe::Observability;
use crate::process::{self, LogFormat};

/// Arguments of `sluice controller`.
#[derive(clap::Args, Debug)]
pub struct ControllerArgs {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, short = 'n', env = "SLUICE_NAMESPACE")]
    pub namespace: Option<String>,
    /// The sluice image EventSource and Sensor pods run.
    #[arg(long, env = "SLUICE_IMAGE", default_value_t = BuildConfig::default().image)]
    pub image: String,
    /// The NATS image repository for `jetstream` EventBuses.
    #[arg(long, env = "SLUICE_NATS_IMAGE", default_value_t = BuildConfig::default().nats_image)]
    pub nats_image: String,
    /// The NATS version when an EventBus names none.
    #[arg(long, env = "SLUICE_NATS_VERSION", default_value_t = BuildConfig::default().nats_version)]
    pub nats_version: String,
    /// Let CR pod templates use hostPath volumes, privileged containers, privilege escalation and added
    /// capabilities (GHSA-hmp7-x699-cvhq).
    #[arg(long, env = "SLUICE_ALLOW_PRIVILEGED")]
    pub allow_privileged: bool,
    /// Egress rules passed to every Sensor pod as `--egress-deny` (CIDRs, repeatable or
    /// comma-separated): trigger requests may not go there, on top of the default denial of
    /// link-local and cloud metadata addresses.
    #[arg(long, value_delimiter = ',')]
    pub egress_deny: Vec<sluice_sensor::triggers::http::egress::Cidr>,
    /// Egress rules passed to every Sensor pod as `--egress-allow` (CIDRs): exceptions inside a
    /// denied network.
    #[arg(long, value_delimiter = ',')]
    pub egress_allow: Vec<sluice_sensor::triggers::http::egress::Cidr>,
    /// ServiceAccounts that EventSource, Sensor and EventBus pod templates may name (repeatable or
    /// comma-separated; a trailing `*` allows a prefix, as in `team-*`). Unset: any. A CR naming
    /// another is not deployed (condition `Deployed=False`, reason `NotAllowed`). A template that
    /// names none runs as the namespace's `default` account, which stays allowed.
    #[arg(long, value_delimiter = ',', value_name = "NAME")]
    pub allowed_service_accounts: Option<Vec<NamePattern>>,
    /// Secrets that EventSource and Sensor pods may read: named anywhere in the spec, in the
    /// template's volumes, env or envFrom, or by the EventBus connection (repeatable or
    /// comma-separated; a trailing `*` allows a prefix). Unset: any. The client credentials the
    /// controller generates for a `jetstream` EventBus are always allowed.
    #[arg(long, value_delimiter = ',', value_name = "NAME")]
    pub allowed_secrets: Option<Vec<NamePattern>>,
    /// Hold a Lease before reconciling (run several controller replicas).
    #[arg(long, env = "SLUICE_LEADER_ELECT")]
    pub leader_elect: bool,
    /// Name of the Lease.
    #[arg(long, default_value = "sluice-controller")]
    pub lease_name: String,
    /// Namespace of the Lease (default: --namespace, else $POD_NAMESPACE, else `default`).
    #[arg(long, env = "SLUICE_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// Address of `/metrics`, `/healthz` and `/readyz`.
    #[arg(long, env = "SLUICE_METRICS_ADDRESS", default_value = "127.0.0.1:7777")]
    pub metrics_address: SocketAddr,
    /// Log format.
    #[arg(long, value_enum, env = "SLUICE_LOG_FORMAT", default_value = "json")]
    pub log_format: LogFormat,
    #[command(flatten)]
    pub http: process::HttpArgs,
}

/// Runs the command; returns the exit code.
pub fn main(args: ControllerArgs) -> i32 {
    process::init_logging(args.log_format);
    process::block_on(run(args))
}

async fn run(args: ControllerArgs) -> i32 {
    let client = match kube::Client::try_default().await {
        Ok(c) => c,
        Err(error) => {
            tracing::error!(%error, "failed to connect to the Kubernetes API (KUBECONFIG or in-cluster config)");
            return 1;
        }
    };
    let identity = std::env::var("POD_NAME")
        .ok()
        .unwrap_or_else(|| format!("sluice-controller-{}", std::process::id()));
    let lease_namespace = args
        .lease_namespace
        .clone()
        .or_else(|| args.namespace.clone())
        .or_else(|| std::env::var("POD_NAMESPACE").ok())
        .unwrap_or_else(|| "default".into());
    let config = ControllerConfig {
        namespace: args.namespace.clone(),
        build: BuildConfig {
            image: args.image,
            nats_image: args.nats_image,
            nats_version: args.nats_version,
            allow_privileged: args.allow_privileged,
            egress_deny: args.egress_deny.iter().map(ToString::to_string).collect(),
            egress_allow: args.egress_allow.iter().map(ToString::to_string).collect(),
            allowed_service_accounts: args.allowed_service_accounts.map(AllowList::from_iter),
            allowed_secrets: args.allowed_secrets.map(AllowList::from_iter),
        },
        leader_election: args.leader_elect.then(|| LeaseConfig {
            namespace: lease_namespace,
            name: args.lease_name.clone(),
            identity,
            duration: Duration::from_secs(15),
        }),
    };
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let observability = Observability::default();
    let metrics = observability.register(sluice_controller::register_metrics);
    let http = args
        .http
        .server_config(observability.register(sluice_eventsource::metrics::ServerMetrics::register));
    if let Err(error) = observability
        .serve(args.metrics_address, &http, cancel.child_token(), &tracker)
        .await
    {
        tracing::error!(addr = %args.metrics_address, %error, "failed to serve metrics");
        return 1;
    }
    observability.set_ready(true);
    let work = cancel.child_token();
    let controllers = tracker.spawn(sluice_controller::run(client, config, metrics, work.clone()));
    let code = tokio::select! {
        biased;
        () = wait_for_signal() => {
            tracing::info!("shutting down");
            0
        }
        // The work token is cancelled when the Lease is lost: exit so the pod restarts as a candidate.
        () = work.cancelled() => 1,
    };
    cancel.cancel();
    tracker.close();
    let result = controllers.await;
    tracker.wait().await;
    match result {
        Ok(Ok(())) => code,
        Ok(Err(error)) => {
            tracing::error!(error = %error, "controller failed");
            1
        }
        Err(error) => {
            tracing::error!(%error, "controller task failed");
            1
        }
    }
}

/// SIGTERM or Ctrl-C.
async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::ControllerArgs;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ControllerArgs,
    }

    fn parse(args: &[&str]) -> Result<ControllerArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("controller").chain(args.iter().copied())).map(|c| c.args)
    }

    #[test]
    fn allow_lists_are_unset_by_default_and_take_repeated_or_comma_separated_names() {
        let unset = parse(&[]).expect("no flags parse");
        assert!(unset.allowed_service_accounts.is_none());
        assert!(unset.allowed_secrets.is_none());
        let set = parse(&[
            "--allowed-secrets",
            "hook-token,team-*",
            "--allowed-secrets=db",
            "--allowed-service-accounts",
            "runner",
        ])
        .expect("lists parse");
        let secrets: Vec<String> = set
            .allowed_secrets
            .expect("secrets set")
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(secrets, ["hook-token", "team-*", "db"]);
        assert_eq!(set.allowed_service_accounts.expect("accounts set").len(), 1);
    }

    #[test]
    fn a_misplaced_wildcard_stops_the_start() {
        let error = parse(&["--allowed-secrets", "a*b"]).expect_err("refused");
        assert!(error.to_string().contains("`*` may only end it"), "{error}");
    }
}
