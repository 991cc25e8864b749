//! Loading manifests from files and directories: multi-document YAML or JSON, `argoproj.io/v1alpha1`
//! `EventSource`, `Sensor` and `EventBus` documents typed; other documents (RBAC, Workflows) skipped.
//! Unknown fields are collected with their paths (they become warnings); parse errors keep the field
//! path where serde knows it.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use sluice_crds::eventsource::{EventSourceKind, WebhookContextPlace};
use sluice_crds::validate::{Problem, Problems, Severity, Validate};
use sluice_crds::{EventBus, EventSource, Sensor};

/// A typed manifest.
#[derive(Clone, Debug)]
pub enum Manifest {
    EventSource(Box<EventSource>),
    Sensor(Box<Sensor>),
    EventBus(Box<EventBus>),
}

/// `EventSource`, `Sensor` or `EventBus`.
pub fn kind_of(m: &Manifest) -> &'static str {
    match m {
        Manifest::EventSource(_) => "EventSource",
        Manifest::Sensor(_) => "Sensor",
        Manifest::EventBus(_) => "EventBus",
    }
}

/// Prints every problem of `docs` to stderr; false when any is an error (the process must not start).
pub fn report(docs: &[Document], command: &str) -> bool {
    let mut ok = true;
    for doc in docs {
        for p in &doc.problems {
            eprintln!("{}", crate::validate::format_line(doc, p));
        }
        ok &= !doc.has_errors();
    }
    if !ok {
        eprintln!(
            "{command}: fix the errors above (`sluice validate` checks manifests without running them)"
        );
    }
    ok
}

/// One document of one file, with what was found wrong with it.
#[derive(Debug)]
pub struct Document {
    /// The file it came from.
    pub file: PathBuf,
    /// 1-based position of the document in the file.
    pub index: usize,
    /// `kind` of the document (as written, when it did not parse).
    pub kind: String,
    /// `metadata.name` (empty when absent).
    pub name: String,
    /// The typed manifest, when it parsed.
    pub manifest: Option<Manifest>,
    /// Parse errors, unknown-field warnings and validation findings.
    pub problems: Vec<Problem>,
}

impl Document {
    /// True when an error (not just a warning) was found.
    pub fn has_errors(&self) -> bool {
        self.problems.iter().any(|p| p.severity == Severity::Error)
    }
}

/// A file or directory that could not be read at all (a usage error: exit 2).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The path does not exist or cannot be read.
    #[error("failed to read {path}")]
    Read { path: PathBuf, source: std::io::Error },
}

/// Everything found under `paths`: files as given, directories walked recursively for `.yaml`, `.yml`
/// and `.json`, in sorted order.
pub fn collect_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, LoadError> {
    let mut out = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).map_err(|source| LoadError::Read {
            path: p.clone(),
            source,
        })?;
        if meta.is_dir() {
            walk(p, &mut out)?;
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), LoadError> {
    let read = std::fs::read_dir(dir).map_err(|source| LoadError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut entries: Vec<PathBuf> = read.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            walk(&path, out)?;
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        ) {
            out.push(path);
        }
    }
    Ok(())
}

/// Loads every document of every file, checking each one (parse, unknown fields, `validate`).
pub fn load(paths: &[PathBuf]) -> Result<Vec<Document>, LoadError> {
    let mut docs = Vec::new();
    for file in collect_files(paths)? {
        let text = std::fs::read_to_string(&file).map_err(|source| LoadError::Read {
            path: file.clone(),
            source,
        })?;
        docs.extend(load_str(&file, &text));
    }
    Ok(docs)
}

/// Loads the documents of one file's text.
pub fn load_str(file: &Path, text: &str) -> Vec<Document> {
    let mut docs = Vec::new();
    for (i, de) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let index = i + 1;
        let value = match serde_yaml::Value::deserialize_from(de) {
            Ok(v) => v,
            Err(e) => {
                docs.push(Document {
                    file: file.to_path_buf(),
                    index,
                    kind: String::new(),
                    name: String::new(),
                    manifest: None,
                    problems: vec![error_problem("", format!("not valid YAML: {e}"))],
                });
                // Why stop: after a syntax error the YAML stream cannot be resynchronised.
                break;
            }
        };
        if let Some(doc) = load_value(file, index, value) {
            docs.push(doc);
        }
    }
    docs
}

