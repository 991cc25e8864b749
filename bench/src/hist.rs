//! A lock-free latency histogram in microseconds: log-linear buckets (128 per power of two, so a
//! reported quantile is within 0.8 % of the true value), recorded from many tasks with relaxed atomics.
//! Values are whole microseconds; everything at or above 2^40 µs (~12.7 days) lands in the last bucket.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// Sub-buckets per power of two.
const SUB: u64 = 128;
/// Values below this are their own bucket.
const LINEAR: u64 = 2 * SUB;
/// Largest exponent kept apart (values are clamped below 2^(MAX_EXP + 1)).
const MAX_EXP: u64 = 40;
const BUCKETS: usize = (LINEAR + (MAX_EXP - 7) * SUB) as usize;

/// The bucket of `v`.
fn index(v: u64) -> usize {
    let v = v.min((1 << (MAX_EXP + 1)) - 1);
    if v < LINEAR {
        return v as usize;
    }
    let exp = u64::from(63 - v.leading_zeros()); // >= 8 because v >= 256
    let shift = exp - 7; // keep the top 8 bits: 128..=255
    (LINEAR + (exp - 8) * SUB + ((v >> shift) - SUB)) as usize
}

/// The smallest value in bucket `i`.
fn lower(i: usize) -> u64 {
    let i = i as u64;
    if i < LINEAR {
        return i;
    }
    let j = i - LINEAR;
    let exp = j / SUB + 8;
    (j % SUB + SUB) << (exp - 7)
}

/// A histogram many tasks record into.
pub struct Histogram {
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    sum: AtomicU64,
    max: AtomicU64,
}

/// Quantiles of a histogram, in microseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub count: u64,
    pub mean_us: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0),
            max: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    /// Records one value (µs).
    pub fn record(&self, v: u64) {
        // Relaxed: the counters are only read as a whole after the load, or approximately by /stats.
        self.buckets[index(v)].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(v, Ordering::Relaxed);
        self.max.fetch_max(v, Ordering::Relaxed);
    }

    /// Clears every count.
    pub fn reset(&self) {
        for b in &self.buckets {
            b.store(0, Ordering::Relaxed);
        }
        self.count.store(0, Ordering::Relaxed);
        self.sum.store(0, Ordering::Relaxed);
        self.max.store(0, Ordering::Relaxed);
    }

    /// The value at quantile `q` (0..=1): the middle of its bucket, capped at the maximum seen.
    fn quantile(&self, counts: &[u64], total: u64, q: f64) -> u64 {
        if total == 0 {
            return 0;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let (lo, next) = (lower(i), lower(i + 1));
                let mid = lo + (next - lo) / 2;
                return mid.min(self.max.load(Ordering::Relaxed));
            }
        }
        self.max.load(Ordering::Relaxed)
    }

    /// Count, mean, p50/p90/p99/p99.9 and max.
    pub fn summary(&self) -> Summary {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        let sum = self.sum.load(Ordering::Relaxed);
        Summary {
            count: total,
            mean_us: if total == 0 {
                0.0
            } else {
                sum as f64 / total as f64
            },
            p50_us: self.quantile(&counts, total, 0.50),
            p90_us: self.quantile(&counts, total, 0.90),
            p99_us: self.quantile(&counts, total, 0.99),
            p999_us: self.quantile(&counts, total, 0.999),
            max_us: self.max.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_monotonic() {
        for i in 0..BUCKETS - 1 {
            assert!(lower(i) < lower(i + 1), "bucket {i}");
            assert_eq!(index(lower(i)), i);
            assert_eq!(index(lower(i + 1) - 1), i);
        }
    }

    #[test]
    fn quantiles_are_within_one_percent() {
        let h = Histogram::default();
        for v in 1..=100_000u64 {
            h.record(v);
        }
        let s = h.summary();
        assert_eq!(s.count, 100_000);
        for (got, want) in [(s.p50_us, 50_000.0), (s.p99_us, 99_000.0)] {
            assert!((got as f64 - want).abs() / want < 0.01, "{got} vs {want}");
        }
        assert_eq!(s.max_us, 100_000);
    }

    #[test]
    fn empty_and_huge_values_do_not_panic() {
        let h = Histogram::default();
        assert_eq!(h.summary().p99_us, 0);
        h.record(u64::MAX);
        assert_eq!(h.summary().count, 1);
        h.reset();
        assert_eq!(h.summary().count, 0);
    }
}
