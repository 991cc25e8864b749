//! Time-based events: the `calendar` source ticks on a cron schedule or a fixed interval. Also the
//! pure schedule parser shared by validation and the runtime, so both accept exactly the same
//! specs.

use std::collections::BTreeMap;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::cron::CronSpec;
use super::EventSourceFilter;

/// Ticks on a schedule. Set `schedule` or `interval`; when both are set `schedule` wins, as
/// upstream.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CalendarEventSource {
    /// A standard 5-field cron spec (minute hour day-of-month month day-of-week, Sunday = 0),
    /// e.g. `*/10 * * * *`; may start with `CRON_TZ=<zone> `. Sluice also accepts the
    /// descriptors `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly` and `@every <duration>`,
    /// which upstream Argo Events rejects here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// A fixed time between ticks as a duration, e.g. `10s`, `1h30m`. Used when `schedule` is
    /// not set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// Days on which no tick fires, as iCalendar `EXDATE` entries:
    /// `EXDATE:20240101T000000Z[,…]`. Entries without the `EXDATE:` prefix are ignored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclusion_dates: Vec<String>,
    /// The IANA time zone the schedule is read in, e.g. `Europe/Berlin`. Default: the
    /// process's local time zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Extra key/value pairs copied into every event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// Remember the last tick, so ticks missed while the source was down can be fired on restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistence: Option<EventPersistence>,
    /// Only ticks matching this filter are published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<EventSourceFilter>,
}

/// Where and whether the last tick is remembered.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventPersistence {
    /// Fire missed ticks after a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catchup: Option<CatchupConfiguration>,
    /// The ConfigMap storing the time of the last tick.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<ConfigMapPersistence>,
}

/// Catch-up of ticks missed while the source was not running.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CatchupConfiguration {
    /// On start, fire every tick scheduled since the last persisted one. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub enabled: bool,
    /// How far back to catch up at most, as a duration (`5m`, `1h`). Default: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_duration: Option<String>,
}

/// A ConfigMap (in the EventSource's namespace) holding the last tick time.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapPersistence {
    /// The ConfigMap name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Create the ConfigMap when it does not exist. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub create_if_not_exist: bool,
}

/// A calendar schedule ready to compute tick times.
#[derive(Clone, Debug, PartialEq)]
pub enum CalendarSchedule {
    /// Cron ticks (a descriptor such as `@daily` is already turned into its 5-field spec).
    Cron {
        /// The parsed schedule.
        schedule: CronSpec,
        /// The zone from a `CRON_TZ=`/`TZ=` prefix of the spec, if any; it overrides `timezone`.
        timezone: Option<String>,
    },
    /// A tick every `Duration` (from `interval` or `@every`).
    Every(Duration),
}

/// Why a calendar's schedule cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// Neither `schedule` nor `interval` is set.
    #[error("set either schedule (a cron spec) or interval (a duration such as \"10s\")")]
    Missing,
    /// The cron spec does not parse.
    #[error("invalid cron schedule {spec:?}: {reason}")]
    ParseCron { spec: String, reason: String },
    /// The interval (or `@every` duration) does not parse or is not positive.
    #[error("invalid interval {text:?}: {reason}")]
    ParseInterval { text: String, reason: String },
}

/// A parsed `schedule` string plus how portable it is.
#[derive(Clone, Debug, PartialEq)]
pub struct ParsedSpec {
    /// The schedule.
    pub schedule: CalendarSchedule,
    /// True when the spec used a descriptor (`@daily`, `@every 5m`), which upstream's calendar
    /// parser does not accept; such a manifest works in Sluice only.
    pub uses_descriptor: bool,
}

impl CalendarEventSource {
    /// The schedule to run, with upstream's precedence: a non-empty `schedule` wins over
    /// `interval`.
    pub fn resolve_schedule(&self) -> Result<CalendarSchedule, ScheduleError> {
        match (non_empty(&self.schedule), non_empty(&self.interval)) {
            (Some(spec), _) => parse_schedule(spec).map(|p| p.schedule),
            (None, Some(interval)) => parse_interval(interval).map(CalendarSchedule::Every),
            (None, None) => Err(ScheduleError::Missing),
        }
    }
}

fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// Parses a positive Go duration (`interval`, `@every`).
pub fn parse_interval(text: &str) -> Result<Duration, ScheduleError> {
    let err = |reason: String| ScheduleError::ParseInterval {
        text: text.to_string(),
        reason,
    };
    let d = crate::duration::parse_go_duration(text).map_err(|e| err(e.to_string()))?;
    if d.is_zero() {
        return Err(err("the interval must be greater than zero".to_string()));
    }
    Ok(d)
}

/// Parses a calendar `schedule` as upstream's robfig/cron parser reads it (5 fields, Sunday = 0,
/// optional `CRON_TZ=`/`TZ=` prefix; see [`CronSpec`]), plus the descriptors Sluice adds.
pub fn parse_schedule(spec: &str) -> Result<ParsedSpec, ScheduleError> {
    let err = |reason: &str| ScheduleError::ParseCron {
        spec: spec.to_string(),
        reason: reason.to_string(),
    };
    let mut rest = spec.trim();
    let mut timezone = None;
    for prefix in ["CRON_TZ=", "TZ="] {
        if let Some(after) = rest.strip_prefix(prefix) {
            let (zone, tail) = after
                .split_once(char::is_whitespace)
                .ok_or_else(|| err("nothing follows the time zone"))?;
            if zone.is_empty() {
                return Err(err("empty time zone after TZ="));
            }
            timezone = Some(zone.to_string());
            rest = tail.trim_start();
            break;
        }
    }
    if rest.is_empty() {
        return Err(err("empty schedule"));
    }
    if let Some(descriptor) = rest.strip_prefix('@') {
        let schedule = parse_descriptor(descriptor, timezone).map_err(|reason| err(&reason))?;
        return Ok(ParsedSpec {
            schedule,
            uses_descriptor: true,
        });
    }
    let schedule = CronSpec::parse(rest).map_err(|reason| err(&reason))?;
    Ok(ParsedSpec {
        schedule: CalendarSchedule::Cron { schedule, timezone },
        uses_descriptor: false,
    })
}

fn parse_descriptor(descriptor: &str, timezone: Option<String>) -> Result<CalendarSchedule, String> {
    let name = descriptor.trim();
    if let Some(duration) = name.strip_prefix("every") {
        let duration = duration.trim();
        return parse_interval(duration)
            .map(CalendarSchedule::Every)
            .map_err(|e| e.to_string());
    }
    let five = match name {
        "yearly" | "annually" => "0 0 1 1 *",
        "monthly" => "0 0 1 * *",
        "weekly" => "0 0 * * 0",
        "daily" | "midnight" => "0 0 * * *",
        "hourly" => "0 * * * *",
        other => {
            return Err(format!(
                "unknown descriptor @{other}: use @yearly, @monthly, @weekly, @daily, @hourly or @every <duration>"
            ))
        }
    };
    Ok(CalendarSchedule::Cron {
        schedule: CronSpec::parse(five)?,
        timezone,
    })
}

/// Checks one `exclusionDates` entry. `Ok(false)` means the entry lacks the `EXDATE:` prefix
/// and will be ignored.
pub fn check_exclusion_date(entry: &str) -> Result<bool, String> {
    let Some(dates) = entry.strip_prefix("EXDATE:") else {
        return Ok(false);
    };
    for date in dates.split(',') {
        if !is_ical_utc_datetime(date) {
            return Err(format!("{date:?} is not a UTC date-time like 20240101T000000Z"));
        }
    }
    Ok(true)
}

