//! `sluice sensor test SENSOR.yaml --event FILE…`: a dry run of one Sensor over events from files.
//!
//! For each event, in order: which dependencies it matches (by `eventSourceName`/`eventName` =
//! the CloudEvent's `source`/`subject`), each dependency's transform and every filter's verdict with
//! the value it saw; then, for each trigger, which of its dependencies hold an event, whether its
//! condition holds, and — when it fires — the exact action it would take (for `http`: method, URL,
//! headers with secret-derived values masked, body; for other kinds the trigger template with its
//! parameters applied and the payload built). Nothing is executed and no secret is read: secret
//! references render as `<redacted>`.
//!
//! State carries across the events of one run the way a sensor holds it: each trigger keeps the
//! latest passing event per dependency it names; its firing consumes those events.
//!
//! An event file is a CloudEvent in JSON (structured mode, with `specversion`), or raw JSON data,
//! which becomes the data of an event from `--source`/`--event-name` (default: the sensor's first
//! dependency) of type `--type` (default `webhook`).
//!
//! Exit codes: 0 done (and every `--expect-fire`/`--expect-no-fire` held), 1 an expectation failed,
//! 2 the sensor or an event could not be read.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use serde_json::{json, Value};
use sluice_crds::common::{ConfigMapKeySelector, SecretKeySelector};
use sluice_crds::sensor::conditions::Expr;
use sluice_crds::sensor::{Sensor, TriggerParameter};
use sluice_eventbus::event::deterministic_id;
use sluice_eventbus::{Event, EventBuilder};
use sluice_sensor::filters::{DependencyFilter, FilterVerdict};
use sluice_sensor::params::{apply_template_parameters, construct_payload, EventsByDependency};
use sluice_sensor::triggers::http::request::plan;
use sluice_sensor::triggers::{BuildContext, BuiltTrigger};
use sluice_sensor::{Firing, FiringId, SecretError, SecretResolver, Trigger as _};

use crate::manifests::{self, Manifest};
use crate::validate::{check_sensor_language, Output};

/// Arguments of `sluice sensor test`.
#[derive(clap::Args, Debug)]
pub struct TestArgs {
    /// The Sensor manifest (the first Sensor in the file is used).
    pub sensor: PathBuf,
    /// An event file: a CloudEvent in JSON, or raw JSON data (see `--source`). Repeatable; events
    /// are processed in order.
    #[arg(long = "event", short = 'e', required = true)]
    pub events: Vec<PathBuf>,
    /// For raw-data event files: the EventSource name (CloudEvent `source`). Default: the first
    /// dependency's `eventSourceName`.
    #[arg(long)]
    pub source: Option<String>,
    /// For raw-data event files: the event name (CloudEvent `subject`). Default: the first
    /// dependency's `eventName`.
    #[arg(long)]
    pub event_name: Option<String>,
    /// For raw-data event files: the CloudEvent `type` (the source kind).
    #[arg(long = "type", default_value = "webhook")]
    pub ty: String,
    /// Output format.
    #[arg(long, short, value_enum, default_value = "text")]
    pub output: Output,
    /// Fail (exit 1) unless this trigger fires at least once. Repeatable.
    #[arg(long)]
    pub expect_fire: Vec<String>,
    /// Fail (exit 1) if this trigger fires. Repeatable.
    #[arg(long)]
    pub expect_no_fire: Vec<String>,
}

/// Answers every secret and ConfigMap reference with a placeholder: nothing is read, and the HTTP
/// plan marks secret-derived headers sensitive, so they print as `<redacted>`.
struct NoSecrets;

impl SecretResolver for NoSecrets {
    fn resolve_secret(&self, _selector: &SecretKeySelector) -> Result<String, SecretError> {
        Ok("redacted".to_owned())
    }

    fn resolve_config_map(&self, selector: &ConfigMapKeySelector) -> Result<String, SecretError> {
        Ok(format!("<configmap {}/{}>", selector.name, selector.key))
    }
}

#[derive(Serialize)]
struct DependencyReport {
    name: String,
    passed: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: Vec<String>,
    verdicts: Vec<FilterVerdict>,
    #[serde(skip_serializing_if = "Option::is_none")]
    transformed_data: Option<Value>,
}

#[derive(Serialize)]
struct TriggerReport {
    name: String,
    condition: String,
    satisfied: Vec<String>,
    fires: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    action: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Serialize)]
