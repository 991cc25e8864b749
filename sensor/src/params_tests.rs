use super::*;
use chrono::TimeZone;
use serde_json::json;
use sluice_crds::sensor::HTTPTrigger;
use sluice_eventbus::EventBuilder;

fn event(id: &str, data: Value) -> Event {
    let time = chrono::Utc
        .with_ymd_and_hms(2024, 5, 6, 7, 8, 9)
        .single()
        .unwrap_or_default();
    EventBuilder::new("webhook", "example", "webhook")
        .id(id)
        .time(time)
        .data_json(data)
        .build()
        .expect("a test event with an id builds")
}

fn events(data: Value) -> EventsByDependency {
    BTreeMap::from([("d".to_owned(), event("e1", data))])
}

fn src(data_key: Option<&str>) -> TriggerParameterSource {
    TriggerParameterSource {
        dependency_name: "d".into(),
        data_key: data_key.map(Into::into),
        ..TriggerParameterSource::default()
    }
}

fn param(src: TriggerParameterSource, dest: &str) -> TriggerParameter {
    TriggerParameter {
        src: Some(src),
        dest: dest.into(),
        operation: None,
    }
}

fn payload(params: &[TriggerParameter], events: &EventsByDependency) -> Value {
    match construct_payload(params, events) {
        Ok(Some(bytes)) => serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        other => panic!("no payload: {other:?}"),
    }
}

const BODY: &str = r#"{"body":{"name":"x","n":42,"f":1.50,"ok":true,"obj":{"a":1},"nil":null}}"#;

fn body_events() -> EventsByDependency {
    events(serde_json::from_str(BODY).unwrap_or(Value::Null))
}

#[test]
fn data_key_values_are_strings_by_default() {
    let ev = body_events();
    let params = [
        param(src(Some("body.name")), "name"),
        param(src(Some("body.n")), "n"),
        param(src(Some("body.f")), "f"),
        param(src(Some("body.ok")), "ok"),
        param(src(Some("body.obj")), "obj"),
        param(src(Some("body.nil")), "nil"),
    ];
    assert_eq!(
        payload(&params, &ev),
        json!({"name": "x", "n": "42", "f": "1.5", "ok": "true", "obj": "{\"a\":1}", "nil": "null"})
    );
}

#[test]
fn use_raw_data_inserts_non_strings_as_json() {
    let ev = body_events();
    let raw = |key: &str| TriggerParameterSource {
        use_raw_data: true,
        ..src(Some(key))
    };
    let params = [
        param(raw("body.name"), "name"),
        param(raw("body.n"), "n"),
        param(raw("body.ok"), "ok"),
        param(raw("body.obj"), "obj"),
        param(raw("body.nil"), "nil"),
    ];
    assert_eq!(
        payload(&params, &ev),
        json!({"name": "x", "n": 42, "ok": true, "obj": {"a": 1}, "nil": null})
    );
}

#[test]
fn empty_dest_makes_the_value_the_whole_payload() -> anyhow::Result<()> {
    let body = json!({"message": "hello", "nested": {"list": [1, 2]}});
    let ev = events(json!({"header": {}, "body": body.clone()}));
    let params = [
        param(src(Some("body")), ""),
        param(src(Some("body.message")), "ignored"),
    ];
    let bytes = construct_payload(&params, &ev)?.unwrap_or_default();
    assert_eq!(serde_json::from_slice::<Value>(&bytes)?, body);
    Ok(())
}

#[test]
fn missing_key_falls_back_to_value_or_fails() {
    let ev = body_events();
    let with_default = TriggerParameterSource {
        value: Some("dflt".into()),
        ..src(Some("body.nope"))
    };
    assert_eq!(payload(&[param(with_default, "a")], &ev), json!({"a": "dflt"}));
    let err = construct_payload(&[param(src(Some("body.nope")), "a")], &ev);
    assert!(matches!(err, Err(ParamError::ResolveValue { ref dependency, .. }) if dependency == "d"));
}

#[test]
fn missing_dependency_uses_value_or_skips() {
    let ev = body_events();
    let other = |value: Option<&str>| TriggerParameterSource {
        dependency_name: "other".into(),
        data_key: Some("body.name".into()),
        value: value.map(Into::into),
        ..TriggerParameterSource::default()
    };
    let params = [
        param(other(Some("v")), "a"),
        param(other(None), "b"),
        param(src(Some("body.name")), "c"),
    ];
    assert_eq!(payload(&params, &ev), json!({"a": "v", "c": "x"}));
}

#[test]
fn literal_value_without_keys() {
    let ev = body_events();
    let literal = TriggerParameterSource {
        value: Some("lit".into()),
        ..src(None)
    };
    assert_eq!(payload(&[param(literal, "a")], &ev), json!({"a": "lit"}));
}

