//! `conditionsReset.byTime`: at each tick of a cron schedule (5 fields, in a time zone, default
//! UTC), the trigger's held events are dropped, so a condition half satisfied before the tick starts
//! over (e.g. "a and b on the same day"). The tick time travels with the reset, so replicas sharing
//! the state apply each tick once.

use std::str::FromStr as _;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use sluice_crds::eventsource::cron::CronSpec;
use sluice_crds::eventsource::{parse_schedule, CalendarSchedule};
use sluice_crds::sensor::ConditionsResetCriteria;

/// The reset ticks of one trigger.
#[derive(Clone, Debug)]
pub struct ResetSchedule {
    crons: Vec<(CronSpec, Tz)>,
}

/// Why a `conditionsReset` entry cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResetError {
    /// `byTime` is missing.
    #[error("conditionsReset[{index}]: set byTime.cron")]
    Missing {
        /// The entry's index.
        index: usize,
    },
    /// The cron spec does not parse (or uses a form the reset does not take).
    #[error("conditionsReset[{index}].byTime.cron: {reason}")]
    Cron {
        /// The entry's index.
        index: usize,
        /// Why.
        reason: String,
    },
    /// The time zone is unknown.
    #[error("conditionsReset[{index}].byTime.timezone: unknown time zone {zone:?} (use an IANA name such as Europe/Paris)")]
    Timezone {
        /// The entry's index.
        index: usize,
        /// The zone as written.
        zone: String,
    },
}

impl ResetSchedule {
    /// The schedule of `criteria`; `None` when there are none.
    pub fn from_spec(criteria: &[ConditionsResetCriteria]) -> Result<Option<Self>, ResetError> {
        let mut crons = Vec::new();
        for (index, c) in criteria.iter().enumerate() {
            let by_time = c.by_time.as_ref().ok_or(ResetError::Missing { index })?;
            let spec = by_time.cron.as_deref().unwrap_or_default();
            let parsed = parse_schedule(spec).map_err(|e| ResetError::Cron {
                index,
                reason: e.to_string(),
            })?;
            let (schedule, prefix_zone) = match parsed.schedule {
                CalendarSchedule::Cron { schedule, timezone } => (schedule, timezone),
                CalendarSchedule::Every(_) => {
                    return Err(ResetError::Cron {
                        index,
                        reason: "@every is not a time of day; use a 5-field cron spec".into(),
                    })
                }
            };
            let zone = prefix_zone
                .or_else(|| by_time.timezone.clone())
                .filter(|z| !z.trim().is_empty())
                .unwrap_or_else(|| "UTC".into());
            let tz = Tz::from_str(zone.trim()).map_err(|_| ResetError::Timezone { index, zone })?;
            crons.push((schedule, tz));
        }
        Ok((!crons.is_empty()).then_some(Self { crons }))
    }

    /// The first tick strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.crons
            .iter()
            .filter_map(|(schedule, tz)| schedule.next_after(after, *tz))
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schedule(criteria: serde_json::Value) -> Result<Option<ResetSchedule>, ResetError> {
        let criteria: Vec<ConditionsResetCriteria> =
            serde_json::from_value(criteria).expect("the test criteria deserialize");
        ResetSchedule::from_spec(&criteria)
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("the test timestamp is RFC 3339")
            .with_timezone(&Utc)
    }

    #[test]
    fn next_tick_in_the_schedule_zone_across_a_dst_change() -> Result<(), ResetError> {
        let s = schedule(json!([{"byTime": {"cron": "0 2 * * *", "timezone": "Europe/Paris"}}]))?
            .ok_or(ResetError::Missing { index: 0 })?;
        // Winter: 02:00 in Paris is 01:00 UTC.
        assert_eq!(
            s.next_after(at("2026-01-10T12:00:00Z")),
            Some(at("2026-01-11T01:00:00Z"))
        );
        // Summer: 02:00 in Paris is 00:00 UTC.
        assert_eq!(
            s.next_after(at("2026-07-10T12:00:00Z")),
            Some(at("2026-07-11T00:00:00Z"))
        );
        // 29 March 2026: 02:00 does not exist in Paris (clocks jump to 03:00), so the next tick is
        // the following day's.
        assert_eq!(
            s.next_after(at("2026-03-28T12:00:00Z")),
            Some(at("2026-03-30T00:00:00Z"))
        );
        Ok(())
    }

    #[test]
    fn the_earliest_of_several_entries_wins_and_utc_is_the_default() -> Result<(), ResetError> {
        let s = schedule(json!([{"byTime": {"cron": "0 12 * * *"}}, {"byTime": {"cron": "30 6 * * *"}}]))?
            .ok_or(ResetError::Missing { index: 0 })?;
        assert_eq!(
            s.next_after(at("2026-05-01T07:00:00Z")),
            Some(at("2026-05-01T12:00:00Z"))
        );
        assert_eq!(
            s.next_after(at("2026-05-01T12:00:00Z")),
            Some(at("2026-05-02T06:30:00Z"))
        );
        Ok(())
    }

    #[test]
    fn bad_entries_name_the_field() {
        assert!(matches!(schedule(json!([])), Ok(None)));
        let err = |v| schedule(v).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err(json!([{}])).contains("conditionsReset[0]: set byTime.cron"));
        assert!(err(json!([{"byTime": {"cron": "0 0 * *"}}])).contains("conditionsReset[0].byTime.cron"));
        assert!(err(json!([{"byTime": {"cron": "@every 1h"}}])).contains("5-field"));
        assert!(
            err(json!([{"byTime": {"cron": "0 0 * * *", "timezone": "Mars/Olympus"}}]))
                .contains("unknown time zone \"Mars/Olympus\"")
        );
    }
}
