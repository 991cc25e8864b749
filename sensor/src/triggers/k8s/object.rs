//! Pure operations on a manifest (a JSON object): the upstream labels, the namespace default, the
//! merge used by `operation: update`, and reading metadata. No I/O, unit-tested.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// Label naming the sensor that created an object (upstream's name).
pub const LABEL_SENSOR: &str = "events.argoproj.io/sensor";
/// Label naming the trigger that created an object (upstream's name).
pub const LABEL_TRIGGER: &str = "events.argoproj.io/trigger";
/// Label with the creation time in Unix milliseconds (upstream's name).
pub const LABEL_ACTION_TIMESTAMP: &str = "events.argoproj.io/action-timestamp";

/// Annotation with the id of the firing that created an object (a Sluice extension): a repeated
/// firing recognises the object it created before by it.
pub const ANNOTATION_FIRING_ID: &str = "sluice.dev/firing-id";
/// Hex characters of the firing id a `generateName` object's name ends with (64 bits: a collision
/// between two firings' names is negligible even over millions of objects).
const NAME_SUFFIX_LEN: usize = 16;
/// The longest name built from `generateName`: a DNS label, which every kind accepts (the API
/// server also keeps generated names to 63 characters).
const MAX_GENERATED_NAME: usize = 63;

/// A string field of `metadata`, if set and not empty.
pub fn meta_str<'a>(object: &'a Value, field: &str) -> Option<&'a str> {
    object
        .get("metadata")
        .and_then(|m| m.get(field))
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
}

/// `metadata` of `object` as a mutable map, created when missing (or not an object).
fn metadata_mut(object: &mut Value) -> Option<&mut Map<String, Value>> {
    let map = object.as_object_mut()?;
    let meta = map.entry("metadata").or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    meta.as_object_mut()
}

/// Sets `metadata.namespace` (or removes it when `namespace` is `None`, for cluster-scoped kinds).
pub fn set_namespace(object: &mut Value, namespace: Option<&str>) {
    if let Some(meta) = metadata_mut(object) {
        match namespace {
            Some(ns) => {
                meta.insert("namespace".into(), Value::String(ns.to_owned()));
            }
            None => {
                meta.remove("namespace");
            }
        }
    }
}

/// Adds `labels` to `metadata.labels`, replacing labels of the same key.
pub fn add_labels(object: &mut Value, labels: &BTreeMap<String, String>) {
    let Some(meta) = metadata_mut(object) else { return };
    let existing = meta.entry("labels").or_insert_with(|| Value::Object(Map::new()));
    if !existing.is_object() {
        *existing = Value::Object(Map::new());
    }
    if let Some(map) = existing.as_object_mut() {
        for (k, v) in labels {
            map.insert(k.clone(), Value::String(v.clone()));
        }
    }
}

/// Sets `metadata.annotations[key]`, replacing an annotation of the same key.
pub fn add_annotation(object: &mut Value, key: &str, value: &str) {
    let Some(meta) = metadata_mut(object) else { return };
    let existing = meta
        .entry("annotations")
        .or_insert_with(|| Value::Object(Map::new()));
    if !existing.is_object() {
        *existing = Value::Object(Map::new());
    }
    if let Some(map) = existing.as_object_mut() {
        map.insert(key.to_owned(), Value::String(value.to_owned()));
    }
}

/// Marks `object` as created by firing `firing_id`: the [`ANNOTATION_FIRING_ID`] annotation, and
/// for a manifest with `generateName` and no `name`, a name derived from the firing id (the prefix,
/// cut so the whole stays a DNS label, plus 16 hex characters of the id) in place of the API
/// server's 5 random characters. Returns the name the object will have, if it has one. So the same
/// firing — after a sensor restart, a redelivery, on another replica — names the same object, and
/// its second create finds the first instead of making a duplicate.
pub fn mark_firing(object: &mut Value, firing_id: &str) -> Option<String> {
    add_annotation(object, ANNOTATION_FIRING_ID, firing_id);
    if let Some(name) = meta_str(object, "name") {
        return Some(name.to_owned());
    }
    let prefix = meta_str(object, "generateName")?;
    let suffix: String = firing_id.chars().take(NAME_SUFFIX_LEN).collect();
    let keep = MAX_GENERATED_NAME.saturating_sub(suffix.len());
    let prefix: String = prefix.chars().take(keep).collect();
    let name = format!("{prefix}{suffix}");
    let meta = metadata_mut(object)?;
    meta.remove("generateName");
    meta.insert("name".into(), Value::String(name.clone()));
    Some(name)
}

/// The firing id an existing object was created by, if a sensor created it.
pub fn created_by_firing(object: &Value) -> Option<&str> {
    object
        .get("metadata")?
        .get("annotations")?
        .get(ANNOTATION_FIRING_ID)?
        .as_str()
}

