//! The calendar source's schedule parsing: `SPEC\n---\nZONE\nAFTER\nEXDATE…`. SPEC is a 5-field cron
//! spec (robfig/cron's reading), ZONE an IANA zone (default UTC), AFTER an RFC 3339 time (default
//! 2026-01-01T00:00:00Z), then `exclusionDates` entries. The next tick must lie after AFTER, and
//! the tick after it after that one.
#![no_main]

use chrono::{DateTime, Utc};
use sluice_crds::eventsource::cron::CronSpec;
use sluice_eventsource::sources::calendar;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((spec, rest)) = sluice_fuzz::split(data) else {
        return;
    };
    let mut lines = rest.lines();
    let zone = calendar::parse_zone(lines.next().unwrap_or("UTC").trim()).unwrap_or(chrono_tz::UTC);
    let after = lines
        .next()
        .and_then(|t| DateTime::parse_from_rfc3339(t.trim()).ok())
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| DateTime::from_timestamp(1_767_225_600, 0).expect("a fixed time"));
    let exclusions: Vec<String> = lines.map(str::to_owned).collect();
    let _ = calendar::exclusion_dates(&exclusions);
    let Ok(cron) = CronSpec::parse(spec) else {
        return;
    };
    if let Some(next) = cron.next_after(after, zone) {
        assert!(
            next > after,
            "{spec:?} in {zone}: tick {next} is not after {after}"
        );
        let _ = calendar::go_time_string(next, zone);
        if let Some(then) = cron.next_after(next, zone) {
            assert!(then > next, "{spec:?} in {zone}: tick {then} is not after {next}");
        }
    }
});
