//! Trigger parameters: values copied from the triggering events into a trigger's spec, its template,
//! or the payload it sends — with upstream's rules, which are subtle enough to state here:
//!
//! **Resolving a value** (`src`), for the event of `src.dependencyName`:
//! - no `dataKey`/`contextKey`: `value` if set, else the whole event as upstream serializes it
//!   (`{"context":{…},"data":"<base64 of the data JSON>"}`);
//! - `contextKey`: a gjson path into the event's context (`id`, `source`, `specversion`, `type`,
//!   `datacontenttype`, `subject`, `time`); `dataKey`: a gjson path into the data (wins over
//!   `contextKey` when both are set);
//! - a key that finds nothing falls back to `value`; without `value` it is an error;
//! - no event for the dependency (possible under `||` conditions): `value` if set, else the
//!   parameter is skipped;
//! - `dataTemplate` / `contextTemplate`: Go templates (see [`sluice_template`]) rendered with
//!   `.Input` = the event data (resp. the context); a non-empty result other than `<no value>` is
//!   the value (a string) and wins over the keys, `dataTemplate` over `contextTemplate`; an empty
//!   result falls through to the keys and then `value`. A template that does not parse or fails to
//!   render is an error ([`ParamError::Template`]), which fails that trigger invocation.
//!
//! **Inserting it** at `dest` (an sjson path, see [`crate::jsonpath`]): as a JSON *string*, unless
//! `useRawData: true` and the value found is not a string (a number, boolean, null, object or
//! array), in which case it goes in as JSON. Objects found without `useRawData` are inserted as
//! their JSON text in a string — upstream's behaviour, kept. `operation: append|prepend`
//! concatenates with the text already at `dest` (the result is always a string).
//!
//! **Payloads** (`http.payload` and the like) start from an empty document. A parameter with an
//! empty `dest` makes its value the *whole* payload, as is (so `dataKey: body, dest: ""` sends the
//! event's body unchanged); later parameters are then ignored, as upstream.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::Serialize;
use serde_json::Value;
use sluice_crds::sensor::{TriggerParameter, TriggerParameterSource, TriggerTemplate};
use sluice_eventbus::Event;

use crate::jsonpath::{go_string, set_path, GoKind, SetPathError};

/// The events of one firing, by dependency name.
pub type EventsByDependency = BTreeMap<String, Event>;

/// Why a parameter could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ParamError {
    /// The parameter has no `src`.
    #[error("failed to resolve the parameter for `{dest}`: it has no `src`")]
    MissingSource {
        /// The parameter's `dest`.
        dest: String,
    },
    /// The key found nothing (or the event has no data) and there is no default `value`.
    #[error("failed to resolve the parameter value from dependency `{dependency}`: {reason}; set `value` for a default")]
    ResolveValue {
        /// The dependency named in `src`.
        dependency: String,
        /// What was missing.
        reason: String,
    },
    /// A `dataTemplate` / `contextTemplate` did not parse or failed to render.
    #[error("failed to render `{field}` of the parameter from dependency `{dependency}`: {reason}")]
    Template {
        /// The dependency named in `src`.
        dependency: String,
        /// `dataTemplate` or `contextTemplate`.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// `operation` is not `overwrite`, `append` or `prepend`.
    #[error("failed to apply the parameter for `{dest}`: unsupported operation `{operation}` (use overwrite, append or prepend)")]
    UnsupportedOperation {
        /// The parameter's `dest`.
        dest: String,
        /// The operation as written.
        operation: String,
    },
    /// The value could not be set at `dest`.
    #[error("failed to set the parameter value at `{dest}`")]
    SetValue {
        /// The parameter's `dest`.
        dest: String,
        /// Why.
        source: SetPathError,
    },
    /// The document the parameters apply to could not be converted to or from JSON.
    #[error("failed to convert the {what} to JSON and back after applying parameters")]
    Convert {
        /// What was converted (e.g. `trigger template`).
        what: &'static str,
        /// Why.
        source: serde_json::Error,
    },
}

/// A resolved parameter value: its text and the gjson kind it was found as (`String` for literals).
#[derive(Clone, Debug, PartialEq)]
pub struct ResolvedValue {
    /// The value as upstream renders it to text (strings unquoted, objects as JSON).
    pub text: String,
    /// What it was in the event (decides how it is inserted with `useRawData`).
    pub kind: GoKind,
}

impl ResolvedValue {
    fn literal(text: String) -> Self {
        Self {
            text,
            kind: GoKind::String,
        }
    }

