//! Bounds on the code a Sensor runs per event — Lua (`filters.script`, `transform.script`) and jq
//! (`transform.jq`) — and the pool that runs that code off the async runtime.
//!
//! Why: a script is written once but runs on every event, and an outside sender controls the event.
//! A Lua pattern on a long string or a jq generator such as `range(1e18)` can run for hours inside a
//! single call; on a runtime worker that stalls every task of the sensor (and `/healthz`), and after a
//! restart the bus redelivers the same event. So:
//! - each evaluation has a deadline, [`EvalLimits::timeout`] (default [`DEFAULT_EVAL_TIMEOUT`], set
//!   with `--script-timeout`), checked from inside the evaluation: by Lua's instruction hook, by
//!   Sluice's own Lua pattern functions (see [`crate::transform::lua`]) and between jq steps (see
//!   [`crate::transform::jq`]), all through one [`Meter`];
//! - a dependency whose filters or transform run code is evaluated on Tokio's blocking threads, at
//!   most [`EvalPool::concurrency`] evaluations at once (the others wait: backpressure), by
//!   [`EvalPool::apply`]; filters without code stay on the worker (they are linear in the event);
//! - past a limit the evaluation fails with an error naming the limit; the runner then counts the
//!   event as a filter error (`sluice_sensor_filter_results_total{result="error"}`) and logs it with
//!   the event id.

use std::cell::Cell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_eventbus::Event;
use tokio::sync::Semaphore;

use crate::filters::{Applied, DependencyFilter, FilterError, FilterOutcome};

/// The default of [`EvalLimits::timeout`]: long enough for any script that looks at one event,
/// short enough that a runaway one does not hold a delivery past its ack wait.
pub const DEFAULT_EVAL_TIMEOUT: Duration = Duration::from_secs(1);
/// How long past its deadlines [`EvalPool::apply`] waits for an evaluation before it gives up on it
/// (the watchdog). The deadline is checked inside the evaluation, so this fires only if that failed.
pub const WATCHDOG_SLACK: Duration = Duration::from_secs(1);
/// How many steps pass between two readings of the clock.
const CLOCK_EVERY: u32 = 4096;

/// Limits of one evaluation of a script or jq program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EvalLimits {
    /// The longest one evaluation may run.
    pub timeout: Duration,
}

impl Default for EvalLimits {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_EVAL_TIMEOUT,
        }
    }
}

/// Which limit an evaluation ran into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Exceeded {
    /// It ran past its deadline.
    #[error("ran longer than {0:?}")]
    Time(Duration),
    /// It took more steps than allowed.
    #[error("took more than {0} steps")]
    Steps(u64),
}

/// Counts the steps of one evaluation and tells when it must stop. Once a limit is reached it stays
/// reached: every later check fails too, so code that catches the first error (Lua's `pcall`, jq's
/// `try`) cannot carry on.
#[derive(Debug)]
pub struct Meter {
    deadline: Instant,
    timeout: Duration,
    max_steps: u64,
    steps: Cell<u64>,
    until_clock: Cell<u32>,
    exceeded: Cell<Option<Exceeded>>,
}

impl Meter {
    /// A meter for one evaluation starting now, allowing `max_steps` steps.
    pub fn new(limits: &EvalLimits, max_steps: u64) -> Self {
        let now = Instant::now();
        Self {
            deadline: now.checked_add(limits.timeout).unwrap_or(now),
            timeout: limits.timeout,
            max_steps,
            steps: Cell::new(0),
            until_clock: Cell::new(CLOCK_EVERY),
            exceeded: Cell::new(None),
        }
    }

    /// Counts one step; reads the clock every few thousand steps.
    pub fn step(&self) -> Result<(), Exceeded> {
        self.steps_taken(1)
    }

    /// Counts `n` steps at once (for a caller that counts in batches, such as Lua's hook).
    pub fn steps_taken(&self, n: u32) -> Result<(), Exceeded> {
        if let Some(e) = self.exceeded.get() {
            return Err(e);
        }
        let steps = self.steps.get().saturating_add(u64::from(n));
        self.steps.set(steps);
        if steps > self.max_steps {
            return Err(self.stop(Exceeded::Steps(self.max_steps)));
        }
        match self.until_clock.get().checked_sub(n) {
            Some(left) if left > 0 => {
                self.until_clock.set(left);
                Ok(())
            }
            _ => {
                self.until_clock.set(CLOCK_EVERY);
                self.check_clock()
            }
        }
    }

