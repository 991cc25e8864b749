//! Realistic Sensor manifests: each parses, validates without errors, and survives a
//! parse → serialize → parse round trip unchanged.

use super::*;
use crate::validate::{Problems, Severity, Validate};

/// Parses a Sensor manifest; a test fixture, so a parse error fails the test.
pub(super) fn sensor(yaml: &str) -> Sensor {
    match serde_yaml::from_str(yaml) {
        Ok(s) => s,
        Err(e) => panic!("test manifest does not parse: {e}\n{yaml}"),
    }
}

/// The errors (not warnings) `validate` finds, as `path: reason` strings.
pub(super) fn errors(s: &Sensor) -> Vec<String> {
    let mut p = Problems::new();
    s.validate("", &mut p);
    p.into_vec()
        .into_iter()
        .filter(|p| p.severity == Severity::Error)
        .map(|p| p.to_string())
        .collect()
}

fn round_trip(s: &Sensor) {
    let text = serde_yaml::to_string(s).expect("serializes");
    let again: Sensor = serde_yaml::from_str(&text).expect("parses again");
    assert_eq!(&again, s, "{text}");
    let json = serde_json::to_string(s).expect("serializes to JSON");
    let again: Sensor = serde_json::from_str(&json).expect("parses JSON again");
    assert_eq!(&again, s);
}

fn check(yaml: &str) -> Sensor {
    let s = sensor(yaml);
    assert_eq!(errors(&s), Vec::<String>::new());
    round_trip(&s);
    s
}

const WEBHOOK_HTTP: &str = r#"
apiVersion: argoproj.io/v1alpha1
kind: Sensor
metadata:
  name: webhook-to-http
  namespace: automation
spec:
  eventBusName: main
  replicas: 2
  template:
    serviceAccountName: sensor-sa
    container:
      resources:
        requests: {cpu: 50m, memory: 64Mi}
  dependencies:
    - name: push
      eventSourceName: github-hooks
      eventName: repo-push
      filters:
        data:
          - path: body.ref
            type: string
            value: ["^refs/heads/main$"]
        context:
          type: webhook
  triggers:
    - template:
        name: notify-ci
        http:
          url: https://ci.example.com/hooks/build
          method: POST
          timeout: 10
          headers:
            X-Source: sluice
          secureHeaders:
            - name: Authorization
              valueFrom:
                secretKeyRef: {name: ci-token, key: header}
          payload:
            - src: {dependencyName: push, dataKey: body.repository.full_name}
              dest: repo
            - src: {dependencyName: push, dataKey: body.after}
              dest: commit
      retryStrategy:
        steps: 3
        duration: 2s
        factor: 2
        jitter: 0.1
      policy:
        status:
          allow: [200, 201, 202]
      rateLimit:
        unit: Minute
        requestsPerUnit: 30
"#;

#[test]
fn webhook_to_http() {
    let s = check(WEBHOOK_HTTP);
    assert_eq!(s.spec.event_bus_name_or_default(), "main");
    let t = &s.spec.triggers[0];
    let http = t
        .template
        .as_ref()
        .and_then(|t| t.http.as_ref())
        .expect("http trigger");
    assert_eq!(http.url, "https://ci.example.com/hooks/build");
    assert_eq!(http.payload.len(), 2);
    assert_eq!(
        t.template
            .as_ref()
            .and_then(|t| t.action())
            .map(|a| a.field_name()),
        Some("http")
    );
    assert_eq!(t.retry_strategy.as_ref().and_then(|r| r.steps), Some(3));
}

#[test]
fn http_server_url_is_an_alias_of_url() {
    let s = sensor(&WEBHOOK_HTTP.replace("          url: https", "          serverURL: https"));
    let http = s.spec.triggers[0]
        .template
        .as_ref()
        .and_then(|t| t.http.as_ref())
        .expect("http");
    assert_eq!(http.url, "https://ci.example.com/hooks/build");
    assert!(serde_yaml::to_string(&s)
        .expect("serializes")
        .contains("url: https://ci.example.com"));
}

