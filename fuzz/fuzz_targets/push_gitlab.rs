//! The `gitlab` push source's request handling: body, headers and signature (see `sluice_fuzz::push`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    sluice_fuzz::push::run(sluice_fuzz::push::Kind::Gitlab, data);
});