struct EventReport {
    file: String,
    id: String,
    source: String,
    subject: String,
    dependencies: Vec<DependencyReport>,
    triggers: Vec<TriggerReport>,
}

#[derive(Serialize)]
struct Report {
    sensor: String,
    events: Vec<EventReport>,
    fired: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    failed_expectations: Vec<String>,
}

fn load_sensor(path: &Path) -> Result<Sensor, String> {
    let docs = manifests::load(&[path.to_path_buf()]).map_err(|e| e.to_string())?;
    for mut doc in docs {
        let Some(Manifest::Sensor(sensor)) = doc.manifest.clone() else {
            continue;
        };
        check_sensor_language(&mut doc);
        for p in &doc.problems {
            if p.severity == sluice_crds::validate::Severity::Error {
                eprintln!("{}: {p}", path.display());
            }
        }
        return Ok(*sensor);
    }
    Err(format!("{}: no Sensor found", path.display()))
}

fn load_event(path: &Path, args: &TestArgs, sensor: &Sensor) -> Result<Event, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: failed to read: {e}", path.display()))?;
    let value: Value =
        serde_json::from_slice(&bytes).map_err(|e| format!("{}: not JSON: {e}", path.display()))?;
    if value.get("specversion").is_some() {
        return Event::from_json(&bytes).map_err(|e| format!("{}: not a CloudEvent: {e}", path.display()));
    }
    let first = sensor.spec.dependencies.first();
    let source = args
        .source
        .clone()
        .or_else(|| first.map(|d| d.event_source_name.clone()))
        .unwrap_or_default();
    let name = args
        .event_name
        .clone()
        .or_else(|| first.map(|d| d.event_name.clone()))
        .unwrap_or_default();
    let file = path.display().to_string();
    EventBuilder::new(source, name, args.ty.clone())
        .id(deterministic_id(&["sensor-test", &file]))
        .data_json(value)
        .build()
        .map_err(|e| format!("{}: failed to build an event: {e}", path.display()))
}

/// The action a firing would take, as JSON.
fn render_action(
    sensor: &str,
    trigger: &sluice_crds::sensor::Trigger,
    events: &EventsByDependency,
) -> Result<Value, String> {
    let template = trigger
        .template
        .as_ref()
        .ok_or_else(|| "the trigger has no template".to_owned())?;
    let template =
        apply_template_parameters(template, &trigger.parameters, events).map_err(|e| e.to_string())?;
    let firing = Firing {
        id: FiringId::new(&template.name, events),
        sensor: sensor.to_owned(),
        trigger: template.name.clone(),
        events: events.clone(),
        template: template.clone(),
    };
    if let Some(http) = &template.http {
        let plan = plan(http, &firing, &NoSecrets).map_err(|e| e.to_string())?;
        return Ok(json!({"kind": "http", "request": plan.describe()}));
    }
    if template.k8s.is_some() || template.argo_workflow.is_some() {
        // The object a k8s trigger would create (or the patch it would send) and the Workflow an
        // argoWorkflow trigger would submit: the triggers' own rendering, with no API access.
        let ctx = BuildContext {
            sensor: sensor.to_owned(),
            secrets: Arc::new(NoSecrets),
            http: reqwest::Client::new().into(),
            namespace: None,
        };
        let spec = sluice_crds::sensor::Trigger {
            template: Some(template.clone()),
            ..trigger.clone()
        };
        let built = BuiltTrigger::build_offline(&spec, &ctx).map_err(|e| e.to_string())?;
        let mut out = built.describe(&firing).map_err(|e| e.to_string())?;
        if let Some(map) = out.as_object_mut() {
            map.insert("kind".into(), json!(built.kind()));
        }
        return Ok(out);
    }
    // Any other kind: the template with its parameters applied, and the payload it would send.
    let mut doc = serde_json::to_value(&template).map_err(|e| e.to_string())?;
    let kind = doc
        .as_object()
        .and_then(|o| {
            o.iter()
                .find(|(k, v)| v.is_object() && !matches!(k.as_str(), "conditionsReset"))
                .map(|(k, _)| k.clone())
        })
        .unwrap_or_default();
    let mut out = json!({"kind": kind});
    if let Some(spec) = doc.get_mut(&kind) {
        let params: Vec<TriggerParameter> = spec
            .get("parameters")
            .and_then(|p| serde_json::from_value(p.clone()).ok())
            .unwrap_or_default();
        if !params.is_empty() {
            sluice_sensor::params::apply_params(spec, &params, events).map_err(|e| e.to_string())?;
        }
        let payload: Vec<TriggerParameter> = spec
            .get("payload")
            .and_then(|p| serde_json::from_value(p.clone()).ok())
            .unwrap_or_default();
        if !payload.is_empty() {
            let body = construct_payload(&payload, events)
                .map_err(|e| e.to_string())?
                .unwrap_or_default();
            out["body"] = serde_json::from_slice(&body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
        }
        let mut shown = spec.clone();
        redact_urls(&mut shown);
        out["spec"] = shown;
    }
    Ok(out)
}

/// Masks the credentials of every URL in a rendered spec: each string under a key that names a URL
/// (`url`, `serverURL`, `urls`, …) goes through [`sluice_eventbus::redact_url`], as the http plan's
/// URL does. A spec's URL may carry a password in its user info or a token in its query.
fn redact_urls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if key.to_ascii_lowercase().contains("url") {
                    mask_strings(v);
                } else {
                    redact_urls(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_urls),
        _ => {}
    }
}