#[test]
fn multi_dependency_with_conditions() {
    let s = check(
        r#"
apiVersion: argoproj.io/v1alpha1
kind: Sensor
metadata: {name: multi}
spec:
  dependencies:
    - {name: dep-01, eventSourceName: webhook, eventName: one}
    - {name: dep_02, eventSourceName: webhook, eventName: two}
    - name: dep.03
      eventSourceName: calendar
      eventName: tick
      filtersLogicalOperator: or
      filters:
        time: {start: "08:00:00", stop: "18:00:00", timezone: Europe/Berlin}
        exprs:
          - expr: n > 2 && kind == "x"
            fields:
              - {name: n, path: body.count}
              - {name: kind, path: body.kind}
      transform:
        jq: ".body.count += 1"
  triggers:
    - template:
        name: either-then-tick
        conditions: "(dep-01 || dep_02) && dep.03"
        conditionsReset:
          - byTime: {cron: "0 23 * * *", timezone: UTC}
        log: {intervalSeconds: 10}
    - template:
        name: all
        log: {}
"#,
    );
    let cond = s.spec.triggers[0]
        .template
        .as_ref()
        .and_then(|t| t.conditions.as_deref())
        .expect("conditions");
    let expr = conditions::parse(cond).expect("parses");
    assert_eq!(expr.deps().len(), 3);
    let all = conditions::Expr::for_trigger(None, s.spec.dependencies.iter().map(|d| d.name.as_str()))
        .expect("has dependencies");
    assert_eq!(all.to_string(), "dep-01 && dep_02 && dep.03");
}

#[test]
fn k8s_trigger_with_parameters() {
    let s = check(
        r#"
apiVersion: argoproj.io/v1alpha1
kind: Sensor
metadata: {name: k8s}
spec:
  dependencies:
    - {name: msg, eventSourceName: nats, eventName: jobs}
  triggers:
    - template:
        name: make-pod
        k8s:
          operation: create
          source:
            resource:
              apiVersion: v1
              kind: Pod
              metadata:
                generateName: job-
                labels: {app: worker}
              spec:
                restartPolicy: Never
                containers:
                  - name: main
                    image: alpine:3
                    args: ["echo", "placeholder"]
          parameters:
            - src:
                dependencyName: msg
                dataKey: body.message
                value: nothing
              dest: spec.containers.0.args.1
              operation: overwrite
            - src:
                dependencyName: msg
                contextKey: subject
              dest: metadata.labels.subject
      parameters:
        - src: {dependencyName: msg, dataTemplate: "{{ .Input.body.kind | lower }}"}
          dest: k8s.source.resource.metadata.generateName
          operation: prepend
      policy:
        k8s:
          backoff: {duration: 1000000000, steps: 5}
          errorOnBackoffTimeout: true
          labels: {workflows.argoproj.io/phase: Succeeded}
"#,
    );
    let k8s = s.spec.triggers[0]
        .template
        .as_ref()
        .and_then(|t| t.k8s.as_ref())
        .expect("k8s");
    let resource = k8s
        .source
        .as_ref()
        .and_then(|s| s.resource.as_ref())
        .expect("resource");
    assert_eq!(resource["spec"]["containers"][0]["image"], "alpine:3");
    assert_eq!(
        k8s.parameters[0].src.as_ref().and_then(|s| s.value.as_deref()),
        Some("nothing")
    );
}

