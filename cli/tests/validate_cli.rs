//! `sluice validate` as a user runs it: exit codes, the `FILE:DOC: KIND/NAME: path: reason` lines, JSON
//! output, unknown-field warnings, directories and multi-document files.

use std::path::Path;
use std::process::{Command, Output};

fn sluice(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .output()
        .expect("the sluice binary cargo built for this test starts")
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("the test's temporary directory is writable");
    path.display().to_string()
}

const GOOD_SOURCE: &str = r#"
apiVersion: argoproj.io/v1alpha1
kind: EventSource
metadata:
  name: hooks
spec:
  webhook:
    example:
      port: "12000"
      endpoint: /example
      method: POST
"#;

const GOOD_SENSOR: &str = r#"
apiVersion: argoproj.io/v1alpha1
kind: Sensor
metadata:
  name: s
spec:
  dependencies:
    - name: dep
      eventSourceName: hooks
      eventName: example
  triggers:
    - template:
        name: t
        log: {}
"#;

#[test]
fn valid_multi_document_file_exits_0_and_prints_nothing() {
    let dir = tempfile::tempdir().expect("a temporary directory can be made");
    let f = write(dir.path(), "all.yaml", &format!("{GOOD_SOURCE}\n---\n{GOOD_SENSOR}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: x}}\n"));
    let out = sluice(&["validate", &f]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    assert!(String::from_utf8_lossy(&out.stderr).contains("2 manifest(s) checked: 2 valid, 0 invalid"));
}

#[test]
fn unknown_field_is_a_warning_with_its_path_and_exit_0() {
    let dir = tempfile::tempdir().expect("a temporary directory can be made");
    let f = write(
        dir.path(),
        "s.yaml",
        &GOOD_SENSOR.replace("name: t\n", "name: t\n        colour: blue\n"),
    );
    let out = sluice(&["validate", &f]);
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.trim(),
        format!("{f}:1: Sensor/s: spec.triggers[0].template.colour: warning: unknown field (ignored)")
    );
}

#[test]
fn semantic_error_names_file_document_kind_name_and_path_and_exits_1() {
    let dir = tempfile::tempdir().expect("a temporary directory can be made");
    let bad = GOOD_SENSOR.replace(
        "        log: {}\n",
        "        conditions: dep && missing\n        log: {}\n",
    );
    let f = write(dir.path(), "s.yaml", &format!("{GOOD_SOURCE}---\n{bad}"));
    let out = sluice(&["validate", &f]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().next().unwrap_or("");
    assert!(
        line.starts_with(&format!(
            "{f}:2: Sensor/s: spec.triggers[0].template.conditions: "
        )),
        "{stdout}"
    );
    assert!(line.contains("missing"), "{stdout}");
}

#[test]
fn type_error_keeps_the_field_path() {
    let dir = tempfile::tempdir().expect("a temporary directory can be made");
    let f = write(
        dir.path(),
        "s.yaml",
        &GOOD_SENSOR.replace("name: dep\n", "name: [1, 2]\n"),
    );
    let out = sluice(&["validate", &f]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with(&format!("{f}:1: Sensor/s: spec.dependencies[0].name: ")),
        "{stdout}"
    );
}

#[test]
fn broken_yaml_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().expect("a temporary directory can be made");
    let f = write(
        dir.path(),
        "s.yaml",
        "apiVersion: argoproj.io/v1alpha1\nkind: Sensor\n  bad: [\n",
    );
    let out = sluice(&["validate", &f]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("not valid YAML"));
}

#[test]
fn missing_path_is_a_usage_error() {
    let out = sluice(&["validate", "/nonexistent/sluice/manifest.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    let out = sluice(&["validate"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn directories_are_walked_and_json_output_is_parseable() {
    let dir = tempfile::tempdir().expect("a temporary directory can be made");
    std::fs::create_dir_all(dir.path().join("sub")).expect("a subdirectory can be made");
    write(dir.path(), "a.yaml", GOOD_SOURCE);
    write(
        &dir.path().join("sub"),
        "b.yml",
        &GOOD_SENSOR.replace("      eventName: example\n", ""),
    );
    write(dir.path(), "notes.txt", "not a manifest");
    let out = sluice(&["validate", "--output", "json", &dir.path().display().to_string()]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("--output json prints JSON");
    let problems = v.as_array().cloned().unwrap_or_default();
    assert!(!problems.is_empty());
    assert_eq!(problems[0]["kind"], "Sensor");
    assert_eq!(problems[0]["name"], "s");
    assert_eq!(problems[0]["severity"], "error");
    assert!(problems[0]["file"].as_str().unwrap_or("").ends_with("sub/b.yml"));
    assert!(problems[0]["path"]
        .as_str()
        .unwrap_or("")
        .starts_with("spec.dependencies[0]"));
}

#[test]
fn crds_prints_three_custom_resource_definitions() {
    let out = sluice(&["crds"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    for kind in ["kind: EventSource", "kind: Sensor", "kind: EventBus"] {
        assert!(text.contains(kind), "{kind} missing");
    }
    assert_eq!(text.matches("kind: CustomResourceDefinition").count(), 3);
}
