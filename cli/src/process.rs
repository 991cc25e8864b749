//! One Sluice process: some EventSources and Sensors on one bus, with the shared HTTP server, the
//! observability endpoints and graceful shutdown. `sluice run`, `sluice eventsource` and `sluice sensor`
//! differ only in what they load and which bus they open.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sluice_controller::leader::{self, LeaseConfig};
use sluice_crds::{EventSource, Sensor};
use sluice_eventbus::secrets::{FileSecretResolver, SecretResolver};
use sluice_eventsource::checkpoint::{CheckpointStore, FileCheckpointStore, KvCheckpointStore};
use sluice_eventsource::http::server::{ServerConfig, ServerLimits};
use sluice_eventsource::http::RouteTable;
use sluice_eventsource::metrics::{ServerMetrics, SourceMetrics};
use sluice_eventsource::{BusSender, PullSource, SourceContext};
use sluice_sensor::metrics::SensorMetrics;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::bus::OpenedBus;
use crate::observe::Observability;
use sluice_sensor::eval::{EvalLimits, EvalPool};
use sluice_sensor::state::{KvStateConfig, KvStateFactory};
use sluice_sensor::triggers::http::egress::{Cidr, EgressPolicy, HttpClients};
use sluice_sensor::SensorRunner;

/// Log output format.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (for log collectors).
    Json,
}

/// Settings shared by every process kind.
#[derive(clap::Args, Debug, Clone)]
pub struct ProcessArgs {
    /// Where secret references resolve from: `<DIR>/<name>/<key>`.
    #[arg(long, env = "SLUICE_SECRETS_DIR", default_value = "./secrets")]
    pub secrets_dir: PathBuf,
    /// Where ConfigMap references resolve from: `<DIR>/<name>/<key>`.
    #[arg(long, env = "SLUICE_CONFIGMAPS_DIR", default_value = "./configmaps")]
    pub configmaps_dir: PathBuf,
    /// Address of `/metrics`, `/healthz` and `/readyz` (port 0 picks a free port, logged at start).
    #[arg(long, env = "SLUICE_METRICS_ADDRESS", default_value = "127.0.0.1:7777")]
    pub metrics_address: SocketAddr,
    /// How long shutdown waits for in-flight work before giving up.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// Where sources keep progress across restarts (the calendar's last tick) when the bus is not
    /// JetStream (on JetStream it is a key-value bucket).
    #[arg(long, env = "SLUICE_STATE_DIR", default_value = "./state")]
    pub state_dir: PathBuf,
    /// How long a source waits for the bus to store one event before answering 503.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub publish_timeout: Duration,
    /// The largest event (encoded CloudEvent, bytes) a source may publish; bigger messages are
    /// rejected with an error log naming the source and size, counted in
    /// `sluice_eventsource_events_rejected_total{reason="too_large"}`, and settled upstream so they
    /// are not redelivered forever. Default 1 MiB, NATS's default `max_payload`; set it to the bus's
    /// `max_payload` when that differs.
    #[arg(long, env = "SLUICE_MAX_EVENT_BYTES", default_value_t = sluice_eventsource::sender::DEFAULT_MAX_EVENT_BYTES)]
    pub max_event_bytes: usize,
    /// Trigger requests may not go to these networks (CIDRs, repeatable or comma-separated), on top of
    /// the default denial of link-local and cloud metadata addresses. The most specific rule wins.
    #[arg(long, env = "SLUICE_EGRESS_DENY", value_delimiter = ',')]
    pub egress_deny: Vec<Cidr>,
    /// Trigger requests may go to these networks even inside a denied one (e.g. one link-local
    /// service), CIDRs, repeatable or comma-separated. Command line only: an allow rule opens a
    /// door, and a pod's environment is partly the CR author's (`envFrom`), the command line only
    /// the controller's.
    #[arg(long, value_delimiter = ',')]
    pub egress_allow: Vec<Cidr>,
    /// Base URL of Slack's Web API for `slack` triggers (a Slack-compatible server or a proxy).
    #[arg(long, env = "SLUICE_SLACK_API_URL", default_value = sluice_sensor::triggers::slack::DEFAULT_API_URL)]
    pub slack_api_url: String,
    /// The longest one Lua script or jq program of a Sensor (`filters.script`, `transform.script`,
    /// `transform.jq`) may run on one event before it is stopped; the event then counts as a filter
    /// error. Scripts run off the async runtime, as many at once as the machine has cores.
    #[arg(long, env = "SLUICE_SCRIPT_TIMEOUT", default_value = "1s", value_parser = parse_duration)]
    pub script_timeout: Duration,
    #[command(flatten)]
    pub http: HttpArgs,
}

