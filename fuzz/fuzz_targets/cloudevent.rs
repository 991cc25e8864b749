//! The CloudEvent decoding of bus messages (`Event::from_json`, what a sensor runs on every message
//! it pulls). An event that decodes must encode and decode again to the same event.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(event) = sluice_eventbus::Event::from_json(data) else {
        return;
    };
    sluice_fuzz::assert_round_trip(&event);
    let _ = event.encoded_len();
    let _ = event.extensions().count();
    let _ = event.extension("traceparent");
});
