//! The generated CRDs must carry structural schemas, which the API server requires: no `$ref`, no
//! `oneOf`/`anyOf`/`allOf`, a `type` on every node unless it is int-or-string or keeps unknown fields,
//! and not both `properties` and `additionalProperties` on one node.

use serde_json::Value;

fn check(node: &Value, path: &str, problems: &mut Vec<String>) {
    let Some(obj) = node.as_object() else {
        problems.push(format!("{path}: not an object"));
        return;
    };
    for banned in ["$ref", "oneOf", "anyOf", "allOf", "not", "definitions", "$defs"] {
        if obj.contains_key(banned) {
            problems.push(format!("{path}: has {banned}"));
        }
    }
    let flag = |k: &str| obj.get(k).and_then(Value::as_bool).unwrap_or(false);
    if !obj.contains_key("type")
        && !flag("x-kubernetes-int-or-string")
        && !flag("x-kubernetes-preserve-unknown-fields")
    {
        problems.push(format!("{path}: no type"));
    }
    if obj.contains_key("properties") && obj.contains_key("additionalProperties") {
        problems.push(format!("{path}: both properties and additionalProperties"));
    }
    if let Some(props) = obj.get("properties").and_then(Value::as_object) {
        for (k, v) in props {
            check(v, &format!("{path}.{k}"), problems);
        }
    }
    if let Some(items) = obj.get("items") {
        check(items, &format!("{path}[]"), problems);
    }
    if let Some(extra) = obj.get("additionalProperties").filter(|v| v.is_object()) {
        check(extra, &format!("{path}{{}}"), problems);
    }
}

fn schema_of(kind: &str) -> Value {
    let crd = sluice_crds::crds()
        .into_iter()
        .find(|c| c.spec.names.kind == kind)
        .expect("kind is generated");
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.clone());
    serde_json::to_value(schema.expect("has a schema")).expect("schema serializes")
}

#[test]
fn every_schema_is_structural() {
    let mut problems = Vec::new();
    for kind in ["EventSource", "Sensor", "EventBus"] {
        check(&schema_of(kind), kind, &mut problems);
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn names_match_upstream() {
    let crds = sluice_crds::crds();
    let names: Vec<_> = crds
        .iter()
        .map(|c| {
            (
                c.spec.names.plural.as_str(),
                c.spec.names.short_names.clone().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(names[1], ("sensors", vec!["sn".to_string()]));
    assert_eq!(names[2], ("eventbus", vec!["eb".to_string()]));
}

#[test]
fn embedded_resources_keep_unknown_fields() {
    let sensor = schema_of("Sensor");
    let template = &sensor["properties"]["spec"]["properties"]["triggers"]["items"]["properties"]["template"];
    for action in ["k8s", "argoWorkflow"] {
        let resource = &template["properties"][action]["properties"]["source"]["properties"]["resource"];
        assert_eq!(
            resource["x-kubernetes-preserve-unknown-fields"],
            Value::Bool(true),
            "{action}"
        );
        assert_eq!(resource["type"], "object", "{action}");
    }
    let dlq = &sensor["properties"]["spec"]["properties"]["triggers"]["items"]["properties"]["dlqTrigger"];
    assert!(dlq["properties"]["template"]["properties"]["http"].is_object());
    assert!(dlq["properties"].get("dlqTrigger").is_none());
}

#[test]
fn crds_fit_in_a_client_side_apply_annotation() {
    // Client-side `kubectl apply` stores the whole object in an annotation limited to 256 KiB.
    for crd in sluice_crds::crds() {
        let size = serde_json::to_vec(&crd).expect("CRD serializes").len();
        assert!(
            size < 240 * 1024,
            "the {} CRD is {size} bytes of JSON; trim descriptions (see sluice_crds::slim_crd) so `kubectl apply` keeps working",
            crd.spec.names.kind
        );
    }
}

#[test]
fn crds_use_only_formats_the_api_server_knows() {
    // The API server warns on every apply about a format it does not recognise (schemars writes
    // `uint64` for unsigned fields).
    const KNOWN: [&str; 8] = [
        "int32",
        "int64",
        "float",
        "double",
        "byte",
        "date",
        "date-time",
        "int-or-string",
    ];
    fn walk(node: &serde_json::Value, path: &str, bad: &mut Vec<String>) {
        match node {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::String(format)) = map.get("format") {
                    if !KNOWN.contains(&format.as_str()) {
                        bad.push(format!("{path}: {format}"));
                    }
                }
                for (k, v) in map {
                    walk(v, &format!("{path}.{k}"), bad);
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, path, bad)),
            _ => {}
        }
    }
    let mut bad = Vec::new();
    for crd in sluice_crds::crds() {
        let value = serde_json::to_value(&crd).expect("CRD serializes");
        walk(&value, &crd.spec.names.kind, &mut bad);
    }
    assert!(bad.is_empty(), "unknown formats: {bad:?}");
}
