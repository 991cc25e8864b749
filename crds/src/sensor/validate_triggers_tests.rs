//! One good and one bad case per trigger rule.

use super::super::tests::{errors, sensor};
use crate::validate::{Problems, Validate};

/// A valid sensor with dependencies `a` and `b` whose first trigger is `trigger` (indented as a list
/// item under `triggers:`).
fn with_trigger(trigger: &str) -> Vec<String> {
    let text = format!(
        "metadata: {{name: s}}\nspec:\n  dependencies:\n    - {{name: a, eventSourceName: es, eventName: e1}}\n    - {{name: b, eventSourceName: es, eventName: e2}}\n  triggers:\n{trigger}"
    );
    errors(&sensor(&text))
}

const HTTP: &str = "    - template:\n        name: t\n        http:\n          url: http://x\n";

fn assert_one(errs: Vec<String>, prefix: &str, fragment: &str) {
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].starts_with(prefix), "{errs:?}");
    assert!(errs[0].contains(fragment), "{errs:?}");
}

#[test]
fn exactly_one_action() {
    assert!(with_trigger(HTTP).is_empty());
    assert_one(
        with_trigger("    - template: {name: t}\n"),
        "spec.triggers[0].template: set one action",
        "k8s, argoWorkflow, http, ",
    );
    let two = format!("{HTTP}        log: {{}}\n");
    assert_one(
        with_trigger(&two),
        "spec.triggers[0].template: set only one action",
        "http and log",
    );
    assert_one(
        with_trigger("    - parameters: []\n"),
        "spec.triggers[0].template",
        "needs a template",
    );
}

#[test]
fn trigger_names_unique_and_present() {
    let dup = format!("{HTTP}{HTTP}");
    assert_one(
        with_trigger(&dup),
        "spec.triggers[1].template.name",
        "already used by triggers[0]",
    );
    assert_one(
        with_trigger("    - template: {log: {}}\n"),
        "spec.triggers[0].template.name",
        "needs a name",
    );
}

#[test]
fn conditions_parse_and_name_known_dependencies() {
    assert!(with_trigger(&HTTP.replace("name: t\n", "name: t\n        conditions: a || b\n")).is_empty());
    assert_one(
        with_trigger(&HTTP.replace("name: t\n", "name: t\n        conditions: a || c\n")),
        "spec.triggers[0].template.conditions",
        "\"c\" is not a dependency of this sensor; known: a, b",
    );
    assert_one(
        with_trigger(&HTTP.replace("name: t\n", "name: t\n        conditions: a ||\n")),
        "spec.triggers[0].template.conditions",
        "column 5",
    );
}

#[test]
fn conditions_reset_cron() {
    let good = HTTP.replace(
        "name: t\n",
        "name: t\n        conditionsReset: [{byTime: {cron: \"*/5 * * * 1-5\"}}]\n",
    );
    assert!(with_trigger(&good).is_empty());
    let bad = HTTP.replace(
        "name: t\n",
        "name: t\n        conditionsReset: [{byTime: {cron: \"61 * * * *\"}}]\n",
    );
    assert_one(
        with_trigger(&bad),
        "spec.triggers[0].template.conditionsReset[0].byTime.cron",
        "invalid cron",
    );
    let six = HTTP.replace(
        "name: t\n",
        "name: t\n        conditionsReset: [{byTime: {cron: \"0 0 * * * *\"}}]\n",
    );
    assert_one(
        with_trigger(&six),
        "spec.triggers[0].template.conditionsReset[0].byTime.cron",
        "expected 5 fields",
    );
    let empty = HTTP.replace("name: t\n", "name: t\n        conditionsReset: [{}]\n");
    assert_one(
        with_trigger(&empty),
        "spec.triggers[0].template.conditionsReset[0]",
        "byTime",
    );
}

#[test]
fn parameters_reference_existing_dependencies() {
    let good = format!(
        "{HTTP}          payload:\n            - src: {{dependencyName: a, dataKey: body}}\n              dest: x\n            - src: {{dependencyName: b, dataKey: body}}\n          dynamicHeaders:\n            - src: {{dependencyName: a, dataKey: h}}\n              dest: X-H\n      parameters:\n        - src: {{dependencyName: b, dataKey: url}}\n          dest: http.url\n"
    );
    assert!(with_trigger(&good).is_empty(), "{:?}", with_trigger(&good));
    let bad_payload = format!(
        "{HTTP}          payload:\n            - src: {{dependencyName: zz}}\n              dest: x\n"
    );
    assert_one(
        with_trigger(&bad_payload),
        "spec.triggers[0].template.http.payload[0].src.dependencyName",
        "\"zz\"",
    );
    let bad_action = format!(
        "{HTTP}          parameters:\n            - src: {{dependencyName: zz}}\n              dest: url\n"
    );
    assert_one(
        with_trigger(&bad_action),
        "spec.triggers[0].template.http.parameters[0].src.dependencyName",
        "zz",
    );
    let bad_template =
        format!("{HTTP}      parameters:\n        - src: {{dependencyName: zz}}\n          dest: http.url\n");
    assert_one(
        with_trigger(&bad_template),
        "spec.triggers[0].parameters[0].src.dependencyName",
        "zz",
    );
    let headers = format!("{HTTP}          dynamicHeaders:\n            - src: {{dependencyName: a}}\n");
    assert_one(
        with_trigger(&headers),
        "spec.triggers[0].template.http.dynamicHeaders[0].dest",
        "path",
    );
    let no_src = format!("{HTTP}      parameters:\n        - dest: http.url\n");
    assert_one(
        with_trigger(&no_src),
        "spec.triggers[0].parameters[0].src",
        "dependencyName",
    );
}

