//! Parsing tests: realistic manifests in upstream's format parse into the typed spec, keep every
//! field through a serialize/parse round trip, and validate cleanly.

use super::*;
use crate::validate::{Problems, Severity, Validate};

/// Parses, round-trips (YAML and JSON) and validates a manifest; returns it for field checks.
fn parse(yaml: &str) -> EventSource {
    let es: EventSource = serde_yaml::from_str(yaml).expect("manifest parses");
    let again: EventSource =
        serde_yaml::from_str(&serde_yaml::to_string(&es).expect("serializes")).expect("reparses");
    assert_eq!(again, es, "YAML round trip changed the manifest");
    let json = serde_json::to_value(&es).expect("to json");
    assert_eq!(
        serde_json::from_value::<EventSource>(json).expect("from json"),
        es
    );
    let mut problems = Problems::new();
    es.validate("", &mut problems);
    let errors: Vec<_> = problems
        .as_slice()
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .collect();
    assert!(errors.is_empty(), "unexpected errors: {errors:?}");
    es
}

#[test]
fn webhook_with_filter_and_auth() {
    let es = parse(
        r#"
apiVersion: argoproj.io/v1alpha1
kind: EventSource
metadata:
  name: deploy-hooks
  namespace: ci
spec:
  eventBusName: fast
  webhook:
    release:
      port: "8080"
      endpoint: /release
      method: POST
      maxPayloadSize: 2097152
      authSecret: {name: release-hook, key: token}
      metadata: {team: platform}
      filter:
        expression: body.env == "prod"
    ping:
      port: "8080"
      endpoint: /ping
      method: GET
"#,
    );
    assert_eq!(es.metadata.name.as_deref(), Some("deploy-hooks"));
    assert_eq!(es.spec.event_bus_name.as_deref(), Some("fast"));
    let hooks = es.spec.webhook.as_ref().expect("webhook events");
    let release = &hooks["release"];
    assert_eq!(release.webhook_context.port, "8080");
    assert_eq!(release.webhook_context.max_payload_size, Some(2_097_152));
    assert_eq!(
        release
            .webhook_context
            .auth_secret
            .as_ref()
            .map(|s| s.key.as_str()),
        Some("token")
    );
    assert_eq!(
        release.filter.as_ref().map(|f| f.expression.as_str()),
        Some("body.env == \"prod\"")
    );
    // Flattened: the webhook context's fields sit directly in the event, as upstream.
    let json = serde_json::to_value(release).expect("to json");
    assert_eq!(json["endpoint"], "/release");
    assert!(json.get("webhookContext").is_none());
}

#[test]
fn github_with_app_credentials() {
    let es = parse(
        r#"
apiVersion: argoproj.io/v1alpha1
kind: EventSource
metadata: {name: gh}
spec:
  service:
    ports:
      - port: 12000
        targetPort: 12000
  github:
    pushes:
      repositories:
        - owner: acme
          names: [api, web]
      githubApp:
        privateKey: {name: gh-app, key: pem}
        appID: 1234
        installationID: 98765
      webhook:
        endpoint: /github
        port: "12000"
        method: POST
        url: https://hooks.acme.example
      events: [push, pull_request]
      webhookSecret: {name: gh-hook, key: secret}
      contentType: json
      active: true
      insecure: false
      githubBaseURL: https://ghe.acme.example/api/v3/
      githubUploadURL: https://ghe.acme.example/api/uploads/
"#,
    );
    let gh = &es.spec.github.as_ref().expect("github")["pushes"];
    assert_eq!(gh.repositories[0].names, ["api", "web"]);
    assert_eq!(
        gh.github_app.as_ref().map(|a| (a.app_id, a.installation_id)),
        Some((1234, 98765))
    );
    assert!(gh.active && !gh.insecure);
    assert_eq!(
        gh.github_base_url.as_deref(),
        Some("https://ghe.acme.example/api/v3/")
    );
    let json = serde_json::to_value(gh).expect("to json");
    assert!(
        json.get("githubUploadURL").is_some(),
        "URL-style field names are kept: {json}"
    );
    assert!(json.get("insecure").is_none(), "false booleans are omitted");
}

