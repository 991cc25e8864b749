//! One passing and one failing manifest per rule, asserting the exact field path reported.

use crate::eventsource::EventSource;
use crate::validate::{Problem, Problems, Severity, Validate};

fn problems(spec_yaml: &str) -> Vec<Problem> {
    let doc = format!(
        "apiVersion: argoproj.io/v1alpha1\nkind: EventSource\nmetadata: {{name: es}}\nspec:\n{spec_yaml}"
    );
    let es: EventSource = serde_yaml::from_str(&doc).expect("test manifest parses");
    let mut p = Problems::new();
    es.validate("", &mut p);
    p.into_vec()
}

fn paths(problems: &[Problem], severity: Severity) -> Vec<String> {
    problems
        .iter()
        .filter(|p| p.severity == severity)
        .map(|p| p.path.clone())
        .collect()
}

fn errors(spec_yaml: &str) -> Vec<String> {
    paths(&problems(spec_yaml), Severity::Error)
}

fn warnings(spec_yaml: &str) -> Vec<String> {
    paths(&problems(spec_yaml), Severity::Warning)
}

const HOOK: &str = "  webhook:\n    a: {port: \"12000\", endpoint: /a, method: POST}\n";

#[test]
fn a_valid_webhook_has_no_problems() {
    assert!(problems(HOOK).is_empty(), "{:?}", problems(HOOK));
}

#[test]
fn needs_at_least_one_event() {
    assert_eq!(errors("  eventBusName: default\n"), ["spec"]);
    assert!(errors(HOOK).is_empty());
}

#[test]
fn needs_a_name() {
    let es: EventSource = serde_yaml::from_str(&format!(
        "apiVersion: argoproj.io/v1alpha1\nkind: EventSource\nmetadata: {{}}\nspec:\n{HOOK}"
    ))
    .expect("parses");
    let mut p = Problems::new();
    es.validate("", &mut p);
    assert_eq!(paths(p.as_slice(), Severity::Error), ["metadata.name"]);
}

#[test]
fn event_names_are_unique_across_kinds() {
    let dup = "  calendar:\n    a: {interval: 10s}\n".to_string() + HOOK;
    assert_eq!(errors(&dup), ["spec.webhook.a"]);
    let distinct = "  calendar:\n    b: {interval: 10s}\n".to_string() + HOOK;
    assert!(errors(&distinct).is_empty());
}

#[test]
fn event_names_should_be_subject_tokens() {
    assert_eq!(
        warnings("  webhook:\n    a.b: {port: \"1\", endpoint: /a, method: POST}\n"),
        ["spec.webhook.a.b"]
    );
}

#[test]
fn port_must_be_a_number_in_range() {
    for bad in ["abc", "0", "70000", "", "-1"] {
        let y = format!("  webhook:\n    a: {{port: \"{bad}\", endpoint: /a, method: POST}}\n");
        assert_eq!(errors(&y), ["spec.webhook.a.port"], "port {bad:?}");
    }
    assert!(errors("  webhook:\n    a: {port: \"65535\", endpoint: /a, method: POST}\n").is_empty());
}

#[test]
fn endpoint_starts_with_a_slash() {
    assert_eq!(
        errors("  webhook:\n    a: {port: \"1\", endpoint: a, method: POST}\n"),
        ["spec.webhook.a.endpoint"]
    );
    assert_eq!(
        errors("  webhook:\n    a: {port: \"1\", method: POST}\n"),
        ["spec.webhook.a.endpoint"]
    );
}

#[test]
fn method_is_an_http_token() {
    assert_eq!(
        errors("  webhook:\n    a: {port: \"1\", endpoint: /a, method: \"PO ST\"}\n"),
        ["spec.webhook.a.method"]
    );
    assert_eq!(
        errors("  webhook:\n    a: {port: \"1\", endpoint: /a}\n"),
        ["spec.webhook.a.method"]
    );
    assert_eq!(
        warnings("  webhook:\n    a: {port: \"1\", endpoint: /a, method: post}\n"),
        ["spec.webhook.a.method"]
    );
    // Other push kinds choose their own method, so an empty one is fine there.
    let gh = "  github:\n    g:\n      repositories: [{owner: o, names: [r]}]\n      webhook: {port: \"1\", endpoint: /g}\n";
    assert!(errors(gh).is_empty(), "{:?}", errors(gh));
}

#[test]
fn max_payload_size_is_positive() {
    assert_eq!(
        errors("  webhook:\n    a: {port: \"1\", endpoint: /a, method: POST, maxPayloadSize: 0}\n"),
        ["spec.webhook.a.maxPayloadSize"]
    );
    assert!(
        errors("  webhook:\n    a: {port: \"1\", endpoint: /a, method: POST, maxPayloadSize: 1024}\n")
            .is_empty()
    );
}

