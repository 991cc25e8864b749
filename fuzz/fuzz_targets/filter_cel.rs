//! A CEL filter (`filters.cel`, a Sluice extension) on arbitrary event data: `EXPRESSION\n---\nDATA`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((cel, event_data)) = sluice_fuzz::split(data) else {
        return;
    };
    let filters = sluice_crds::sensor::EventDependencyFilter {
        cel: Some(cel.to_owned()),
        ..Default::default()
    };
    sluice_fuzz::run_filters(&filters, None, event_data);
});