fn mask_strings(value: &mut Value) {
    match value {
        Value::String(s) => *s = sluice_eventbus::redact_url(s),
        Value::Array(items) => items.iter_mut().for_each(mask_strings),
        Value::Object(_) => redact_urls(value),
        _ => {}
    }
}

fn run_inner(args: &TestArgs) -> Result<Report, String> {
    let sensor = load_sensor(&args.sensor)?;
    let sensor_name = sensor.metadata.name.clone().unwrap_or_default();
    let filters: Vec<(String, &sluice_crds::sensor::EventDependency, DependencyFilter)> = sensor
        .spec
        .dependencies
        .iter()
        .map(|d| (d.name.clone(), d, DependencyFilter::new(d)))
        .collect();
    let all_deps: Vec<String> = filters.iter().map(|(n, _, _)| n.clone()).collect();
    // Each trigger holds its own events, as each trigger is its own state machine.
    let mut held: Vec<EventsByDependency> = vec![BTreeMap::new(); sensor.spec.triggers.len()];
    let mut passed_events: EventsByDependency = BTreeMap::new();
    let mut reports = Vec::new();
    let mut fired = Vec::new();
    for path in &args.events {
        let event = load_event(path, args, &sensor)?;
        let mut dependencies = Vec::new();
        for (name, dep, filter) in &filters {
            if dep.event_source_name != event.source()
                || dep.event_name != event.subject().unwrap_or_default()
            {
                continue;
            }
            let applied = filter.apply_explained(&event);
            let transformed_data = match (&applied.event, filter.transform()) {
                (Some(e), Some(Ok(t))) if !t.is_identity() => e.data().cloned(),
                _ => None,
            };
            if applied.outcome.passed {
                if let Some(e) = applied.event.clone() {
                    passed_events.insert(name.clone(), e);
                }
            }
            dependencies.push(DependencyReport {
                name: name.clone(),
                passed: applied.outcome.passed,
                errors: applied.outcome.errors.iter().map(ToString::to_string).collect(),
                verdicts: applied.outcome.verdicts,
                transformed_data,
            });
        }
        let mut triggers = Vec::new();
        for (trigger, held) in sensor.spec.triggers.iter().zip(held.iter_mut()) {
            let Some(template) = &trigger.template else {
                continue;
            };
            let condition = match Expr::for_trigger(template.conditions.as_deref(), all_deps.iter().cloned())
            {
                Ok(c) => c,
                Err(e) => {
                    triggers.push(TriggerReport {
                        name: template.name.clone(),
                        condition: template.conditions.clone().unwrap_or_default(),
                        satisfied: Vec::new(),
                        fires: false,
                        action: None,
                        error: Some(e.to_string()),
                    });
                    continue;
                }
            };
            let deps = condition.deps();
            // A trigger reacts only to events of dependencies it names.
            let mut touched = false;
            for (name, e) in &passed_events {
                if deps.contains(name.as_str()) {
                    held.insert(name.clone(), e.clone());
                    touched = true;
                }
            }
            let satisfied: Vec<String> = deps
                .iter()
                .filter(|d| held.contains_key(**d))
                .map(|d| (*d).to_owned())
                .collect();
            let fires = touched && condition.eval(&|d| held.contains_key(d));
            let (action, error) = if fires {
                // A firing consumes the events its condition used.
                let events: EventsByDependency = std::mem::take(held);
                fired.push(template.name.clone());
                match render_action(&sensor_name, trigger, &events) {
                    Ok(a) => (Some(a), None),
                    Err(e) => (None, Some(e)),
                }
            } else {
                (None, None)
            };
            triggers.push(TriggerReport {
                name: template.name.clone(),
                condition: condition.to_string(),
                satisfied,
                fires,
                action,
                error,
            });
        }
        reports.push(EventReport {
            file: path.display().to_string(),
            id: event.id().to_owned(),
            source: event.source().to_owned(),
            subject: event.subject().unwrap_or_default().to_owned(),
            dependencies,
            triggers,
        });
        passed_events.clear();
    }
    let mut failed_expectations = Vec::new();
    for name in &args.expect_fire {
        if !fired.contains(name) {
            failed_expectations.push(format!("expected trigger `{name}` to fire; it did not"));
        }
    }
    for name in &args.expect_no_fire {
        if fired.contains(name) {
            failed_expectations.push(format!("expected trigger `{name}` not to fire; it fired"));
        }
    }
    Ok(Report {
        sensor: sensor_name,
        events: reports,
        fired,
        failed_expectations,
    })
}