#[test]
fn argo_workflow_trigger() {
    let s = check(
        r#"
apiVersion: argoproj.io/v1alpha1
kind: Sensor
metadata: {name: wf}
spec:
  template:
    serviceAccountName: operate-workflow-sa
  dependencies:
    - {name: hook, eventSourceName: webhook, eventName: example}
  triggers:
    - template:
        name: submit
        argoWorkflow:
          operation: submit
          args: ["--serviceaccount", "runner"]
          source:
            resource:
              apiVersion: argoproj.io/v1alpha1
              kind: Workflow
              metadata: {generateName: hello-}
              spec:
                entrypoint: main
                arguments:
                  parameters: [{name: message, value: hi}]
                templates:
                  - name: main
                    container: {image: busybox, command: [echo], args: ["{{workflow.parameters.message}}"]}
          parameters:
            - src: {dependencyName: hook, dataKey: body}
              dest: spec.arguments.parameters.0.value
    - template:
        name: from-git
        argoWorkflow:
          operation: submit
          source:
            git:
              url: https://github.com/example/flows.git
              cloneDirectory: /git/flows
              filePath: wf/hello.yaml
              branch: main
              creds:
                username: {name: git, key: user}
                password: {name: git, key: token}
"#,
    );
    let wf = s.spec.triggers[0]
        .template
        .as_ref()
        .and_then(|t| t.argo_workflow.as_ref())
        .expect("wf");
    assert_eq!(wf.args, vec!["--serviceaccount", "runner"]);
    let git = s.spec.triggers[1]
        .template
        .as_ref()
        .and_then(|t| t.argo_workflow.as_ref());
    let git = git
        .and_then(|w| w.source.as_ref())
        .and_then(|s| s.git.as_ref())
        .expect("git");
    assert_eq!(git.file_path, "wf/hello.yaml");
}

#[test]
fn kafka_trigger() {
    let s = check(
        r#"
apiVersion: argoproj.io/v1alpha1
kind: Sensor
metadata: {name: kafka}
spec:
  dependencies:
    - {name: upload, eventSourceName: minio, eventName: bucket}
  triggers:
    - template:
        name: to-kafka
        kafka:
          url: kafka-0.kafka:9092,kafka-1.kafka:9092
          topic: uploads
          partitioningKey: bucket
          requiredAcks: -1
          compress: true
          flushFrequency: 100
          version: "2.8.0"
          headers: {origin: sluice}
          sasl:
            mechanism: SCRAM-SHA-512
            userSecret: {name: kafka, key: user}
            passwordSecret: {name: kafka, key: password}
          tls:
            caCertSecret: {name: kafka-ca, key: ca.crt}
          schemaRegistry:
            url: http://registry:8081
            schemaId: 3
          payload:
            - src: {dependencyName: upload, dataKey: notification.0.s3.object.key}
              dest: key
            - src: {dependencyName: upload, dataKey: notification.0.s3.object.size, useRawData: true}
              dest: size
"#,
    );
    let kafka = s.spec.triggers[0]
        .template
        .as_ref()
        .and_then(|t| t.kafka.as_ref())
        .expect("kafka");
    assert_eq!(kafka.required_acks, Some(-1));
    assert!(kafka.payload[1].src.as_ref().is_some_and(|s| s.use_raw_data));
    assert_eq!(kafka.schema_registry.as_ref().map(|r| r.schema_id), Some(3));
}

#[test]
fn dlq_trigger() {
    let s = check(
        r#"
apiVersion: argoproj.io/v1alpha1
kind: Sensor
metadata: {name: dlq}
spec:
  dependencies:
    - {name: order, eventSourceName: sqs, eventName: orders}
  triggers:
    - atLeastOnce: true
      retryStrategy: {steps: 2, duration: 500ms}
      template:
        name: call-api
        http:
          url: https://api.example.com/orders
          payload:
            - src: {dependencyName: order, dataKey: body}
              dest: order
      dlqTrigger:
        atLeastOnce: true
        template:
          name: park
          nats:
            url: nats://nats:4222
            subject: orders.failed
            payload:
              - src: {dependencyName: order, dataKey: body}
                dest: order
"#,
    );
    let dlq = s.spec.triggers[0].dlq_trigger.as_ref().expect("dlq");
    assert_eq!(
        dlq.template
            .as_ref()
            .and_then(|t| t.action())
            .map(|a| a.field_name()),
        Some("nats")
    );
}

