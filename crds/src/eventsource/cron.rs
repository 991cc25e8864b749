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
//!
//! Not the `croner` crate either: next to robfig's answers (the `robfig_*` tests below) it fires a
//! time of the spring-forward gap right after the gap, reads `*/1` in day-of-month or day-of-week as
//! a restriction (so "either day" instead of "both"), and runs `MON/2` on to 7, which it reads as
//! Sunday. The README's dependency notes have the comparison.

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
        // robfig skips empty list items: `1,,2` is `1,2`.
        if item.is_empty() {
            continue;
        }
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
    if bits == 0 {
        // robfig accepts a field of commas only and then never fires; refused here instead.
        return Err(format!("{text:?} lists no value"));
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

    // What upstream does, recorded by running robfig/cron v3.0.1 as upstream's calendar source and
    // sensor reset parse a schedule (`NewParser(Minute | Hour | Dom | Month | Dow)`, no descriptors)
    // and `Next` from an instant in the zone. Lines marked `croner:` are where the croner crate
    // answers otherwise.

    /// Specs robfig accepts.
    const ROBFIG_ACCEPTS: &[&str] = &[
        "* * * * *",
        "0 0 * * *",
        "*/5 * * * *",
        "0-59/10 * * * *",
        "5/15 * * * *",
        "0 9-17 * * 1-5",
        "0 0 1,15 * *",
        "0 0 ? * ?",
        "? ? ? ? ?", // croner: refuses `?` outside day-of-month and day-of-week
        "?/5 * * * *",
        "0 0 * JAN-MAR MON",
        "0 0 * jan sun",
        "0 0 * * Sun",
        "0 0 * * sun-tue",
        "0 0 * * 0",
        "0 0 * * 6",
        "0 0 31 12 *",
        "0 0 1-31 * *",
        "1,,2 * * * *",
        "1, * * * *",
        "+5 * * * *", // croner: refuses the `+`
        "05 * * * *",
        "0 0 * * MON/2",
        "0 0 * JAN/3 *",
        "*/1 * * * *",
        "*/60 * * * *",
        "0 0 *,15 * 1", // croner: refuses `*` inside a list
        "0 0 * * +1",   // croner: reads a leading `+` as "day-of-month and day-of-week"
        "  0   0  *  *  *  ",
    ];

    /// Specs robfig refuses. croner accepts the descriptors, `L`, `W`, `#`, day of week 7, names in
    /// the wrong field (`JAN` as a weekday) and `/5`.
    const ROBFIG_REJECTS: &[&str] = &[
        "",
        "@daily",
        "@hourly",
        "@weekly",
        "@every 1h",
        "0 0 L * *",
        "0 0 LW * *",
        "0 0 15W * *",
        "0 0 * * 5L",
        "0 0 * * 1#2",
        "0 0 * * 7",
        "0 0 * * 0-7",
        "0 0 * * 5-7",
        "0 0 * * fri-sun",
        "0 0 0 * * *",
        "0 0 0 * * * 2026",
        "* * * *",
        "60 * * * *",
        "* 24 * * *",
        "* * 0 * *",
        "* * 32 * *",
        "* * * 0 *",
        "* * * 13 *",
        "*/0 * * * *",
        "5-1 * * * *",
        "0-60/5 * * * *",
        "0 0 * FOO *",
        "0 0 * * FUN",
        "0 0 * * JAN",
        "0 0 * MON *",
        "0 0 * * MONDAY",
        "/5 * * * *",
        "-1 * * * *",
        "1-2-3 * * * *",
        "1/2/3 * * * *",
        "*/x * * * *",
        "1.5 * * * *",
    ];

    /// robfig's next fire times, one case a line: `spec | zone | after => next next …` (`none`: no
    /// time within robfig's five years). Sluice gives the same, except that a wall-clock time the
    /// fall-back hour repeats fires once (see `robfig_next_fire_times`).
    const ROBFIG_NEXT: &str = "
*/15 * * * *          | UTC                 | 2026-01-01T10:07:00Z => 2026-01-01T10:15Z 2026-01-01T10:30Z 2026-01-01T10:45Z
* * * * *             | UTC                 | 2026-01-01T00:00:30Z => 2026-01-01T00:01Z 2026-01-01T00:02Z
0 9 * * 1-5           | UTC                 | 2026-01-02T09:00:00Z => 2026-01-05T09:00Z 2026-01-06T09:00Z 2026-01-07T09:00Z
30 2 1 * *            | UTC                 | 2026-01-01T03:00:00Z => 2026-02-01T02:30Z 2026-03-01T02:30Z
0 12 * JAN,jul SUN    | UTC                 | 2026-01-05T00:00:00Z => 2026-01-11T12:00Z 2026-01-18T12:00Z 2026-01-25T12:00Z
5/20 * * * *          | UTC                 | 2026-01-01T00:06:00Z => 2026-01-01T00:25Z 2026-01-01T00:45Z 2026-01-01T01:05Z 2026-01-01T01:25Z
30 */7 * * *          | UTC                 | 2026-01-01T00:00:00Z => 2026-01-01T00:30Z 2026-01-01T07:30Z 2026-01-01T14:30Z 2026-01-01T21:30Z 2026-01-02T00:30Z
*/10 9-17 * * MON-FRI | UTC                 | 2026-01-02T17:45:00Z => 2026-01-02T17:50Z 2026-01-05T09:00Z 2026-01-05T09:10Z
0 0,12 1 */2 *        | UTC                 | 2026-01-15T00:00:00Z => 2026-03-01T00:00Z 2026-03-01T12:00Z 2026-05-01T00:00Z
0 0 */5 * *           | UTC                 | 2026-01-26T00:00:00Z => 2026-01-31T00:00Z 2026-02-01T00:00Z 2026-02-06T00:00Z
0 0 * * 0             | UTC                 | 2026-01-04T00:00:00Z => 2026-01-11T00:00Z 2026-01-18T00:00Z
0 0 1 1 *             | UTC                 | 2026-06-01T00:00:00Z => 2027-01-01T00:00Z 2028-01-01T00:00Z
59 23 31 12 *         | UTC                 | 2026-12-31T23:59:00Z => 2027-12-31T23:59Z
0 0 31 * *            | UTC                 | 2026-01-31T00:00:00Z => 2026-03-31T00:00Z 2026-05-31T00:00Z 2026-07-31T00:00Z 2026-08-31T00:00Z
0 0 29 2 *            | UTC                 | 2026-01-01T00:00:00Z => 2028-02-29T00:00Z 2032-02-29T00:00Z
# croner: 2104-02-29 (2100 is no leap year; croner searches on, robfig stops after five years)
0 0 29 2 *            | UTC                 | 2096-03-01T00:00:00Z => none
0 0 30 2 *            | UTC                 | 2026-01-01T00:00:00Z => none
0 0 31 4,6,9,11 *     | UTC                 | 2026-01-01T00:00:00Z => none
# Both days restricted: the 15th or a Tuesday; the 1st or a Monday; in February, the 29th or a Monday.
0 0 15 * 2            | UTC                 | 2026-01-12T00:00:00Z => 2026-01-13T00:00Z 2026-01-15T00:00Z 2026-01-20T00:00Z 2026-01-27T00:00Z
0 0 1 * MON           | UTC                 | 2026-01-27T00:00:00Z => 2026-02-01T00:00Z 2026-02-02T00:00Z 2026-02-09T00:00Z 2026-02-16T00:00Z
0 0 29 2 1            | UTC                 | 2026-01-01T00:00:00Z => 2026-02-02T00:00Z 2026-02-09T00:00Z 2026-02-16T00:00Z
0 0 */2 * 2           | UTC                 | 2026-01-02T00:00:00Z => 2026-01-03T00:00Z 2026-01-05T00:00Z 2026-01-06T00:00Z 2026-01-07T00:00Z
0 0 1-31 * 2          | UTC                 | 2026-01-02T00:00:00Z => 2026-01-03T00:00Z 2026-01-04T00:00Z 2026-01-05T00:00Z
0 0 ? * 2             | UTC                 | 2026-01-02T00:00:00Z => 2026-01-06T00:00Z 2026-01-13T00:00Z
# A star, even with step 1 or in a list, leaves the other day field alone to decide.
# croner: every day from 2026-01-03 for the first and third (it takes `*/1` as a restriction).
# croner refuses the second.
0 0 */1 * 2           | UTC                 | 2026-01-02T00:00:00Z => 2026-01-06T00:00Z 2026-01-13T00:00Z 2026-01-20T00:00Z
0 0 *,15 * 2          | UTC                 | 2026-01-02T00:00:00Z => 2026-01-06T00:00Z 2026-01-13T00:00Z 2026-01-20T00:00Z
0 0 13 * */1          | UTC                 | 2026-01-02T00:00:00Z => 2026-01-13T00:00Z 2026-02-13T00:00Z
# croner: 2026-01-04 (a Sunday) first: its weekday range runs to 7.
0 0 * * MON/2         | UTC                 | 2026-01-02T00:00:00Z => 2026-01-05T00:00Z 2026-01-07T00:00Z 2026-01-09T00:00Z
0 12 * * sun-tue      | UTC                 | 2026-01-02T00:00:00Z => 2026-01-04T12:00Z 2026-01-05T12:00Z 2026-01-06T12:00Z
1,,2 * * * *          | UTC                 | 2026-01-02T00:00:00Z => 2026-01-02T00:01Z 2026-01-02T00:02Z 2026-01-02T01:01Z
# New York: 2026-03-08 02:00 EST -> 03:00 EDT; 2026-11-01 02:00 EDT -> 01:00 EST.
# croner: 2026-03-08T07:00Z (03:00 EDT) first for the next two: it fires a gap time after the gap.
30 2 * * *            | America/New_York    | 2026-03-07T12:00:00Z => 2026-03-09T06:30Z 2026-03-10T06:30Z
0 2 * * *             | America/New_York    | 2026-03-07T12:00:00Z => 2026-03-09T06:00Z 2026-03-10T06:00Z
*/30 * * * *          | America/New_York    | 2026-03-08T06:15:00Z => 2026-03-08T06:30Z 2026-03-08T07:00Z 2026-03-08T07:30Z 2026-03-08T08:00Z
0 9 * * *             | America/New_York    | 2026-03-07T15:00:00Z => 2026-03-08T13:00Z 2026-03-09T13:00Z
30 1 * * *            | America/New_York    | 2026-10-31T12:00:00Z => 2026-11-01T05:30Z 2026-11-01T06:30Z 2026-11-02T06:30Z
*/30 * * * *          | America/New_York    | 2026-11-01T04:45:00Z => 2026-11-01T05:00Z 2026-11-01T05:30Z 2026-11-01T06:00Z 2026-11-01T06:30Z 2026-11-01T07:00Z 2026-11-01T07:30Z
0 * * * *             | America/New_York    | 2026-11-01T03:30:00Z => 2026-11-01T04:00Z 2026-11-01T05:00Z 2026-11-01T06:00Z 2026-11-01T07:00Z
0 22 * * 1-5          | America/New_York    | 2026-11-01T00:00:00Z => 2026-11-03T03:00Z 2026-11-04T03:00Z
# Berlin: 2026-03-29 02:00 CET -> 03:00 CEST; 2026-10-25 03:00 CEST -> 02:00 CET.
# croner: 2026-03-29T01:00Z (03:00 CEST) first for `30 2 * * *`, `0 2 29 3 *` and `15 2 * * 0`.
30 2 * * *            | Europe/Berlin       | 2026-03-28T02:00:00Z => 2026-03-30T00:30Z 2026-03-31T00:30Z
30 3 * * *            | Europe/Berlin       | 2026-03-28T12:00:00Z => 2026-03-29T01:30Z
0 2 29 3 *            | Europe/Berlin       | 2026-01-01T00:00:00Z => 2027-03-29T00:00Z 2028-03-29T00:00Z
0 0 * * *             | Europe/Berlin       | 2026-03-28T12:00:00Z => 2026-03-28T23:00Z 2026-03-29T22:00Z
15 2 * * 0            | Europe/Berlin       | 2026-03-22T12:00:00Z => 2026-04-05T00:15Z 2026-04-12T00:15Z
30 2 * * *            | Europe/Berlin       | 2026-10-24T12:00:00Z => 2026-10-25T00:30Z 2026-10-25T01:30Z 2026-10-26T01:30Z
0 * * * *             | Europe/Berlin       | 2026-10-24T23:30:00Z => 2026-10-25T00:00Z 2026-10-25T01:00Z 2026-10-25T02:00Z 2026-10-25T03:00Z
0 2 * * *             | Europe/Berlin       | 2026-10-24T12:00:00Z => 2026-10-25T00:00Z 2026-10-25T01:00Z
# Lord Howe, half-hour shifts: 2026-04-05 02:00 (+11) -> 01:30 (+10:30); 2026-10-04 02:00 -> 02:30.
# croner: 2026-10-03T15:30Z (02:30, the end of the gap) first for `15 2 * * *` and `0 2 * * *`.
15 2 * * *            | Australia/Lord_Howe | 2026-10-03T00:00:00Z => 2026-10-04T15:15Z 2026-10-05T15:15Z
45 2 * * *            | Australia/Lord_Howe | 2026-10-03T00:00:00Z => 2026-10-03T15:45Z
*/15 * * * *          | Australia/Lord_Howe | 2026-10-03T15:10:00Z => 2026-10-03T15:15Z 2026-10-03T15:30Z 2026-10-03T15:45Z 2026-10-03T16:00Z
0 2 * * *             | Australia/Lord_Howe | 2026-10-03T00:00:00Z => 2026-10-04T15:00Z 2026-10-05T15:00Z
45 1 * * *            | Australia/Lord_Howe | 2026-04-04T00:00:00Z => 2026-04-04T14:45Z 2026-04-04T15:15Z
*/15 * * * *          | Australia/Lord_Howe | 2026-04-04T14:20:00Z => 2026-04-04T14:30Z 2026-04-04T14:45Z 2026-04-04T15:00Z 2026-04-04T15:15Z 2026-04-04T15:30Z 2026-04-04T15:45Z
# Havana moves its clock at midnight: 2026-03-08 00:00 -> 01:00; 2026-11-01 01:00 -> 00:00.
# croner: 2026-03-08T05:00Z (01:00) first for `0 0 * * *`.
0 0 * * *             | America/Havana      | 2026-03-07T12:00:00Z => 2026-03-09T04:00Z 2026-03-10T04:00Z
30 0 * * *            | America/Havana      | 2026-10-31T12:00:00Z => 2026-11-01T04:30Z 2026-11-01T05:30Z 2026-11-02T05:30Z
";

    fn rfc3339(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("an RFC 3339 time in the table")
            .with_timezone(&Utc)
    }

    fn minutes(t: DateTime<Utc>) -> String {
        t.format("%Y-%m-%dT%H:%MZ").to_string()
    }

    /// The second instant of a wall-clock time the fall-back hour repeats.
    fn second_pass(t: DateTime<Utc>, tz: Tz) -> bool {
        let local = t.with_timezone(&tz).naive_local();
        tz.from_local_datetime(&local)
            .earliest()
            .is_some_and(|first| first.with_timezone(&Utc) < t)
    }

    #[test]
    fn robfig_accepts_and_rejects_the_same_specs() {
        for spec in ROBFIG_ACCEPTS {
            assert!(
                CronSpec::parse(spec).is_ok(),
                "robfig accepts {spec:?}: {:?}",
                CronSpec::parse(spec)
            );
        }
        for spec in ROBFIG_REJECTS {
            assert!(CronSpec::parse(spec).is_err(), "robfig rejects {spec:?}");
        }
        // Where Sluice is stricter: robfig takes a field of commas only, and never fires.
        assert!(CronSpec::parse(", * * * *").is_err());
    }

    #[test]
    fn robfig_next_fire_times() {
        let mut cases = 0;
        for line in ROBFIG_NEXT
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        {
            let (case, answer) = line.split_once("=>").expect("`=>` in every case");
            let fields: Vec<&str> = case.split('|').map(str::trim).collect();
            let [spec, zone, after] = fields[..] else {
                panic!("spec | zone | after in {line:?}")
            };
            let tz: Tz = zone.parse().expect("an IANA zone in the table");
            // Sluice's one difference: a repeated wall-clock time fires on its first pass only.
            let robfig: Vec<&str> = answer.split_whitespace().collect();
            let expected: Vec<&str> = robfig
                .iter()
                .copied()
                .filter(|t| *t == "none" || !second_pass(rfc3339(&t.replace('Z', ":00Z")), tz))
                .collect();
            let schedule = CronSpec::parse(spec).expect("a spec robfig accepts");
            let mut t = rfc3339(after);
            let mut got = Vec::new();
            while got.len() < expected.len() {
                match schedule.next_after(t, tz) {
                    Some(next) => {
                        got.push(minutes(next));
                        t = next;
                    }
                    None => {
                        got.push("none".to_string());
                        break;
                    }
                }
            }
            assert_eq!(
                got, expected,
                "{spec:?} in {zone} after {after} (robfig: {robfig:?})"
            );
            cases += 1;
        }
        assert_eq!(cases, 54, "every line of the table ran");
    }

    #[test]
    fn robfig_misses_a_time_a_half_hour_fall_back_leaves_single() {
        // On 2026-04-05 Lord Howe goes from 02:00 (+11) back to 01:30 (+10:30): 01:30-01:59 happen
        // twice, 02:00 once (15:30Z). robfig steps an hour at a time from 01:00 (+11), lands on
        // 01:30 and 02:30, never on 02:00, and answers 2026-04-05T15:30Z, a day late. Sluice (and
        // croner) fire at 02:00.
        let tz: Tz = "Australia/Lord_Howe".parse().expect("a zone");
        let spec = CronSpec::parse("0 2 * * *").expect("valid");
        let first = spec
            .next_after(rfc3339("2026-04-04T00:00:00Z"), tz)
            .expect("a tick");
        assert_eq!(minutes(first), "2026-04-04T15:30Z");
        assert_eq!(
            spec.next_after(first, tz).map(minutes).as_deref(),
            Some("2026-04-05T15:30Z")
        );
    }
}