    /// Fails when the deadline has passed (or a limit was reached before).
    pub fn check_clock(&self) -> Result<(), Exceeded> {
        if let Some(e) = self.exceeded.get() {
            return Err(e);
        }
        if Instant::now() > self.deadline {
            return Err(self.stop(Exceeded::Time(self.timeout)));
        }
        Ok(())
    }

    /// The limit reached, if any.
    pub fn exceeded(&self) -> Option<Exceeded> {
        self.exceeded.get()
    }

    fn stop(&self, e: Exceeded) -> Exceeded {
        self.exceeded.set(Some(e));
        e
    }
}

/// Runs dependency filters and transforms that execute code on Tokio's blocking threads, a bounded
/// number at a time, under [`EvalLimits`]. One per process, shared by its sensors (clones share the
/// bound).
#[derive(Clone, Debug)]
pub struct EvalPool {
    limits: EvalLimits,
    permits: Arc<Semaphore>,
    concurrency: usize,
}

impl Default for EvalPool {
    fn default() -> Self {
        Self::new(EvalLimits::default())
    }
}

impl EvalPool {
    /// A pool running as many evaluations at once as the machine has cores.
    pub fn new(limits: EvalLimits) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Self::with_concurrency(limits, cores)
    }

    /// A pool running at most `concurrency` evaluations at once (at least one).
    pub fn with_concurrency(limits: EvalLimits, concurrency: usize) -> Self {
        let concurrency = concurrency.max(1);
        Self {
            limits,
            permits: Arc::new(Semaphore::new(concurrency)),
            concurrency,
        }
    }

    /// The limits each evaluation runs under.
    pub fn limits(&self) -> EvalLimits {
        self.limits
    }

    /// How many evaluations run at once at most.
    pub fn concurrency(&self) -> usize {
        self.concurrency
    }

    /// [`DependencyFilter::apply_limited`] on `event`: on a blocking thread when the filter runs code,
    /// inline otherwise. A failure of the pool itself (the evaluation panicked, or outlived the
    /// watchdog) is an error of the outcome, so the event counts as a filter error like any other.
    pub async fn apply(&self, filter: &Arc<DependencyFilter>, event: &Event) -> Applied {
        if !filter.runs_code() {
            return filter.apply_limited(event, &self.limits);
        }
        // Why wait for a permit: at most `concurrency` blocking threads run scripts; the next
        // delivery waits here (and the bus holds the rest) rather than piling up threads.
        let Ok(permit) = self.permits.clone().acquire_owned().await else {
            // Not reachable: the semaphore is never closed.
            return failed(FilterError::Evaluate {
                reason: "the evaluation pool is closed".to_owned(),
            });
        };
        let limits = self.limits;
        let (filter, owned) = (filter.clone(), event.clone());
        let task = tokio::task::spawn_blocking(move || {
            // The permit goes with the evaluation: one the watchdog gave up on still counts
            // against the bound until it really ends.
            let _permit = permit;
            filter.apply_limited(&owned, &limits)
        });
        // A transform and a script filter each get the timeout.
        let watchdog = limits.timeout.saturating_mul(2).saturating_add(WATCHDOG_SLACK);
        match tokio::time::timeout(watchdog, task).await {
            Ok(Ok(applied)) => applied,
            Ok(Err(error)) => failed(FilterError::Evaluate {
                reason: format!("the evaluation stopped abnormally: {error}"),
            }),
            Err(_) => {
                tracing::error!(event = %event.id(), timeout = ?limits.timeout,
                    "a filter evaluation outlived its deadline; it is abandoned and its slot stays taken until it ends");
                failed(FilterError::Evaluate {
                    reason: format!("no result {watchdog:?} after it started; abandoned"),
                })
            }
        }
    }
}