#[test]
fn no_keys_and_no_value_gives_the_upstream_event_json() -> anyhow::Result<()> {
    let ev = events(json!({"k": "v"}));
    let value = resolve_value(&src(None), &ev)?.unwrap_or_else(|| ResolvedValue::literal(String::new()));
    let parsed: Value = serde_json::from_str(&value.text)?;
    assert_eq!(parsed["context"]["id"], "e1");
    assert_eq!(parsed["context"]["time"], "2024-05-06T07:08:09Z");
    let data =
        base64::engine::general_purpose::STANDARD.decode(parsed["data"].as_str().unwrap_or_default())?;
    assert_eq!(serde_json::from_slice::<Value>(&data)?, json!({"k": "v"}));
    Ok(())
}

#[test]
fn context_keys_read_cloudevent_attributes() -> anyhow::Result<()> {
    let ev = body_events();
    let ctx = |key: &str| TriggerParameterSource {
        context_key: Some(key.into()),
        ..src(None)
    };
    let params = [
        param(ctx("id"), "id"),
        param(ctx("source"), "source"),
        param(ctx("type"), "type"),
        param(ctx("subject"), "subject"),
        param(ctx("specversion"), "specversion"),
        param(ctx("datacontenttype"), "ct"),
        param(ctx("time"), "time"),
    ];
    assert_eq!(
        payload(&params, &ev),
        json!({"id": "e1", "source": "webhook", "type": "webhook", "subject": "example",
               "specversion": "1.0", "ct": "application/json", "time": "2024-05-06T07:08:09Z"})
    );
    Ok(())
}

#[test]
fn data_and_context_templates_render_over_input() {
    let ev = body_events();
    let t = |data: Option<&str>, context: Option<&str>, value: Option<&str>| TriggerParameterSource {
        data_template: data.map(Into::into),
        context_template: context.map(Into::into),
        value: value.map(Into::into),
        ..src(Some("body.name"))
    };
    let params = [
        param(
            t(
                Some("{{ .Input.body.name | upper }}-{{ .Input.body.n }}"),
                None,
                None,
            ),
            "a",
        ),
        param(t(None, Some("{{ .Input.subject | title }}"), None), "b"),
        param(t(Some("{{ .Input.body.missing }}"), None, None), "c"),
        param(t(Some("{{ .Input.body.missing }}"), None, Some("d")), "d"),
    ];
    // `c` falls through to dataKey; the template wins when it renders something.
    assert_eq!(
        payload(&params, &ev),
        json!({"a": "X-42", "b": "Example", "c": "x", "d": "x"})
    );
    let broken = [param(t(Some("{{ .Input.body.name.deeper }}"), None, None), "a")];
    assert!(matches!(
        construct_payload(&broken, &ev),
        Err(ParamError::Template {
            field: "dataTemplate",
            ..
        })
    ));
    assert_eq!(template_problems(&t(Some("{{ .Input"), None, None)).len(), 1);
}

#[test]
fn append_and_prepend_concatenate_strings() -> anyhow::Result<()> {
    let ev = body_events();
    let mut doc = json!({"a": "pre-", "b": "-post", "c": 5});
    let with_op = |dest: &str, op: &str| TriggerParameter {
        src: Some(src(Some("body.name"))),
        dest: dest.into(),
        operation: Some(op.into()),
    };
    apply_params(
        &mut doc,
        &[
            with_op("a", "append"),
            with_op("b", "prepend"),
            with_op("c", "append"),
            with_op("d", "append"),
        ],
        &ev,
    )?;
    assert_eq!(doc, json!({"a": "pre-x", "b": "x-post", "c": "5x", "d": "x"}));
    let bad = apply_params(&mut doc, &[with_op("a", "replace")], &ev);
    assert!(matches!(bad, Err(ParamError::UnsupportedOperation { .. })));
    Ok(())
}

#[test]
fn empty_dest_is_an_error_outside_payloads() {
    let ev = body_events();
    let mut doc = json!({});
    let err = apply_params(&mut doc, &[param(src(Some("body.name")), "")], &ev);
    assert!(matches!(
        err,
        Err(ParamError::SetValue {
            source: SetPathError::EmptyPath,
            ..
        })
    ));
}

#[test]
fn template_parameters_rewrite_the_typed_template() -> anyhow::Result<()> {
    let ev = events(json!({"body": {"url": "http://example.test/hook"}}));
    let template = TriggerTemplate {
        name: "t".into(),
        http: Some(HTTPTrigger {
            url: "http://placeholder".into(),
            ..HTTPTrigger::default()
        }),
        ..TriggerTemplate::default()
    };
    let out = apply_template_parameters(&template, &[param(src(Some("body.url")), "http.url")], &ev)?;
    assert_eq!(
        out.http.map(|h| h.url),
        Some("http://example.test/hook".to_owned())
    );
    Ok(())
}

#[test]
fn dest_paths_create_arrays_and_escaped_keys() {
    let ev = body_events();
    let params = [
        param(src(Some("body.name")), "list.0"),
        param(src(Some("body.name")), "list.-1"),
        param(src(Some("body.name")), r"labels.app\.io/name"),
    ];
    assert_eq!(
        payload(&params, &ev),
        json!({"list": ["x", "x"], "labels": {"app.io/name": "x"}})
    );
}