/// Limits of every HTTP listener of the process (the push-source ports and `/metrics`), against slow
/// and hostile clients. Each listener counts its own connections.
#[derive(clap::Args, Debug, Clone)]
pub struct HttpArgs {
    /// Connections one listener serves at once; past it a new connection is answered 503 (with
    /// `Retry-After`) and closed.
    #[arg(long, env = "SLUICE_HTTP_MAX_CONNECTIONS", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub http_max_connections: u32,
    /// Time a client has to send a complete request head (request line and headers), from the
    /// connection's start or its first byte after an idle wait; then the connection is closed.
    #[arg(long, env = "SLUICE_HTTP_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_positive_duration)]
    pub http_header_timeout: Duration,
    /// Time a kept-alive connection may wait for its next request before it is closed.
    #[arg(long, env = "SLUICE_HTTP_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_positive_duration)]
    pub http_idle_timeout: Duration,
    /// Time a client has to send a request's complete body after its head; a body that stalls is
    /// answered 408 and nothing is published.
    #[arg(long, env = "SLUICE_HTTP_BODY_TIMEOUT", default_value = "30s", value_parser = parse_positive_duration)]
    pub http_body_timeout: Duration,
    /// Largest request head in bytes (request line and headers); larger is answered 431.
    #[arg(long, env = "SLUICE_HTTP_MAX_HEADER_BYTES", default_value_t = 65_536, value_parser = clap::value_parser!(u32).range(1024..=1_048_576))]
    pub http_max_header_bytes: u32,
}

impl HttpArgs {
    /// The server configuration; `metrics` counts the rejections.
    pub fn server_config(&self, metrics: ServerMetrics) -> ServerConfig {
        ServerConfig {
            limits: ServerLimits {
                header_read_timeout: self.http_header_timeout,
                idle_timeout: self.http_idle_timeout,
                body_read_timeout: self.http_body_timeout,
                max_header_bytes: self.http_max_header_bytes as usize,
                max_connections: self.http_max_connections as usize,
            },
            metrics,
        }
    }
}

/// A duration above zero (a zero timeout would close every connection at once).
fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        d if d.is_zero() => Err("must be longer than 0s".into()),
        d => Ok(d),
    }
}

/// Parses a Go duration (`30s`, `1m`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    sluice_crds::duration::parse_go_duration(s).map_err(|e| e.to_string())
}

/// Library log targets that print credentials at debug level, capped at `info` whatever the filter
/// asks (a more specific directive wins in an `EnvFilter`): async-nats's connector logs each
/// server address as a parsed URL, password included.
const LEAKY_TARGETS: &[&str] = &["async_nats::connector=info"];

/// The filter of `directives` (invalid ones: `info`), with [`LEAKY_TARGETS`] capped.
fn log_filter(directives: &str) -> tracing_subscriber::EnvFilter {
    let mut filter = tracing_subscriber::EnvFilter::try_new(directives)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    for cap in LEAKY_TARGETS {
        match cap.parse() {
            Ok(directive) => filter = filter.add_directive(directive),
            Err(e) => eprintln!("sluice: internal log directive {cap:?} is invalid: {e}"),
        }
    }
    filter
}

/// Sets up `tracing`: `SLUICE_LOG` (or `RUST_LOG`) filters, default `info`.
pub fn init_logging(format: LogFormat) {
    let filter = std::env::var("SLUICE_LOG")
        .ok()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| "info".into());
    let filter = log_filter(&filter);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// Runs `future` on a multi-threaded runtime; returns its exit code.
