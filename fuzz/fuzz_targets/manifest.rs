//! Manifest parsing and checking as `sluice validate` runs them on one file's text: YAML or JSON,
//! one or more documents, EventSource, Sensor and EventBus (the cli's own `manifests` and `validate`
//! code), then the report line of every problem.
#![no_main]

use std::path::Path;

use sluice_fuzz::{manifests, validate};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut docs = manifests::load_str(Path::new("fuzz.yaml"), text);
    for doc in &mut docs {
        validate::check_sensor_language(doc);
        validate::check_eventsource_filters(doc);
        for problem in &doc.problems {
            let _ = validate::format_line(doc, problem);
        }
        // A manifest that validates must survive the trip `sluice run` and the controller make: to
        // JSON and back, typed the same.
        if let (false, Some(manifest)) = (doc.has_errors(), &doc.manifest) {
            let json = match manifest {
                manifests::Manifest::EventSource(m) => serde_json::to_string(m),
                manifests::Manifest::Sensor(m) => serde_json::to_string(m),
                manifests::Manifest::EventBus(m) => serde_json::to_string(m),
            }
            .expect("a parsed manifest encodes as JSON");
            let again = manifests::load_str(Path::new("fuzz.json"), &json);
            assert_eq!(
                again.len(),
                1,
                "the JSON form of a valid manifest is one document"
            );
            let errors: Vec<String> = again[0]
                .problems
                .iter()
                .filter(|p| p.severity == sluice_crds::validate::Severity::Error)
                .map(ToString::to_string)
                .collect();
            assert!(
                errors.is_empty(),
                "the JSON form of a valid manifest is invalid: {errors:?}\n{json}"
            );
        }
    }
});
