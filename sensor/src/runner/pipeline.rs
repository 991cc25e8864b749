//! What happens to one delivery of one trigger, and to one firing.
//!
//! Delivery: filters → filtered out: ack. Single-dependency trigger (no `&&` in its condition):
//! fire with this event alone. Multi-dependency trigger: hold the event in the [`TriggerState`]
//! (replacing, and reporting, an older unused event of the same dependency), ack it, and when the
//! condition holds claim all held events as one firing.
//!
//! Firing: attempts per `retryStrategy` (only retryable errors are retried), then — with
//! `atLeastOnce: true` — the `dlqTrigger` with the same firing id, then an error log if that fails
//! too. With `atLeastOnce: true` the delivery that caused the firing is acked only after all that;
//! with `false` it is acked first and the firing runs in the background (bounded).

use crate::metrics::{SensorMetrics, TriggerLabels};
use prometheus_client::metrics::counter::Counter;
use sluice_eventbus::error_chain;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use sluice_crds::sensor::conditions::Expr;
use sluice_crds::sensor::{RateLimit, Trigger as TriggerSpec};
use sluice_eventbus::{Deliveries, Delivery};
use tokio::sync::{Mutex as AsyncMutex, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

use super::SensorStats;
use crate::eval::EvalPool;
use crate::filters::DependencyFilter;
use crate::firing::{Firing, FiringId};
use crate::params::{apply_template_parameters, EventsByDependency};
use crate::retry::{random_unit, RetryPolicy};
use crate::state::{Claim, TriggerState};
use crate::triggers::{BuiltTrigger, Outcome, Trigger, TriggerError};

/// How long a delivery waits before redelivery when the trigger state could not be reached.
const STATE_RETRY_DELAY: Duration = Duration::from_secs(1);

/// One dependency a trigger waits on.
pub(super) struct DependencyRuntime {
    pub(super) name: String,
    pub(super) event_source_name: String,
    pub(super) event_name: String,
    /// Shared with the blocking thread a script evaluation runs on.
    pub(super) filter: Arc<DependencyFilter>,
    /// `sluice_sensor_filter_results_total` counters of this dependency (passed, filtered, error),
    /// looked up once at build so the per-event path neither allocates labels nor hashes them.
    pub(super) filter_results: [Counter; 3],
}

/// A trigger's action (or its dead-letter trigger's), built.
pub(super) struct Action {
    pub(super) name: String,
    pub(super) spec: TriggerSpec,
    pub(super) built: BuiltTrigger,
    pub(super) retry: RetryPolicy,
    /// Metric labels of this action, built once (not per attempt).
    pub(super) labels: TriggerLabels,
}

impl Action {
    pub(super) fn built_kind(&self) -> &'static str {
        self.built.kind()
    }
}

/// Upstream's `rateLimit`: firings evenly spaced at `unit / requestsPerUnit`.
pub(super) struct RateLimiter {
    spacing: Duration,
    next: AsyncMutex<Option<Instant>>,
}

impl RateLimiter {
    pub(super) fn from_spec(spec: Option<&RateLimit>) -> Option<Self> {
        let spec = spec?;
        let per_unit = spec.requests_per_unit.filter(|n| *n > 0)?;
        let unit = match spec.unit.as_deref() {
            Some("Minute") => Duration::from_secs(60),
            Some("Hour") => Duration::from_secs(3600),
            _ => Duration::from_secs(1),
        };
        Some(Self {
            spacing: unit / per_unit as u32,
            next: AsyncMutex::new(None),
        })
    }

    /// Waits for this attempt's turn.
    async fn wait_turn(&self) {
        let at = {
            let mut next = self.next.lock().await;
            let now = Instant::now();
            let at = next.map_or(now, |n| n.max(now));
            *next = Some(at + self.spacing);
            at
        };
        tokio::time::sleep_until(at).await;
    }
}

