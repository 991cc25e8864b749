//! The Secrets and ConfigMaps a spec references, found by their type.
//!
//! Every `SecretKeySelector` and `ConfigMapKeySelector` anywhere in a spec counts, whatever the
//! field holding it is called (`basicAuth.username`, `slack.token`, `nats.auth.nkey`,
//! `secureHeaders[].valueFrom.configMapKeyRef`, …): the controller mounts each one into the pods,
//! and a name-based guess would miss those whose field does not say "secret".
//!
//! The walk is guided by the type's JSON schema (the same one the CRDs are generated from): the
//! spec is serialized, and wherever the schema says a value is a `SecretKeySelector` or a
//! `ConfigMapKeySelector` the value is taken. So a new selector field in the types is found
//! without touching this module, and [`selector_paths`] lists every place the types allow one.

use std::any::TypeId;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use schemars::{JsonSchema, SchemaGenerator};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::common::{ConfigMapKeySelector, SecretKeySelector};

/// What a reference points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RefKind {
    /// A key of a Secret.
    Secret,
    /// A key of a ConfigMap.
    ConfigMap,
}

impl RefKind {
    /// The Kubernetes kind (`Secret`, `ConfigMap`).
    pub fn kind(self) -> &'static str {
        match self {
            RefKind::Secret => "Secret",
            RefKind::ConfigMap => "ConfigMap",
        }
    }
}

/// One reference to a key of a Secret or ConfigMap, with where it sits in the spec.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Reference {
    /// Secret or ConfigMap.
    pub kind: RefKind,
    /// The object's name.
    pub name: String,
    /// The key inside it.
    pub key: String,
    /// `optional: true`: a missing object or key is not an error.
    pub optional: bool,
    /// The field path from the root of the value (`webhook.example.authSecret`).
    pub path: String,
}

/// Why the references of a value could not be listed.
#[derive(Debug, thiserror::Error)]
pub enum RefsError {
    /// The value did not serialize to JSON.
    #[error("failed to encode the spec to find its references")]
    Encode(#[source] serde_json::Error),
}

/// Every Secret and ConfigMap reference in `value`, sorted by kind, name and key, found through
/// `T`'s schema.
pub fn references<T: JsonSchema + Serialize + 'static>(value: &T) -> Result<Vec<Reference>, RefsError> {
    let json = serde_json::to_value(value).map_err(RefsError::Encode)?;
    let schema = Schemas::cached::<T>();
    let mut out = BTreeSet::new();
    schema.walk(&json, &schema.root, String::new(), &mut out, 0);
    Ok(out.into_iter().collect())
}

/// Every field path at which `T` allows a Secret or ConfigMap selector (map keys as `*`, list
/// items as `[]`), sorted: the list the controller's mounting covers.
pub fn selector_paths<T: JsonSchema>() -> Vec<(RefKind, String)> {
    let schema = Schemas::of::<T>();
    let mut out = BTreeSet::new();
    let mut seen = Vec::new();
    schema.paths(&schema.root, String::new(), &mut out, &mut seen);
    out.into_iter().collect()
}

/// Recursive types would loop forever in a walk of the schema alone; values are finite, but a
/// bound keeps a hostile spec from exhausting the stack.
const MAX_DEPTH: usize = 128;

struct Schemas {
    root: Value,
    defs: Map<String, Value>,
    secret: String,
    config_map: String,
}