fn failed(error: FilterError) -> Applied {
    Applied {
        event: None,
        outcome: FilterOutcome {
            passed: false,
            errors: vec![error],
            verdicts: Vec::new(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use sluice_crds::sensor::{EventDependency, EventDependencyFilter, EventDependencyTransformer};
    use sluice_eventbus::EventBuilder;
    use std::sync::atomic::{AtomicU64, Ordering};

    const LIMIT: Duration = Duration::from_millis(300);

    fn event(data: serde_json::Value) -> Event {
        EventBuilder::new("webhook", "example", "webhook")
            .id("e1")
            .data_json(data)
            .build()
            .expect("a valid test event")
    }

    /// Applies `filter` to `event` on a pool with [`LIMIT`] while another task ticks every 10 ms;
    /// returns the outcome, how long it took and how often the other task ticked meanwhile.
    async fn apply_while_ticking(filter: DependencyFilter, event: Event) -> (Applied, Duration, u64) {
        let pool = EvalPool::with_concurrency(EvalLimits { timeout: LIMIT }, 2);
        let ticks = Arc::new(AtomicU64::new(0));
        let counter = ticks.clone();
        let ticker = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(10)).await;
                counter.fetch_add(1, Ordering::Relaxed);
            }
        });
        let started = Instant::now();
        let applied = pool.apply(&Arc::new(filter), &event).await;
        let took = started.elapsed();
        ticker.abort();
        (applied, took, ticks.load(Ordering::Relaxed))
    }

    // A current-thread runtime: had the evaluation run on it, the ticker could not tick at all.
    #[tokio::test]
    async fn a_backtracking_lua_pattern_stops_at_the_limit_and_the_runtime_keeps_running() {
        let filters = EventDependencyFilter {
            script: Some("return string.find(event.text, '(.-)(.-)(.-)(.-)x') ~= nil".into()),
            ..EventDependencyFilter::default()
        };
        let filter = DependencyFilter::from_parts(Some(&filters), None);
        assert!(filter.runs_code());
        let text = "a".repeat(60_000);
        let (applied, took, ticks) = apply_while_ticking(filter, event(json!({ "text": text }))).await;
        assert!(!applied.outcome.passed);
        match applied.outcome.errors.as_slice() {
            [FilterError::Script { reason }] => assert!(reason.contains("ran longer than"), "{reason}"),
            other => panic!("expected a script error, got {other:?}"),
        }
        assert!(
            took < LIMIT + WATCHDOG_SLACK,
            "finished within the limit plus slack: {took:?}"
        );
        assert!(ticks > 0, "the runtime ran other tasks meanwhile");
    }

    #[tokio::test]
    async fn an_endless_jq_generator_stops_at_a_limit_and_the_runtime_keeps_running() {
        let dependency = EventDependency {
            name: "d".into(),
            transform: Some(EventDependencyTransformer {
                jq: Some("{n: last(range(1e18))}".into()),
                script: None,
            }),
            ..EventDependency::default()
        };
        let filter = DependencyFilter::new(&dependency);
        assert!(filter.runs_code());
        let (applied, took, ticks) = apply_while_ticking(filter, event(json!({}))).await;
        assert!(!applied.outcome.passed);
        assert!(applied.event.is_none());
        match applied.outcome.errors.as_slice() {
            [FilterError::Transform { reason }] => assert!(
                reason.contains("ran longer than") || reason.contains("steps"),
                "{reason}"
            ),
            other => panic!("expected a transform error, got {other:?}"),
        }
        assert!(
            took < LIMIT + WATCHDOG_SLACK,
            "finished within the limit plus slack: {took:?}"
        );
        assert!(ticks > 0, "the runtime ran other tasks meanwhile");
    }

    #[tokio::test]
    async fn filters_without_code_are_evaluated_inline() {
        let filters = EventDependencyFilter {
            exprs: Vec::new(),
            ..EventDependencyFilter::default()
        };
        let filter = DependencyFilter::from_parts(Some(&filters), None);
        assert!(!filter.runs_code());
        let applied = EvalPool::default()
            .apply(&Arc::new(filter), &event(json!({})))
            .await;
        assert!(applied.outcome.passed);
    }

    #[test]
    fn a_meter_stops_at_its_step_limit_and_stays_stopped() {
        let meter = Meter::new(&EvalLimits::default(), 10);
        for _ in 0..10 {
            assert_eq!(meter.step(), Ok(()));
        }
        assert_eq!(meter.step(), Err(Exceeded::Steps(10)));
        assert_eq!(meter.check_clock(), Err(Exceeded::Steps(10)), "sticky");
    }

    #[test]
    fn a_meter_stops_at_its_deadline() {
        let limits = EvalLimits {
            timeout: Duration::ZERO,
        };
        let meter = Meter::new(&limits, u64::MAX);
        std::thread::sleep(Duration::from_millis(2));
        let stopped = (0..=CLOCK_EVERY).map(|_| meter.step()).find(Result::is_err);
        assert_eq!(stopped, Some(Err(Exceeded::Time(Duration::ZERO))));
        assert_eq!(meter.exceeded(), Some(Exceeded::Time(Duration::ZERO)));
    }
}
