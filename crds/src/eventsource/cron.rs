//! The one cron parser of Sluice: `calendar` schedules (validation and the source's ticks) and a
//! sensor's `conditionsReset.byTime.cron` go through [`CronSpec`], so what validates is what runs.
//!
//! Cron schedules with robfig/cron v3 semantics, as upstream's calendar source reads them: five fields
//! (minute hour day-of-month month day-of-week), day of week 0–6 with Sunday 0, `*`/`?`, ranges,
//! steps (`N/step` means `N-max/step`), lists, and JAN–DEC / SUN–SAT names. When both day-of-month and
//! day-of-week are restricted (neither is `*`/`?`), a day matching either fires, as classic cron and
//! robfig do (the `cron` crate requires both, which is why this is not that crate).
//!
//! Times are computed in a time zone (chrono-tz). Across DST: a time that does not exist that day
//! (in the spring-forward gap) is skipped, as robfig skips it; a time that exists twice (fall back)
//! fires once, at its first occurrence (robfig fires it twice; Sluice does not fire one tick twice).

use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

/// A parsed 5-field spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CronSpec {
    minute: u64,
    hour: u64,
    dom: u64,
    month: u64,
    dow: u64,
    dom_star: bool,
    dow_star: bool,
}

struct Bounds {
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTE: Bounds = Bounds {
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: Bounds = Bounds {
    min: 0,
    max: 23,
    names: &[],
};
const DOM: Bounds = Bounds {
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: Bounds = Bounds {
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
const DOW: Bounds = Bounds {
    min: 0,
    max: 6,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

/// The longest search for a next tick, as robfig: five years.
const SEARCH_DAYS: i64 = 5 * 366;

fn value(text: &str, b: &Bounds) -> Result<u32, String> {
    let lower = text.to_ascii_lowercase();
    if let Some(i) = b.names.iter().position(|n| *n == lower) {
        return Ok(b.min + i as u32);
    }
    text.parse::<u32>().map_err(|_| {
        format!(
            "{text:?} is not a number{}",
            if b.names.is_empty() { "" } else { " or a name" }
        )
    })
}

/// One field: its bits and whether it was `*`/`?` (without a step above 1).
fn field(text: &str, b: &Bounds) -> Result<(u64, bool), String> {
    let mut bits = 0u64;
    let mut star = false;
    for item in text.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s.parse().map_err(|_| format!("step {s:?} is not a number"))?;
                (r, Some(step))
            }
            None => (item, None),
        };
        let (start, end, is_star) = if range == "*" || range == "?" {
            (b.min, b.max, true)
        } else if let Some((lo, hi)) = range.split_once('-') {
            (value(lo, b)?, value(hi, b)?, false)
        } else {
            let v = value(range, b)?;
            // robfig: `N/step` runs from N to the maximum.
            (v, if step.is_some() { b.max } else { v }, false)
        };
        let step = step.unwrap_or(1);
        if step == 0 {
            return Err("a step of 0".into());
        }
        if start < b.min || end > b.max {
            return Err(format!("{item:?} is outside {}-{}", b.min, b.max));
        }
        if start > end {
            return Err(format!("{item:?}: the range starts after it ends"));
        }
        if is_star && step == 1 {
            star = true;
        }
        let mut v = start;
        while v <= end {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok((bits, star))
}

impl CronSpec {
    /// Parses a 5-field spec.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let fields: Vec<&str> = spec.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(format!(
                "expected 5 fields (minute hour day-of-month month day-of-week), found {}",
                fields.len()
            ));
        }
        let (minute, _) = field(fields[0], &MINUTE)?;
        let (hour, _) = field(fields[1], &HOUR)?;
        let (dom, dom_star) = field(fields[2], &DOM)?;
        let (month, _) = field(fields[3], &MONTH)?;
        let (dow, dow_star) = field(fields[4], &DOW)?;
        Ok(Self {
            minute,
            hour,
            dom,
            month,
            dow,
            dom_star,
            dow_star,
        })
    }