trait DeserializeFrom: Sized {
    fn deserialize_from(de: serde_yaml::Deserializer<'_>) -> Result<Self, serde_yaml::Error>;
}

impl DeserializeFrom for serde_yaml::Value {
    fn deserialize_from(de: serde_yaml::Deserializer<'_>) -> Result<Self, serde_yaml::Error> {
        serde::Deserialize::deserialize(de)
    }
}

fn error_problem(path: &str, reason: String) -> Problem {
    Problem {
        severity: Severity::Error,
        path: path.to_string(),
        reason,
    }
}

fn str_field<'a>(v: &'a serde_yaml::Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(|x| x.as_str())
}

/// Types one document; `None` for documents that are not Sluice manifests (empty, other kinds).
pub fn load_value(file: &Path, index: usize, value: serde_yaml::Value) -> Option<Document> {
    if value.is_null() {
        return None;
    }
    let api_version = str_field(&value, "apiVersion").unwrap_or("");
    let kind = str_field(&value, "kind").unwrap_or("").to_string();
    if !api_version.starts_with("argoproj.io/")
        || !matches!(kind.as_str(), "EventSource" | "Sensor" | "EventBus")
    {
        return None;
    }
    let name = value
        .get("metadata")
        .and_then(|m| str_field(m, "name"))
        .unwrap_or("")
        .to_string();
    let mut doc = Document {
        file: file.to_path_buf(),
        index,
        kind: kind.clone(),
        name,
        manifest: None,
        problems: vec![],
    };
    if api_version != sluice_crds::API_VERSION {
        doc.problems.push(error_problem(
            "apiVersion",
            format!(
                "unsupported apiVersion {api_version:?}: use {:?}",
                sluice_crds::API_VERSION
            ),
        ));
        return Some(doc);
    }
    let mut value = value;
    if kind == "EventSource" {
        doc.problems.extend(lift_flat_webhook_contexts(&mut value));
    }
    let parsed = match kind.as_str() {
        "EventSource" => typed::<EventSource>(value).map(|(m, u)| (Manifest::EventSource(Box::new(m)), u)),
        "Sensor" => typed::<Sensor>(value).map(|(m, u)| (Manifest::Sensor(Box::new(m)), u)),
        _ => typed::<EventBus>(value).map(|(m, u)| (Manifest::EventBus(Box::new(m)), u)),
    };
    let (manifest, unknown) = match parsed {
        Ok(ok) => ok,
        Err(problem) => {
            doc.problems.push(problem);
            return Some(doc);
        }
    };
    // The root types take apiVersion and kind as type markers, so serde reports them as ignored.
    for path in unknown.into_iter().filter(|p| p != "apiVersion" && p != "kind") {
        // Why only a warning: the API server prunes unknown fields, and a newer upstream may add fields
        // an older Sluice does not know; refusing them would break upgrades.
        doc.problems.push(Problem {
            severity: Severity::Warning,
            path,
            reason: "unknown field (ignored)".into(),
        });
    }
    let mut problems = Problems::new();
    match &manifest {
        Manifest::EventSource(m) => m.validate("", &mut problems),
        Manifest::Sensor(m) => m.validate("", &mut problems),
        Manifest::EventBus(m) => m.validate("", &mut problems),
    }
    doc.problems.extend(problems.into_vec());
    if doc.name.is_empty() {
        doc.problems
            .push(error_problem("metadata.name", "is required".into()));
    }
    doc.manifest = Some(manifest);
    Some(doc)
}

/// The fields of a webhook context.
const WEBHOOK_CONTEXT_FIELDS: [&str; 4] = ["port", "endpoint", "method", "url"];

