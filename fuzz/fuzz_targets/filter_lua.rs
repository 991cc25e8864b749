//! A Lua filter (`filters.script`) on arbitrary event data: `SCRIPT\n---\nDATA`. The script runs
//! under the sensor's limits (instructions, memory, time), which must hold for any script.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((script, event_data)) = sluice_fuzz::split(data) else {
        return;
    };
    let filters = sluice_crds::sensor::EventDependencyFilter {
        script: Some(script.to_owned()),
        ..Default::default()
    };
    sluice_fuzz::run_filters(&filters, None, event_data);
});