    fn day_matches(&self, d: NaiveDate) -> bool {
        if self.month & (1 << d.month()) == 0 {
            return false;
        }
        let dom = self.dom & (1 << d.day()) != 0;
        let dow = self.dow & (1 << d.weekday().num_days_from_sunday()) != 0;
        if self.dom_star || self.dow_star {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// The first tick strictly after `after`, in zone `tz`; `None` when none comes within five years
    /// (e.g. `0 0 30 2 *`).
    pub fn next_after(&self, after: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        let start = after.with_timezone(&tz).date_naive();
        // Start a day early: the local date of `after` may be ahead of a tick still to come on the
        // previous local date around a DST change.
        let mut day = start.pred_opt()?;
        for _ in 0..SEARCH_DAYS {
            if self.day_matches(day) {
                for h in 0..24u32 {
                    if self.hour & (1 << h) == 0 {
                        continue;
                    }
                    for m in 0..60u32 {
                        if self.minute & (1 << m) == 0 {
                            continue;
                        }
                        let Some(time) = NaiveTime::from_hms_opt(h, m, 0) else {
                            continue;
                        };
                        // A time in the spring-forward gap does not exist: skipped. A repeated one
                        // (fall back) fires at its first occurrence only.
                        let Some(t) = tz.from_local_datetime(&day.and_time(time)).earliest() else {
                            continue;
                        };
                        let t = t.with_timezone(&Utc);
                        if t > after {
                            return Some(t);
                        }
                    }
                }
            }
            day = day.succ_opt()?;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("the test timestamp is RFC 3339")
            .with_timezone(&Utc)
    }

    fn next(spec: &str, after: &str, tz: Tz) -> String {
        CronSpec::parse(spec)
            .expect("the test cron spec parses")
            .next_after(utc(after), tz)
            .map(|t| t.to_rfc3339())
            .unwrap_or_default()
    }

    #[test]
    fn plain_fields() {
        let z = chrono_tz::UTC;
        assert_eq!(
            next("*/15 * * * *", "2026-01-01T10:07:00Z", z),
            "2026-01-01T10:15:00+00:00"
        );
        assert_eq!(
            next("0 9 * * 1-5", "2026-01-02T09:00:00Z", z),
            "2026-01-05T09:00:00+00:00"
        );
        assert_eq!(
            next("30 2 1 * *", "2026-01-01T03:00:00Z", z),
            "2026-02-01T02:30:00+00:00"
        );
        assert_eq!(
            next("0 12 * JAN,jul SUN", "2026-01-05T00:00:00Z", z),
            "2026-01-11T12:00:00+00:00"
        );
        assert_eq!(
            next("5/20 * * * *", "2026-01-01T00:06:00Z", z),
            "2026-01-01T00:25:00+00:00"
        );
        assert_eq!(
            next("0 0 29 2 *", "2026-01-01T00:00:00Z", z),
            "2028-02-29T00:00:00+00:00"
        );
        assert_eq!(next("0 0 30 2 *", "2026-01-01T00:00:00Z", z), "");
    }

    #[test]
    fn restricted_day_of_month_and_week_is_either() {
        // 2026-01-13 is a Tuesday; the 15th a Thursday: "the 15th or any Tuesday".
        let z = chrono_tz::UTC;
        assert_eq!(
            next("0 0 15 * 2", "2026-01-12T00:00:00Z", z),
            "2026-01-13T00:00:00+00:00"
        );
        assert_eq!(
            next("0 0 15 * 2", "2026-01-13T00:00:00Z", z),
            "2026-01-15T00:00:00+00:00"
        );
        // With a star on one side, both must hold.
        assert_eq!(
            next("0 0 15 * *", "2026-01-12T00:00:00Z", z),
            "2026-01-15T00:00:00+00:00"
        );
        assert_eq!(
            next("0 0 * * 2", "2026-01-12T00:00:00Z", z),
            "2026-01-13T00:00:00+00:00"
        );
        // `*/2` is a step, not a star (robfig clears the star bit for steps above 1).
        assert_eq!(
            next("0 0 */2 * 2", "2026-01-02T00:00:00Z", z),
            "2026-01-03T00:00:00+00:00"
        );
    }

    #[test]
    fn invalid_specs() {
        for bad in [
            "* * * *",
            "0 * * * * *",
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "* * * 13 *",
            "* * * * 7",
            "*/0 * * * *",
            "5-1 * * * *",
            "* * * FOO *",
            "@daily",
            "1#2 * * * *",
        ] {
            assert!(CronSpec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn daylight_saving_changes() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap_or(chrono_tz::UTC);
        // Spring forward 2026-03-29 02:00 → 03:00 local: 02:30 does not exist that day.
        assert_eq!(
            next("30 2 * * *", "2026-03-28T02:00:00Z", berlin),
            "2026-03-30T00:30:00+00:00",
            "skipped on the day it does not exist; next day 02:30 CEST"
        );
        // 03:30 after the change is UTC+2.
        assert_eq!(
            next("30 3 * * *", "2026-03-28T12:00:00Z", berlin),
            "2026-03-29T01:30:00+00:00"
        );
        // Fall back 2026-10-25 03:00 → 02:00: 02:30 happens twice, fired once (the first, CEST).
        let first = next("30 2 * * *", "2026-10-24T12:00:00Z", berlin);
        assert_eq!(first, "2026-10-25T00:30:00+00:00");
        assert_eq!(
            next("30 2 * * *", &first, berlin),
            "2026-10-26T01:30:00+00:00",
            "no second fire at 02:30 CET"
        );
        // Hourly ticks across fall back: every real hour fires once, 24+1 ticks that day.
        let spec = CronSpec::parse("0 * * * *").expect("an hourly cron spec parses");
        let mut t = utc("2026-10-24T21:59:00Z");
        let mut n = 0;
        while let Some(next) = spec.next_after(t, berlin) {
            if next >= utc("2026-10-25T23:00:00Z") {
                break;
            }
            n += 1;
            t = next;
        }
        assert_eq!(
            n, 24,
            "local midnight to midnight on a 25-hour day, the repeated 02:00 once"
        );
    }
}
