//! `sluice validate PATH…`: parse and check manifests offline. Exit 0 when all are valid (warnings
//! allowed), 1 when any is invalid, 2 on a usage error (a path that cannot be read).

use std::io::Write;
use std::path::PathBuf;

use serde::Serialize;
use sluice_crds::validate::Severity;

use crate::manifests::{self, Document};

/// Output format.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Output {
    /// One line per problem: `FILE:DOC: KIND/NAME: field.path: reason`.
    Text,
    /// A JSON array of problems, for tools.
    Json,
}

#[derive(Serialize)]
struct JsonProblem<'a> {
    file: String,
    document: usize,
    kind: &'a str,
    name: &'a str,
    severity: Severity,
    path: &'a str,
    reason: &'a str,
}

/// One problem as a text line.
pub fn format_line(doc: &Document, p: &sluice_crds::validate::Problem) -> String {
    let level = match p.severity {
        Severity::Warning => "warning: ",
        Severity::Error => "",
    };
    let kind = if doc.kind.is_empty() {
        "?"
    } else {
        doc.kind.as_str()
    };
    let name = if doc.name.is_empty() {
        "?"
    } else {
        doc.name.as_str()
    };
    let path = if p.path.is_empty() {
        "(document)"
    } else {
        p.path.as_str()
    };
    format!(
        "{}:{}: {kind}/{name}: {path}: {level}{}",
        doc.file.display(),
        doc.index,
        p.reason
    )
}

/// Adds the sensor-language problems of a Sensor document: filters, expressions, templates, scripts
/// and transforms that do not compile (the sensor crate's compile functions; `crds` cannot call
/// them). Each is an error naming the field path.
pub fn check_sensor_language(doc: &mut Document) {
    let Some(manifests::Manifest::Sensor(sensor)) = &doc.manifest else {
        return;
    };
    let mut found = Vec::new();
    for (i, dep) in sensor.spec.dependencies.iter().enumerate() {
        for p in sluice_sensor::filters::DependencyFilter::new(dep).problems() {
            found.push((format!("spec.dependencies[{i}].{}", p.field), p.reason));
        }
    }
    // Parameters appear under many trigger kinds; walk the JSON form to find every `src`.
    if let Ok(triggers) = serde_json::to_value(&sensor.spec.triggers) {
        walk_parameters(&triggers, "spec.triggers".to_owned(), &mut found);
    }
    for (path, reason) in found {
        doc.problems.push(sluice_crds::validate::Problem {
            severity: Severity::Error,
            path,
            reason,
        });
    }
}

fn walk_parameters(value: &serde_json::Value, path: String, found: &mut Vec<(String, String)>) {
    match value {
        serde_json::Value::Object(map) => {
            if let Some(src) = map.get("src") {
                if let Ok(src) =
                    serde_json::from_value::<sluice_crds::sensor::TriggerParameterSource>(src.clone())
                {
                    for (field, reason) in sluice_sensor::params::template_problems(&src) {
                        found.push((format!("{path}.src.{field}"), reason));
                    }
                }
            }
            for (key, child) in map {
                walk_parameters(child, format!("{path}.{key}"), found);
            }
        }
        serde_json::Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                walk_parameters(child, format!("{path}[{i}]"), found);
            }
        }
        _ => {}
    }
}

/// Runs the command; returns the exit code.
pub fn run(paths: &[PathBuf], output: Output) -> i32 {
    let docs = match manifests::load(paths) {
        Ok(mut d) => {
            d.iter_mut().for_each(check_sensor_language);
            d
        }
        Err(e) => {
            eprintln!("sluice validate: {e}: {}", e.source_text());
            return 2;
        }
    };
    let invalid = docs.iter().filter(|d| d.has_errors()).count();
    let warnings: usize = docs
        .iter()
        .map(|d| {
            d.problems
                .iter()
                .filter(|p| p.severity == Severity::Warning)
                .count()
        })
        .sum();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match output {
        Output::Text => {
            for doc in &docs {
                for p in &doc.problems {
                    let _ = writeln!(out, "{}", format_line(doc, p));
                }
            }
            eprintln!(
                "{} manifest(s) checked: {} valid, {} invalid, {} warning(s)",
                docs.len(),
                docs.len() - invalid,
                invalid,
                warnings
            );
            if docs.is_empty() {
                eprintln!("warning: no EventSource, Sensor or EventBus manifests found");
            }
        }
        Output::Json => {
            let all: Vec<JsonProblem<'_>> = docs
                .iter()
                .flat_map(|d| {
                    d.problems.iter().map(move |p| JsonProblem {
                        file: d.file.display().to_string(),
                        document: d.index,
                        kind: &d.kind,
                        name: &d.name,
                        severity: p.severity,
                        path: &p.path,
                        reason: &p.reason,
                    })
                })
                .collect();
            let _ = serde_json::to_writer_pretty(&mut out, &all);
            let _ = writeln!(out);
        }
    }
    i32::from(invalid > 0)
}

trait SourceText {
    fn source_text(&self) -> String;
}

impl SourceText for manifests::LoadError {
    fn source_text(&self) -> String {
        match self {
            manifests::LoadError::Read { source, .. } => source.to_string(),
        }
    }
}

#[cfg(test)]
mod sensor_language_tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn uncompilable_filters_templates_and_scripts_are_errors_with_paths() {
        let text = r#"
apiVersion: argoproj.io/v1alpha1
kind: Sensor
metadata: {name: s}
spec:
  dependencies:
    - name: d
      eventSourceName: es
      eventName: e
      transform: {jq: ".a |||"}
      filters:
        exprs: [{expr: "a ==", fields: [{name: a, path: a}]}]
        data: [{path: a, type: string, value: ["("], template: "{{ .Input"}]
        time: {start: "9am", stop: "10:00:00"}
        script: "return ("
  triggers:
    - template:
        name: t
        log: {}
      parameters:
        - src: {dependencyName: d, dataTemplate: "{{ .Input.x | nosuchfunc }}"}
          dest: x
"#;
        let mut docs = manifests::load_str(Path::new("s.yaml"), text);
        assert_eq!(docs.len(), 1);
        check_sensor_language(&mut docs[0]);
        let paths: Vec<&str> = docs[0]
            .problems
            .iter()
            .filter(|p| p.severity == Severity::Error)
            .map(|p| p.path.as_str())
            .collect();
        for expected in [
            "spec.dependencies[0].transform.jq",
            "spec.dependencies[0].filters.exprs[0].expr",
            "spec.dependencies[0].filters.data[0].template",
            "spec.dependencies[0].filters.data[0].value",
            "spec.dependencies[0].filters.time",
            "spec.dependencies[0].filters.script",
            "spec.triggers[0].parameters[0].src.dataTemplate",
        ] {
            assert!(paths.contains(&expected), "{expected} missing from {paths:?}");
        }
    }
}
