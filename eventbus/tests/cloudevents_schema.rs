//! Every event the builder makes is a valid CloudEvents 1.0 JSON-format event, checked against
//! Sluice's own JSON Schema of the format (`tests/fixtures/cloudevent-json-format.schema.json`,
//! written from the spec's rules, with format assertions on).

use jsonschema::Validator;
use proptest::prelude::*;
use serde_json::{json, Value};
use sluice_eventbus::event::deterministic_id;
use sluice_eventbus::{Event, EventBuilder};

const SCHEMA: &str = include_str!("fixtures/cloudevent-json-format.schema.json");

fn validator() -> Validator {
    let schema: Value = serde_json::from_str(SCHEMA).expect("the schema fixture is JSON");
    jsonschema::draft7::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("the schema compiles")
}

fn errors(validator: &Validator, instance: &Value) -> Vec<String> {
    validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

fn encoded(event: &Event) -> Value {
    serde_json::from_slice(&event.to_json().expect("the event encodes")).expect("the encoding is JSON")
}

#[test]
fn typical_events_validate() {
    let validator = validator();
    let events = [
        EventBuilder::new("webhook", "example", "webhook").build(),
        EventBuilder::new("github-es", "push", "github")
            .id(deterministic_id(&[
                "github",
                "72d3162e-cc78-11e3-81ab-4c9367dc0958",
            ]))
            .data_json(json!({"header": {}, "body": {"ref": "refs/heads/main"}}))
            .extension(
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            )
            .build(),
        EventBuilder::new("calendar", "every-minute", "calendar")
            .data_json(json!(null))
            .build(),
        EventBuilder::new("https://example.com/es", "a", "webhook")
            .data_json(json!("text"))
            .build(),
    ];
    for event in events {
        let event = event.expect("a valid event");
        let instance = encoded(&event);
        assert_eq!(errors(&validator, &instance), Vec::<String>::new(), "{instance}");
    }
}

#[test]
fn the_schema_rejects_what_the_spec_forbids() {
    let validator = validator();
    let base = json!({"specversion": "1.0", "id": "1", "source": "webhook", "type": "webhook"});
    assert!(validator.is_valid(&base));
    let with = |key: &str, value: Value| {
        let mut instance = base.clone();
        instance[key] = value;
        instance
    };
    let without = |key: &str| {
        let mut instance = base.clone();
        instance.as_object_mut().expect("an object").remove(key);
        instance
    };
    let invalid = [
        ("specversion 0.3", with("specversion", json!("0.3"))),
        ("empty id", with("id", json!(""))),
        ("numeric id", with("id", json!(1))),
        ("empty type", with("type", json!(""))),
        ("source not a URI-reference", with("source", json!("a b"))),
        ("missing source", without("source")),
        ("missing specversion", without("specversion")),
        ("time not RFC 3339", with("time", json!("2024-05-01 12:30"))),
        (
            "datacontenttype not a media type",
            with("datacontenttype", json!("json")),
        ),
        ("empty subject", with("subject", json!(""))),
        ("extension with upper case", with("traceParent", json!("x"))),
        ("extension with a dash", with("trace-parent", json!("x"))),
        ("extension of object type", with("ext", json!({"a": 1}))),
        (
            "data_base64 not base64",
            with("data_base64", json!("not base64!")),
        ),
        ("both data members", {
            let mut instance = with("data", json!(1));
            instance["data_base64"] = json!("AQ==");
            instance
        }),
    ];
    for (what, instance) in invalid {
        assert!(
            !validator.is_valid(&instance),
            "the schema accepted {what}: {instance}"
        );
    }
    assert!(validator.is_valid(&with("data_base64", json!("Zm9vYg=="))));
    assert!(validator.is_valid(&with("time", json!("2018-04-05T17:31:00Z"))));
    assert!(validator.is_valid(&with(
        "source",
        json!("urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66")
    )));
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,6}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    /// Kubernetes names (what upstream EventSource names are) always build, and validate.
    #[test]
    fn builder_events_from_kubernetes_names_validate(
        source in "[a-z0-9]([-a-z0-9.]{0,30}[a-z0-9])?",
        name in "[a-zA-Z0-9_.-]{1,20}",
        kind in "[a-z]{1,12}",
        id in proptest::option::of(".{1,40}"),
        data in proptest::option::of(json_value()),
        extensions in prop::collection::vec(("[a-z0-9]{1,20}", ".{0,20}"), 0..4),
    ) {
        let mut builder = EventBuilder::new(source, name, kind);
        if let Some(id) = id {
            builder = builder.id(id);
        }
        if let Some(data) = data {
            builder = builder.data_json(data);
        }
        let reserved = ["id", "source", "type", "specversion", "subject", "time", "datacontenttype", "dataschema", "data"];
        for (key, value) in &extensions {
            if !reserved.contains(&key.as_str()) {
                builder = builder.extension(key, value.clone());
            }
        }
        let event = builder.build().expect("kubernetes names make valid events");
        let instance = encoded(&event);
        prop_assert_eq!(errors(&validator(), &instance), Vec::<String>::new(), "{}", instance);
    }

    /// Whatever the inputs, an event the builder accepts validates (and the rest are errors, not
    /// panics).
    #[test]
    fn every_event_the_builder_accepts_validates(
        source in prop_oneof!["[ -~]{0,12}", ".{0,12}"],
        name in ".{0,12}",
        kind in ".{0,12}",
        extension in ("[a-zA-Z0-9_-]{0,6}", ".{0,6}"),
    ) {
        let result = EventBuilder::new(source, name, kind).extension(&extension.0, extension.1).build();
        if let Ok(event) = result {
            let instance = encoded(&event);
            prop_assert_eq!(errors(&validator(), &instance), Vec::<String>::new(), "{}", instance);
        }
    }
}
