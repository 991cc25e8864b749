//! The pure part of the `resource` source: the label selector sent to the API server, the filters
//! checked here (`prefix`, `fields`, `createdBy`, `afterStart`), and the event data. Unit-tested.

use chrono::{DateTime, Utc};
use regex::Regex;
use serde_json::{json, Value};
use sluice_crds::common::Selector;
use sluice_crds::eventsource::{ResourceEventSource, ResourceFilter};

/// A change kind, with upstream's names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChangeType {
    /// `ADD`
    Add,
    /// `UPDATE`
    Update,
    /// `DELETE`
    Delete,
}

impl ChangeType {
    /// Upstream's name.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeType::Add => "ADD",
            ChangeType::Update => "UPDATE",
            ChangeType::Delete => "DELETE",
        }
    }

    /// Parses upstream's name.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "ADD" => Some(ChangeType::Add),
            "UPDATE" => Some(ChangeType::Update),
            "DELETE" => Some(ChangeType::Delete),
            _ => None,
        }
    }
}

/// The label selector of `filter.labels` in the API's syntax (`a=b,c!=d,e in (x,y),f,!g`).
pub fn label_selector(labels: &[Selector]) -> Result<String, String> {
    let mut terms = Vec::with_capacity(labels.len());
    for s in labels {
        let op = s.operation.as_deref().unwrap_or("=");
        let term = match op {
            "" | "=" | "==" | "!=" => format!("{}{}{}", s.key, if op.is_empty() { "=" } else { op }, s.value),
            "in" | "notin" => format!("{} {op} ({})", s.key, s.value),
            "exists" => s.key.clone(),
            "!" => format!("!{}", s.key),
            "gt" => format!("{}>{}", s.key, s.value),
            "lt" => format!("{}<{}", s.key, s.value),
            other => return Err(format!("label selector operation `{other}` of key `{}` is not one of =, ==, !=, in, notin, exists, !, gt, lt", s.key)),
        };
        terms.push(term);
    }
    Ok(terms.join(","))
}

/// A checked `filter.fields` term.
#[derive(Clone, Debug)]
pub struct FieldTerm {
    path: Vec<String>,
    negate: bool,
    pattern: Regex,
}

/// The filters checked by the source on each object.
#[derive(Clone, Debug, Default)]
pub struct ObjectFilter {
    prefix: Option<String>,
    fields: Vec<FieldTerm>,
    created_before: Option<DateTime<Utc>>,
    created_after: Option<DateTime<Utc>>,
}

impl ObjectFilter {
    /// Checks `filter`; `started` is when the source started (for `afterStart`).
    pub fn new(filter: Option<&ResourceFilter>, started: DateTime<Utc>) -> Result<Self, String> {
        let Some(filter) = filter else {
            return Ok(Self::default());
        };
        let mut fields = Vec::with_capacity(filter.fields.len());
        for s in &filter.fields {
            let negate = match s.operation.as_deref().unwrap_or("=") {
                "" | "=" | "==" => false,
                "!=" => true,
                other => {
                    return Err(format!(
                        "field selector operation `{other}` of key `{}` is not one of =, ==, !=",
                        s.key
                    ))
                }
            };
            // Anchored, as a whole-value match: `value: foo` must not match `foobar`.
            let pattern = Regex::new(&format!("^(?:{})$", s.value)).map_err(|e| {
                format!(
                    "field selector value of key `{}` is not a regular expression: {e}",
                    s.key
                )
            })?;
            fields.push(FieldTerm {
                path: s.key.split('.').map(str::to_owned).collect(),
                negate,
                pattern,
            });
        }
        let created_before = match &filter.created_by {
            Some(t) => {
                let text = serde_json::to_value(t)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                Some(parse_time(&text).ok_or_else(|| format!("createdBy `{text}` is not an RFC 3339 time"))?)
            }
            None => None,
        };
        Ok(Self {
            prefix: filter.prefix.clone().filter(|p| !p.is_empty()),
            fields,
            created_before,
            // creationTimestamp has whole seconds: an object created in the second the source
            // started counts as after the start (else it could be lost to the truncation).
            created_after: filter
                .after_start
                .then(|| DateTime::<Utc>::from_timestamp(started.timestamp(), 0).unwrap_or(started)),
        })
    }