/// Moves `port`/`endpoint`/`method`/`url` written beside a push event (the flat form the `webhook`
/// kind uses) under its `webhook`, with a warning naming the fix. Upstream's schema has them only
/// under `webhook`, and without this the event would fail with "webhook is required" while the
/// intended values sit one level up, ignored. An event that has a `webhook` is left alone.
fn lift_flat_webhook_contexts(value: &mut serde_yaml::Value) -> Vec<Problem> {
    let mut problems = Vec::new();
    let Some(spec) = value.get_mut("spec").and_then(|s| s.as_mapping_mut()) else {
        return problems;
    };
    // The kinds whose events carry their HTTP endpoint under `webhook` (upstream's schema), from
    // the kind table.
    let nested = EventSourceKind::ALL
        .into_iter()
        .filter(|k| k.webhook_context_place() == WebhookContextPlace::UnderWebhook)
        .map(EventSourceKind::field_name);
    for kind in nested {
        let Some(events) = spec.get_mut(kind).and_then(|k| k.as_mapping_mut()) else {
            continue;
        };
        for (name, event) in events.iter_mut() {
            let Some(event) = event.as_mapping_mut() else {
                continue;
            };
            if event.contains_key("webhook") {
                continue;
            }
            let mut context = serde_yaml::Mapping::new();
            for field in WEBHOOK_CONTEXT_FIELDS {
                if let Some(v) = event.remove(field) {
                    context.insert(field.into(), v);
                }
            }
            if context.is_empty() {
                continue;
            }
            let moved: Vec<&str> = context.keys().filter_map(|k| k.as_str()).collect();
            let name = name.as_str().unwrap_or_default();
            problems.push(Problem {
                severity: Severity::Warning,
                path: format!("spec.{kind}.{name}"),
                reason: format!(
                    "{} belong under `webhook` (upstream's schema); read from there — move them",
                    moved.join(", ")
                ),
            });
            event.insert("webhook".into(), serde_yaml::Value::Mapping(context));
        }
    }
    problems
}

/// Deserializes `value` as `T`, returning the paths of fields `T` ignored, or the error with its path.
fn typed<T: DeserializeOwned>(value: serde_yaml::Value) -> Result<(T, Vec<String>), Problem> {
    let mut unknown = Vec::new();
    let mut record = |path: serde_ignored::Path<'_>| unknown.push(ignored_path(&path.to_string()));
    let result: Result<T, _> =
        serde_path_to_error::deserialize(serde_ignored::Deserializer::new(value, &mut record));
    match result {
        Ok(t) => Ok((t, unknown)),
        Err(e) => {
            let path = e.path().to_string();
            let path = if path == "." { String::new() } else { path };
            Err(error_problem(&path, e.into_inner().to_string()))
        }
    }
}