#[test]
fn tls_needs_both_cert_and_key() {
    let y = "  webhook:\n    a: {port: \"1\", endpoint: /a, method: POST, serverCertSecret: {name: t, key: crt}}\n";
    assert_eq!(errors(y), ["spec.webhook.a.serverKeySecret"]);
}

#[test]
fn routes_collide_on_same_port_endpoint_and_method() {
    let same = "  webhook:\n    a: {port: \"1\", endpoint: /x, method: POST}\n    b: {port: \"1\", endpoint: /x, method: POST}\n";
    assert_eq!(errors(same), ["spec.webhook.b.endpoint"]);
    let cross_kind = "  github:\n    g:\n      organizations: [acme]\n      webhook: {port: \"1\", endpoint: /x, method: POST}\n  webhook:\n    a: {port: \"1\", endpoint: /x, method: POST}\n";
    assert_eq!(errors(cross_kind), ["spec.webhook.a.endpoint"]);
    let other_port = "  webhook:\n    a: {port: \"1\", endpoint: /x, method: POST}\n    b: {port: \"2\", endpoint: /x, method: POST}\n";
    assert!(problems(other_port).is_empty());
    let other_method = "  webhook:\n    a: {port: \"1\", endpoint: /x, method: POST}\n    b: {port: \"1\", endpoint: /x, method: PUT}\n";
    assert!(errors(other_method).is_empty());
    assert_eq!(warnings(other_method), ["spec.webhook.b.endpoint"]);
}

#[test]
fn push_kinds_need_a_webhook_block() {
    let y = "  github:\n    g:\n      repositories: [{owner: o, names: [r]}]\n";
    assert_eq!(errors(y), ["spec.github.g.webhook"]);
    let y = "  slack:\n    s:\n      token: {name: s, key: t}\n      webhook: {port: \"x\", endpoint: /s, method: POST}\n";
    assert_eq!(errors(y), ["spec.slack.s.webhook.port"]);
}

#[test]
fn calendar_schedule_is_a_five_field_cron_spec() {
    assert!(errors("  calendar:\n    c: {schedule: \"*/5 * * * *\"}\n").is_empty());
    assert_eq!(
        errors("  calendar:\n    c: {schedule: \"0 */5 * * * *\"}\n"),
        ["spec.calendar.c.schedule"]
    );
    assert_eq!(
        errors("  calendar:\n    c: {schedule: \"0 0 * * 7\"}\n"),
        ["spec.calendar.c.schedule"]
    );
    // Descriptors work in Sluice, with a portability warning.
    assert!(errors("  calendar:\n    c: {schedule: \"@every 10s\"}\n").is_empty());
    assert_eq!(
        warnings("  calendar:\n    c: {schedule: \"@hourly\"}\n"),
        ["spec.calendar.c.schedule"]
    );
    assert_eq!(
        errors("  calendar:\n    c: {schedule: \"@every soon\"}\n"),
        ["spec.calendar.c.schedule"]
    );
}

#[test]
fn calendar_interval_is_a_positive_duration() {
    assert!(errors("  calendar:\n    c: {interval: 1m30s}\n").is_empty());
    assert_eq!(
        errors("  calendar:\n    c: {interval: \"90\"}\n"),
        ["spec.calendar.c.interval"]
    );
    assert_eq!(
        errors("  calendar:\n    c: {interval: 0s}\n"),
        ["spec.calendar.c.interval"]
    );
}

#[test]
fn calendar_needs_schedule_or_interval_and_schedule_wins() {
    assert_eq!(
        errors("  calendar:\n    c: {timezone: UTC}\n"),
        ["spec.calendar.c"]
    );
    let both = "  calendar:\n    c: {schedule: \"* * * * *\", interval: 10s}\n";
    assert!(errors(both).is_empty());
    assert_eq!(warnings(both), ["spec.calendar.c.interval"]);
}

#[test]
fn calendar_timezone_is_a_zone_name() {
    assert!(
        errors("  calendar:\n    c: {interval: 1h, timezone: America/Argentina/Buenos_Aires}\n").is_empty()
    );
    assert_eq!(
        errors("  calendar:\n    c: {interval: 1h, timezone: \"\"}\n"),
        ["spec.calendar.c.timezone"]
    );
    assert_eq!(
        errors("  calendar:\n    c: {interval: 1h, timezone: \"New York\"}\n"),
        ["spec.calendar.c.timezone"]
    );
}