pub fn block_on(future: impl std::future::Future<Output = i32>) -> i32 {
    match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt.block_on(future),
        Err(error) => {
            tracing::error!(%error, "failed to start the async runtime");
            1
        }
    }
}

pub use sluice_eventbus::error_chain;

/// The secret resolver of a process.
pub fn secrets(args: &ProcessArgs) -> Arc<FileSecretResolver> {
    Arc::new(FileSecretResolver::new(&args.secrets_dir).with_config_maps_dir(&args.configmaps_dir))
}

/// Events that only the holder of a Lease may run (`sluice eventsource --leader-elect`): the kinds
/// that must not run twice. Their push routes, if any, are served by every replica.
pub struct Elected {
    /// The events of the EventSource that run only while this replica leads.
    pub event_source: EventSource,
    /// The API client the Lease is held with.
    pub client: kube::Client,
    /// Which Lease, and this replica's identity.
    pub lease: LeaseConfig,
}

/// Runs `event_sources` and `sensors` on `bus` until SIGTERM/Ctrl-C, then drains; returns the exit code.
/// With `elected`, its pull tasks start once this replica holds the Lease; losing it stops them and
/// the process exits with 1 (to restart clean as a candidate, as the controller does).
pub async fn serve(
    event_sources: Vec<EventSource>,
    sensors: Vec<Sensor>,
    opened: OpenedBus,
    listen: IpAddr,
    args: &ProcessArgs,
    elected: Option<Elected>,
) -> i32 {
    let bus = opened.bus.clone();
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let elected_sources: Vec<EventSource> = elected.iter().map(|e| e.event_source.clone()).collect();
    // Set while this replica holds the Lease and runs the run-once sources.
    let leading = Arc::new(AtomicBool::new(false));
    let (mut code, deferred) = start(
        &event_sources,
        (&elected_sources, &leading),
        sensors,
        opened,
        listen,
        args,
        &cancel,
        &tracker,
    )
    .await;
    if code == 0 {
        // Cancelled only when the Lease is lost (or cannot be held): `cancel` fires after the select.
        let work = cancel.child_token();
        if let Some(elected) = elected {
            tracker.spawn(lead(elected, deferred, work.clone(), leading));
        }
        tokio::select! {
            biased;
            () = wait_for_signal() => tracing::info!("shutting down: draining in-flight work"),
            () = work.cancelled() => {
                tracing::error!("no longer the leader: stopping to restart as a candidate");
                code = 1;
            }
        }
    }
    cancel.cancel();
    tracker.close();
    if tokio::time::timeout(args.drain_timeout, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(timeout = ?args.drain_timeout, "shutdown timed out; unfinished work is left unacknowledged and will be redelivered");
    }
    bus.close().await;
    tracing::info!("stopped");
    code
}

/// Waits for the Lease, then runs `tasks` until `work` is cancelled (shutdown, or the Lease lost:
/// the renewal cancels `work` itself).
async fn lead(
    elected: Elected,
    tasks: Vec<Box<dyn PullSource>>,
    work: CancellationToken,
    leading: Arc<AtomicBool>,
) {
    let lease = elected.lease.name.clone();
    let held = match leader::acquire(elected.client, elected.lease, work.clone()).await {
        Ok(Some(held)) => held,
        Ok(None) => return, // Shut down while waiting.
        Err(error) => {
            tracing::error!(lease = %lease, error = %error_chain(&error), "leader election failed");
            work.cancel();
            return;
        }
    };
    tracing::info!(lease = %lease, tasks = tasks.len(), "leading: starting the sources that must not run twice");
    // The guarded tasks on a tracker of their own, so the Lease is released only after they stopped
    // (a standby must not start them while this replica still drains).
    let guarded = TaskTracker::new();
    for task in tasks {
        let token = work.child_token();
        guarded.spawn(async move {
            let what = task.describe();
            if let Err(error) = task.run(token).await {
                tracing::error!(source = %what, error = %error_chain(&error), "event source stopped");
            }
        });
    }
    guarded.close();
    leading.store(true, Ordering::Release);
    work.cancelled().await;
    guarded.wait().await;
    leading.store(false, Ordering::Release);
    // Shutting down (or the Lease was lost, and then this writes nothing): hand the Lease over now
    // instead of letting the standby wait for it to expire.
    held.release().await;
}

