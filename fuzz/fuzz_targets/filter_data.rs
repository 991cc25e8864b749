//! A dependency's `filters` (data, exprs, context and time filters, with their logical operators)
//! on arbitrary event data: `FILTERS\n---\nDATA`, FILTERS as the `filters` YAML of a Sensor
//! dependency, DATA the event's JSON data (or text, as a JSON string).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((filters, event_data)) = sluice_fuzz::split(data) else {
        return;
    };
    let Ok(filters) = serde_yaml::from_str::<sluice_crds::sensor::EventDependencyFilter>(filters) else {
        return;
    };
    // Scripts and CEL have targets of their own.
    if filters.script.is_some() || filters.cel.is_some() {
        return;
    }
    sluice_fuzz::run_filters(&filters, Some("or"), event_data);
    sluice_fuzz::run_filters(&filters, None, event_data);
});
