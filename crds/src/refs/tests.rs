use super::*;
use crate::{EventBusSpec, EventSource, EventSourceSpec, Sensor, SensorSpec};

fn found(refs: &[Reference]) -> Vec<(RefKind, &str, &str, &str)> {
    refs.iter()
        .map(|r| (r.kind, r.name.as_str(), r.key.as_str(), r.path.as_str()))
        .collect()
}

/// The references the old name-based scan missed (the node issue's list), each found by type.
#[test]
fn selectors_are_found_whatever_their_field_is_called() {
    let sensor: Sensor = serde_yaml::from_str(
        r#"
apiVersion: argoproj.io/v1alpha1
kind: Sensor
metadata: {name: s}
spec:
  dependencies: [{name: d, eventSourceName: e, eventName: x}]
  triggers:
    - template:
        name: call
        http:
          url: http://example.invalid/
          basicAuth:
            username: {name: http-user, key: user}
            password: {name: http-pass, key: pass}
          secureHeaders:
            - name: X-Token
              valueFrom: {secretKeyRef: {name: hdr-secret, key: token}}
            - name: X-Env
              valueFrom: {configMapKeyRef: {name: hdr-config, key: env, optional: true}}
    - template:
        name: chat
        slack: {slackToken: {name: slack, key: token}, channel: c, message: m}
    - template:
        name: mail
        email: {smtpPassword: {name: smtp, key: password}, host: h, to: [a@b]}
"#,
    )
    .expect("fixture parses");
    let refs = references(&sensor.spec).expect("encodes");
    assert_eq!(
        found(&refs),
        vec![
            (
                RefKind::Secret,
                "hdr-secret",
                "token",
                "triggers[0].template.http.secureHeaders[0].valueFrom.secretKeyRef"
            ),
            (
                RefKind::Secret,
                "http-pass",
                "pass",
                "triggers[0].template.http.basicAuth.password"
            ),
            (
                RefKind::Secret,
                "http-user",
                "user",
                "triggers[0].template.http.basicAuth.username"
            ),
            (
                RefKind::Secret,
                "slack",
                "token",
                "triggers[1].template.slack.slackToken"
            ),
            (
                RefKind::Secret,
                "smtp",
                "password",
                "triggers[2].template.email.smtpPassword"
            ),
            (
                RefKind::ConfigMap,
                "hdr-config",
                "env",
                "triggers[0].template.http.secureHeaders[1].valueFrom.configMapKeyRef"
            ),
        ]
    );
    assert!(refs
        .iter()
        .find(|r| r.name == "hdr-config")
        .is_some_and(|r| r.optional));

    let es: EventSource = serde_yaml::from_str(
        r#"
apiVersion: argoproj.io/v1alpha1
kind: EventSource
metadata: {name: e}
spec:
  github:
    push:
      repositories: [{owner: o, names: [r]}]
      webhook: {port: "12000", endpoint: /push, method: POST, url: http://hooks.example.invalid}
      apiToken: {name: gh, key: token}
      webhookSecret: {name: gh, key: secret}
  gitlab:
    mr:
      projects: ["1"]
      webhook: {port: "12001", endpoint: /mr, method: POST, url: http://hooks.example.invalid}
      accessToken: {name: gl, key: token}
      events: [PushEvents]
      gitlabBaseURL: http://gitlab.example.invalid
  nats:
    n:
      url: nats://bus:4222
      subject: s
      auth:
        token: {name: nats-token, key: t}
        nkey: {name: nats-nkey, key: k}
        credential: {name: nats-creds, key: c}
  sqs:
    q:
      region: us-east-1
      queue: q
      accessKey: {name: aws, key: id}
      secretKey: {name: aws, key: secret}
  websocket:
    w:
      url: ws://127.0.0.1:1/
      authorization: {name: ws, key: auth}
"#,
    )
    .expect("fixture parses");
    let got: Vec<String> = references(&es.spec)
        .expect("encodes")
        .iter()
        .map(|r| format!("{} {} {}", r.name, r.key, r.path))
        .collect();
    assert_eq!(
        got,
        [
            "aws id sqs.q.accessKey",
            "aws secret sqs.q.secretKey",
            "gh secret github.push.webhookSecret",
            "gh token github.push.apiToken",
            "gl token gitlab.mr.accessToken",
            "nats-creds c nats.n.auth.credential",
            "nats-nkey k nats.n.auth.nkey",
            "nats-token t nats.n.auth.token",
            "ws auth websocket.w.authorization",
        ]
    );
}

/// Every field the CRD types declare with a selector type (read from this crate's sources) is a
/// place the schema walk looks: a field whose schema hid its type (a custom `JsonSchema`, a
/// `schemars(with)`) would otherwise not be mounted into the pods.
#[test]
fn every_selector_field_of_the_types_is_covered_by_the_walk() {
    let mut covered = BTreeSet::new();
    for (_, path) in selector_paths::<EventSourceSpec>()
        .into_iter()
        .chain(selector_paths::<SensorSpec>())
        .chain(selector_paths::<EventBusSpec>())
    {
        let last = path.rsplit('.').next().unwrap_or_default().trim_end_matches("[]");
        covered.insert(last.to_string());
    }
    let mut declared = BTreeSet::new();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut dirs = vec![root];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("crds/src is readable") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("a source file is readable");
                for line in text.lines() {
                    let line = line.trim();
                    let Some(rest) = line.strip_prefix("pub ") else {
                        continue;
                    };
                    let Some((field, ty)) = rest.split_once(':') else {
                        continue;
                    };
                    let field = field.trim();
                    if field.is_empty() || !field.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                        continue;
                    }
                    if ty.contains("SecretKeySelector") || ty.contains("ConfigMapKeySelector") {
                        declared.insert(camel(field.trim()));
                    }
                }
            }
        }
    }
    assert!(
        declared.len() > 20,
        "the scan found too few fields to be right: {declared:?}"
    );
    let missed: Vec<&String> = declared.difference(&covered).collect();
    assert!(
        missed.is_empty(),
        "selector fields the walk does not reach: {missed:?}"
    );
}

fn camel(snake: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// The list of every place a selector may sit, checked in: a new selector field shows up here in
/// review, already covered.
#[test]
fn selector_paths_are_the_checked_in_list() {
    let mut text = String::new();
    for (kind, paths) in [
        ("EventSource", selector_paths::<EventSourceSpec>()),
        ("Sensor", selector_paths::<SensorSpec>()),
        ("EventBus", selector_paths::<EventBusSpec>()),
    ] {
        for (ref_kind, path) in paths {
            text.push_str(&format!("{kind} {} spec.{path}\n", ref_kind.kind()));
        }
    }
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/refs/selector-paths.txt");
    if std::env::var_os("UPDATE_SELECTOR_PATHS").is_some() {
        std::fs::write(&file, &text).expect("writes the list");
    }
    let checked_in = std::fs::read_to_string(&file).unwrap_or_default();
    assert_eq!(
        checked_in,
        text,
        "selector paths changed: review, then rerun with UPDATE_SELECTOR_PATHS=1 to write {}",
        file.display()
    );
}

#[test]
fn a_null_or_missing_value_has_no_references_and_depth_is_bounded() {
    assert!(references(&SensorSpec::default()).expect("encodes").is_empty());
    assert!(selector_paths::<SensorSpec>().len() > 10);
}