fn print_text(out: &mut impl Write, report: &Report) -> std::io::Result<()> {
    writeln!(out, "sensor {}", report.sensor)?;
    for ev in &report.events {
        writeln!(
            out,
            "event {} ({}/{}) from {}",
            ev.id, ev.source, ev.subject, ev.file
        )?;
        if ev.dependencies.is_empty() {
            writeln!(out, "  no dependency listens for {}/{}", ev.source, ev.subject)?;
        }
        for d in &ev.dependencies {
            writeln!(
                out,
                "  dependency {}: {}",
                d.name,
                if d.passed { "PASS" } else { "FAIL" }
            )?;
            if let Some(data) = &d.transformed_data {
                writeln!(out, "    transformed data: {data}")?;
            }
            for v in &d.verdicts {
                let at = v.index.map(|i| format!("[{i}]")).unwrap_or_default();
                write!(out, "    {}{at} {}: {}", v.kind.field(), v.subject, v.result)?;
                if let Some(seen) = &v.seen {
                    write!(out, " (saw {seen})")?;
                }
                if let Some(e) = &v.error {
                    write!(out, " — {e}")?;
                }
                writeln!(out)?;
            }
            for e in &d.errors {
                writeln!(out, "    error: {e}")?;
            }
        }
        for t in &ev.triggers {
            writeln!(
                out,
                "  trigger {}: condition {} with [{}] → {}",
                t.name,
                t.condition,
                t.satisfied.join(", "),
                if t.fires { "FIRES" } else { "does not fire" }
            )?;
            if let Some(a) = &t.action {
                let pretty = serde_json::to_string_pretty(a).unwrap_or_default();
                for line in pretty.lines() {
                    writeln!(out, "    {line}")?;
                }
            }
            if let Some(e) = &t.error {
                writeln!(out, "    error: {e}")?;
            }
        }
    }
    writeln!(out, "fired: [{}]", report.fired.join(", "))?;
    for f in &report.failed_expectations {
        writeln!(out, "FAILED: {f}")?;
    }
    Ok(())
}

/// Runs the command; returns the exit code.
pub fn run(args: &TestArgs) -> i32 {
    let report = match run_inner(args) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sluice sensor test: {e}");
            return 2;
        }
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let written = match args.output {
        Output::Text => print_text(&mut out, &report),
        Output::Json => serde_json::to_writer_pretty(&mut out, &report)
            .map_err(std::io::Error::other)
            .and_then(|()| writeln!(out)),
    };
    if let Err(e) = written {
        eprintln!("sluice sensor test: failed to write the report: {e}");
        return 2;
    }
    i32::from(!report.failed_expectations.is_empty())
}

#[cfg(test)]
mod redact_tests {
    use super::*;

    #[test]
    fn urls_in_a_rendered_spec_lose_their_credentials() {
        let mut spec = json!({
            "url": "nats://user:spec-pass@127.0.0.1:4222",
            "subject": "user:not-a-url@x",
            "serverURL": "https://h/p?token=spec-token",
            "urls": ["amqp://u:list-pass@h/"],
            "nested": [{"url": "redis://:nested-pass@h:6379"}],
        });
        redact_urls(&mut spec);
        let shown = spec.to_string();
        for secret in ["spec-pass", "spec-token", "list-pass", "nested-pass"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert_eq!(spec["url"], "nats://***@127.0.0.1:4222");
        assert_eq!(spec["subject"], "user:not-a-url@x", "only URL fields change");
    }
}