impl Schemas {
    /// `T`'s schemas, generated once per type: the controller lists references on every
    /// reconcile, and generating the whole Sensor schema each time is most of that work.
    fn cached<T: JsonSchema + 'static>() -> Arc<Self> {
        static CACHE: OnceLock<Mutex<HashMap<TypeId, Arc<Schemas>>>> = OnceLock::new();
        let cache = CACHE.get_or_init(Mutex::default);
        let id = TypeId::of::<T>();
        // A poisoned lock only means another thread panicked mid-insert; the map is still whole.
        if let Some(hit) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&id) {
            return hit.clone();
        }
        let fresh = Arc::new(Self::of::<T>());
        cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(id)
            .or_insert(fresh)
            .clone()
    }

    fn of<T: JsonSchema>() -> Self {
        let mut generator = SchemaGenerator::default();
        let root = generator.root_schema_for::<T>().to_value();
        let defs = root
            .get("$defs")
            .or_else(|| root.get("definitions"))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        Self {
            root,
            defs,
            secret: SecretKeySelector::schema_name().into_owned(),
            config_map: ConfigMapKeySelector::schema_name().into_owned(),
        }
    }

    /// The definition a `$ref` names, with the name.
    fn resolve<'a>(&'a self, schema: &'a Value) -> Option<(&'a str, &'a Value)> {
        let target = schema.get("$ref")?.as_str()?;
        let name = target
            .strip_prefix("#/$defs/")
            .or_else(|| target.strip_prefix("#/definitions/"))?;
        self.defs.get_key_value(name).map(|(k, v)| (k.as_str(), v))
    }

    /// Which selector a schema is, if it is one.
    fn selector_kind(&self, schema: &Value) -> Option<RefKind> {
        let (name, _) = self.resolve(schema)?;
        if name == self.secret {
            Some(RefKind::Secret)
        } else if name == self.config_map {
            Some(RefKind::ConfigMap)
        } else {
            None
        }
    }

    /// The schemas a value must also match: `$ref` targets and every `anyOf`/`oneOf`/`allOf`
    /// branch (an `Option<T>` is `anyOf: [T, null]`).
    fn alternatives<'a>(&'a self, schema: &'a Value) -> Vec<&'a Value> {
        let mut out = Vec::new();
        if let Some((_, target)) = self.resolve(schema) {
            out.push(target);
        }
        for combinator in ["anyOf", "oneOf", "allOf"] {
            if let Some(branches) = schema.get(combinator).and_then(Value::as_array) {
                out.extend(branches.iter());
            }
        }
        out
    }

    fn walk(&self, value: &Value, schema: &Value, path: String, out: &mut BTreeSet<Reference>, depth: usize) {
        if depth > MAX_DEPTH || value.is_null() {
            return;
        }
        if let Some(kind) = self.selector_kind(schema) {
            if let Some(name) = value.get("name").and_then(Value::as_str) {
                out.insert(Reference {
                    kind,
                    name: name.to_string(),
                    key: value
                        .get("key")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    optional: value.get("optional").and_then(Value::as_bool).unwrap_or(false),
                    path,
                });
            }
            return;
        }
        for alternative in self.alternatives(schema) {
            self.walk(value, alternative, path.clone(), out, depth + 1);
        }
        match value {
            Value::Object(fields) => {
                let properties = schema.get("properties").and_then(Value::as_object);
                let additional = schema.get("additionalProperties").filter(|s| s.is_object());
                for (field, v) in fields {
                    let child = properties.and_then(|p| p.get(field)).or(additional);
                    if let Some(child) = child {
                        self.walk(v, child, join(&path, field), out, depth + 1);
                    }
                }
            }
            Value::Array(items) => {
                let prefix = schema.get("prefixItems").and_then(Value::as_array);
                let rest = schema.get("items").filter(|s| s.is_object());
                for (i, item) in items.iter().enumerate() {
                    let child = prefix.and_then(|p| p.get(i)).or(rest);
                    if let Some(child) = child {
                        self.walk(item, child, format!("{path}[{i}]"), out, depth + 1);
                    }
                }
            }
            _ => {}
        }
    }

    fn paths<'a>(
        &'a self,
        schema: &'a Value,
        path: String,
        out: &mut BTreeSet<(RefKind, String)>,
        seen: &mut Vec<&'a str>,
    ) {
        if let Some(kind) = self.selector_kind(schema) {
            out.insert((kind, path));
            return;
        }
        // A definition already being walked on this path is a recursive type: its selectors are
        // listed at its first occurrence.
        let entered = match self.resolve(schema) {
            Some((name, _)) if seen.contains(&name) => return,
            Some((name, _)) => {
                seen.push(name);
                true
            }
            None => false,
        };
        for alternative in self.alternatives(schema) {
            self.paths(alternative, path.clone(), out, seen);
        }
        if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
            for (field, child) in properties {
                self.paths(child, join(&path, field), out, seen);
            }
        }
        if let Some(child) = schema.get("additionalProperties").filter(|s| s.is_object()) {
            self.paths(child, join(&path, "*"), out, seen);
        }
        if let Some(child) = schema.get("items").filter(|s| s.is_object()) {
            self.paths(child, format!("{path}[]"), out, seen);
        }
        if entered {
            seen.pop();
        }
    }
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

#[cfg(test)]
mod tests;