#[test]
fn parameter_operation() {
    let good = format!("{HTTP}      parameters:\n        - {{src: {{dependencyName: a}}, dest: http.url, operation: append}}\n");
    assert!(with_trigger(&good).is_empty());
    let bad = good.replace("append", "replace");
    assert_one(
        with_trigger(&bad),
        "spec.triggers[0].parameters[0].operation",
        "overwrite, prepend or append",
    );
}

#[test]
fn http_rules() {
    assert!(with_trigger(&HTTP.replace("url: http://x", "url: http://x\n          method: PUT")).is_empty());
    assert_one(
        with_trigger(&HTTP.replace("url: http://x", "url: http://x\n          method: FETCH")),
        "spec.triggers[0].template.http.method",
        "FETCH",
    );
    assert_one(
        with_trigger(&HTTP.replace("url: http://x", "method: GET")),
        "spec.triggers[0].template.http.url",
        "required",
    );
}

#[test]
fn retry_and_rate_limit() {
    let good = format!("{HTTP}      retryStrategy: {{steps: 0, duration: 1s, factor: \"1.5\"}}\n      rateLimit: {{unit: Hour, requestsPerUnit: 5}}\n");
    assert!(with_trigger(&good).is_empty());
    assert_one(
        with_trigger(&format!("{HTTP}      retryStrategy: {{steps: -1}}\n")),
        "spec.triggers[0].retryStrategy.steps",
        "negative",
    );
    assert_one(
        with_trigger(&format!("{HTTP}      retryStrategy: {{duration: 5 seconds}}\n")),
        "spec.triggers[0].retryStrategy.duration",
        "",
    );
    assert_one(
        with_trigger(&format!("{HTTP}      rateLimit: {{unit: Day}}\n")),
        "spec.triggers[0].rateLimit.unit",
        "Second, Minute or Hour",
    );
}

#[test]
fn concurrency_bounds() {
    assert!(with_trigger(&format!("{HTTP}      concurrency: 64\n")).is_empty());
    assert_one(
        with_trigger(&format!("{HTTP}      concurrency: 0\n")),
        "spec.triggers[0].concurrency",
        "from 1 to 1024",
    );
    assert_one(
        with_trigger(&format!("{HTTP}      concurrency: 5000\n")),
        "spec.triggers[0].concurrency",
        "got 5000",
    );
}

const DLQ: &str = "      atLeastOnce: true\n      dlqTrigger:\n        atLeastOnce: true\n        template:\n          name: dead\n          log: {}\n";

#[test]
fn dlq_rules() {
    assert!(with_trigger(&format!("{HTTP}{DLQ}")).is_empty());
    // Absent means at least once in Sluice, so only an explicit `false` is an error.
    let absent = format!(
        "{HTTP}{}",
        DLQ.replace("        atLeastOnce: true\n", "")
            .replace("      atLeastOnce: true\n", "")
    );
    assert!(with_trigger(&absent).is_empty());
    let not_alo = format!(
        "{HTTP}{}",
        DLQ.replacen("      atLeastOnce: true\n", "      atLeastOnce: false\n", 1)
    );
    assert_one(
        with_trigger(&not_alo),
        "spec.triggers[0].atLeastOnce",
        "atLeastOnce: false",
    );
    let inner = format!(
        "{HTTP}{}",
        DLQ.replace("        atLeastOnce: true\n", "        atLeastOnce: false\n")
    );
    assert_one(
        with_trigger(&inner),
        "spec.triggers[0].dlqTrigger.atLeastOnce",
        "inside the dlqTrigger",
    );
    let two_actions = format!("{HTTP}{DLQ}          http: {{url: http://y}}\n");
    assert_one(
        with_trigger(&two_actions),
        "spec.triggers[0].dlqTrigger.template",
        "only one action",
    );
    let nested = format!(
        "{HTTP}{DLQ}        dlqTrigger:\n          atLeastOnce: true\n          template: {{name: deeper, log: {{}}}}\n"
    );
    assert_one(
        with_trigger(&nested),
        "spec.triggers[0].dlqTrigger.dlqTrigger",
        "of its own",
    );
    let params =
        format!("{HTTP}{DLQ}        parameters:\n          - {{src: {{dependencyName: nope}}, dest: log}}\n");
    assert_one(
        with_trigger(&params),
        "spec.triggers[0].dlqTrigger.parameters[0].src.dependencyName",
        "nope",
    );
}