#[test]
fn calendar_exclusion_dates_and_catchup() {
    let good = "  calendar:\n    c:\n      interval: 1h\n      exclusionDates: [\"EXDATE:20250101T000000Z\"]\n      persistence: {catchup: {enabled: true, maxDuration: 10m}, configMap: {name: cm}}\n";
    assert!(problems(good).is_empty(), "{:?}", problems(good));
    let bad = "  calendar:\n    c:\n      interval: 1h\n      exclusionDates: [\"EXDATE:2025-01-01\"]\n      persistence: {catchup: {enabled: true, maxDuration: ten}, configMap: {}}\n";
    assert_eq!(
        errors(bad),
        [
            "spec.calendar.c.exclusionDates[0]",
            "spec.calendar.c.persistence.catchup.maxDuration",
            "spec.calendar.c.persistence.configMap.name"
        ]
    );
}

#[test]
fn file_path_regexp_compiles() {
    let ok =
        "  file:\n    f: {eventType: CREATE, watchPathConfig: {directory: /d/, pathRegexp: '.*\\.csv$'}}\n";
    assert!(problems(ok).is_empty(), "{:?}", problems(ok));
    let bad =
        "  file:\n    f: {eventType: CREATE, watchPathConfig: {directory: /d/, pathRegexp: '(unclosed'}}\n";
    assert_eq!(errors(bad), ["spec.file.f.watchPathConfig.pathRegexp"]);
    let relative = "  file:\n    f: {eventType: CREATE, watchPathConfig: {directory: d/, path: x}}\n";
    assert_eq!(errors(relative), ["spec.file.f.watchPathConfig.directory"]);
    let neither = "  file:\n    f: {eventType: CREATE, watchPathConfig: {directory: /d/}}\n";
    assert_eq!(errors(neither), ["spec.file.f.watchPathConfig"]);
}

#[test]
fn resource_field_filter_values_are_regexes() {
    let base = "  resource:\n    r:\n      version: v1\n      resource: pods\n      eventTypes: [ADD]\n      filter:\n        fields: [{key: metadata.name, operation: \"==\", value: ";
    assert!(errors(&format!("{base}\"web-.*\"}}]\n")).is_empty());
    assert_eq!(
        errors(&format!("{base}\"web-[\"}}]\n")),
        ["spec.resource.r.filter.fields[0].value"]
    );
    assert_eq!(
        errors("  resource:\n    r: {version: v1, resource: pods, eventTypes: [CREATE]}\n"),
        ["spec.resource.r.eventTypes[0]"]
    );
}

#[test]
fn filter_expression_is_not_empty() {
    let y = "  webhook:\n    a: {port: \"1\", endpoint: /a, method: POST, filter: {expression: \"\"}}\n";
    assert_eq!(errors(y), ["spec.webhook.a.filter.expression"]);
    let y = "  webhook:\n    a: {port: \"1\", endpoint: /a, method: POST, filter: {expression: \"body.x > 1\"}}\n";
    assert!(errors(y).is_empty());
}

#[test]
fn other_durations_parse() {
    let sftp = |d: &str| {
        format!("  sftp:\n    s: {{eventType: CREATE, pollIntervalDuration: \"{d}\", watchPathConfig: {{directory: /in/, path: a.txt}}, {SFTP_AUTH}}}\n")
    };
    assert!(errors(&sftp("30s")).is_empty());
    assert_eq!(errors(&sftp("30")), ["spec.sftp.s.pollIntervalDuration"]);
    let backoff = |d: &str| {
        format!("  nats:\n    n: {{url: \"nats://n:4222\", subject: s, connectionBackoff: {{duration: \"{d}\", steps: 3}}}}\n")
    };
    assert!(errors(&backoff("1s")).is_empty());
    assert_eq!(
        errors(&backoff("1 sec")),
        ["spec.nats.n.connectionBackoff.duration"]
    );
}

const SFTP_AUTH: &str =
    "address: {name: s, key: address}, username: {name: s, key: user}, sshKeySecret: {name: s, key: key}";

#[test]
fn sftp_needs_an_address_a_user_a_credential_and_a_pollable_operation() {
    let sftp = |fields: &str| {
        format!("  sftp:\n    s: {{watchPathConfig: {{directory: /in/, path: a.txt}}, {fields}}}\n")
    };
    assert!(errors(&sftp(&format!("eventType: REMOVE, {SFTP_AUTH}"))).is_empty());
    assert_eq!(
        errors(&sftp(&format!("eventType: WRITE, {SFTP_AUTH}"))),
        ["spec.sftp.s.eventType"]
    );
    assert_eq!(
        errors(&sftp("eventType: CREATE, pollIntervalDuration: 5s")),
        [
            "spec.sftp.s.address",
            "spec.sftp.s.username",
            "spec.sftp.s.password"
        ]
    );
}