/// Everything one trigger needs at run time.
pub(super) struct TriggerRuntime {
    pub(super) sensor: String,
    pub(super) name: String,
    pub(super) condition: Expr,
    pub(super) stateful: bool,
    pub(super) dependencies: Vec<DependencyRuntime>,
    pub(super) main: Action,
    pub(super) dlq: Option<Action>,
    pub(super) at_least_once: bool,
    pub(super) state: Arc<dyn TriggerState>,
    pub(super) limiter: Option<RateLimiter>,
    pub(super) ack_wait: Duration,
    /// Deliveries handled at once (`concurrency`, default 1: one after another, in bus order).
    pub(super) concurrency: usize,
    /// `conditionsReset.byTime` ticks, if any.
    pub(super) resets: Option<super::reset::ResetSchedule>,
    pub(super) background: Arc<Semaphore>,
    pub(super) stats: Arc<SensorStats>,
    pub(super) metrics: SensorMetrics,
    pub(super) labels: TriggerLabels,
}

/// How a firing ended.
enum FiringEnd {
    /// The action, or the dead-letter trigger after it, succeeded; or both failed and it was
    /// reported. Either way the firing is over and its events are done.
    Finished,
    /// Shutdown came between attempts; the firing did not finish.
    Interrupted,
}

/// Why attempts stopped without success.
enum AttemptsEnd {
    Failed(TriggerError),
    Interrupted,
}

/// Settles a delivery, logging (never failing on) a bus error: an unsettled delivery is redelivered
/// after its ack wait, which the trigger handles idempotently (same firing id).
async fn settle(delivery: Delivery, ack: bool, sensor: &str, trigger: &str) {
    let event = delivery.event.id().to_owned();
    let result = if ack {
        delivery.ack().await
    } else {
        delivery.nak(Duration::ZERO).await
    };
    if let Err(error) = result {
        warn!(sensor = %sensor, trigger = %trigger, event = %event, error = %error, ack,
            "failed to settle a delivery; the bus will redeliver it");
    }
}