#[test]
fn calendar_with_persistence() {
    let es = parse(
        r#"
apiVersion: argoproj.io/v1alpha1
kind: EventSource
metadata: {name: clock}
spec:
  replicas: 2
  calendar:
    weekday-morning:
      schedule: "30 7 * * 1-5"
      timezone: Europe/Vienna
      exclusionDates: ["EXDATE:20251225T000000Z,20260101T000000Z"]
      metadata: {shift: early}
      persistence:
        catchup:
          enabled: true
          maxDuration: 2h
        configMap:
          name: clock-state
          createIfNotExist: true
    heartbeat:
      interval: 45s
"#,
    );
    let cal = es.spec.calendar.as_ref().expect("calendar");
    let morning = &cal["weekday-morning"];
    let persistence = morning.persistence.as_ref().expect("persistence");
    assert!(persistence.catchup.as_ref().is_some_and(|c| c.enabled));
    assert_eq!(
        persistence.config_map.as_ref().and_then(|c| c.name.as_deref()),
        Some("clock-state")
    );
    assert!(matches!(
        morning.resolve_schedule(),
        Ok(CalendarSchedule::Cron { .. })
    ));
    assert_eq!(
        cal["heartbeat"].resolve_schedule(),
        Ok(CalendarSchedule::Every(std::time::Duration::from_secs(45)))
    );
    assert_eq!(es.spec.replicas, Some(2));
}

#[test]
fn kafka_consumer_group_with_sasl_and_tls() {
    let es = parse(
        r#"
apiVersion: argoproj.io/v1alpha1
kind: EventSource
metadata: {name: orders}
spec:
  kafka:
    order-created:
      url: broker-0.kafka:9093,broker-1.kafka:9093
      topic: orders.created
      jsonBody: true
      version: "3.6.0"
      limitEventsPerSecond: 50
      consumerGroup:
        groupName: sluice-orders
        oldest: true
        rebalanceStrategy: sticky
      sasl:
        mechanism: SCRAM-SHA-512
        userSecret: {name: kafka-user, key: user}
        passwordSecret: {name: kafka-user, key: password}
      tls:
        caCertSecret: {name: kafka-ca, key: ca.crt}
      connectionBackoff:
        duration: 2s
        factor: 1.5
        jitter: 0.1
        steps: 8
      config: |
        consumer:
          fetch:
            min: 1
"#,
    );
    let k = &es.spec.kafka.as_ref().expect("kafka")["order-created"];
    assert!(k.json_body);
    assert_eq!(
        k.consumer_group.as_ref().map(|g| g.group_name.as_str()),
        Some("sluice-orders")
    );
    assert_eq!(
        k.sasl.as_ref().and_then(|s| s.mechanism.as_deref()),
        Some("SCRAM-SHA-512")
    );
    let backoff = k.connection_backoff.as_ref().expect("backoff");
    assert_eq!(backoff.factor.as_ref().and_then(|f| f.as_f64()), Some(1.5));
    assert_eq!(backoff.steps, Some(8));
}

#[test]
fn minio_bucket_notifications() {
    let es = parse(
        r#"
apiVersion: argoproj.io/v1alpha1
kind: EventSource
metadata: {name: uploads}
spec:
  minio:
    csv-arrived:
      bucket: {name: landing}
      endpoint: objects.storage.svc:9000
      events: ["s3:ObjectCreated:Put", "s3:ObjectCreated:CompleteMultipartUpload"]
      filter: {prefix: incoming/, suffix: .csv}
      insecure: true
      accessKey: {name: objects-creds, key: access}
      secretKey: {name: objects-creds, key: secret}
"#,
    );
    let m = &es.spec.minio.as_ref().expect("minio")["csv-arrived"];
    assert_eq!(m.bucket.as_ref().map(|b| b.name.as_str()), Some("landing"));
    assert_eq!(m.filter.as_ref().map(|f| f.suffix.as_str()), Some(".csv"));
    assert!(m.insecure);
}

#[test]
fn sqs_with_role() {
    let es = parse(
        r#"
apiVersion: argoproj.io/v1alpha1
kind: EventSource
metadata: {name: queues}
spec:
  sqs:
    invoices:
      region: eu-west-1
      queue: invoices
      waitTimeSeconds: 20
      roleARN: arn:aws:iam::111122223333:role/sluice-reader
      queueAccountId: "111122223333"
      jsonBody: true
      dlq: true
"#,
    );
    let q = &es.spec.sqs.as_ref().expect("sqs")["invoices"];
    assert_eq!(q.wait_time_seconds, Some(20));
    assert_eq!(
        q.role_arn.as_deref(),
        Some("arn:aws:iam::111122223333:role/sluice-reader")
    );
    assert!(q.json_body && q.dlq);
}