#[test]
fn websocket_needs_a_ws_url() {
    let ws = |url: &str| format!("  websocket:\n    w: {{url: \"{url}\", jsonBody: true}}\n");
    assert!(errors(&ws("wss://feed.example.com/stream")).is_empty());
    assert!(errors(&ws("ws://127.0.0.1:9000")).is_empty());
    assert_eq!(errors(&ws("https://feed.example.com")), ["spec.websocket.w.url"]);
    assert_eq!(errors(&ws("ws://")), ["spec.websocket.w.url"]);
    assert_eq!(
        errors("  websocket:\n    w: {jsonBody: true}\n"),
        ["spec.websocket.w.url"]
    );
    let filtered = "  websocket:\n    w: {url: \"ws://h\", filter: {expression: \"\"}}\n";
    assert_eq!(errors(filtered), ["spec.websocket.w.filter.expression"]);
}

#[test]
fn kind_required_fields() {
    assert_eq!(
        errors("  kafka:\n    k: {url: \"k:9092\", topic: t}\n"),
        ["spec.kafka.k"]
    );
    assert!(errors("  kafka:\n    k: {url: \"k:9092\", topic: t, partition: \"0\"}\n").is_empty());
    assert_eq!(
        errors("  sqs:\n    q: {region: us-east-1}\n"),
        ["spec.sqs.q.queue"]
    );
    assert_eq!(
        errors("  azureServiceBus:\n    a: {connectionString: {name: a, key: b}, topicName: t}\n"),
        ["spec.azureServiceBus.a"]
    );
    assert_eq!(errors("  minio:\n    m: {endpoint: \"m:9000\", accessKey: {name: a, key: b}, secretKey: {name: a, key: c}}\n"), ["spec.minio.m.bucket"]);
}

#[test]
fn mixing_single_active_and_overlapping_kinds_warns() {
    let mixed = "  calendar:\n    c: {interval: 10s}\n".to_string() + HOOK;
    assert_eq!(warnings(&mixed), ["spec"]);
    assert!(warnings("  calendar:\n    c: {interval: 10s}\n").is_empty());
}

#[test]
fn gitlab_needs_token_base_url_and_events_only_to_manage_the_hook() {
    // Receive-only (a hook registered by hand): none of them.
    let receive =
        "  gitlab:\n    g: {webhook: {port: \"12000\", endpoint: /g, method: POST}, projects: [\"1\"]}\n";
    assert!(errors(receive).is_empty(), "{:?}", problems(receive));
    // Managing the hook (accessToken and webhook.url): events and gitlabBaseURL are required.
    let manage = "  gitlab:\n    g:\n      webhook: {port: \"12000\", endpoint: /g, method: POST, url: https://hooks.example}\n      projects: [\"1\"]\n      accessToken: {name: gl, key: token}\n";
    assert_eq!(
        errors(manage),
        ["spec.gitlab.g.events", "spec.gitlab.g.gitlabBaseURL"]
    );
}

#[test]
fn sns_checks_credentials_and_the_subscription_url() {
    let hook = "webhook: {port: \"12000\", endpoint: /sns, method: POST";
    let ok = format!("  sns:\n    s: {{topicArn: \"arn:aws:sns:us-east-1:1:t\", region: us-east-1, {hook}, url: \"https://x.example\"}}}}\n");
    assert!(problems(&ok).is_empty(), "{:?}", problems(&ok));
    let one_key = format!("  sns:\n    s: {{topicArn: \"arn:aws:sns:us-east-1:1:t\", region: us-east-1, accessKey: {{name: a, key: b}}, {hook}, url: \"https://x.example\"}}}}\n");
    assert_eq!(errors(&one_key), ["spec.sns.s"]);
    let bad_url = format!("  sns:\n    s: {{topicArn: \"arn:aws:sns:us-east-1:1:t\", region: us-east-1, {hook}, url: \"x.example\"}}}}\n");
    assert_eq!(errors(&bad_url), ["spec.sns.s.webhook.url"]);
    let no_url =
        format!("  sns:\n    s: {{topicArn: \"arn:aws:sns:us-east-1:1:t\", region: us-east-1, {hook}}}}}\n");
    assert!(errors(&no_url).is_empty());
    assert_eq!(warnings(&no_url), ["spec.sns.s.webhook.url"]);
    assert_eq!(
        errors(&format!("  sns:\n    s: {{region: us-east-1, {hook}}}}}\n")),
        ["spec.sns.s.topicArn"]
    );
}
