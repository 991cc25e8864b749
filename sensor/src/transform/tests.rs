use proptest::prelude::*;
use serde_json::{json, Value};
use sluice_crds::sensor::EventDependencyTransformer;
use sluice_eventbus::{Event, EventBuilder};

use super::*;

fn event(data: Value) -> Event {
    EventBuilder::new("webhook", "example", "webhook")
        .id("e1")
        .extension(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )
        .data_json(data)
        .build()
        .expect("a test event with an id builds")
}

fn jq(program: &str) -> Result<Transform, TransformError> {
    Transform::compile(&EventDependencyTransformer {
        jq: Some(program.into()),
        script: None,
    })
}

fn lua(script: &str) -> Result<Transform, TransformError> {
    Transform::compile(&EventDependencyTransformer {
        jq: None,
        script: Some(script.into()),
    })
}

fn apply(t: &Result<Transform, TransformError>, data: Value) -> Result<Value, TransformError> {
    let t = t.as_ref().map_err(Clone::clone)?;
    t.apply(&event(data))
        .map(|e| e.data().cloned().unwrap_or(Value::Null))
}

#[test]
fn jq_rewrites_the_data_and_keeps_attributes() -> Result<(), TransformError> {
    let t = jq(".body.message |= ascii_upcase | .extra = (.body.list | length)")?;
    let original = event(json!({"body": {"message": "hi", "list": [1, 2]}}));
    let out = t.apply(&original)?;
    assert_eq!(
        out.data(),
        Some(&json!({"body": {"message": "HI", "list": [1, 2]}, "extra": 2}))
    );
    assert_eq!(out.id(), "e1");
    assert_eq!(out.extension("traceparent"), original.extension("traceparent"));
    Ok(())
}

#[test]
fn jq_rules_first_output_must_be_an_object() {
    assert_eq!(
        apply(&jq(".a, .b"), json!({"a": {"x": 1}, "b": 2})),
        Ok(json!({"x": 1}))
    );
    assert!(matches!(
        apply(&jq(".a"), json!({"a": 1})),
        Err(TransformError::BadOutput(_))
    ));
    assert!(matches!(
        apply(&jq("empty"), json!({})),
        Err(TransformError::Jq(JqError::NoOutput))
    ));
    assert!(matches!(
        apply(&jq("error(\"x\")"), json!({})),
        Err(TransformError::Jq(JqError::Run { .. }))
    ));
    assert!(matches!(
        apply(&jq("."), json!([1])),
        Err(TransformError::NotAnObject { .. })
    ));
    assert!(matches!(
        jq(".a |||"),
        Err(TransformError::Jq(JqError::Compile { .. }))
    ));
    assert!(matches!(
        jq("nosuchfunction(1)"),
        Err(TransformError::Jq(JqError::Compile { .. }))
    ));
}

#[test]
fn lua_must_return_a_table() {
    let t = lua("event.body.n = event.body.n + 1; event.tags = {'a', 'b'}; return event");
    assert_eq!(
        apply(&t, json!({"body": {"n": 1}})),
        Ok(json!({"body": {"n": 2}, "tags": ["a", "b"]}))
    );
    assert!(matches!(
        apply(&lua("return 1"), json!({})),
        Err(TransformError::BadOutput(_))
    ));
    assert!(matches!(
        apply(&lua("x = 1"), json!({})),
        Err(TransformError::BadOutput(_))
    ));
    assert!(matches!(
        lua("return ("),
        Err(TransformError::Script(ScriptError::Compile { .. }))
    ));
    let cyclic = lua("local t = {}; t.self = t; return t");
    assert!(matches!(
        apply(&cyclic, json!({})),
        Err(TransformError::Script(ScriptError::Convert { .. }))
    ));
}

#[test]
fn identity_and_no_data_pass_unchanged() -> Result<(), TransformError> {
    let t = Transform::compile(&EventDependencyTransformer::default())?;
    assert!(t.is_identity());
    let e = EventBuilder::new("s", "n", "webhook")
        .id("x")
        .build()
        .expect("a test event with an id builds");
    assert_eq!(jq(".a")?.apply(&e)?, e);
    Ok(())
}

#[test]
fn lua_sandbox_has_no_files_os_or_loaders() {
    for script in [
        "return io.open('/etc/passwd')",
        "return os.getenv('HOME')",
        "return require('os')",
        "return load('return 1')()",
        "return dofile('/etc/passwd')",
        "return loadfile('/etc/passwd')",
        "return package.path",
        "return debug.getinfo(1)",
    ] {
        let result = lua::run(script, &json!({}), &crate::eval::EvalLimits::default());
        assert!(
            matches!(result, Err(ScriptError::Run { .. })),
            "{script} should fail to run"
        );
    }
}

#[test]
fn lua_sandbox_stops_endless_loops_and_memory_hogs() {
    for script in [
        "while true do end",
        "local function f() return f() end return f()",
        "local t = {} for i = 1, 1e9 do t[i] = i end",
        "local s = 'x' while true do s = s .. s end",
        // A caught limit error is raised again: the script cannot swallow its own stop.
        "while true do pcall(function() while true do end end) end",
        "local s = string.rep('a', 60000) while true do pcall(string.find, s, '(.-)(.-)(.-)x') end",
        "while true do xpcall(function() while true do end end, function(e) return e end) end",
    ] {
        let result = lua::run(script, &json!({}), &crate::eval::EvalLimits::default());
        assert!(
            matches!(result, Err(ScriptError::Run { .. })),
            "{script} should be stopped"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn random_lua_never_panics(script in "[a-z0-9 =(){}.,'\"+*#-]{0,40}") {
        let _ = lua::run(&script, &json!({"a": [1, {"b": null}]}), &crate::eval::EvalLimits::default());
    }

    #[test]
    fn random_jq_never_panics(program in "[a-z0-9 .|\\[\\](){},:\"+*-]{0,30}") {
        if let Ok(t) = jq(&program) {
            let _ = apply(&Ok(t), json!({"a": [1, {"b": null}], "s": "x"}));
        }
    }
}