#[test]
fn resource_with_filters() {
    let es = parse(
        r#"
apiVersion: argoproj.io/v1alpha1
kind: EventSource
metadata: {name: cluster-watch}
spec:
  template:
    serviceAccountName: resource-watcher
  resource:
    pods-failed:
      namespace: batch
      group: ""
      version: v1
      resource: pods
      eventTypes: [UPDATE, DELETE]
      filter:
        prefix: job-
        afterStart: true
        createdBy: "2025-03-01T12:00:00Z"
        labels:
          - key: tier
            operation: in
            value: batch,etl
        fields:
          - key: status.phase
            operation: "=="
            value: Fail.*
"#,
    );
    let r = &es.spec.resource.as_ref().expect("resource")["pods-failed"];
    assert_eq!(r.event_types, ["UPDATE", "DELETE"]);
    let f = r.filter.as_ref().expect("filter");
    assert!(f.after_start && f.created_by.is_some());
    assert_eq!(f.labels[0].operation.as_deref(), Some("in"));
}

#[test]
fn file_with_regex() {
    let es = parse(
        r#"
apiVersion: argoproj.io/v1alpha1
kind: EventSource
metadata: {name: drops}
spec:
  file:
    reports:
      eventType: CREATE
      polling: true
      watchPathConfig:
        directory: /mnt/drop/
        pathRegexp: '^report-\d{8}\.json$'
"#,
    );
    let f = &es.spec.file.as_ref().expect("file")["reports"];
    assert!(f.polling);
    assert_eq!(
        f.watch_path_config.as_ref().map(|w| w.directory.as_str()),
        Some("/mnt/drop/")
    );
}

#[test]
fn template_and_service() {
    let es = parse(
        r#"
apiVersion: argoproj.io/v1alpha1
kind: EventSource
metadata: {name: tuned}
spec:
  template:
    metadata:
      labels: {app: tuned}
      annotations: {prometheus.io/scrape: "true"}
    serviceAccountName: tuned-es
    priorityClassName: high
    priority: 1000
    nodeSelector: {pool: events}
    imagePullSecrets: [{name: registry}]
    securityContext:
      runAsNonRoot: true
      fsGroup: 2000
    tolerations:
      - key: dedicated
        operator: Equal
        value: events
        effect: NoSchedule
    affinity:
      nodeAffinity:
        requiredDuringSchedulingIgnoredDuringExecution:
          nodeSelectorTerms:
            - matchExpressions:
                - {key: zone, operator: In, values: [a, b]}
    volumes:
      - name: scratch
        emptyDir: {}
    container:
      imagePullPolicy: IfNotPresent
      env:
        - {name: LOG_LEVEL, value: debug}
      resources:
        requests: {cpu: 100m, memory: 64Mi}
        limits: {memory: 128Mi}
      volumeMounts:
        - {name: scratch, mountPath: /scratch}
  service:
    clusterIP: 10.0.0.42
    metadata:
      labels: {exposed: "yes"}
    ports:
      - name: hooks
        port: 80
        targetPort: 9000
        protocol: TCP
  webhook:
    inbound:
      port: "9000"
      endpoint: /in
      method: PUT
"#,
    );
    let t = es.spec.template.as_ref().expect("template");
    assert_eq!(t.service_account_name.as_deref(), Some("tuned-es"));
    assert_eq!(t.tolerations.as_ref().map(Vec::len), Some(1));
    assert!(t
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .is_some());
    let c = t.container.as_ref().expect("container");
    assert_eq!(c.env.as_ref().map(|e| e[0].name.as_str()), Some("LOG_LEVEL"));
    let s = es.spec.service.as_ref().expect("service");
    assert_eq!(s.cluster_ip.as_deref(), Some("10.0.0.42"));
    assert_eq!(s.ports[0].port, 80);
    let json = serde_json::to_value(s).expect("to json");
    assert!(
        json.get("clusterIP").is_some(),
        "upstream spelling clusterIP: {json}"
    );
}

