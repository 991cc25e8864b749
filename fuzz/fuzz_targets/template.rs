//! The Go-template engine (`sluice-template`): `TEMPLATE\n---\nDOT` where DOT is JSON (or text, as a
//! JSON string). Renders with `.` and with `.Input` bound to it, as parameters and data filters do.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((source, dot)) = sluice_fuzz::split(data) else {
        return;
    };
    let Ok(template) = sluice_template::compile(source) else {
        return;
    };
    let dot = sluice_fuzz::json_or_string(dot);
    let _ = template.render(&dot);
    let _ = template.render_input(&dot);
});