    /// The JSON value to insert: raw JSON when `use_raw_data` and the value is not a string,
    /// otherwise a JSON string.
    pub fn to_json(&self, use_raw_data: bool) -> Value {
        if use_raw_data && self.kind != GoKind::String {
            if let Ok(value) = serde_json::from_str(&self.text) {
                return value;
            }
        }
        Value::String(self.text.clone())
    }
}

/// Template fields of a parameter source that Sluice cannot evaluate: none any more (kept for the
/// runner's startup check).
pub fn unsupported_template_fields(_src: &TriggerParameterSource) -> Vec<&'static str> {
    Vec::new()
}

/// Compile problems of a parameter source's templates, as (field, reason), for `sluice validate`.
pub fn template_problems(src: &TriggerParameterSource) -> Vec<(&'static str, String)> {
    [
        ("dataTemplate", &src.data_template),
        ("contextTemplate", &src.context_template),
    ]
    .into_iter()
    .filter_map(|(field, t)| {
        let t = t.as_deref().filter(|t| !t.is_empty())?;
        sluice_template::compile(t).err().map(|e| (field, e.to_string()))
    })
    .collect()
}

/// Renders `template` over `input`; `Ok(None)` when it renders empty or `<no value>`.
fn render_template(
    dependency: &str,
    field: &'static str,
    template: &str,
    input: &Value,
) -> Result<Option<String>, ParamError> {
    let error = |reason: String| ParamError::Template {
        dependency: dependency.to_owned(),
        field,
        reason,
    };
    let compiled = sluice_template::compile(template).map_err(|e| error(e.to_string()))?;
    let out = compiled.render_input(input).map_err(|e| error(e.to_string()))?;
    Ok((!out.is_empty() && out != "<no value>").then_some(out))
}

fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|s| !s.is_empty())
}

/// Resolves `src` against the firing's events. `Ok(None)`: the dependency has no event and no
/// default, so the parameter is skipped.
pub fn resolve_value(
    src: &TriggerParameterSource,
    events: &EventsByDependency,
) -> Result<Option<ResolvedValue>, ParamError> {
    let dependency = &src.dependency_name;
    let Some(event) = events.get(dependency) else {
        return Ok(src.value.clone().map(ResolvedValue::literal));
    };
    if let (Some(template), Some(data)) = (non_empty(&src.data_template), event.data()) {
        if let Some(text) = render_template(dependency, "dataTemplate", template, data)? {
            return Ok(Some(ResolvedValue::literal(text)));
        }
    }
    if let Some(template) = non_empty(&src.context_template) {
        let context = serde_json::to_value(upstream_context(event)).unwrap_or(Value::Null);
        if let Some(text) = render_template(dependency, "contextTemplate", template, &context)? {
            return Ok(Some(ResolvedValue::literal(text)));
        }
    }
    let (data_key, context_key) = (non_empty(&src.data_key), non_empty(&src.context_key));
    let fallback = |reason: String| match &src.value {
        Some(value) => Ok(Some(ResolvedValue::literal(value.clone()))),
        None => Err(ParamError::ResolveValue {
            dependency: dependency.clone(),
            reason,
        }),
    };
    let (document, key) = match (data_key, context_key) {
        (None, None) => {
            return Ok(Some(match &src.value {
                Some(value) => ResolvedValue::literal(value.clone()),
                None => ResolvedValue::literal(upstream_event_json(event)),
            }))
        }
        (Some(key), _) => match event.data() {
            Some(data) => (data.to_string(), key),
            None => return fallback("the event has no data".to_owned()),
        },
        (None, Some(key)) => (context_json(event), key),
    };
    let found = gjson::get(&document, key);
    if !found.exists() {
        return fallback(format!("key `{key}` does not exist in the event"));
    }
    let kind = GoKind::of(&found);
    let text = match kind {
        GoKind::Json | GoKind::Null => found.json().to_owned(),
        _ => go_string(&found),
    };
    Ok(Some(ResolvedValue { text, kind }))
}

/// The event's context as upstream serializes it (field order and time format included).
#[derive(Serialize)]
struct UpstreamContext<'a> {
    id: &'a str,
    source: &'a str,
    specversion: &'a str,
    #[serde(rename = "type")]
    ty: &'a str,
    datacontenttype: &'a str,
    subject: &'a str,
    /// RFC 3339 in UTC with whole seconds, as Kubernetes' `metav1.Time`; `null` when unset.
    time: Option<String>,
}

fn upstream_context(event: &Event) -> UpstreamContext<'_> {
    UpstreamContext {
        id: event.id(),
        source: event.source(),
        specversion: "1.0",
        ty: event.ty(),
        datacontenttype: event.datacontenttype().unwrap_or_default(),
        subject: event.subject().unwrap_or_default(),
        time: event.time().map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
    }
}