#[test]
fn upstream_spellings_of_kind_fields() {
    let es = parse(
        r#"
apiVersion: argoproj.io/v1alpha1
kind: EventSource
metadata: {name: spellings}
spec:
  pubSub:
    gcp: {topic: t1, projectID: p1, topicProjectID: p2, subscriptionID: s1}
  redisStream:
    rs: {hostAddress: "redis:6379", streams: [s], db: 2, maxMsgCountPerRead: 5}
  bitbucketserver:
    bbs:
      bitbucketserverBaseURL: https://bb.example/rest
      skipBranchRefsChangedOnOpenPR: true
      webhook: {endpoint: /bbs, port: "12001", method: POST}
  azureEventsHub:
    hub: {fqdn: ns.servicebus.windows.net, hubName: h}
  storageGrid:
    grid:
      topicArn: arn:x
      bucket: b
      apiURL: https://grid.example/api
      authToken: {name: grid, key: token}
      events: ["ObjectCreated:*"]
      webhook: {endpoint: /grid, port: "12002", method: POST}
  hdfs:
    lake: {directory: /raw/, pathRegexp: '.*\.parquet', type: CREATE, addresses: ["nn:8020"], hdfsUser: etl}
  gitlab:
    gl:
      gitlabBaseURL: https://gitlab.example
      projectID: "42"
      enableSSLVerification: true
      events: [PushEvents]
      accessToken: {name: gl, key: token}
      webhook: {endpoint: /gl, port: "12003", method: POST}
"#,
    );
    let json = serde_json::to_value(&es.spec).expect("to json");
    for key in [
        "pubSub",
        "redisStream",
        "bitbucketserver",
        "azureEventsHub",
        "storageGrid",
        "hdfs",
        "gitlab",
    ] {
        assert!(json.get(key).is_some(), "missing {key} in {json}");
    }
    assert_eq!(json["pubSub"]["gcp"]["topicProjectID"], "p2");
    assert_eq!(
        json["bitbucketserver"]["bbs"]["skipBranchRefsChangedOnOpenPR"],
        true
    );
    assert_eq!(
        json["hdfs"]["lake"]["directory"], "/raw/",
        "HDFS watch path fields are inline"
    );
    assert_eq!(json["gitlab"]["gl"]["enableSSLVerification"], true);
    assert_eq!(es.spec.event_names().len(), 7);
}

#[test]
fn status_conditions_sit_at_top_level() {
    let es: EventSource = serde_yaml::from_str(
        r#"
apiVersion: argoproj.io/v1alpha1
kind: EventSource
metadata: {name: s}
spec:
  webhook:
    a: {port: "1", endpoint: /a, method: POST}
status:
  conditions:
    - {type: Deployed, status: "True", reason: Ok}
"#,
    )
    .expect("parses");
    let status = es.status.as_ref().expect("status");
    assert_eq!(status.status.conditions[0].type_, "Deployed");
    let json = serde_json::to_value(&es).expect("to json");
    assert_eq!(json["status"]["conditions"][0]["status"], "True");
}

#[test]
fn unknown_fields_are_tolerated() {
    let es: EventSource = serde_yaml::from_str(
        r#"
apiVersion: argoproj.io/v1alpha1
kind: EventSource
metadata: {name: future}
spec:
  someFutureKind: {x: {}}
  webhook:
    a: {port: "1", endpoint: /a, method: POST, futureField: 1}
"#,
    )
    .expect("unknown fields do not fail parsing");
    assert!(es.spec.webhook.is_some());
}

#[test]
fn kind_table_is_complete() {
    let names: std::collections::BTreeSet<_> = EventSourceKind::ALL.iter().map(|k| k.field_name()).collect();
    assert_eq!(names.len(), EventSourceKind::COUNT, "field names are unique");
    let schema = serde_json::to_value(schemars::schema_for!(EventSourceSpec)).expect("schema");
    let props = schema["properties"].as_object().expect("properties");
    for name in &names {
        assert!(props.contains_key(*name), "spec has no field {name}");
    }
    // Four non-kind fields: eventBusName, template, service, replicas.
    assert_eq!(props.len(), EventSourceKind::COUNT + 4);
}

#[test]
fn field_names_map_back_to_their_kinds() {
    for kind in EventSourceKind::ALL {
        assert_eq!(EventSourceKind::from_field_name(kind.field_name()), Some(kind));
    }
    assert_eq!(
        EventSourceKind::from_field_name("redisStream"),
        Some(EventSourceKind::RedisStream)
    );
    // Names are the YAML spelling, not the Rust one.
    assert_eq!(EventSourceKind::from_field_name("redis_stream"), None);
    assert_eq!(EventSourceKind::from_field_name("eventBusName"), None);
}