#[test]
fn other_trigger_kinds_parse() {
    check(
        r#"
metadata: {name: all-kinds}
spec:
  dependencies:
    - {name: d, eventSourceName: es, eventName: e}
  triggers:
    - template:
        name: lambda
        awsLambda:
          functionName: hello
          region: us-east-1
          roleARN: arn:aws:iam::1:role/x
          invocationType: Event
          accessKey: {name: aws, key: id}
          secretKey: {name: aws, key: secret}
          payload: [{src: {dependencyName: d, dataKey: body}, dest: body}]
    - template:
        name: custom
        custom:
          serverURL: trigger.svc:9000
          secure: true
          certSecret: {name: c, key: crt}
          serverNameOverride: trigger.local
          spec: {greeting: hello}
          payload: [{src: {dependencyName: d, dataKey: body}, dest: body}]
    - template:
        name: slack
        slack:
          channel: general
          message: hello
          slackToken: {name: slack, key: token}
          thread: {messageAggregationKey: k, broadcastMessageToChannel: true}
          sender: {username: bot, icon: ":robot_face:"}
    - template:
        name: whisk
        openWhisk:
          host: whisk.example.com
          actionName: hello
          namespace: _
          payload: [{src: {dependencyName: d, dataKey: body}, dest: body}]
    - template:
        name: hubs
        azureEventHubs:
          fqdn: ns.servicebus.windows.net
          hubName: hub
          sharedAccessKeyName: {name: az, key: name}
          sharedAccessKey: {name: az, key: key}
          payload: [{src: {dependencyName: d, dataKey: body}, dest: body}]
    - template:
        name: pulsar
        pulsar:
          url: pulsar://pulsar:6650
          topic: t
          tlsValidateHostname: true
          connectionBackoff: {steps: 3}
          authAthenzParams: {tenantDomain: x}
          payload: [{src: {dependencyName: d, dataKey: body}, dest: body}]
    - template:
        name: bus
        azureServiceBus:
          queueName: q
          connectionString: {name: sb, key: cs}
          payload: [{src: {dependencyName: d, dataKey: body}, dest: body}]
    - template:
        name: mail
        email:
          host: smtp.example.com
          port: 587
          username: me
          smtpPassword: {name: smtp, key: pw}
          to: [a@example.com]
          from: b@example.com
          subject: hi
          body: hello
"#,
    );
}

#[test]
fn null_lists_read_as_empty() {
    let s = sensor("metadata: {name: n}\nspec:\n  dependencies:\n    - name: a\n      eventSourceName: b\n      eventName: c\n      filters:\n        data:\n  triggers:\n");
    assert!(s.spec.triggers.is_empty());
    assert!(s.spec.dependencies[0]
        .filters
        .as_ref()
        .is_some_and(|f| f.data.is_empty()));
}

#[test]
fn status_conditions_sit_at_the_top_of_status() {
    let s = sensor(
        "metadata: {name: n}\nspec: {}\nstatus:\n  conditions:\n    - {type: Deployed, status: \"True\"}\n",
    );
    let status = s.status.as_ref().expect("status");
    assert_eq!(status.status.conditions[0].type_, "Deployed");
    round_trip(&s);
}

#[test]
fn trigger_kind_table_is_complete() {
    let names: std::collections::BTreeSet<_> = TriggerKind::ALL.iter().map(|k| k.field_name()).collect();
    assert_eq!(names.len(), TriggerKind::COUNT, "field names are unique");
    let schema = serde_json::to_value(schemars::schema_for!(TriggerTemplate)).expect("schema");
    let props = schema["properties"].as_object().expect("properties");
    for name in &names {
        assert!(props.contains_key(*name), "the template has no field {name}");
    }
    // Three non-kind fields: name, conditions, conditionsReset.
    assert_eq!(props.len(), TriggerKind::COUNT + 3);
    for kind in TriggerKind::ALL {
        assert_eq!(TriggerKind::from_field_name(kind.field_name()), Some(kind));
    }
    assert_eq!(TriggerKind::from_field_name("argo_workflow"), None);
}

#[test]
fn every_action_field_is_found_in_declaration_order() {
    // One template setting every action, each by its YAML name from the table.
    let actions: String = TriggerKind::ALL
        .iter()
        .map(|k| format!("        {k}: {{}}\n"))
        .collect();
    let s = sensor(&format!(
        "metadata: {{name: every}}\nspec:\n  triggers:\n    - template:\n        name: all\n{actions}"
    ));
    let template = s.spec.triggers[0].template.as_ref().expect("template");
    let kinds: Vec<TriggerKind> = template.actions().iter().map(TriggerAction::kind).collect();
    assert_eq!(kinds, TriggerKind::ALL);
    assert!(template.action().is_none(), "several actions are not one");
}
