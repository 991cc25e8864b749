//! Shared pieces of the fuzz targets (`fuzz_targets/*.rs`, run by `scripts/fuzz`).
//!
//! Inputs are text with a readable framing, so the seed corpora under `fuzz/seeds/<target>/` can be
//! written and reviewed by hand: most targets take `FIRST\n---\nSECOND` (see [`split`]), the push
//! targets a raw HTTP request (see [`push`]). A target fails by panicking; every panic it finds is a
//! bug in the crate that owns the code, fixed there with a regression test.

pub mod push;

// `sluice validate`'s own code (the cli crate is a binary, so it is compiled in here from its
// files): the manifest target runs exactly what the command runs on a file's text.
#[allow(dead_code, clippy::all)]
#[path = "../../cli/src/manifests.rs"]
pub mod manifests;
#[allow(dead_code, clippy::all)]
#[path = "../../cli/src/validate.rs"]
pub mod validate;

/// The separator between the two parts of an input.
pub const SEPARATOR: &str = "\n---\n";

/// Splits `data` at the first [`SEPARATOR`]: `(first, rest)`; without one, all of it is `first`.
/// `None` when `data` is not UTF-8 (every target reads text).
pub fn split(data: &[u8]) -> Option<(&str, &str)> {
    let text = std::str::from_utf8(data).ok()?;
    Some(text.split_once(SEPARATOR).unwrap_or((text, "")))
}

/// `text` as JSON, or as a JSON string when it is not JSON (as a push source publishes a body that
/// is not JSON).
pub fn json_or_string(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|_| serde_json::Value::String(text.to_owned()))
}

/// One event of `data`, as a source would have published it (event source `fuzz`, event `input`).
pub fn event_with(data: serde_json::Value) -> sluice_eventbus::Event {
    sluice_eventbus::EventBuilder::new("fuzz", "input", "webhook")
        .id("fuzz-1")
        .data_json(data)
        .build()
        .expect("a fixed id, source, subject and type build an event")
}

/// Checks the bus's round trip of `event`: what a source publishes must decode on the sensor side
/// unchanged.
pub fn assert_round_trip(event: &sluice_eventbus::Event) {
    let bytes = event.to_json().expect("an event encodes");
    let back = sluice_eventbus::Event::from_json(&bytes).expect("an encoded event decodes");
    assert_eq!(back.id(), event.id());
    assert_eq!(back.source(), event.source());
    assert_eq!(back.ty(), event.ty());
    assert_eq!(back.subject(), event.subject());
    assert_eq!(back.time(), event.time());
    assert_eq!(back.data(), event.data());
}

/// Runs `filters` on an event carrying `data` the ways a sensor does: applied (the runner's path)
/// and explained (`sluice sensor test`'s), which must decide alike; and reports the static
/// problems `sluice validate` would print.
pub fn run_filters(filters: &sluice_crds::sensor::EventDependencyFilter, operator: Option<&str>, data: &str) {
    let compiled = sluice_sensor::filters::DependencyFilter::from_parts(Some(filters), operator);
    let _ = compiled.problems();
    let event = event_with(json_or_string(data));
    let applied = compiled.apply(&event);
    let explained = compiled.apply_explained(&event);
    // Only a script can run out of time; its verdict may then differ between the two runs.
    if filters.script.is_none() {
        assert_eq!(
            applied.outcome.passed, explained.outcome.passed,
            "apply and apply_explained decide differently"
        );
    }
}
