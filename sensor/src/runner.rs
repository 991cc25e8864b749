//! The sensor runner: one Sensor manifest, running on a bus.
//!
//! Shape (ARCHITECTURE.md, "Trigger state and firing"): every trigger of the sensor is its own state
//! machine with its own durable subscriptions, one per dependency its condition names (durable
//! `<sensor>-<trigger>-<dependency>`, filtered to the dependency's `eventSourceName`/`eventName`), so
//! triggers acknowledge independently. Per trigger one task takes the deliveries of all its
//! dependencies one at a time, in bus order per dependency, through: filters → (multi-dependency
//! triggers: the [`TriggerState`]) → firing with retries → dead-letter trigger → ack. The per-delivery
//! logic is in `pipeline`.
//!
//! [`SensorRunner::new`] checks everything it can without I/O on the bus (conditions, dependencies,
//! trigger kinds, unsupported features, secrets), so `sluice run` refuses a sensor it cannot run
//! faithfully instead of silently ignoring part of it. Then [`SensorRunner::subscribe`] creates the
//! durables (call it before sources start, so no event passes unseen) and [`SensorRunner::run`]
//! processes until cancelled.

mod pipeline;
pub mod reset;
#[cfg(test)]
mod tests;

use crate::metrics::SensorMetrics;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_crds::sensor::conditions::{ConditionError, Expr};
use sluice_crds::sensor::{Sensor, Trigger as TriggerSpec, TriggerParameter};
use sluice_eventbus::{Bus, Deliveries, SubjectFilter, SubscribeError, SubscribeOptions};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::eval::EvalPool;
use crate::filters::DependencyFilter;
use crate::params::unsupported_template_fields;
use crate::retry::{RetryConfigError, RetryPolicy};
use crate::secrets::{SecretError, SecretResolver};
use crate::state::{InMemoryStateFactory, StateError, StateFactory, TriggerScope, TriggerState};
use crate::triggers::http::egress::HttpClients;
use crate::triggers::{BuildContext, BuildError, BuiltTrigger, Trigger as _};
use reset::ResetSchedule;

use pipeline::{Action, DependencyRuntime, RateLimiter, TriggerRuntime};

/// How many at-most-once firings (`atLeastOnce: false`) of one trigger may run at once in the
/// background; the next delivery waits for a slot (backpressure, not an unbounded queue).
pub const AT_MOST_ONCE_CONCURRENCY: usize = 16;
/// The shortest ack wait asked of the bus; longer when a trigger's retries may take longer.
pub const MIN_ACK_WAIT: Duration = Duration::from_secs(30);

/// Why a sensor could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum SensorError {
    /// `metadata.name` is missing.
    #[error("failed to start the sensor: metadata.name is not set")]
    MissingName,
    /// The sensor has no triggers.
    #[error("failed to start sensor `{sensor}`: spec.triggers is empty")]
    NoTriggers {
        /// The sensor's name.
        sensor: String,
    },
    /// Two triggers or two dependencies share a name.
    #[error("failed to start sensor `{sensor}`: {what} `{name}` is defined twice; names must be unique")]
    DuplicateName {
        /// The sensor's name.
        sensor: String,
        /// `trigger` or `dependency`.
        what: &'static str,
        /// The repeated name.
        name: String,
    },
    /// A trigger could not be built.
    #[error("failed to start sensor `{sensor}`")]
    BuildTrigger {
        /// The sensor's name.
        sensor: String,
        /// Why.
        source: Box<BuildError>,
    },
    /// A secret a trigger needs resolved to an empty value.
    #[error("failed to start sensor `{sensor}`: {field} of trigger `{trigger}` names Secret {name:?} key {key:?}, whose value is empty; put the value in the Secret")]
    EmptySecret {
        /// The sensor's name.
        sensor: String,
        /// The trigger's name.
        trigger: String,
        /// The field path(s) naming the Secret, e.g. `spec.triggers[0].template.http.basicAuth.password`.
        field: String,
        /// The Secret's name.
        name: String,
        /// The key inside it.
        key: String,
    },
    /// A trigger's `conditions` did not parse.
    #[error("failed to start sensor `{sensor}`: invalid spec.triggers[].template.conditions of trigger `{trigger}`")]
    ParseConditions {
        /// The sensor's name.
        sensor: String,
        /// The trigger's name.
        trigger: String,
        /// Why.
        source: ConditionError,
    },
    /// A trigger's condition names a dependency the sensor does not define.
    #[error("failed to start sensor `{sensor}`: trigger `{trigger}` waits on dependency `{dependency}`, which is not in spec.dependencies")]
    UnknownDependency {
        /// The sensor's name.
        sensor: String,
        /// The trigger's name.
        trigger: String,
        /// The missing dependency.
        dependency: String,
    },
    /// The sensor uses a feature Sluice does not support yet.
    #[error("failed to start sensor `{sensor}`: {what} is not supported yet")]
    Unsupported {
        /// The sensor's name.
        sensor: String,
        /// What, with its place, e.g. "`transform` of dependency `a`".
        what: String,
    },
    /// A field of a trigger is invalid.
    #[error("failed to start sensor `{sensor}`: trigger `{trigger}`: {reason}")]
    Invalid {
        /// The sensor's name.
        sensor: String,
        /// The trigger's name.
        trigger: String,
        /// What is wrong, with the field path.
        reason: String,
    },
    /// A `retryStrategy` is invalid.
    #[error("failed to start sensor `{sensor}`: invalid retryStrategy of trigger `{trigger}`")]
    RetryStrategy {
        /// The sensor's name.
        sensor: String,
        /// The trigger's name.
        trigger: String,
        /// Why.
        source: RetryConfigError,
    },
    /// A trigger's state could not be made.
    #[error("failed to create the state of trigger `{trigger}` of sensor `{sensor}`")]
    CreateState {
        /// The sensor's name.
        sensor: String,
        /// The trigger's name.
        trigger: String,
        /// Why.
        source: StateError,
    },
    /// A durable subscription could not be made.
    #[error("failed to subscribe sensor `{sensor}` to the bus as `{durable}`")]
    Subscribe {
        /// The sensor's name.
        sensor: String,
        /// The durable name.
        durable: String,
        /// Why.
        source: SubscribeError,
    },
}

