//! The reconnect backoff every connection-holding source shares (`websocket`, `nats`, `jetstream`,
//! `redis`, `redisStream`, `mqtt`, `amqp`, `sftp`, and `file` for its watcher): each source
//! connects, sets its readiness,
//! consumes, and on an error clears its readiness, logs `retry_in` = [`Backoff::wait`] and calls
//! [`Backoff::sleep`], which waits (cancellably) and grows the next wait up to [`MAX_WAIT`]; a good
//! connection calls [`Backoff::reset`], so the next outage starts from the first wait again.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// The first wait between connection attempts, unless a source's spec says otherwise.
pub const FIRST_WAIT: Duration = Duration::from_millis(200);
/// The longest wait between connection attempts.
pub const MAX_WAIT: Duration = Duration::from_secs(30);

/// Growing waits between connection attempts.
#[derive(Clone, Debug)]
pub struct Backoff {
    first: Duration,
    factor: f64,
    next: Duration,
}

impl Default for Backoff {
    /// [`FIRST_WAIT`], doubling up to [`MAX_WAIT`].
    fn default() -> Self {
        Self::new(FIRST_WAIT, 2.0)
    }
}

impl Backoff {
    /// Starts at `first`, multiplied by `factor` (at least 1) after each wait, up to [`MAX_WAIT`].
    pub fn new(first: Duration, factor: f64) -> Self {
        let first = first.min(MAX_WAIT);
        Self {
            first,
            factor: if factor.is_finite() && factor >= 1.0 {
                factor
            } else {
                1.0
            },
            next: first,
        }
    }

    /// The backoff a spec's `connectionBackoff` asks for (`duration` the first wait, at least
    /// [`FIRST_WAIT`] so a `0` cannot spin against a broker that refuses; `factor` its growth), or
    /// `default` when the spec has none. The error names the field.
    pub fn from_spec(spec: Option<&sluice_crds::common::Backoff>, default: Backoff) -> Result<Self, String> {
        let Some(b) = spec else {
            return Ok(default);
        };
        let first = match &b.duration {
            Some(d) => d
                .to_duration()
                .map_err(|e| format!("connectionBackoff.duration: {e}"))?,
            None => Duration::from_secs(1),
        };
        let factor = match &b.factor {
            Some(f) => f
                .as_f64()
                .ok_or_else(|| format!("connectionBackoff.factor: {f:?} is not a number"))?,
            None => 1.0,
        };
        Ok(Self::new(first.max(FIRST_WAIT), factor))
    }

    /// The wait the next [`Backoff::sleep`] takes (what a source logs as `retry_in`).
    pub fn wait(&self) -> Duration {
        self.next
    }

    /// After a good connection: the next outage starts from the first wait.
    pub fn reset(&mut self) {
        self.next = self.first;
    }

    /// Sleeps [`Backoff::wait`] and grows the next wait; `false` when `cancel` fired first (the
    /// caller then stops).
    pub async fn sleep(&mut self, cancel: &CancellationToken) -> bool {
        let wait = self.next;
        self.next = self.next.mul_f64(self.factor).min(MAX_WAIT);
        tokio::select! {
            biased;
            _ = cancel.cancelled() => false,
            _ = tokio::time::sleep(wait) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn waits_double_up_to_the_maximum_and_start_over_after_a_reset() {
        let cancel = CancellationToken::new();
        let mut b = Backoff::default();
        let mut waits = Vec::new();
        for _ in 0..10 {
            waits.push(b.wait());
            let before = tokio::time::Instant::now();
            assert!(b.sleep(&cancel).await);
            assert_eq!(before.elapsed(), waits[waits.len() - 1]);
        }
        assert_eq!(waits[..4], [200, 400, 800, 1600].map(Duration::from_millis));
        assert_eq!(waits[9], MAX_WAIT);
        b.reset();
        assert_eq!(b.wait(), FIRST_WAIT);
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_sleep_returns_false_at_once() {
        let cancel = CancellationToken::new();
        cancel.cancel();
        let before = tokio::time::Instant::now();
        assert!(!Backoff::new(Duration::from_secs(10), 1.5).sleep(&cancel).await);
        assert_eq!(before.elapsed(), Duration::ZERO);
    }

    #[test]
    fn a_spec_sets_the_first_wait_and_factor_and_none_keeps_the_default() {
        let spec: sluice_crds::common::Backoff =
            serde_json::from_value(serde_json::json!({"duration": "2s", "factor": 1.5}))
                .expect("a valid backoff");
        let b = Backoff::from_spec(Some(&spec), Backoff::default()).expect("accepted");
        assert_eq!((b.wait(), b.factor), (Duration::from_secs(2), 1.5));
        let nanos: sluice_crds::common::Backoff =
            serde_json::from_value(serde_json::json!({"duration": 500_000_000})).expect("a valid backoff");
        let b = Backoff::from_spec(Some(&nanos), Backoff::default()).expect("accepted");
        assert_eq!((b.wait(), b.factor), (Duration::from_millis(500), 1.0));
        assert_eq!(
            Backoff::from_spec(None, Backoff::default())
                .expect("no spec")
                .wait(),
            FIRST_WAIT
        );
        let zero: sluice_crds::common::Backoff =
            serde_json::from_value(serde_json::json!({"duration": 0})).expect("a valid backoff");
        let floored = Backoff::from_spec(Some(&zero), Backoff::default()).expect("accepted");
        assert_eq!(floored.wait(), FIRST_WAIT, "a zero wait is raised to the floor");
        let bad: sluice_crds::common::Backoff =
            serde_json::from_value(serde_json::json!({"duration": "soon"})).expect("parses as a string");
        let error = Backoff::from_spec(Some(&bad), Backoff::default()).expect_err("not a duration");
        assert!(error.starts_with("connectionBackoff.duration"), "{error}");
    }

    #[test]
    fn a_factor_below_one_keeps_the_wait() {
        let b = Backoff::new(Duration::from_secs(1), 0.5);
        assert_eq!(b.factor, 1.0);
        assert_eq!(Backoff::new(Duration::from_secs(90), 2.0).wait(), MAX_WAIT);
    }
}