/// serde_ignored writes `spec.triggers.0.template`; we print `spec.triggers[0].template`.
fn ignored_path(raw: &str) -> String {
    let mut out = String::new();
    for seg in raw.split('.').filter(|s| *s != "?") {
        if !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()) && !out.is_empty() {
            out.push('[');
            out.push_str(seg);
            out.push(']');
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(seg);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignored_paths_use_brackets() {
        assert_eq!(
            ignored_path("spec.triggers.0.template.foo"),
            "spec.triggers[0].template.foo"
        );
        assert_eq!(ignored_path("spec"), "spec");
    }

    #[test]
    fn flat_webhook_fields_of_push_kinds_move_under_webhook_with_a_warning() {
        let text = r#"
apiVersion: argoproj.io/v1alpha1
kind: EventSource
metadata: {name: es}
spec:
  github:
    flat: {port: "12000", endpoint: /gh, method: POST, events: ["push"], organizations: [acme]}
    nested: {webhook: {port: "12000", endpoint: /gh2, method: POST}, port: "1", organizations: [acme]}
"#;
        let docs = load_str(Path::new("es.yaml"), text);
        let doc = &docs[0];
        let Some(Manifest::EventSource(es)) = &doc.manifest else {
            panic!("not loaded: {:?}", doc.problems)
        };
        let github = es.spec.github.as_ref().expect("the manifest has github events");
        let flat = github["flat"]
            .webhook
            .as_ref()
            .expect("a flat webhook is lifted into place");
        assert_eq!(
            (flat.port.as_str(), flat.endpoint.as_str(), flat.method.as_str()),
            ("12000", "/gh", "POST")
        );
        // An event with its own `webhook` keeps it; its stray `port` is an unknown field as before.
        let nested = github["nested"]
            .webhook
            .as_ref()
            .expect("a nested webhook is kept");
        assert_eq!(nested.endpoint, "/gh2");
        let warnings: Vec<(&str, &str)> = doc
            .problems
            .iter()
            .map(|p| (p.path.as_str(), p.reason.as_str()))
            .collect();
        assert!(
            warnings.contains(&(
                "spec.github.flat",
                "port, endpoint, method belong under `webhook` (upstream's schema); read from there — move them"
            )),
            "{warnings:?}"
        );
        assert!(
            warnings.iter().any(|(p, _)| *p == "spec.github.nested.port"),
            "{warnings:?}"
        );
        assert!(!doc.has_errors(), "{:?}", doc.problems);
    }

    #[test]
    fn flat_webhook_fields_are_lifted_for_every_kind_the_table_nests_them_for() {
        // Gerrit was missing from an earlier hand-written list of these kinds.
        let text = "apiVersion: argoproj.io/v1alpha1\nkind: EventSource\nmetadata: {name: es}\nspec:\n  gerrit:\n    \
                    flat: {port: \"12000\", endpoint: /g, method: POST}\n";
        let docs = load_str(Path::new("es.yaml"), text);
        let doc = &docs[0];
        let Some(Manifest::EventSource(es)) = &doc.manifest else {
            panic!("not loaded: {:?}", doc.problems)
        };
        let gerrit = es.spec.gerrit.as_ref().unwrap_or_else(|| panic!("no gerrit"));
        let lifted = gerrit["flat"].webhook.as_ref().map(|w| w.endpoint.as_str());
        assert_eq!(lifted, Some("/g"));
        assert!(
            doc.problems.iter().any(|p| p.path == "spec.gerrit.flat"),
            "{:?}",
            doc.problems
        );
    }
}

#[cfg(test)]
mod example_tests {
    use super::*;

    fn examples_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("examples")
    }

    /// Every file under examples/ parses, validates with no error and no warning, and survives a round trip.
    #[test]
    fn every_example_is_valid_and_round_trips() {
        let docs = load(&[examples_dir()]).expect("examples/ loads");
        assert!(
            docs.len() >= 3,
            "expected the quickstart's manifests, found {}",
            docs.len()
        );
        for doc in &docs {
            assert!(
                doc.problems.is_empty(),
                "{}:{}: {:?}",
                doc.file.display(),
                doc.index,
                doc.problems
            );
            let manifest = doc
                .manifest
                .as_ref()
                .unwrap_or_else(|| panic!("{}: not typed", doc.file.display()));
            match manifest {
                Manifest::EventSource(m) => {
                    let text = serde_yaml::to_string(m).expect("a loaded EventSource serializes");
                    let back: EventSource =
                        serde_yaml::from_str(&text).expect("a serialized EventSource parses back");
                    assert_eq!(&back, m.as_ref());
                }
                Manifest::Sensor(m) => {
                    let text = serde_yaml::to_string(m).expect("a loaded Sensor serializes");
                    let back: Sensor = serde_yaml::from_str(&text).expect("a serialized Sensor parses back");
                    assert_eq!(&back, m.as_ref());
                }
                Manifest::EventBus(m) => {
                    let text = serde_yaml::to_string(m).expect("a loaded EventBus serializes");
                    let back: EventBus =
                        serde_yaml::from_str(&text).expect("a serialized EventBus parses back");
                    assert_eq!(&back, m.as_ref());
                }
            }
        }
    }
}
