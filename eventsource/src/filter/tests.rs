//! `filter.expression` through [`crate::build`]: the wrapped sender publishes what passes, drops
//! (and acks) what does not, and bad expressions fail the build with their field path.

use std::sync::Arc;

use axum::http::StatusCode;
use serde_json::json;
use sluice_crds::eventsource::EventSource;

use crate::testing::{context, post, router, send, Recorder, Secrets};
use crate::BuildError;

fn webhook_source(filter: &str) -> EventSource {
    let yaml = format!(
        r#"
apiVersion: argoproj.io/v1alpha1
kind: EventSource
metadata:
  name: hooks
spec:
  webhook:
    filtered:
      port: "12000"
      endpoint: /filtered
      method: POST
      {filter}
    open:
      port: "12000"
      endpoint: /open
      method: POST
"#
    );
    serde_yaml::from_str(&yaml).expect("the test manifest parses")
}

fn build_error(es: &EventSource) -> String {
    let rec = Arc::new(Recorder::default());
    match crate::build(es, &context(Secrets::default(), rec)) {
        Err(e @ BuildError::InvalidSpec { .. }) => e.to_string(),
        Err(other) => panic!("expected InvalidSpec, got {other}"),
        Ok(_) => panic!("expected the build to fail"),
    }
}

#[tokio::test]
async fn publishes_only_events_the_expression_lets_through() {
    let es = webhook_source(
        r#"filter:
        expression: "body.id == 4 && body.name != 'Joe' && header[\"X-Team\"][0] == 'infra'""#,
    );
    let rec = Arc::new(Recorder::default());
    let ctx = context(Secrets::default(), rec.clone());
    let built = crate::build(&es, &ctx).expect("the test EventSource builds");
    let app = router(built.routes, 12000);
    let ct = ("content-type", "application/json");
    let team = ("x-team", "infra");

    let cases = [
        (r#"{"id": 4, "name": "Ann"}"#, true),
        (r#"{"id": 4, "name": "Joe"}"#, false),
        (r#"{"id": 5, "name": "Ann"}"#, false),
        // A missing key is an evaluation error on that event: dropped, as upstream.
        (r#"{"name": "Ann"}"#, false),
    ];
    for (body, _) in cases {
        let (status, _, text) = send(app.clone(), post("/filtered", &[ct, team], body)).await;
        // Why 200 for dropped events too: the drop is intended; a 5xx would make the sender retry.
        assert_eq!(status, StatusCode::OK, "{body}: {text}");
    }
    // An event name without a filter is untouched.
    let (status, _, _) = send(app.clone(), post("/open", &[ct], r#"{"id": 1}"#)).await;
    assert_eq!(status, StatusCode::OK);

    let published: Vec<_> = rec
        .events()
        .into_iter()
        .map(|(subject, event)| {
            (
                subject.event_name,
                event.data().cloned().unwrap_or_default()["body"].clone(),
            )
        })
        .collect();
    let expected: Vec<_> = cases
        .iter()
        .filter(|(_, pass)| *pass)
        .map(|(body, _)| {
            (
                "filtered".to_string(),
                serde_json::from_str::<serde_json::Value>(body).unwrap_or_default(),
            )
        })
        .chain([("open".to_string(), json!({"id": 1}))])
        .collect();
    assert_eq!(published, expected);

    let dropped = ctx
        .metrics
        .filtered
        .get_or_create(&crate::metrics::SourceMetrics::labels("hooks", "filtered"))
        .get();
    assert_eq!(dropped, 3, "every dropped event is counted");
}

#[test]
fn empty_and_malformed_expressions_fail_the_build_with_their_path() {
    let empty = build_error(&webhook_source("filter: {}"));
    assert!(
        empty.contains("spec.webhook.filtered.filter.expression is empty"),
        "{empty}"
    );

    let broken = build_error(&webhook_source(r#"filter: {expression: "body.id == "}"#));
    assert!(
        broken.contains("spec.webhook.filtered.filter.expression does not compile"),
        "{broken}"
    );

    let call = build_error(&webhook_source(r#"filter: {expression: "len(body) > 1"}"#));
    assert!(call.contains("spec.webhook.filtered.filter.expression"), "{call}");
}

#[test]
fn non_boolean_results_and_dashed_keys() {
    let program = sluice_expr::compile("X_Hub_Event == 'push'").expect("the test expression compiles");
    assert_eq!(
        super::passes(&program, Some(&json!({"X-Hub-Event": "push"}))),
        Ok(true)
    );
    assert_eq!(
        super::passes(&program, Some(&json!({"X-Hub-Event": "ping"}))),
        Ok(false)
    );

    let number = sluice_expr::compile("body.id + 1").expect("the test expression compiles");
    let err = super::passes(&number, Some(&json!({"body": {"id": 1}})))
        .err()
        .unwrap_or_default();
    assert!(err.contains("not a boolean"), "{err}");

    // Data that is not an object binds nothing, so any name is an error there.
    assert!(super::passes(&program, Some(&json!("text"))).is_err());
    assert!(super::passes(&program, None).is_err());
}

#[test]
fn kinds_whose_filter_is_their_own_are_not_expressions() {
    // `resource`'s filter is labels/fields/prefix (applied by the source), not an expression.
    let es: EventSource = serde_yaml::from_str(
        r#"
apiVersion: argoproj.io/v1alpha1
kind: EventSource
metadata: {name: kube}
spec:
  resource:
    pods:
      version: v1
      resource: pods
      eventTypes: [ADD]
      filter: {prefix: web-, labels: [{key: app, value: web}]}
"#,
    )
    .expect("the test manifest parses");
    assert!(super::problems(&es).is_empty());
    assert!(super::compile(&es).map(|m| m.is_empty()).unwrap_or(false));
}

#[test]
fn a_spec_whose_filters_cannot_be_read_fails_the_build_instead_of_dropping_them() {
    // Before, a spec that did not serialise yielded no filters at all: the build succeeded and
    // every event the user meant to filter was published unfiltered.
    let es = webhook_source(r#"filter: {expression: "body.id == 4"}"#);
    let unreadable = || serde_json::from_str::<serde_json::Value>("{");
    assert!(unreadable().is_err(), "the stand-in serialiser error");

    let error = match super::compile_declared(&es, super::declared(unreadable(), &es)) {
        Err(e @ BuildError::InvalidSpec { .. }) => e.to_string(),
        Err(other) => panic!("expected InvalidSpec, got {other}"),
        Ok(programs) => panic!("expected the build to fail, got {} filters", programs.len()),
    };
    assert!(
        error.contains("failed to read the filter.expression fields"),
        "{error}"
    );

    let problems = super::problems_of(super::declared(unreadable(), &es));
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].0, "spec");

    // The same spec, readable, compiles its one filter as before.
    let readable = super::declared(serde_json::to_value(&es.spec), &es).expect("the spec serialises");
    assert_eq!(readable.len(), 1);
}