fn context_json(event: &Event) -> String {
    serde_json::to_string(&upstream_context(event)).unwrap_or_default()
}

/// The whole event as upstream marshals its `Event` type: the context, and the data bytes in base64
/// (Go encodes `[]byte` that way).
fn upstream_event_json(event: &Event) -> String {
    #[derive(Serialize)]
    struct UpstreamEvent<'a> {
        context: UpstreamContext<'a>,
        data: Option<String>,
    }
    let data = event
        .data()
        .map(|d| base64::engine::general_purpose::STANDARD.encode(d.to_string()));
    serde_json::to_string(&UpstreamEvent {
        context: upstream_context(event),
        data,
    })
    .unwrap_or_default()
}

enum Operation {
    Overwrite,
    Append,
    Prepend,
}

fn operation(param: &TriggerParameter) -> Result<Operation, ParamError> {
    match param.operation.as_deref().unwrap_or_default() {
        "" | "overwrite" => Ok(Operation::Overwrite),
        "append" => Ok(Operation::Append),
        "prepend" => Ok(Operation::Prepend),
        other => Err(ParamError::UnsupportedOperation {
            dest: param.dest.clone(),
            operation: other.to_owned(),
        }),
    }
}

/// Applies `params` to the JSON document `doc` (a trigger's spec or template), upstream's
/// `ApplyParams`.
pub fn apply_params(
    doc: &mut Value,
    params: &[TriggerParameter],
    events: &EventsByDependency,
) -> Result<(), ParamError> {
    for param in params {
        let src = param.src.as_ref().ok_or_else(|| ParamError::MissingSource {
            dest: param.dest.clone(),
        })?;
        let Some(mut value) = resolve_value(src, events)? else {
            continue;
        };
        let op = operation(param)?;
        if matches!(op, Operation::Append | Operation::Prepend) {
            let current_doc = doc.to_string();
            let current = gjson::get(&current_doc, &param.dest);
            if current.exists() {
                let current = go_string(&current);
                value.text = match op {
                    Operation::Append => current + &value.text,
                    _ => value.text + &current,
                };
                value.kind = GoKind::String;
            }
        }
        set_path(doc, &param.dest, value.to_json(src.use_raw_data)).map_err(|source| {
            ParamError::SetValue {
                dest: param.dest.clone(),
                source,
            }
        })?;
    }
    Ok(())
}

/// Builds a request payload from `params` (upstream's `ConstructPayload`). `None` when no parameter
/// produced anything: the request then has an empty body, as upstream.
pub fn construct_payload(
    params: &[TriggerParameter],
    events: &EventsByDependency,
) -> Result<Option<Vec<u8>>, ParamError> {
    let mut payload: Option<Value> = None;
    for param in params {
        let src = param.src.as_ref().ok_or_else(|| ParamError::MissingSource {
            dest: param.dest.clone(),
        })?;
        let value = resolve_value(src, events)?;
        if param.dest.is_empty() {
            // The whole payload is this value, byte for byte; later parameters are ignored.
            if let Some(value) = value {
                return Ok(Some(value.text.into_bytes()));
            }
            continue;
        }
        // Upstream ignores `operation` for payloads; so do we.
        let Some(value) = value else { continue };
        let doc = payload.get_or_insert(Value::Null);
        set_path(doc, &param.dest, value.to_json(src.use_raw_data)).map_err(|source| {
            ParamError::SetValue {
                dest: param.dest.clone(),
                source,
            }
        })?;
    }
    Ok(payload.map(|p| p.to_string().into_bytes()))
}

/// Applies a trigger's top-level `parameters` to its template (paths such as `http.url`), upstream's
/// `ApplyTemplateParameters`. Without parameters the template is returned unchanged.
pub fn apply_template_parameters(
    template: &TriggerTemplate,
    params: &[TriggerParameter],
    events: &EventsByDependency,
) -> Result<TriggerTemplate, ParamError> {
    if params.is_empty() {
        return Ok(template.clone());
    }
    apply_to_typed(template, params, events, "trigger template")
}

/// Serializes `spec`, applies `params`, and reads it back.
pub fn apply_to_typed<T>(
    spec: &T,
    params: &[TriggerParameter],
    events: &EventsByDependency,
    what: &'static str,
) -> Result<T, ParamError>
where
    T: Serialize + serde::de::DeserializeOwned,
{
    let mut doc = serde_json::to_value(spec).map_err(|source| ParamError::Convert { what, source })?;
    apply_params(&mut doc, params, events)?;
    serde_json::from_value(doc).map_err(|source| ParamError::Convert { what, source })
}

#[cfg(test)]
#[path = "params_tests.rs"]
mod tests;