#[test]
fn k8s_source_and_operation() {
    let good = "    - template:\n        name: k\n        k8s:\n          operation: patch\n          patchStrategy: application/merge-patch+json\n          source:\n            resource: {apiVersion: v1, kind: ConfigMap}\n";
    assert!(with_trigger(good).is_empty());
    assert_one(
        with_trigger(&good.replace("operation: patch", "operation: apply")),
        "spec.triggers[0].template.k8s.operation",
        "apply",
    );
    assert_one(
        with_trigger("    - template:\n        name: k\n        k8s: {operation: create}\n"),
        "spec.triggers[0].template.k8s.source",
        "where the resource comes from",
    );
    let two = good.replace("resource:", "inline: \"kind: Pod\"\n            resource:");
    assert_one(
        with_trigger(&two),
        "spec.triggers[0].template.k8s.source",
        "resource",
    );
}

#[test]
fn argo_workflow_operation() {
    let good = "    - template:\n        name: w\n        argoWorkflow:\n          operation: resubmit\n          source: {inline: \"kind: Workflow\"}\n";
    assert!(with_trigger(good).is_empty());
    assert_one(
        with_trigger(&good.replace("resubmit", "delete")),
        "spec.triggers[0].template.argoWorkflow.operation",
        "delete",
    );
}

#[test]
fn messaging_required_fields() {
    let good = "    - template:\n        name: k\n        kafka:\n          url: k:9092\n          topic: t\n          payload: [{src: {dependencyName: a}, dest: x}]\n";
    assert!(with_trigger(good).is_empty());
    assert_one(
        with_trigger(&good.replace("          topic: t\n", "")),
        "spec.triggers[0].template.kafka.topic",
        "",
    );
    assert_one(
        with_trigger(&good.replace("          payload: [{src: {dependencyName: a}, dest: x}]\n", "")),
        "spec.triggers[0].template.kafka.payload",
        "payload",
    );
    assert_one(
        with_trigger("    - template:\n        name: n\n        nats: {url: nats://n, payload: [{src: {dependencyName: a}, dest: x}]}\n"),
        "spec.triggers[0].template.nats.subject",
        "",
    );
    assert_one(
        with_trigger("    - template:\n        name: s\n        slack: {channel: c}\n"),
        "spec.triggers[0].template.slack.slackToken",
        "",
    );
    assert_one(
        with_trigger("    - template:\n        name: e\n        email: {host: h, port: 70000}\n"),
        "spec.triggers[0].template.email.port",
        "65535",
    );
    assert_one(
        with_trigger(
            "    - template:\n        name: c\n        custom: {serverURL: x, secure: true, spec: {a: b}}\n",
        ),
        "spec.triggers[0].template.custom.certSecret",
        "",
    );
    assert_one(
        with_trigger("    - template:\n        name: b\n        azureServiceBus: {payload: [{src: {dependencyName: a}, dest: x}]}\n"),
        "spec.triggers[0].template.azureServiceBus",
        "queueName",
    );
}

#[test]
fn policies_need_content() {
    let good = format!("{HTTP}      policy: {{status: {{allow: [200]}}}}\n");
    assert!(with_trigger(&good).is_empty());
    assert_one(
        with_trigger(&format!("{HTTP}      policy: {{status: {{allow: []}}}}\n")),
        "spec.triggers[0].policy.status.allow",
        "status codes",
    );
}

#[test]
fn deprecated_kafka_partition_warns_only() {
    let text = "metadata: {name: s}\nspec:\n  dependencies: [{name: a, eventSourceName: es, eventName: e}]\n  triggers:\n    - template:\n        name: k\n        kafka: {url: k, topic: t, partition: 0, payload: [{src: {dependencyName: a}, dest: x}]}\n";
    let mut p = Problems::new();
    sensor(text).validate("", &mut p);
    assert!(!p.has_errors(), "{:?}", p.as_slice());
    assert_eq!(p.as_slice().len(), 1);
}

#[test]
fn action_parameters_rewritten_by_template_parameters_are_not_resolved() {
    let base = "    - template:\n        name: w\n        argoWorkflow:\n          operation: submit\n          source: {inline: \"kind: Workflow\"}\n          parameters:\n            - {src: {dependencyName: LATER}, dest: LATER}\n";
    assert_one(
        with_trigger(base),
        "spec.triggers[0].template.argoWorkflow.parameters[0].src.dependencyName",
        "LATER",
    );
    let rewritten = format!(
        "{base}      parameters:\n        - {{src: {{dependencyName: a, dataKey: dep}}, dest: argoWorkflow.parameters.0.src.dependencyName}}\n"
    );
    assert!(
        with_trigger(&rewritten).is_empty(),
        "{:?}",
        with_trigger(&rewritten)
    );
    assert!(super::covers(
        "argoWorkflow.parameters",
        "argoWorkflow.parameters.0"
    ));
    assert!(!super::covers(
        "argoWorkflow.parameters.1",
        "argoWorkflow.parameters.10"
    ));
}

#[test]
fn lower_case_openwhisk_is_accepted() {
    let t = "    - template:\n        name: o\n        openwhisk: {host: h, actionName: a, payload: [{src: {dependencyName: a}, dest: x}]}\n";
    assert!(with_trigger(t).is_empty(), "{:?}", with_trigger(t));
}