/// The table's webhook column agrees with the types: a kind is `UnderWebhook` exactly when its
/// event type has a `webhook` field, and `Inline` exactly when it has the context's `port`.
#[test]
fn webhook_column_matches_the_event_types() {
    let schema = serde_json::to_value(schemars::schema_for!(EventSourceSpec)).expect("schema");
    let resolve = |s: &serde_json::Value| -> serde_json::Value {
        match s.get("$ref").and_then(|r| r.as_str()) {
            Some(r) => schema
                .pointer(r.trim_start_matches('#'))
                .cloned()
                .unwrap_or_else(|| panic!("unresolved {r}")),
            None => s.clone(),
        }
    };
    for kind in EventSourceKind::ALL {
        let field = &schema["properties"][kind.field_name()];
        let event = resolve(&field["additionalProperties"]);
        let props = event["properties"].as_object().expect("event properties");
        let place = if props.contains_key("webhook") {
            WebhookContextPlace::UnderWebhook
        } else if props.contains_key("port") && props.contains_key("endpoint") {
            WebhookContextPlace::Inline
        } else {
            WebhookContextPlace::NotPush
        };
        assert_eq!(kind.webhook_context_place(), place, "spec.{kind}");
    }
    let push: Vec<&str> = EventSourceKind::ALL
        .into_iter()
        .filter(|k| k.is_push())
        .map(EventSourceKind::field_name)
        .collect();
    assert_eq!(
        push,
        [
            "bitbucket",
            "bitbucketserver",
            "gerrit",
            "github",
            "gitlab",
            "slack",
            "sns",
            "storageGrid",
            "stripe",
            "webhook"
        ]
    );
}

#[test]
fn webhook_contexts_cover_every_push_kind() {
    let ctx = "webhook: {port: \"12000\", endpoint: /e, method: POST}";
    let mut yaml =
        String::from("apiVersion: argoproj.io/v1alpha1\nkind: EventSource\nmetadata: {name: all}\nspec:\n");
    for kind in EventSourceKind::ALL.into_iter().filter(|k| k.is_push()) {
        let event = match kind.webhook_context_place() {
            WebhookContextPlace::UnderWebhook => format!("{{{ctx}}}"),
            WebhookContextPlace::Inline => "{port: \"12000\", endpoint: /e, method: POST}".to_owned(),
            WebhookContextPlace::NotPush => unreachable!("filtered to push kinds"),
        };
        yaml.push_str(&format!("  {kind}:\n    e-{kind}: {event}\n"));
    }
    let es: EventSource = serde_yaml::from_str(&yaml).expect("parses");
    let kinds: Vec<EventSourceKind> = es.spec.webhook_contexts().iter().map(|(k, _, _)| *k).collect();
    let expected: Vec<EventSourceKind> = EventSourceKind::ALL.into_iter().filter(|k| k.is_push()).collect();
    assert_eq!(kinds, expected);
}

#[test]
fn single_active_kinds_are_upstreams_recreate_kinds_plus_two_extensions() {
    // Upstream's `RecreateStrategyEventSources` (spec field names), written out here so a change to
    // the list is a deliberate one.
    let upstream = [
        "amqp",
        "calendar",
        "kafka",
        "pubSub",
        "azureEventsHub",
        "azureServiceBus",
        "nats",
        "mqtt",
        "minio",
        "emitter",
        "nsq",
        "pulsar",
        "redis",
        "redisStream",
        "resource",
        "hdfs",
        "file",
        "sftp",
        "generic",
    ];
    let mut ours: Vec<&str> = EventSourceKind::ALL
        .into_iter()
        .filter(|k| k.needs_single_active())
        .map(EventSourceKind::field_name)
        .collect();
    let mut expected: Vec<&str> = upstream.into_iter().chain(["s3", "websocket"]).collect();
    ours.sort_unstable();
    expected.sort_unstable();
    assert_eq!(ours, expected);
    assert!(EventSourceKind::ALL
        .into_iter()
        .filter(|k| k.is_push())
        .all(|k| !k.needs_single_active()));
}