/// Starts everything but the pull tasks of `elected` (returned, to run once this replica leads);
/// returns the exit code so far (0: running).
#[allow(clippy::too_many_arguments)] // Reason: one private step of `serve`.
async fn start(
    event_sources: &[EventSource],
    elected: (&[EventSource], &Arc<AtomicBool>),
    sensors: Vec<Sensor>,
    opened: OpenedBus,
    listen: IpAddr,
    args: &ProcessArgs,
    cancel: &CancellationToken,
    tracker: &TaskTracker,
) -> (i32, Vec<Box<dyn PullSource>>) {
    let mut deferred = Vec::new();
    let code = start_inner(
        event_sources,
        elected,
        &mut deferred,
        sensors,
        opened,
        listen,
        args,
        cancel,
        tracker,
    )
    .await;
    (code, deferred)
}

#[allow(clippy::too_many_arguments)] // Reason: one private step of `serve`.
async fn start_inner(
    event_sources: &[EventSource],
    (elected, leading): (&[EventSource], &Arc<AtomicBool>),
    deferred: &mut Vec<Box<dyn PullSource>>,
    sensors: Vec<Sensor>,
    opened: OpenedBus,
    listen: IpAddr,
    args: &ProcessArgs,
    cancel: &CancellationToken,
    tracker: &TaskTracker,
) -> i32 {
    let bus = opened.bus;
    let secrets: Arc<dyn SecretResolver> = secrets(args);
    let observability = Observability::default();
    let connected = bus.clone();
    observability
        .readiness()
        .probe("bus", move || connected.is_connected());
    let source_metrics = observability.register(SourceMetrics::register);
    let sensor_metrics = observability.register(SensorMetrics::register);
    let http = args
        .http
        .server_config(observability.register(ServerMetrics::register));
    if let Err(error) = observability
        .serve(args.metrics_address, &http, cancel.child_token(), tracker)
        .await
    {
        tracing::error!(addr = %args.metrics_address, %error, "failed to serve metrics");
        return 1;
    }

    // Sensors subscribe first, so no event published once the ports listen can pass unseen.
    // Every trigger request goes through the egress guard (SSRF protection, argo-events #4030).
    let http_client = match HttpClients::new(EgressPolicy::with_rules(&args.egress_deny, &args.egress_allow))
    {
        Ok(clients) => clients.with_slack_api_url(&args.slack_api_url),
        Err(error) => {
            tracing::error!(error = %error_chain(&error), "failed to build the HTTP client of triggers");
            return 1;
        }
    };
    // One pool for every sensor of the process: the bound on script threads is per process.
    let eval_pool = EvalPool::new(EvalLimits {
        timeout: args.script_timeout,
    });
    for sensor in sensors {
        let name = sensor.metadata.name.clone().unwrap_or_default();
        let built = match &opened.jetstream {
            // On JetStream, trigger state lives in a key-value bucket so replicas share it and a
            // restarted sensor resumes half-satisfied conditions and claimed firings.
            Some(context) => {
                let config = KvStateConfig {
                    replica: std::env::var("HOSTNAME").ok(),
                    // Why not the default of 1: an R1 bucket on a 3-server bus lives on one server;
                    // losing it (an emptyDir pod) loses every half-satisfied condition and claimed
                    // firing, while the events themselves survive on the other servers.
                    replicas: opened.state_replicas,
                    ..Default::default()
                };
                match KvStateFactory::open(context, &name, config).await {
                    Ok(states) => SensorRunner::with_state_factory(
                        sensor,
                        bus.clone(),
                        secrets.clone(),
                        http_client.clone(),
                        sensor_metrics.clone(),
                        &states,
                    ),
                    Err(error) => {
                        tracing::error!(sensor = %name, error = %error_chain(&error), "failed to open the sensor's state bucket");
                        return 1;
                    }
                }
            }
            None => SensorRunner::new(
                sensor,
                bus.clone(),
                secrets.clone(),
                http_client.clone(),
                sensor_metrics.clone(),
            ),
        };
        let runner = match built {
            Ok(r) => r.with_eval_pool(eval_pool.clone()),
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

    // Why per bus: on JetStream a restarted source may run in another pod, so its progress lives
    // in the bus's key-value store; a single `sluice run` keeps it in files.
    let checkpoints: Arc<dyn CheckpointStore> = match &opened.jetstream {
        Some(context) => Arc::new(KvCheckpointStore::new(context.clone())),
        None => Arc::new(FileCheckpointStore::new(&args.state_dir)),
    };
    let ctx = SourceContext {
        secrets,
        sender: Arc::new(
            BusSender::new(bus.clone(), args.publish_timeout).with_max_event_bytes(args.max_event_bytes),
        ),
        metrics: source_metrics,
        checkpoints: Some(checkpoints),
        readiness: observability.readiness().clone(),
    };
    // Why the run-once sources get readiness of their own: a standby never runs them, so their
    // flags would keep it unready forever; they count only while this replica leads.
    let once_readiness = sluice_eventbus::readiness::Readiness::default();
    if !elected.is_empty() {
        let (leading, once) = (leading.clone(), once_readiness.clone());
        ctx.readiness.probe("run-once sources (while leading)", move || {
            !leading.load(Ordering::Acquire) || once.is_ready()
        });
    }
    let once_ctx = SourceContext {
        readiness: once_readiness,
        ..ctx.clone()
    };
    let mut routes = RouteTable::new();
    let all = event_sources
        .iter()
        .map(|es| (es, false))
        .chain(elected.iter().map(|es| (es, true)));
    for (es, only_when_leading) in all {
        let built = match sluice_eventsource::build(es, if only_when_leading { &once_ctx } else { &ctx }) {
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
        if only_when_leading {
            deferred.extend(built.tasks);
            continue;
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
    // Per EventSource, across its two halves when leader election split it (each build set the
    // gauge to its half's count).
    let mut running: std::collections::BTreeMap<String, i64> = std::collections::BTreeMap::new();
    for es in event_sources.iter().chain(elected) {
        let events = i64::try_from(es.spec.event_names().len()).unwrap_or(i64::MAX);
        *running
            .entry(es.metadata.name.clone().unwrap_or_default())
            .or_default() += events;
    }
    for (name, events) in running {
        ctx.metrics
            .running
            .get_or_create(&sluice_eventsource::metrics::SourceLabels {
                eventsource_name: name,
            })
            .set(events);
    }
    if let Err(error) = routes
        .serve_with(listen, &http, cancel.child_token(), tracker)
        .await
    {
        tracing::error!(error = %error_chain(&error), "failed to start the http server");
        return 1;
    }
    observability.set_ready(true);
    tracing::info!(
        eventsources = event_sources.len() + elected.len(),
        "sluice is running; Ctrl-C or SIGTERM stops it"
    );
    0
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

#[cfg(test)]
mod log_filter_tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::log_filter;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if let Ok(mut v) = self.0.lock() {
                v.extend_from_slice(buf);
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// `SLUICE_LOG=debug` (even `async_nats=trace`) shows our debug lines but not async-nats's
    /// connector's, which print the server URL with its password.
    #[test]
    fn debug_logging_keeps_the_leaky_library_targets_at_info() {
        for directives in ["debug", "trace", "async_nats=trace"] {
            let out = Captured::default();
            let writer = out.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_env_filter(log_filter(directives))
                .with_writer(move || writer.clone())
                .finish();
            tracing::subscriber::with_default(subscriber, || {
                tracing::debug!(target: "async_nats::connector", server = "nats://u:pw-in-url@h", "attempting connection");
                tracing::debug!(target: "async_nats::other", "kept");
            });
            let text =
                String::from_utf8(out.0.lock().map(|v| v.clone()).unwrap_or_default()).expect("utf-8 log");
            assert!(!text.contains("pw-in-url"), "{directives}: {text}");
            assert!(text.contains("kept"), "{directives}: {text}");
        }
    }
}