/// Counters of one sensor, for tests, `/metrics` and the shutdown summary.
#[derive(Debug, Default)]
pub struct SensorStats {
    pub(crate) filtered_out: AtomicU64,
    pub(crate) fired: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) dead_lettered: AtomicU64,
    pub(crate) replaced: AtomicU64,
}

/// A copy of [`SensorStats`] at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Deliveries that did not pass their dependency's filters.
    pub filtered_out: u64,
    /// Firings whose action succeeded.
    pub fired: u64,
    /// Firings whose action still failed after its retries.
    pub failed: u64,
    /// Failed firings the dead-letter trigger handled successfully.
    pub dead_lettered: u64,
    /// Held events replaced by a newer event of the same dependency before they were used.
    pub replaced: u64,
}

impl SensorStats {
    /// The current values.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            filtered_out: self.filtered_out.load(Ordering::Relaxed),
            fired: self.fired.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
            replaced: self.replaced.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The subscriptions of one trigger: (dependency name, deliveries).
type TriggerSubscriptions = Vec<(String, Deliveries)>;

/// Runs one Sensor.
pub struct SensorRunner {
    name: String,
    bus: Arc<dyn Bus>,
    triggers: Vec<Arc<TriggerRuntime>>,
    subscriptions: Mutex<Option<Vec<TriggerSubscriptions>>>,
    stats: Arc<SensorStats>,
    eval: EvalPool,
}

impl SensorRunner {
    /// Checks and builds `sensor`: conditions, dependencies, trigger kinds and secrets. No bus I/O.
    /// Multi-dependency triggers keep their state in memory ([`InMemoryStateFactory`]).
    pub fn new(
        sensor: Sensor,
        bus: Arc<dyn Bus>,
        secrets: Arc<dyn SecretResolver>,
        http: impl Into<HttpClients>,
        metrics: SensorMetrics,
    ) -> Result<Self, SensorError> {
        Self::with_state_factory(sensor, bus, secrets, http, metrics, &InMemoryStateFactory)
    }