impl TriggerRuntime {
    /// Runs firings left in flight by an owner that is gone (none for the in-memory state), then
    /// takes deliveries until cancelled or the bus closes, looking for such firings again every ack
    /// wait (a replica may die while this one runs).
    ///
    /// With `concurrency` 1 each delivery is handled to the end before the next is taken, so the
    /// events of a dependency fire in bus order. Above 1, up to that many deliveries are handled at
    /// once (each settles its own delivery); the stream is read ahead only as far as permits allow,
    /// so what is pulled and not yet handled stays bounded.
    pub(super) async fn run(
        self: Arc<Self>,
        subscriptions: Vec<(String, Deliveries)>,
        cancel: CancellationToken,
        background: TaskTracker,
        eval: EvalPool,
    ) {
        self.take_over(&cancel).await;
        let mut sweep = tokio::time::interval_at(Instant::now() + self.ack_wait, self.ack_wait);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut merged = futures::stream::select_all(
            subscriptions
                .into_iter()
                .map(|(dep, stream)| stream.map(move |d| (dep.clone(), d)).boxed()),
        );
        let permits = Arc::new(Semaphore::new(self.concurrency.max(1)));
        let in_flight = TaskTracker::new();
        let resets_stop = cancel.child_token();
        if let Some(schedule) = self.resets.clone() {
            let runtime = self.clone();
            let stop = resets_stop.clone();
            in_flight.spawn(async move { runtime.reset_loop(schedule, stop).await });
        }
        loop {
            // A permit before the next delivery: with all permits out, nothing more is pulled from
            // the stream (it stays on the bus, or in the bounded prefetch of the pull).
            let permit = tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                permit = permits.clone().acquire_owned() => permit,
            };
            let Ok(permit) = permit else { break };
            let next = tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                _ = sweep.tick(), if self.stateful => {
                    self.take_over(&cancel).await;
                    continue;
                }
                next = merged.next() => next,
            };
            let Some((dependency, delivery)) = next else {
                debug!(sensor = %self.sensor, trigger = %self.name, "subscriptions ended (bus closed)");
                break;
            };
            if self.concurrency <= 1 {
                self.handle(&dependency, delivery, &cancel, &background, &eval)
                    .await;
                drop(permit);
                continue;
            }
            let runtime = self.clone();
            let (cancel, background, eval) = (cancel.clone(), background.clone(), eval.clone());
            in_flight.spawn(async move {
                let _permit = permit;
                runtime
                    .handle(&dependency, delivery, &cancel, &background, &eval)
                    .await;
            });
        }
        resets_stop.cancel();
        // Why wait: each delivery in flight settles itself (ack after its firing, or nak when the
        // shutdown interrupted it); returning earlier could end the process before it did.
        in_flight.close();
        in_flight.wait().await;
    }

    /// Drops the held events at every `conditionsReset` tick until `stop`. Time is read as the wall
    /// clock at start plus the runtime's monotonic time since, so a tick is neither skipped nor
    /// repeated when the wall clock is stepped (and tests can drive it with paused time).
    async fn reset_loop(&self, schedule: super::reset::ResetSchedule, stop: CancellationToken) {
        let (wall, started) = (chrono::Utc::now(), Instant::now());
        let now = || wall + chrono::Duration::from_std(started.elapsed()).unwrap_or_default();
        let mut after = now();
        while let Some(tick) = schedule.next_after(after) {
            let wait = (tick - now()).to_std().unwrap_or_default();
            tokio::select! {
                biased;
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            after = tick;
            let tick_ms = u64::try_from(tick.timestamp_millis()).unwrap_or_default();
            match self.state.reset(tick_ms).await {
                Ok(dropped) => info!(sensor = %self.sensor, trigger = %self.name, tick = %tick, dropped,
                    "conditionsReset: held events dropped"),
                // Why only a warning: the held events stay; the next tick tries again. An event held
                // too long can complete a condition it should not have — logged here.
                Err(error) => {
                    warn!(sensor = %self.sensor, trigger = %self.name, tick = %tick, error = %error,
                    "conditionsReset failed; the held events stay until the next tick")
                }
            }
        }
    }

    /// Runs the firings the state hands over from an owner that is gone, with their own ids.
    async fn take_over(&self, cancel: &CancellationToken) {
        let claims = match self.state.take_over().await {
            Ok(claims) => claims,
            Err(error) => {
                // Why only a warning: the claims stay in the state and are looked for again at
                // the next sweep.
                warn!(sensor = %self.sensor, trigger = %self.name, error = %error, "failed to read firings left in flight");
                return;
            }
        };
        for claim in claims {
            if !self.at_least_once {
                // Why not run it: `atLeastOnce: false` promises at most once; the earlier owner
                // may have executed it before it stopped.
                warn!(sensor = %self.sensor, trigger = %self.name, firing = %claim.id,
                    "a firing left in flight is not run again (atLeastOnce: false)");
                self.finish_claim(&claim.id).await;
                continue;
            }
            warn!(sensor = %self.sensor, trigger = %self.name, firing = %claim.id, "running a firing left in flight");
            let firing = self.firing(claim.id.clone(), claim.events);
            // Why finish only when it finished: interrupted by shutdown, the claim stays in the
            // state and the next owner runs it again with the same id (idempotency key).
            if let FiringEnd::Finished = self.execute(&firing, cancel).await {
                self.finish_claim(&claim.id).await;
            }
        }
    }

    fn firing(&self, id: FiringId, events: EventsByDependency) -> Firing {
        Firing {
            id,
            sensor: self.sensor.clone(),
            trigger: self.name.clone(),
            events,
            template: self.main.spec.template.clone().unwrap_or_default(),
        }
    }

    async fn handle(
        self: &Arc<Self>,
        dependency: &str,
        delivery: Delivery,
        cancel: &CancellationToken,
        background: &TaskTracker,
        eval: &EvalPool,
    ) {
        let (sensor, trigger) = (&self.sensor, &self.name);
        let event_id = delivery.event.id().to_owned();
        let Some(dep) = self.dependencies.iter().find(|d| d.name == dependency) else {
            // Not reachable: every stream is tagged with one of our dependencies.
            settle(delivery, true, sensor, trigger).await;
            return;
        };
        // The transform (jq or Lua) runs before the filters, as upstream; the transformed event is
        // the one filters see, the state holds and parameters read. Scripts and jq run on the
        // evaluation pool, off this worker, under its limits (a script past them is a filter error).
        let applied = eval.apply(&dep.filter, &delivery.event).await;
        let outcome = applied.outcome;
        let result = match (outcome.passed, outcome.errors.is_empty()) {
            (true, _) => 0,
            (false, true) => 1,
            (false, false) => 2,
        };
        dep.filter_results[result].inc();
        let event = match applied.event {
            Some(event) if outcome.passed => event,
            _ => {
                SensorStats::add(&self.stats.filtered_out);
                self.metrics.filtered_out.get_or_create(&self.labels).inc();
                if outcome.errors.is_empty() {
                    debug!(sensor = %sensor, trigger = %trigger, dependency, event = %event_id, "event filtered out");
                } else {
                    let errors: Vec<String> = outcome.errors.iter().map(ToString::to_string).collect();
                    warn!(sensor = %sensor, trigger = %trigger, dependency, event = %event_id, error = %errors.join("; "),
                        "event discarded due to a filter error");
                }
                // Why ack: the event does not count for this dependency; it is done for this trigger.
                settle(delivery, true, sensor, trigger).await;
                return;
            }
        };
        if !outcome.errors.is_empty() {
            let errors: Vec<String> = outcome.errors.iter().map(ToString::to_string).collect();
            warn!(sensor = %sensor, trigger = %trigger, dependency, event = %event_id, error = %errors.join("; "),
                "event passed its filters with a filter error");
        } else {
            debug!(sensor = %sensor, trigger = %trigger, dependency, event = %event_id, "event passed its filters");
        }

        if !self.stateful {
            let events = EventsByDependency::from([(dependency.to_owned(), event)]);
            let firing = self.firing(FiringId::new(&self.name, &events), events);
            self.fire(firing, delivery, cancel, background, false).await;
            return;
        }

        let held = match self.state.hold(dependency, event).await {
            Ok(held) => held,
            Err(error) => {
                warn!(sensor = %sensor, trigger = %trigger, event = %event_id, error = %error, "failed to hold the event");
                // Why nak: the event is not in the state yet; a redelivery tries again.
                if let Err(error) = delivery.nak(STATE_RETRY_DELAY).await {
                    warn!(sensor = %sensor, trigger = %trigger, event = %event_id, error = %error, "failed to nak");
                }
                return;
            }
        };
        if let Some(old) = &held.replaced {
            SensorStats::add(&self.stats.replaced);
            self.metrics.replaced.get_or_create(&self.labels).inc();
            warn!(sensor = %sensor, trigger = %trigger, dependency, replaced = %old.id(), event = %event_id,
                "replaced: a newer event of the same dependency replaced an unused one (as upstream)");
        }
        if !self.condition.eval(&|d| held.events.contains_key(d)) {
            let waiting: Vec<&str> = self
                .dependencies
                .iter()
                .map(|d| d.name.as_str())
                .filter(|d| !held.events.contains_key(*d))
                .collect();
            debug!(sensor = %sensor, trigger = %trigger, dependency, event = %event_id, waiting = %waiting.join(", "), "event held");
            // Why ack: the event is in the trigger state now; it no longer needs the bus.
            settle(delivery, true, sensor, trigger).await;
            return;
        }
        let id = FiringId::new(&self.name, &held.events);
        match self.state.claim(&id, &held.events).await {
            Ok(Claim::Claimed) => {
                let firing = self.firing(id, held.events);
                self.fire(firing, delivery, cancel, background, true).await;
            }
            Ok(Claim::AlreadyDone) => {
                info!(sensor = %sensor, trigger = %trigger, firing = %id, event = %event_id, "firing already done; not repeated");
                // Why ack: these events already fired; this was a redelivery.
                settle(delivery, true, sensor, trigger).await;
            }
            Ok(Claim::Conflict) => {
                debug!(sensor = %sensor, trigger = %trigger, firing = %id, event = %event_id, "state changed before the claim; another owner fires");
                // Why ack: the event is held in the state, which moved on; it no longer needs the bus.
                settle(delivery, true, sensor, trigger).await;
            }
            Err(error) => {
                warn!(sensor = %sensor, trigger = %trigger, firing = %id, error = %error, "failed to claim the firing");
                // Why nak: nothing was claimed; the redelivered event completes the condition again.
                if let Err(error) = delivery.nak(STATE_RETRY_DELAY).await {
                    warn!(sensor = %sensor, trigger = %trigger, event = %event_id, error = %error, "failed to nak");
                }
            }
        }
    }

    /// Executes `firing` and settles `delivery` according to `atLeastOnce`.
    async fn fire(
        self: &Arc<Self>,
        firing: Firing,
        delivery: Delivery,
        cancel: &CancellationToken,
        background: &TaskTracker,
        claimed: bool,
    ) {
        if self.at_least_once {
            match self.execute_with_heartbeat(&firing, &delivery, cancel).await {
                FiringEnd::Finished => {
                    if claimed {
                        self.finish_claim(&firing.id).await;
                    }
                    // Why ack now: the action succeeded, or its retries and dead-letter path ended
                    // (then the failure was logged) — upstream acks in both cases.
                    settle(delivery, true, &self.sensor, &self.name).await;
                }
                FiringEnd::Interrupted => {
                    // Why nak: shutdown came before the firing finished; a redelivery repeats it with
                    // the same firing id (idempotency key).
                    settle(delivery, false, &self.sensor, &self.name).await;
                }
            }
            return;
        }
        // Why ack first, confirmed: `atLeastOnce: false` is upstream's at-most-once mode; the event
        // is done for the bus before the action runs, so a crash now loses this firing (never
        // repeats it). An unconfirmed ack could be lost and the event redelivered after the action
        // ran, so the action runs only once the bus confirmed the ack.
        let event_id = delivery.event.id().to_owned();
        if let Err(error) = delivery.ack_confirmed().await {
            // Why not run it: the ack may not have reached the bus, which may redeliver the event;
            // running now could run it twice. The redelivery (if any) decides; otherwise this firing
            // is lost, which at-most-once allows.
            warn!(sensor = %self.sensor, trigger = %self.name, firing = %firing.id, event = %event_id,
                error = %error, "firing not run: its ack was not confirmed (atLeastOnce: false)");
            return;
        }
        let permit = tokio::select! {
            biased;
            _ = cancel.cancelled() => {
                warn!(sensor = %self.sensor, trigger = %self.name, firing = %firing.id,
                    "firing dropped at shutdown (atLeastOnce: false, its event was already acknowledged)");
                return;
            }
            permit = self.background.clone().acquire_owned() => permit,
        };
        let Ok(permit) = permit else { return };
        let runtime = self.clone();
        let token = cancel.child_token();
        background.spawn(async move {
            let _permit = permit;
            if let FiringEnd::Interrupted = runtime.execute(&firing, &token).await {
                warn!(sensor = %runtime.sensor, trigger = %runtime.name, firing = %firing.id,
                    "firing interrupted at shutdown (atLeastOnce: false, its event was already acknowledged)");
            }
            if claimed {
                runtime.finish_claim(&firing.id).await;
            }
        });
    }

    async fn finish_claim(&self, id: &FiringId) {
        if let Err(error) = self.state.finish(id).await {
            warn!(sensor = %self.sensor, trigger = %self.name, firing = %id, error = %error, "failed to record the firing as done");
        }
    }

    /// [`execute`](Self::execute), telling the bus at a third of the ack wait that the delivery is still
    /// being worked on, so the ack wait can stay short without a long action being redelivered.
    async fn execute_with_heartbeat(
        &self,
        firing: &Firing,
        delivery: &Delivery,
        cancel: &CancellationToken,
    ) -> FiringEnd {
        let work = self.execute(firing, cancel);
        tokio::pin!(work);
        let period = (self.ack_wait / 3).max(Duration::from_millis(100));
        let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        loop {
            tokio::select! {
                biased;
                end = &mut work => return end,
                _ = beat.tick() => {
                    if let Err(error) = delivery.progress().await {
                        // Why only a warning: a missed heartbeat at worst lets the event be redelivered
                        // while we still work on it; the repeat carries the same idempotency key.
                        warn!(sensor = %self.sensor, trigger = %self.name, firing = %firing.id, error = %error, "failed to send an in-progress heartbeat");
                    }
                }
            }
        }
    }

    /// The action with retries, then the dead-letter trigger.
    async fn execute(&self, firing: &Firing, cancel: &CancellationToken) -> FiringEnd {
        let (sensor, trigger, id) = (&self.sensor, &self.name, &firing.id);
        let events: Vec<String> = firing
            .events
            .iter()
            .map(|(d, e)| format!("{d}={}", e.id()))
            .collect();
        let events = events.join(",");
        let error = match self
            .attempts(&self.main, firing, cancel, self.limiter.as_ref())
            .await
        {
            Ok(outcome) => {
                SensorStats::add(&self.stats.fired);
                self.metrics.triggered.get_or_create(&self.labels).inc();
                info!(sensor = %sensor, trigger = %trigger, firing = %id, event = %events, outcome = ?outcome, "trigger fired");
                return FiringEnd::Finished;
            }
            Err(AttemptsEnd::Interrupted) => return FiringEnd::Interrupted,
            Err(AttemptsEnd::Failed(error)) => error,
        };
        SensorStats::add(&self.stats.failed);
        self.metrics.retries_failed.get_or_create(&self.labels).inc();
        let Some(dlq) = &self.dlq else {
            // Why the events are still acked: upstream gives up after the retries, logs and moves on;
            // without a dlqTrigger there is nowhere else to put them. The log line is the record.
            error!(sensor = %sensor, trigger = %trigger, firing = %id, event = %events, error = %error_chain(&error),
                "trigger failed after its retries; no dlqTrigger, the firing is dropped");
            return FiringEnd::Finished;
        };
        warn!(sensor = %sensor, trigger = %trigger, firing = %id, event = %events, error = %error_chain(&error),
            dlq = %dlq.name, "trigger failed after its retries; running the dlqTrigger");
        let dlq_firing = Firing {
            trigger: dlq.name.clone(),
            template: dlq.spec.template.clone().unwrap_or_default(),
            ..firing.clone()
        };
        match self.attempts(dlq, &dlq_firing, cancel, None).await {
            Ok(outcome) => {
                SensorStats::add(&self.stats.dead_lettered);
                self.metrics.dead_lettered.get_or_create(&self.labels).inc();
                info!(sensor = %sensor, trigger = %trigger, firing = %id, dlq = %dlq.name, outcome = ?outcome, "dlqTrigger fired");
                FiringEnd::Finished
            }
            Err(AttemptsEnd::Interrupted) => FiringEnd::Interrupted,
            Err(AttemptsEnd::Failed(dlq_error)) => {
                error!(sensor = %sensor, trigger = %trigger, firing = %id, event = %events, error = %error_chain(&error),
                    dlq = %dlq.name, dlq_error = %error_chain(&dlq_error), "trigger and its dlqTrigger failed; the firing is dropped");
                FiringEnd::Finished
            }
        }
    }

    /// Up to `retryStrategy.steps` attempts of `action`; only retryable errors are retried.
    async fn attempts(
        &self,
        action: &Action,
        firing: &Firing,
        cancel: &CancellationToken,
        limiter: Option<&RateLimiter>,
    ) -> Result<Outcome, AttemptsEnd> {
        let policy = &action.retry;
        let mut attempt = 1;
        loop {
            if let Some(limiter) = limiter {
                tokio::select! {
                    biased;
                    _ = cancel.cancelled() => return Err(AttemptsEnd::Interrupted),
                    _ = limiter.wait_turn() => {}
                }
            }
            let started = std::time::Instant::now();
            let result = match self.prepare(action, firing) {
                Ok(prepared) => action.built.execute(&prepared).await,
                Err(error) => Err(error),
            };
            self.metrics
                .duration
                .get_or_create(&action.labels)
                .observe(started.elapsed().as_secs_f64() * 1000.0);
            if result.is_err() {
                self.metrics.failed.get_or_create(&action.labels).inc();
            }
            let error = match result {
                Ok(outcome) => return Ok(outcome),
                Err(error) => error,
            };
            if !error.is_retryable() || attempt >= policy.attempts {
                // Why stop: a permanent error fails the same way again; or the attempts are used up.
                return Err(AttemptsEnd::Failed(error));
            }
            let delay = policy.delay(attempt, random_unit());
            warn!(sensor = %self.sensor, trigger = %action.name, firing = %firing.id, attempt, of = policy.attempts,
                retry_in = ?delay, error = %error_chain(&error), "trigger attempt failed; retrying");
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return Err(AttemptsEnd::Interrupted),
                _ = tokio::time::sleep(delay) => {}
            }
            attempt += 1;
        }
    }

    /// The firing for one attempt of `action`: the trigger's top-level `parameters` applied to its
    /// template (per attempt, as upstream).
    fn prepare(&self, action: &Action, firing: &Firing) -> Result<Firing, TriggerError> {
        let template = action.spec.template.clone().unwrap_or_default();
        let template = apply_template_parameters(&template, &action.spec.parameters, &firing.events)
            .map_err(TriggerError::ApplyParams)?;
        Ok(Firing {
            template,
            ..firing.clone()
        })
    }
}
