//! `filters.time`: a daily window `[start, stop)` of wall-clock time (`HH:MM:SS`) in `timezone`
//! (an IANA name; default UTC), judged on the event's time. When `stop` is not after `start` the
//! window wraps past midnight: `[start, 24:00) ∪ [00:00, stop)` — upstream's rule, which also makes
//! `start == stop` match every time. A start or stop that does not parse is an error (false).

use chrono::{DateTime, NaiveTime, Utc};
use chrono_tz::Tz;
use sluice_crds::sensor::TimeFilter;

use super::FilterError;

/// A time filter, parsed once.
#[derive(Clone, Debug)]
pub struct CompiledTimeFilter {
    window: Result<(NaiveTime, NaiveTime, Tz), FilterError>,
}

fn parse_time(field: &'static str, text: &str) -> Result<NaiveTime, FilterError> {
    NaiveTime::parse_from_str(text, "%H:%M:%S").map_err(|_| FilterError::Time {
        reason: format!("`{field}` is `{text}`, expected HH:MM:SS"),
    })
}

impl CompiledTimeFilter {
    /// Parses start, stop and timezone; a problem is kept and reported on evaluation.
    pub fn new(filter: &TimeFilter) -> Self {
        let window = (|| {
            let start = parse_time("start", &filter.start)?;
            let stop = parse_time("stop", &filter.stop)?;
            let tz = match filter.timezone.as_deref().filter(|t| !t.is_empty()) {
                None => Tz::UTC,
                Some(name) => name.parse::<Tz>().map_err(|_| FilterError::Time {
                    reason: format!("unknown timezone `{name}` (use an IANA name such as Europe/Berlin)"),
                })?,
            };
            Ok((start, stop, tz))
        })();
        Self { window }
    }

    /// The parse problem, if any (for `sluice validate`).
    pub fn static_problem(&self) -> Option<FilterError> {
        self.window.as_ref().err().cloned()
    }

    /// Whether `at` falls in the window. `seen` receives the wall-clock time it was judged on.
    pub fn evaluate_seen(&self, at: DateTime<Utc>, seen: &mut Option<String>) -> Result<bool, FilterError> {
        let (start, stop, tz) = self.window.as_ref().map_err(Clone::clone)?;
        let local = at.with_timezone(tz).time();
        if seen.is_none() {
            *seen = Some(format!("{} {tz}", local.format("%H:%M:%S%.f")));
        }
        Ok(if start < stop {
            *start <= local && local < *stop
        } else {
            *start <= local || local < *stop
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn filter(start: &str, stop: &str, tz: Option<&str>) -> CompiledTimeFilter {
        CompiledTimeFilter::new(&TimeFilter {
            start: start.into(),
            stop: stop.into(),
            timezone: tz.map(Into::into),
        })
    }

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 3, 1, h, m, s)
            .single()
            .unwrap_or_default()
    }

    fn check(f: &CompiledTimeFilter, t: DateTime<Utc>) -> bool {
        f.evaluate_seen(t, &mut None)
            .expect("the test time filter evaluates")
    }

    #[test]
    fn inside_outside_and_bounds() {
        let f = filter("09:00:00", "17:00:00", None);
        assert!(check(&f, at(9, 0, 0)), "start is inclusive");
        assert!(check(&f, at(12, 30, 0)));
        assert!(!check(&f, at(17, 0, 0)), "stop is exclusive");
        assert!(!check(&f, at(8, 59, 59)));
    }

    #[test]
    fn windows_wrap_past_midnight() {
        let f = filter("22:00:00", "02:00:00", None);
        assert!(check(&f, at(23, 0, 0)));
        assert!(check(&f, at(1, 59, 59)));
        assert!(!check(&f, at(2, 0, 0)));
        assert!(!check(&f, at(12, 0, 0)));
        assert!(check(&filter("10:00:00", "10:00:00", None), at(3, 0, 0)));
    }

    #[test]
    fn timezones_shift_the_window() {
        // 08:30 UTC is 09:30 in Berlin (CET, UTC+1 on 1 March).
        let f = filter("09:00:00", "10:00:00", Some("Europe/Berlin"));
        assert!(check(&f, at(8, 30, 0)));
        assert!(!check(&f, at(9, 30, 0)));
    }

    #[test]
    fn bad_times_and_zones_are_errors() {
        for f in [
            filter("9am", "10:00:00", None),
            filter("09:00:00", "", None),
            filter("09:00:00", "10:00:00", Some("Mars/Olympus")),
        ] {
            assert!(f.static_problem().is_some());
            assert!(f.evaluate_seen(at(9, 0, 0), &mut None).is_err());
        }
    }
}