    /// As [`new`](Self::new), with each trigger's state made by `states` (e.g. a
    /// [`KvStateFactory`](crate::state::KvStateFactory) shared by the sensor's replicas).
    pub fn with_state_factory(
        sensor: Sensor,
        bus: Arc<dyn Bus>,
        secrets: Arc<dyn SecretResolver>,
        http: impl Into<HttpClients>,
        metrics: SensorMetrics,
        states: &dyn StateFactory,
    ) -> Result<Self, SensorError> {
        let name = sensor
            .metadata
            .name
            .clone()
            .filter(|n| !n.is_empty())
            .ok_or(SensorError::MissingName)?;
        let spec = &sensor.spec;
        if spec.triggers.is_empty() {
            return Err(SensorError::NoTriggers { sensor: name });
        }
        let mut seen = BTreeSet::new();
        for dep in &spec.dependencies {
            if !seen.insert(dep.name.as_str()) {
                return Err(SensorError::DuplicateName {
                    sensor: name,
                    what: "dependency",
                    name: dep.name.clone(),
                });
            }
        }
        let ctx = BuildContext {
            sensor: name.clone(),
            secrets,
            http: http.into(),
            namespace: sensor.metadata.namespace.clone(),
        };
        let stats = Arc::new(SensorStats::default());
        let mut triggers = Vec::with_capacity(spec.triggers.len());
        let mut trigger_names = BTreeSet::new();
        for (index, trigger) in spec.triggers.iter().enumerate() {
            let runtime = build_trigger(&name, &sensor, trigger, &ctx, &stats, &metrics, states)
                .map_err(|e| name_empty_secret_field(e, &sensor, index))?;
            if !trigger_names.insert(runtime.name.clone()) {
                return Err(SensorError::DuplicateName {
                    sensor: name,
                    what: "trigger",
                    name: runtime.name.clone(),
                });
            }
            triggers.push(Arc::new(runtime));
        }
        Ok(Self {
            name,
            bus,
            triggers,
            subscriptions: Mutex::new(None),
            stats,
            eval: EvalPool::default(),
        })
    }

    /// Runs the sensor's scripts and jq programs on `pool` (under its limits) instead of a pool of
    /// its own with the default limits; share one pool between the sensors of a process.
    pub fn with_eval_pool(mut self, pool: EvalPool) -> Self {
        self.eval = pool;
        self
    }

    /// The sensor's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The sensor's counters (live).
    pub fn stats(&self) -> Arc<SensorStats> {
        self.stats.clone()
    }

    /// Creates (or joins) the durable subscriptions of every trigger. Call before event sources start
    /// so no event published afterwards passes unseen; [`run`](Self::run) calls it when it was not.
    pub async fn subscribe(&self) -> Result<(), SensorError> {
        let mut all = Vec::with_capacity(self.triggers.len());
        for trigger in &self.triggers {
            let mut subs = Vec::with_capacity(trigger.dependencies.len());
            for dep in &trigger.dependencies {
                let durable = format!("{}-{}-{}", self.name, trigger.name, dep.name);
                let filter = SubjectFilter {
                    event_source_name: dep.event_source_name.clone(),
                    event_name: dep.event_name.clone(),
                };
                let options = SubscribeOptions {
                    deliver_all: false,
                    ack_wait: trigger.ack_wait,
                    // Room for every replica's deliveries in flight plus the pull's read-ahead.
                    max_ack_pending: SubscribeOptions::default()
                        .max_ack_pending
                        .max(trigger.concurrency.saturating_mul(4)),
                    ..SubscribeOptions::default()
                };
                let deliveries = self
                    .bus
                    .subscribe(&durable, filter, options)
                    .await
                    .map_err(|source| SensorError::Subscribe {
                        sensor: self.name.clone(),
                        durable: durable.clone(),
                        source,
                    })?;
                subs.push((dep.name.clone(), deliveries));
            }
            all.push(subs);
        }
        // A poisoned lock holds only an Option of streams; it is still usable.
        *self.subscriptions.lock().unwrap_or_else(|p| p.into_inner()) = Some(all);
        Ok(())
    }

