//! `sluice run PATH…`: every EventSource and Sensor found, in one process, on the embedded bus.
//! Secret references resolve from `<secrets-dir>/<name>/<key>`. Ctrl-C or SIGTERM stops taking new
//! requests, lets in-flight ones finish (each either published and answered, or answered 503), lets
//! sensors settle what they hold, and exits 0.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sluice_eventbus::embedded::{EmbeddedBus, EmbeddedConfig};
use sluice_eventbus::secrets::SecretResolver;
use sluice_eventbus::Bus;
use sluice_eventsource::http::RouteTable;
use sluice_eventsource::{BusSender, FileSecretResolver, SourceContext};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::manifests::{self, Manifest};
use crate::observe::Observability;
use sluice_eventsource::metrics::SourceMetrics;

/// Log output format.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (for log collectors).
    Json,
}

/// Arguments of `sluice run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Files or directories holding EventSource, Sensor (and EventBus) manifests.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Where secret references resolve from: `<DIR>/<name>/<key>`.
    #[arg(long, env = "SLUICE_SECRETS_DIR", default_value = "./secrets")]
    pub secrets_dir: PathBuf,
    /// Address the webhook ports listen on (0.0.0.0 to accept requests from other machines).
    #[arg(long, env = "SLUICE_LISTEN_ADDRESS", default_value = "127.0.0.1")]
    pub listen: IpAddr,
    /// Log format.
    #[arg(long, value_enum, env = "SLUICE_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
    /// How long shutdown waits for in-flight work before giving up.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// Address of `/metrics`, `/healthz` and `/readyz` (port 0 picks a free port).
    #[arg(long, env = "SLUICE_METRICS_ADDRESS", default_value = "127.0.0.1:7777")]
    pub metrics_address: std::net::SocketAddr,
    /// Capacity of the embedded bus, in events (publishes beyond it are refused with 503).
    #[arg(long, default_value_t = 100_000)]
    pub bus_capacity: usize,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    sluice_crds::duration::parse_go_duration(s).map_err(|e| e.to_string())
}

/// Sets up `tracing`: `SLUICE_LOG` (or `RUST_LOG`) filters, default `info`.
pub fn init_logging(format: LogFormat) {
    let filter = std::env::var("SLUICE_LOG")
        .ok()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| "info".into());
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// Runs the command; returns the exit code.
pub fn main(args: RunArgs) -> i32 {
    init_logging(args.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(error) => {
            tracing::error!(%error, "failed to start the async runtime");
            return 1;
        }
    };
    runtime.block_on(run(args))
}

async fn run(args: RunArgs) -> i32 {
    let docs = match manifests::load(&args.paths) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("sluice run: {e}");
            return 2;
        }
    };
    let mut failed = false;
    for doc in &docs {
        for p in &doc.problems {
            eprintln!("{}", crate::validate::format_line(doc, p));
        }
        failed |= doc.has_errors();
    }
    if failed {
        eprintln!(
            "sluice run: fix the errors above (`sluice validate` checks manifests without running them)"
        );
        return 1;
    }
    let mut event_sources = Vec::new();
    let mut sensors = Vec::new();
    for doc in docs {
        match doc.manifest {
            Some(Manifest::EventSource(es)) => event_sources.push(*es),
            Some(Manifest::Sensor(s)) => sensors.push(*s),
            Some(Manifest::EventBus(eb)) => {
                tracing::warn!(
                    eventbus = %eb.metadata.name.clone().unwrap_or_default(),
                    "EventBus manifest noted but not used: `sluice run` uses the embedded bus"
                );
            }
            None => {}
        }
    }
    if event_sources.is_empty() && sensors.is_empty() {
        eprintln!("sluice run: no EventSource or Sensor manifests found");
        return 1;
    }

    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let bus: Arc<dyn Bus> = Arc::new(EmbeddedBus::new(EmbeddedConfig {
        capacity: args.bus_capacity,
        ..Default::default()
    }));
    let secrets: Arc<dyn SecretResolver> = Arc::new(FileSecretResolver::new(&args.secrets_dir));
    let observability = Observability::default();
    let source_metrics = observability.register(SourceMetrics::register);
    let sensor_metrics = observability.register(sluice_sensor::metrics::SensorMetrics::register);
    if let Err(error) = observability
        .serve(args.metrics_address, cancel.child_token(), &tracker)
        .await
    {
        tracing::error!(addr = %args.metrics_address, %error, "failed to serve metrics");
        return 1;
    }

    // Sensors subscribe first, so no event published once the ports listen can pass unseen.
    let http_client = reqwest::Client::new();
    for sensor in sensors {
        let name = sensor.metadata.name.clone().unwrap_or_default();
        let runner = match sluice_sensor::SensorRunner::new(
            sensor,
            bus.clone(),
            secrets.clone(),
            http_client.clone(),
            sensor_metrics.clone(),
        ) {
            Ok(r) => r,
            Err(error) => {
                tracing::error!(sensor = %name, error = %error_chain(&error), "failed to start sensor");
                return 1;
            }
        };
        if let Err(error) = runner.subscribe().await {
            tracing::error!(sensor = %name, error = %error_chain(&error), "failed to subscribe sensor");
            return 1;
        }
        let token = cancel.child_token();
        tracker.spawn(async move {
            if let Err(error) = runner.run(token).await {
                tracing::error!(sensor = %name, error = %error_chain(&error), "sensor stopped");
            }
        });
    }

    let ctx = SourceContext {
        secrets: secrets.clone(),
        sender: Arc::new(BusSender::new(bus.clone(), Duration::from_secs(10))),
        metrics: source_metrics,
    };
    let mut routes = RouteTable::new();
    for es in &event_sources {
        let built = match sluice_eventsource::build(es, &ctx) {
            Ok(b) => b,
            Err(error) => {
                tracing::error!(error = %error_chain(&error), "failed to start event source");
                return 1;
            }
        };
        for route in built.routes {
            if let Err(error) = routes.add(route) {
                tracing::error!(error = %error_chain(&error), "failed to start event source");
                return 1;
            }
        }
        for task in built.tasks {
            let token = cancel.child_token();
            tracker.spawn(async move {
                let what = task.describe();
                if let Err(error) = task.run(token).await {
                    tracing::error!(source = %what, error = %error_chain(&error), "event source stopped");
                }
            });
        }
    }
    if let Err(error) = routes.serve(args.listen, cancel.child_token(), &tracker).await {
        tracing::error!(error = %error_chain(&error), "failed to start the http server");
        cancel.cancel();
        return 1;
    }
    observability.set_ready(true);
    tracing::info!(
        eventsources = event_sources.len(),
        "sluice is running; Ctrl-C or SIGTERM stops it"
    );

    wait_for_signal().await;
    tracing::info!("shutting down: draining in-flight work");
    observability.set_ready(false);
    cancel.cancel();
    tracker.close();
    if tokio::time::timeout(args.drain_timeout, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(timeout = ?args.drain_timeout, "shutdown timed out; unfinished work is left unacknowledged");
    }
    bus.close().await;
    tracing::info!("stopped");
    0
}

/// The error and its sources, joined: "failed to X: failed to Y: reason".
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(src) = cur {
        s.push_str(": ");
        s.push_str(&src.to_string());
        cur = src.source();
    }
    s
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