/// The labels upstream puts on an object a sensor creates.
pub fn creation_labels(sensor: &str, trigger: &str, now_millis: i64) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_SENSOR.to_owned(), sensor.to_owned()),
        (LABEL_TRIGGER.to_owned(), trigger.to_owned()),
        (LABEL_ACTION_TIMESTAMP.to_owned(), now_millis.to_string()),
    ])
}

/// Whether `object` carries every label of `wanted` with the same value.
pub fn has_labels(object: &Value, wanted: &BTreeMap<String, String>) -> bool {
    let labels = object.get("metadata").and_then(|m| m.get("labels"));
    wanted.iter().all(|(k, v)| {
        labels
            .and_then(|l| l.get(k))
            .and_then(|x| x.as_str())
            .is_some_and(|x| x == v)
    })
}

/// Whether a value counts as empty for [`merge_override`] (upstream's merge skips these).
fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

/// Merges `overlay` into `base` as upstream's `update` does: objects merge key by key, recursively;
/// any other non-empty value of `overlay` (string, number, `true`, a non-empty list) replaces the
/// one in `base`; empty values (`""`, `0`, `false`, `null`, `[]`, `{}`) leave `base` unchanged.
pub fn merge_override(base: &mut Value, overlay: &Value) {
    match (base, overlay) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => merge_override(existing, v),
                    Some(_) | None if is_empty(v) => {}
                    Some(existing) => *existing = v.clone(),
                    None => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (base, overlay) => {
            if !is_empty(overlay) {
                *base = overlay.clone();
            }
        }
    }
}

/// "Kind namespace/name" (or "Kind name") for messages.
pub fn describe_object(kind: &str, namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) if !ns.is_empty() => format!("{kind} {ns}/{name}"),
        _ => format!("{kind} {name}"),
    }
}

/// Unix time in milliseconds now.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_firing_names_a_generate_name_object_and_marks_every_object() {
        let id = "0123456789abcdef".repeat(4);
        let mut object = json!({"metadata": {"generateName": "build-"}});
        assert_eq!(
            mark_firing(&mut object, &id).as_deref(),
            Some("build-0123456789abcdef")
        );
        assert_eq!(object["metadata"]["name"], "build-0123456789abcdef");
        assert!(object["metadata"].get("generateName").is_none());
        assert_eq!(created_by_firing(&object), Some(id.as_str()));
        // A long prefix is cut so the name stays a DNS label.
        let mut long = json!({"metadata": {"generateName": "x".repeat(80)}});
        let name = mark_firing(&mut long, &id).unwrap_or_default();
        assert_eq!(name.len(), 63);
        assert!(name.ends_with("0123456789abcdef"));
        // A fixed name stays; no name at all stays unnamed (the API will say so).
        let mut fixed = json!({"metadata": {"name": "settings", "annotations": {"a": "b"}}});
        assert_eq!(mark_firing(&mut fixed, &id).as_deref(), Some("settings"));
        assert_eq!(fixed["metadata"]["annotations"]["a"], "b");
        assert_eq!(created_by_firing(&fixed), Some(id.as_str()));
        let mut bare = json!({"kind": "ConfigMap"});
        assert_eq!(mark_firing(&mut bare, &id), None);
        assert_eq!(created_by_firing(&json!({"metadata": {}})), None);
    }

    #[test]
    fn merge_overrides_scalars_and_lists_and_keeps_what_the_overlay_leaves_empty() {
        let mut base = json!({"metadata": {"name": "a", "labels": {"x": "1"}, "resourceVersion": "7"},
            "spec": {"replicas": 3, "paused": true, "ports": [1, 2], "image": "old"}});
        let overlay = json!({"metadata": {"name": "a", "labels": {"y": "2"}},
            "spec": {"replicas": 0, "ports": [9], "image": "new", "extra": "e", "paused": false}});
        merge_override(&mut base, &overlay);
        assert_eq!(
            base,
            json!({"metadata": {"name": "a", "labels": {"x": "1", "y": "2"}, "resourceVersion": "7"},
                "spec": {"replicas": 3, "paused": true, "ports": [9], "image": "new", "extra": "e"}})
        );
    }

    #[test]
    fn labels_are_added_and_checked() {
        let mut o = json!({"kind": "ConfigMap"});
        add_labels(&mut o, &creation_labels("s", "t", 42));
        assert_eq!(meta_str(&o, "name"), None);
        let want = BTreeMap::from([(LABEL_TRIGGER.to_owned(), "t".to_owned())]);
        assert!(has_labels(&o, &want));
        assert_eq!(o["metadata"]["labels"][LABEL_ACTION_TIMESTAMP], "42");
        let other = BTreeMap::from([(LABEL_TRIGGER.to_owned(), "u".to_owned())]);
        assert!(!has_labels(&o, &other));
    }

    #[test]
    fn namespace_is_set_and_removed() {
        let mut o = json!({"metadata": "broken"});
        set_namespace(&mut o, Some("ns"));
        assert_eq!(meta_str(&o, "namespace"), Some("ns"));
        set_namespace(&mut o, None);
        assert_eq!(meta_str(&o, "namespace"), None);
    }
}
