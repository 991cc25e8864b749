//! Retry timing for triggers (`retryStrategy`), with upstream's defaults and arithmetic (Kubernetes'
//! `wait.Backoff` as upstream's `DoWithRetry` drives it):
//! - no `retryStrategy`: one attempt, no retry;
//! - `steps` is the number of attempts in all; unset or 0 means 5;
//! - before retry *k* (k = 1, 2, …) the wait is `duration · factor^(k-1)`, plus a random extra of up
//!   to `jitter ·` that wait; defaults `duration` 1s, `factor` 1, `jitter` 1 (so up to double);
//!   `factor` 0 keeps the wait constant.
//!
//! Pure: the random draw is an argument, so the math is tested without randomness or sleeping.

use std::time::Duration;

use sluice_crds::common::Backoff;

/// Attempts when `retryStrategy` is given without `steps` (upstream's `DefaultBackoff.Steps`).
pub const DEFAULT_STEPS: u32 = 5;
/// The longest single wait; upstream has no cap, but a wait this long is a mistake, not a plan.
pub const MAX_DELAY: Duration = Duration::from_secs(24 * 60 * 60);

/// Why a `retryStrategy` is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RetryConfigError {
    /// `duration` is not a duration.
    #[error("failed to read retryStrategy.duration `{value}`")]
    ParseDuration {
        /// The value as written.
        value: String,
        /// Why.
        source: sluice_crds::duration::ParseDurationError,
    },
    /// `factor` or `jitter` is not a number.
    #[error("failed to read retryStrategy.{field} `{value}`: not a number")]
    ParseAmount {
        /// `factor` or `jitter`.
        field: &'static str,
        /// The value as written.
        value: String,
    },
}

/// When and how often a failed action is tried again.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all (at least 1).
    pub attempts: u32,
    /// The first wait.
    pub duration: Duration,
    /// Each wait is the previous times this (0: constant).
    pub factor: f64,
    /// Random extra wait, as a fraction of the wait.
    pub jitter: f64,
}

impl RetryPolicy {
    /// One attempt, no retry: what a trigger without `retryStrategy` gets.
    pub fn once() -> Self {
        Self {
            attempts: 1,
            duration: Duration::from_secs(1),
            factor: 1.0,
            jitter: 1.0,
        }
    }

    /// The policy of `retry_strategy`, upstream's defaults applied.
    pub fn from_backoff(retry_strategy: Option<&Backoff>) -> Result<Self, RetryConfigError> {
        let Some(backoff) = retry_strategy else {
            return Ok(Self::once());
        };
        let duration = match &backoff.duration {
            Some(d) => d
                .to_duration()
                .map_err(|source| RetryConfigError::ParseDuration {
                    value: d.to_string(),
                    source,
                })?,
            None => Duration::from_secs(1),
        };
        let amount = |field: &'static str, value: &Option<sluice_crds::common::Amount>| match value {
            Some(a) => a
                .as_f64()
                .filter(|f| f.is_finite())
                .ok_or_else(|| RetryConfigError::ParseAmount {
                    field,
                    value: a.0.clone(),
                }),
            None => Ok(1.0),
        };
        let attempts = match backoff.steps {
            Some(steps) if steps > 0 => steps as u32,
            _ => DEFAULT_STEPS,
        };
        Ok(Self {
            attempts,
            duration,
            factor: amount("factor", &backoff.factor)?,
            jitter: amount("jitter", &backoff.jitter)?,
        })
    }

    /// The wait before retry number `retry` (1 for the first retry), given a uniform random draw
    /// `random` in `[0, 1)`. Never panics; capped at [`MAX_DELAY`].
    pub fn delay(&self, retry: u32, random: f64) -> Duration {
        let exponent = retry.saturating_sub(1).min(i32::MAX as u32) as i32;
        let growth = if self.factor == 0.0 {
            1.0
        } else {
            self.factor.powi(exponent)
        };
        let base = self.duration.as_secs_f64() * growth;
        let extra = if self.jitter > 0.0 {
            base * self.jitter * random.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let secs = base + extra;
        if !secs.is_finite() || secs >= MAX_DELAY.as_secs_f64() {
            return MAX_DELAY;
        }
        Duration::from_secs_f64(secs.max(0.0))
    }
}

/// A uniform draw in `[0, 1)` for jitter. Not cryptographic; only spreads retries apart.
pub fn random_unit() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use sluice_crds::common::{Amount, Int64OrString};

    fn backoff(duration: &str, factor: &str, jitter: &str, steps: Option<i32>) -> Backoff {
        Backoff {
            duration: Some(Int64OrString::String(duration.into())),
            factor: Some(Amount(factor.into())),
            jitter: Some(Amount(jitter.into())),
            steps,
        }
    }

    #[test]
    fn no_strategy_means_one_attempt() -> Result<(), RetryConfigError> {
        assert_eq!(RetryPolicy::from_backoff(None)?.attempts, 1);
        Ok(())
    }

    #[test]
    fn upstream_defaults() -> Result<(), RetryConfigError> {
        let p = RetryPolicy::from_backoff(Some(&Backoff::default()))?;
        assert_eq!(
            p,
            RetryPolicy {
                attempts: 5,
                duration: Duration::from_secs(1),
                factor: 1.0,
                jitter: 1.0
            }
        );
        Ok(())
    }

    #[test]
    fn waits_grow_by_factor_and_jitter_adds_up_to_its_share() -> Result<(), RetryConfigError> {
        let p = RetryPolicy::from_backoff(Some(&backoff("1s", "2", "0", Some(4))))?;
        assert_eq!(p.attempts, 4);
        assert_eq!(p.delay(1, 0.5), Duration::from_secs(1));
        assert_eq!(p.delay(2, 0.5), Duration::from_secs(2));
        assert_eq!(p.delay(3, 0.5), Duration::from_secs(4));
        let p = RetryPolicy::from_backoff(Some(&backoff("2s", "0", "0.5", None)))?;
        assert_eq!(
            p.delay(3, 0.0),
            Duration::from_secs(2),
            "factor 0 keeps the wait constant"
        );
        assert_eq!(p.delay(1, 0.5), Duration::from_millis(2500));
        Ok(())
    }

    #[test]
    fn nanosecond_integers_and_bad_values() {
        let b = Backoff {
            duration: Some(Int64OrString::Int(500_000_000)),
            ..Backoff::default()
        };
        assert_eq!(
            RetryPolicy::from_backoff(Some(&b)).map(|p| p.duration),
            Ok(Duration::from_millis(500))
        );
        assert!(matches!(
            RetryPolicy::from_backoff(Some(&backoff("soon", "1", "1", None))),
            Err(RetryConfigError::ParseDuration { .. })
        ));
        assert!(matches!(
            RetryPolicy::from_backoff(Some(&backoff("1s", "x", "1", None))),
            Err(RetryConfigError::ParseAmount { field: "factor", .. })
        ));
    }

    #[test]
    fn random_unit_is_in_range() {
        for _ in 0..100 {
            let r = random_unit();
            assert!((0.0..1.0).contains(&r));
        }
    }

    proptest! {
        #[test]
        fn delay_never_panics(secs in 0u64..100_000, factor in -10.0f64..1e6, jitter in -2.0f64..10.0, retry in 0u32..u32::MAX, r in 0.0f64..1.0) {
            let p = RetryPolicy { attempts: 3, duration: Duration::from_secs(secs), factor, jitter };
            prop_assert!(p.delay(retry, r) <= MAX_DELAY);
        }
    }
}