    /// Whether `object` passes every filter.
    pub fn passes(&self, object: &Value) -> bool {
        let meta = &object["metadata"];
        if let Some(prefix) = &self.prefix {
            if !meta["name"]
                .as_str()
                .unwrap_or_default()
                .starts_with(prefix.as_str())
            {
                return false;
            }
        }
        if self.created_before.is_some() || self.created_after.is_some() {
            let Some(created) = meta["creationTimestamp"].as_str().and_then(parse_time) else {
                return false;
            };
            if self.created_before.is_some_and(|t| created >= t)
                || self.created_after.is_some_and(|t| created < t)
            {
                return false;
            }
        }
        self.fields.iter().all(|term| {
            let mut value = object;
            for part in &term.path {
                value = &value[part.as_str()];
            }
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            term.pattern.is_match(&text) != term.negate
        })
    }
}

fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The event data of a change, upstream's shape: `{type, body, oldBody, group, version, resource,
/// metadata}` (`oldBody` only for updates).
pub fn event_data(
    spec: &ResourceEventSource,
    change: ChangeType,
    body: &Value,
    old: Option<&Value>,
) -> Value {
    let mut data = json!({
        "type": change.as_str(),
        "body": body,
        "group": spec.group,
        "version": spec.version,
        "resource": spec.resource,
        "metadata": spec.metadata.clone().unwrap_or_default(),
    });
    if let Some(old) = old {
        data["oldBody"] = old.clone();
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(key: &str, op: Option<&str>, value: &str) -> Selector {
        Selector {
            key: key.into(),
            operation: op.map(str::to_owned),
            value: value.into(),
        }
    }

    #[test]
    fn label_selectors_use_the_api_syntax() {
        let s = label_selector(&[
            sel("app", None, "web"),
            sel("tier", Some("!="), "db"),
            sel("env", Some("in"), "a,b"),
            sel("owner", Some("exists"), ""),
            sel("skip", Some("!"), ""),
        ]);
        assert_eq!(s.as_deref(), Ok("app=web,tier!=db,env in (a,b),owner,!skip"));
        assert!(label_selector(&[sel("x", Some("~"), "y")]).is_err());
    }

    #[test]
    fn filters_check_prefix_fields_and_creation_time() -> Result<(), String> {
        let started = parse_time("2026-01-01T00:00:00Z").ok_or("time")?;
        let filter = ResourceFilter {
            prefix: Some("ci-".into()),
            fields: vec![
                sel("data.stage", None, "build|test"),
                sel("data.skip", Some("!="), "yes"),
            ],
            after_start: true,
            ..Default::default()
        };
        let f = ObjectFilter::new(Some(&filter), started)?;
        let object = |name: &str, created: &str, stage: &str| json!({"metadata": {"name": name, "creationTimestamp": created}, "data": {"stage": stage}});
        assert!(f.passes(&object("ci-1", "2026-01-02T00:00:00Z", "build")));
        assert!(!f.passes(&object("cd-1", "2026-01-02T00:00:00Z", "build")));
        assert!(!f.passes(&object("ci-1", "2025-12-31T00:00:00Z", "build")));
        assert!(!f.passes(&object("ci-1", "2026-01-02T00:00:00Z", "deploy")));
        assert!(!f.passes(&object("ci-1", "2026-01-02T00:00:00Z", "buildx")));
        Ok(())
    }

    #[test]
    fn event_data_has_the_upstream_shape() {
        let spec = ResourceEventSource {
            group: "".into(),
            version: "v1".into(),
            resource: "configmaps".into(),
            ..Default::default()
        };
        let d = event_data(
            &spec,
            ChangeType::Update,
            &json!({"a": 2}),
            Some(&json!({"a": 1})),
        );
        assert_eq!(d["type"], "UPDATE");
        assert_eq!(d["oldBody"], json!({"a": 1}));
        assert_eq!(d["resource"], "configmaps");
        let d = event_data(&spec, ChangeType::Add, &json!({}), None);
        assert!(d.get("oldBody").is_none());
    }
}