    /// Processes deliveries until `cancel` fires or the bus closes. On cancel every trigger stops
    /// taking deliveries, finishes (or naks) the one in flight, and at-most-once firings running in
    /// the background finish their current attempt; then it returns.
    pub async fn run(self, cancel: CancellationToken) -> Result<(), SensorError> {
        let pending = self
            .subscriptions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let subscriptions = match pending {
            Some(subs) => subs,
            None => {
                self.subscribe().await?;
                self.subscriptions
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take()
                    .unwrap_or_default()
            }
        };
        let tracker = TaskTracker::new();
        for (trigger, subs) in self.triggers.iter().zip(subscriptions) {
            let trigger = trigger.clone();
            let token = cancel.child_token();
            let background = tracker.clone();
            let eval = self.eval.clone();
            tracker.spawn(async move { trigger.run(subs, token, background, eval).await });
        }
        info!(sensor = %self.name, triggers = self.triggers.len(), "sensor started");
        tracker.close();
        tracker.wait().await;
        let s = self.stats.snapshot();
        info!(sensor = %self.name, fired = s.fired, failed = s.failed, dead_lettered = s.dead_lettered,
            filtered_out = s.filtered_out, replaced = s.replaced, "sensor stopped");
        Ok(())
    }
}

/// `error` with the field path of an empty secret filled in from the references of trigger `index`
/// of `sensor` (the resolver knows only the Secret's name and key).
fn name_empty_secret_field(error: SensorError, sensor: &Sensor, index: usize) -> SensorError {
    let SensorError::BuildTrigger { sensor: name, source } = error else {
        return error;
    };
    let BuildError::ResolveSecret {
        trigger,
        source: SecretError::EmptySecret { name: secret, key },
    } = source.as_ref()
    else {
        return SensorError::BuildTrigger { sensor: name, source };
    };
    let prefix = format!("triggers[{index}].");
    let paths: Vec<String> = sluice_crds::refs::references(&sensor.spec)
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.kind == sluice_crds::refs::RefKind::Secret && &r.name == secret && &r.key == key)
        .filter(|r| r.path.starts_with(&prefix))
        .map(|r| format!("spec.{}", r.path))
        .collect();
    SensorError::EmptySecret {
        sensor: name,
        trigger: trigger.clone(),
        field: if paths.is_empty() {
            "a field".to_owned()
        } else {
            paths.join(" and ")
        },
        name: secret.clone(),
        key: key.clone(),
    }
}

fn check_parameter_list(
    sensor: &str,
    trigger: &str,
    path: &str,
    params: &[TriggerParameter],
) -> Result<(), SensorError> {
    for (i, param) in params.iter().enumerate() {
        if let Some(field) = param
            .src
            .as_ref()
            .and_then(|s| unsupported_template_fields(s).first().copied())
        {
            return Err(SensorError::Unsupported {
                sensor: sensor.to_owned(),
                what: format!("`{field}` (Go templates) in {path}[{i}].src of trigger `{trigger}`"),
            });
        }
    }
    Ok(())
}

/// Refuses parameters that use Go templates, in every parameter list of the trigger.
fn check_parameter_templates(sensor: &str, trigger: &str, spec: &TriggerSpec) -> Result<(), SensorError> {
    check_parameter_list(sensor, trigger, "parameters", &spec.parameters)?;
    if let Some(action) = spec.template.as_ref().and_then(|t| t.action()) {
        let field = action.field_name();
        check_parameter_list(
            sensor,
            trigger,
            &format!("template.{field}.parameters"),
            action.parameters(),
        )?;
        for (list, params) in action.extra_parameter_lists() {
            check_parameter_list(sensor, trigger, &format!("template.{field}.{list}"), params)?;
        }
    }
    Ok(())
}

/// Builds one action (the trigger itself or its dead-letter trigger).
fn build_action(sensor: &str, spec: &TriggerSpec, ctx: &BuildContext) -> Result<Action, SensorError> {
    let built = BuiltTrigger::build(spec, ctx).map_err(|source| SensorError::BuildTrigger {
        sensor: sensor.to_owned(),
        source: Box::new(source),
    })?;
    let name = spec.template.as_ref().map(|t| t.name.clone()).unwrap_or_default();
    check_parameter_templates(sensor, &name, spec)?;
    let retry = RetryPolicy::from_backoff(spec.retry_strategy.as_ref()).map_err(|source| {
        SensorError::RetryStrategy {
            sensor: sensor.to_owned(),
            trigger: name.clone(),
            source,
        }
    })?;
    Ok(Action {
        labels: SensorMetrics::labels(sensor, &name),
        name,
        spec: spec.clone(),
        built,
        retry,
    })
}

/// The longest a firing of `action` can take: every attempt taking as long as its kind allows
/// ([`attempt_timeout`](crate::triggers::Trigger::attempt_timeout), which every kind states) plus
/// every wait at full jitter.
fn worst_case(action: &Action) -> Duration {
    let timeout = action.built.attempt_timeout();
    let attempts = action.retry.attempts.min(1000);
    let waits: Duration = (1..attempts).map(|k| action.retry.delay(k, 1.0)).sum();
    timeout.saturating_mul(attempts).saturating_add(waits)
}

