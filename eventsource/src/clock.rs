//! Wall-clock time for sources that compare against it (calendar ticks, signature timestamps), behind
//! a trait so tests run under `tokio::time::pause()`.

use chrono::{DateTime, Utc};

/// A source of wall-clock time. Production reads the system clock; tests derive it from tokio's
/// (pausable) clock so schedules run under `tokio::time::pause()`.
pub trait Clock: Send + Sync + 'static {
    /// Now.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// Wall-clock time that advances with tokio's clock from a fixed origin.
pub struct TokioClock {
    origin: DateTime<Utc>,
    started: tokio::time::Instant,
}

impl TokioClock {
    /// A clock reading `origin` now.
    pub fn new(origin: DateTime<Utc>) -> Self {
        Self {
            origin,
            started: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = chrono::Duration::from_std(self.started.elapsed()).unwrap_or(chrono::Duration::zero());
        self.origin + elapsed
    }
}
