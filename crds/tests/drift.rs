//! The CRD YAML checked in under `crds/` must be what the Rust types generate, so a change to a type
//! cannot ship without its CRD.

use std::path::Path;

#[test]
fn checked_in_crds_match_the_types() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let files = sluice_crds::crd_files().expect("the CRDs serialize to YAML");
    let mut stale = Vec::new();
    for (name, generated) in files {
        let on_disk = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
        if on_disk != generated {
            stale.push(name);
        }
    }
    assert!(
        stale.is_empty(),
        "crds/{} out of date with the Rust types; regenerate with `cargo run -p sluice-crds --bin crdgen -- --write` and commit the result",
        stale.join(", crds/")
    );
}

#[test]
fn multi_document_output_holds_all_three_kinds() {
    let yaml = sluice_crds::crd_yaml().expect("the CRDs serialize to YAML");
    let names: Vec<String> = serde_yaml::Deserializer::from_str(&yaml)
        .map(|doc| {
            let v: serde_yaml::Value = serde::Deserialize::deserialize(doc).expect("each document parses");
            v["metadata"]["name"].as_str().unwrap_or_default().to_string()
        })
        .collect();
    assert_eq!(
        names,
        [
            "eventsources.argoproj.io",
            "sensors.argoproj.io",
            "eventbus.argoproj.io"
        ]
    );
}