fn build_trigger(
    sensor_name: &str,
    sensor: &Sensor,
    spec: &TriggerSpec,
    ctx: &BuildContext,
    stats: &Arc<SensorStats>,
    metrics: &SensorMetrics,
    states: &dyn StateFactory,
) -> Result<TriggerRuntime, SensorError> {
    let template = spec.template.as_ref().ok_or(SensorError::BuildTrigger {
        sensor: sensor_name.to_owned(),
        source: Box::new(BuildError::MissingTemplate),
    })?;
    let name = template.name.clone();
    let main = build_action(sensor_name, spec, ctx)?;
    let resets = ResetSchedule::from_spec(&template.conditions_reset).map_err(|e| SensorError::Invalid {
        sensor: sensor_name.to_owned(),
        trigger: name.clone(),
        reason: e.to_string(),
    })?;
    let all_deps = sensor.spec.dependencies.iter().map(|d| d.name.clone());
    let condition = Expr::for_trigger(template.conditions.as_deref(), all_deps).map_err(|source| {
        SensorError::ParseConditions {
            sensor: sensor_name.to_owned(),
            trigger: name.clone(),
            source,
        }
    })?;
    let mut dependencies = Vec::new();
    for dep_name in condition.deps() {
        let dep = sensor
            .spec
            .dependency(dep_name)
            .ok_or_else(|| SensorError::UnknownDependency {
                sensor: sensor_name.to_owned(),
                trigger: name.clone(),
                dependency: dep_name.to_owned(),
            })?;
        let filter = Arc::new(DependencyFilter::new(dep));
        for problem in filter.static_problems() {
            warn!(sensor = %sensor_name, dependency = %dep_name, error = %problem, "dependency filter will not pass");
        }
        dependencies.push(DependencyRuntime {
            name: dep.name.clone(),
            event_source_name: dep.event_source_name.clone(),
            event_name: dep.event_name.clone(),
            filter,
            filter_results: ["passed", "filtered", "error"].map(|result| {
                metrics
                    .filter_results
                    .get_or_create(&crate::metrics::FilterLabels {
                        sensor: sensor_name.to_owned(),
                        dependency: dep.name.clone(),
                        result,
                    })
                    .clone()
            }),
        });
    }
    let dlq = match &spec.dlq_trigger {
        Some(dlq) if spec.is_at_least_once() => Some(build_action(sensor_name, dlq, ctx)?),
        Some(_) => {
            warn!(sensor = %sensor_name, trigger = %name,
                "dlqTrigger is ignored: it is only used with atLeastOnce: true (as upstream)");
            None
        }
        None => None,
    };
    // Upstream keeps state (and ANDs events) only when the condition has an `&&`; otherwise every
    // event that passes its filters fires on its own (see `Expr::has_and`).
    let stateful = condition.has_and();
    let worst = worst_case(&main).saturating_add(dlq.as_ref().map(worst_case).unwrap_or_default());
    // The claim lease of the trigger state covers the worst case of one firing (all attempts), so a
    // live replica's claim is never taken over. The bus's ack wait stays short: while an action runs
    // the runner sends in-progress heartbeats, so a crashed sensor's events come back within
    // MIN_ACK_WAIT instead of after the worst case.
    let lease = worst.saturating_add(Duration::from_secs(10)).max(MIN_ACK_WAIT);
    let ack_wait = MIN_ACK_WAIT;
    let dep_names: Vec<&str> = dependencies.iter().map(|d| d.name.as_str()).collect();
    info!(sensor = %sensor_name, trigger = %name, kind = main.built_kind(), condition = %condition,
        dependencies = %dep_names.join(", "), at_least_once = spec.is_at_least_once(),
        "trigger waits on dependencies");
    let state: Arc<dyn TriggerState> = states
        .create(&TriggerScope::new(sensor_name, &name, lease))
        .map_err(|source| SensorError::CreateState {
            sensor: sensor_name.to_owned(),
            trigger: name.clone(),
            source,
        })?;
    let labels = SensorMetrics::labels(sensor_name, &name);
    Ok(TriggerRuntime {
        sensor: sensor_name.to_owned(),
        name,
        condition,
        stateful,
        dependencies,
        main,
        dlq,
        at_least_once: spec.is_at_least_once(),
        state,
        limiter: RateLimiter::from_spec(spec.rate_limit.as_ref()),
        ack_wait,
        concurrency: usize::try_from(spec.concurrency()).unwrap_or(1),
        resets,
        background: Arc::new(tokio::sync::Semaphore::new(AT_MOST_ONCE_CONCURRENCY)),
        stats: stats.clone(),
        metrics: metrics.clone(),
        labels,
    })
}