fn is_ical_utc_datetime(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return false;
    }
    if !b[..8].iter().chain(&b[9..15]).all(u8::is_ascii_digit) {
        return false;
    }
    let num = |r: std::ops::Range<usize>| s[r].parse::<u32>().unwrap_or(u32::MAX);
    (1..=12).contains(&num(4..6))
        && (1..=31).contains(&num(6..8))
        && num(9..11) < 24
        && num(11..13) < 60
        && num(13..15) < 61
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cron(spec: &str) -> CronSpec {
        match parse_schedule(spec).expect("valid spec").schedule {
            CalendarSchedule::Cron { schedule, .. } => schedule,
            other => panic!("expected a cron schedule, got {other:?}"),
        }
    }

    #[test]
    fn five_field_specs_parse() {
        for spec in [
            "* * * * *",
            "*/10 * * * *",
            "0 9 * * 1-5",
            "30 2 1 * *",
            "0 0 * * 0",
            "0 12 * JAN,JUL MON-FRI",
        ] {
            assert!(parse_schedule(spec).is_ok(), "{spec}");
        }
    }

    #[test]
    fn sunday_is_zero_as_in_classic_cron() {
        let monday = chrono::DateTime::parse_from_rfc3339("2026-01-05T00:00:00Z")
            .expect("a valid time")
            .with_timezone(&chrono::Utc);
        assert_eq!(
            cron("0 0 * * 0")
                .next_after(monday, chrono_tz::UTC)
                .map(|t| t.to_rfc3339()),
            Some("2026-01-11T00:00:00+00:00".into())
        );
        assert_eq!(cron("0 0 * * 0"), cron("0 0 * * SUN"));
        assert_eq!(cron("0 9 * * 1-5"), cron("0 9 * * MON-FRI"));
        assert!(parse_schedule("0 0 * * 7").is_err());
    }

    #[test]
    fn descriptors_are_their_five_field_specs() {
        assert_eq!(cron("@weekly"), cron("0 0 * * 0"));
        assert_eq!(cron("@daily"), cron("0 0 * * *"));
        assert_eq!(cron("@midnight"), cron("0 0 * * *"));
        assert_eq!(cron("@hourly"), cron("0 * * * *"));
        assert_eq!(cron("@monthly"), cron("0 0 1 * *"));
        assert_eq!(cron("@yearly"), cron("0 0 1 1 *"));
    }

    #[test]
    fn wrong_field_counts_are_rejected() {
        assert!(parse_schedule("* * * *").is_err());
        assert!(parse_schedule("0 * * * * *").is_err());
        assert!(parse_schedule("").is_err());
        assert!(parse_schedule("61 * * * *").is_err());
    }

    #[test]
    fn descriptors_and_time_zone_prefix() {
        let p = parse_schedule("@every 10s").expect("valid");
        assert!(p.uses_descriptor);
        assert_eq!(p.schedule, CalendarSchedule::Every(Duration::from_secs(10)));
        assert!(parse_schedule("@hourly").expect("valid").uses_descriptor);
        assert!(parse_schedule("@fortnightly").is_err());
        assert!(parse_schedule("@every 0s").is_err());
        match parse_schedule("CRON_TZ=Asia/Tokyo 0 6 * * *")
            .expect("valid")
            .schedule
        {
            CalendarSchedule::Cron { timezone, .. } => assert_eq!(timezone.as_deref(), Some("Asia/Tokyo")),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn schedule_wins_over_interval() {
        let cal = CalendarEventSource {
            schedule: Some("* * * * *".into()),
            interval: Some("10s".into()),
            ..Default::default()
        };
        assert!(matches!(
            cal.resolve_schedule(),
            Ok(CalendarSchedule::Cron { .. })
        ));
        let cal = CalendarEventSource {
            interval: Some("10s".into()),
            ..Default::default()
        };
        assert_eq!(
            cal.resolve_schedule(),
            Ok(CalendarSchedule::Every(Duration::from_secs(10)))
        );
        assert_eq!(
            CalendarEventSource::default().resolve_schedule(),
            Err(ScheduleError::Missing)
        );
    }

    #[test]
    fn exclusion_dates() {
        assert_eq!(
            check_exclusion_date("EXDATE:20240101T000000Z,20241225T120000Z"),
            Ok(true)
        );
        assert_eq!(check_exclusion_date("20240101"), Ok(false));
        assert!(check_exclusion_date("EXDATE:2024-01-01").is_err());
        assert!(check_exclusion_date("EXDATE:20241301T000000Z").is_err());
    }
}
