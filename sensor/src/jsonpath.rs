//! JSON paths the way upstream Argo Events reads and writes them.
//!
//! Reading uses gjson paths (the `gjson` crate, a port of the Go library upstream uses), plus
//! conversions that mirror Go gjson's `Result.String()`, `Float()` and `Bool()` exactly — the Rust
//! crate's own conversions differ in corner cases (`1.50` reads as `1.5` in Go, `"True"` is true).
//!
//! Writing implements the sjson path rules upstream uses for a parameter's `dest`, on a
//! [`serde_json::Value`]: keys separated by `.`, `\` escapes the next character (`a\.b` is the key
//! `a.b`), a numeric key indexes an array (padding with `null` past its end), `-1` appends to an
//! array, a leading `:` forces a part to be an object key (`:0`), and a missing or scalar parent
//! becomes an array when the key is numeric and an object otherwise. Pure functions, no I/O.

use serde_json::{Map, Value};

/// The largest array index a `dest` may name. sjson would pad an array with `null` up to any index;
/// capped so that a typo such as `items.99999999999` cannot exhaust memory.
pub const MAX_ARRAY_INDEX: usize = 10_000;

/// Why a value could not be set at a `dest` path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetPathError {
    /// The path is empty (sjson refuses it as well).
    #[error("failed to set a value: the path is empty")]
    EmptyPath,
    /// The path uses gjson query syntax (`#`, `*`, `?`, `@`, `|`), which a destination cannot use yet.
    #[error("failed to set a value at `{path}`: wildcards, queries and modifiers (`#*?@|`) are not supported in a destination path; escape them with `\\`")]
    ComplexPath {
        /// The path as written.
        path: String,
    },
    /// A non-numeric key addressed an array.
    #[error("failed to set a value at `{path}`: `{key}` is not an array index")]
    NotAnIndex {
        /// The path as written.
        path: String,
        /// The offending key.
        key: String,
    },
    /// A numeric key beyond [`MAX_ARRAY_INDEX`].
    #[error("failed to set a value at `{path}`: index {key} is larger than {MAX_ARRAY_INDEX}")]
    IndexTooLarge {
        /// The path as written.
        path: String,
        /// The offending key.
        key: String,
    },
}

/// One key of a parsed sjson path.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Part {
    key: String,
    /// Written with a leading `:`: always an object key, never an index.
    forced: bool,
}

impl Part {
    /// sjson's notion of "numeric": only ASCII digits (the empty key counts, as index 0).
    fn index(&self) -> Option<Result<usize, ()>> {
        if self.forced || !self.key.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        if self.key.is_empty() {
            return Some(Ok(0));
        }
        Some(
            self.key
                .parse::<usize>()
                .ok()
                .filter(|n| *n <= MAX_ARRAY_INDEX)
                .ok_or(()),
        )
    }

    fn is_append(&self) -> bool {
        !self.forced && self.key == "-1"
    }
}

/// Splits an sjson path into its keys. `None` when the path uses gjson query syntax.
fn parse_set_path(path: &str) -> Option<Vec<Part>> {
    let mut parts = Vec::new();
    let mut rest = path;
    loop {
        let (forced, body) = match rest.strip_prefix(':') {
            Some(body) => (true, body),
            None => (false, rest),
        };
        let mut key = String::new();
        let mut chars = body.char_indices();
        let mut next = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '.' => {
                    next = Some(&body[i + 1..]);
                    break;
                }
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        key.push(escaped);
                    }
                }
                '|' | '#' | '@' | '*' | '?' => return None,
                c => key.push(c),
            }
        }
        parts.push(Part { key, forced });
        match next {
            Some(tail) => rest = tail,
            None => return Some(parts),
        }
    }
}

/// Sets `value` at the sjson path `path` inside `root`, creating objects and arrays on the way as
/// sjson does. A `Value::Null` root is an empty document.
pub fn set_path(root: &mut Value, path: &str, value: Value) -> Result<(), SetPathError> {
    if path.is_empty() {
        return Err(SetPathError::EmptyPath);
    }
    let parts = parse_set_path(path).ok_or_else(|| SetPathError::ComplexPath {
        path: path.to_owned(),
    })?;
    set_parts(root, &parts, value, path)
}

fn set_parts(current: &mut Value, parts: &[Part], value: Value, path: &str) -> Result<(), SetPathError> {
    let Some((part, rest)) = parts.split_first() else {
        *current = value;
        return Ok(());
    };
    match current {
        Value::Object(map) => {
            if let Some(child) = map.get_mut(&part.key) {
                return set_parts(child, rest, value, path);
            }
            let built = build(rest, value, path)?;
            map.insert(part.key.clone(), built);
            Ok(())
        }
        Value::Array(items) => {
            let index = match part.index() {
                Some(Ok(index)) => index,
                Some(Err(())) => {
                    return Err(SetPathError::IndexTooLarge {
                        path: path.to_owned(),
                        key: part.key.clone(),
                    })
                }
                None if part.is_append() => items.len(),
                None => {
                    return Err(SetPathError::NotAnIndex {
                        path: path.to_owned(),
                        key: part.key.clone(),
                    })
                }
            };
            if let Some(child) = items.get_mut(index) {
                return set_parts(child, rest, value, path);
            }
            let built = build(rest, value, path)?;
            items.resize(index, Value::Null);
            items.push(built);
            Ok(())
        }
        // sjson replaces a missing or scalar parent with an empty container and carries on.
        _ => {
            *current = if part.index().is_some() {
                Value::Array(Vec::new())
            } else {
                Value::Object(Map::new())
            };
            set_parts(current, parts, value, path)
        }
    }
}

/// The new structure for the keys in `parts` holding `value` (sjson's rule: the container of a
/// level is an array when the next key is numeric or `-1`, an object otherwise).
fn build(parts: &[Part], value: Value, path: &str) -> Result<Value, SetPathError> {
    let Some((part, rest)) = parts.split_first() else {
        return Ok(value);
    };
    let inner = build(rest, value, path)?;
    match part.index() {
        Some(Ok(index)) => {
            let mut items = vec![Value::Null; index];
            items.push(inner);
            Ok(Value::Array(items))
        }
        Some(Err(())) => Err(SetPathError::IndexTooLarge {
            path: path.to_owned(),
            key: part.key.clone(),
        }),
        None if part.is_append() => Ok(Value::Array(vec![inner])),
        None => {
            let mut map = Map::new();
            map.insert(part.key.clone(), inner);
            Ok(Value::Object(map))
        }
    }
}

/// gjson's `Get` on an already-parsed document, for the paths most manifests use: plain keys
/// separated by `.` (a numeric key indexes an array). `None` when the path uses any other gjson
/// syntax (wildcards, `#`, modifiers, escapes, multipaths): the caller then runs gjson on the
/// document's text. `Some(None)`: the path does not exist. Avoids serializing a large payload for
/// every filter. Filters split their paths once with [`GjsonPath`].
pub fn get_simple<'a>(root: &'a Value, path: &str) -> Option<Option<&'a Value>> {
    GjsonPath::new(path).get_parsed(root)
}

/// A gjson path, split once when it is plain (see [`get_simple`]) so reading it per event does not
/// re-scan its text.
#[derive(Clone, Debug)]
pub struct GjsonPath {
    text: String,
    /// Each key, with its array index when it is all digits; `None` for gjson syntax.
    plain: Option<Vec<(String, Option<usize>)>>,
}

impl GjsonPath {
    /// Splits `path`.
    pub fn new(path: &str) -> Self {
        let plain = (!path.is_empty())
            .then(|| {
                path.split('.')
                    .map(|part| {
                        let special = part.is_empty()
                            || part.bytes().any(|b| {
                                matches!(
                                    b,
                                    b'*' | b'?'
                                        | b'#'
                                        | b'@'
                                        | b'|'
                                        | b'\\'
                                        | b'!'
                                        | b'{'
                                        | b'}'
                                        | b'['
                                        | b']'
                                        | b'('
                                        | b')'
                                        | b'='
                                        | b'<'
                                        | b'>'
                                        | b'%'
                                        | b','
                                        | b'"'
                                        | b'\''
                                        | b'`'
                                        | b'~'
                                )
                            });
                        // A digits-only key too long for usize indexes nothing (and still names
                        // an object key).
                        let index = if part.bytes().all(|b| b.is_ascii_digit()) {
                            Some(part.parse::<usize>().ok())
                        } else {
                            None
                        };
                        (!special).then(|| (part.to_owned(), index))
                    })
                    .collect::<Option<Vec<_>>>()
            })
            .flatten()
            .map(|parts| {
                parts
                    .into_iter()
                    .map(|(key, index)| (key, index.map(|i| i.unwrap_or(usize::MAX))))
                    .collect()
            });
        Self {
            text: path.to_owned(),
            plain,
        }
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// [`get_simple`] with the split done: `None` for gjson syntax, `Some(None)` when the path does
    /// not exist.
    pub fn get_parsed<'a>(&self, root: &'a Value) -> Option<Option<&'a Value>> {
        let parts = self.plain.as_ref()?;
        let mut current = root;
        for (key, index) in parts {
            current = match (current, index) {
                (Value::Object(map), _) => match map.get(key.as_str()) {
                    Some(v) => v,
                    None => return Some(None),
                },
                (Value::Array(items), Some(i)) => match items.get(*i) {
                    Some(v) => v,
                    None => return Some(None),
                },
                _ => return Some(None),
            };
        }
        Some(Some(current))
    }
}

/// The gjson type names upstream uses to decide how a resolved value is inserted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GoKind {
    /// JSON `null`.
    Null,
    /// `false`.
    False,
    /// A number.
    Number,
    /// A string.
    String,
    /// `true`.
    True,
    /// An object or array (gjson's `JSON` type).
    Json,
}

impl GoKind {
    /// The kind of a gjson value.
    pub fn of(value: &gjson::Value<'_>) -> GoKind {
        match value.kind() {
            gjson::Kind::Null => GoKind::Null,
            gjson::Kind::False => GoKind::False,
            gjson::Kind::Number => GoKind::Number,
            gjson::Kind::String => GoKind::String,
            gjson::Kind::True => GoKind::True,
            gjson::Kind::Array | gjson::Kind::Object => GoKind::Json,
        }
    }
}

/// Go gjson's `Result.String()`: strings unescaped, numbers as written when they are plain integers
/// and otherwise in Go's shortest decimal form (`1.50` → `1.5`, `1e3` → `1000`), `null` as the
/// empty string, objects and arrays as their JSON text.
pub fn go_string(value: &gjson::Value<'_>) -> String {
    match value.kind() {
        gjson::Kind::Number => go_number_string(value.json()),
        _ => value.str().to_owned(),
    }
}

/// Go gjson's text for a number given its raw JSON.
pub fn go_number_string(raw: &str) -> String {
    let digits = raw.strip_prefix('-').unwrap_or(raw);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return raw.to_owned();
    }
    // Rust's `Display` for f64 is the shortest round-tripping decimal without an exponent, which is
    // what Go's `strconv.FormatFloat(f, 'f', -1, 64)` prints.
    raw.parse::<f64>().map(|f| f.to_string()).unwrap_or_default()
}

/// [`go_string`] of a value in parsed data (what gjson returns for its JSON text), without
/// serializing strings.
pub fn go_string_of(value: &Value) -> std::borrow::Cow<'_, str> {
    use std::borrow::Cow;
    match value {
        Value::String(s) => Cow::Borrowed(s),
        Value::Number(n) => Cow::Owned(go_number_string(&n.to_string())),
        Value::Bool(true) => Cow::Borrowed("true"),
        Value::Bool(false) => Cow::Borrowed("false"),
        Value::Null => Cow::Borrowed(""),
        Value::Array(_) | Value::Object(_) => Cow::Owned(value.to_string()),
    }
}

/// [`go_float`] of a value in parsed data.
pub fn go_float_of(value: &Value) -> f64 {
    match value {
        Value::Bool(true) => 1.0,
        Value::String(s) => s.parse().unwrap_or(0.0),
        Value::Number(n) => n.as_f64().unwrap_or(0.0),
        _ => 0.0,
    }
}

/// [`go_bool`] of a value in parsed data.
pub fn go_bool_of(value: &Value) -> bool {
    match value {
        Value::Bool(b) => *b,
        Value::String(s) => s == "1" || s.eq_ignore_ascii_case("t") || s.eq_ignore_ascii_case("true"),
        Value::Number(_) => go_float_of(value) != 0.0,
        _ => false,
    }
}

/// Go gjson's `Result.Float()`: `true` is 1, strings are parsed (0 when not a number), numbers as
/// they are, everything else 0.
pub fn go_float(value: &gjson::Value<'_>) -> f64 {
    match value.kind() {
        gjson::Kind::True => 1.0,
        gjson::Kind::String => value.str().parse().unwrap_or(0.0),
        gjson::Kind::Number => value.json().parse().unwrap_or(0.0),
        _ => 0.0,
    }
}

/// Go gjson's `Result.Bool()`: `true`; a string that Go's `strconv.ParseBool` reads as true after
/// lower-casing (`1`, `t`, `true`); a non-zero number.
pub fn go_bool(value: &gjson::Value<'_>) -> bool {
    match value.kind() {
        gjson::Kind::True => true,
        gjson::Kind::String => matches!(value.str().to_lowercase().as_str(), "1" | "t" | "true"),
        gjson::Kind::Number => go_float(value) != 0.0,
        _ => false,
    }
}

/// Go's `strconv.ParseBool`: the exact spellings it accepts.
pub fn go_parse_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Go's `strconv.ParseFloat(s, 64)` for the decimal forms manifests use (`3`, `-2.5`, `1e3`, `+1`,
/// `Inf`, `NaN`).
pub fn go_parse_float(text: &str) -> Option<f64> {
    if text.is_empty() || text.contains(char::is_whitespace) {
        return None;
    }
    text.parse::<f64>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<u64>().prop_map(|n| json!(n)),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| json!(f)),
            prop_oneof![
                "[ -~]{0,8}",
                Just("1".to_string()),
                Just("T".to_string()),
                Just("TRUE".to_string()),
                Just("tRuE".to_string()),
                Just("2.50".to_string()),
                Just("-0".to_string()),
            ]
            .prop_map(Value::String),
        ];
        leaf.prop_recursive(2, 8, 3, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                prop::collection::btree_map("[a-z]{1,3}", inner, 0..3)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// The parsed-value readings agree with gjson's over the value's JSON text.
        #[test]
        fn readings_of_parsed_values_match_gjson(value in json_value()) {
            let text = value.to_string();
            let parsed = gjson::parse(&text);
            let (ours, theirs) = (go_string_of(&value).into_owned(), go_string(&parsed));
            prop_assert_eq!(ours, theirs);
            let (a, b) = (go_float_of(&value), go_float(&parsed));
            prop_assert!(a == b || (a.is_nan() && b.is_nan()), "{} vs {}", a, b);
            prop_assert_eq!(go_bool_of(&value), go_bool(&parsed));
        }
    }

    fn set(mut root: Value, path: &str, value: Value) -> Result<Value, SetPathError> {
        set_path(&mut root, path, value)?;
        Ok(root)
    }

    #[test]
    fn set_creates_nested_objects_on_an_empty_document() {
        assert_eq!(set(Value::Null, "a.b", json!(1)), Ok(json!({"a": {"b": 1}})));
        assert_eq!(set(json!({}), "name", json!("x")), Ok(json!({"name": "x"})));
    }

    #[test]
    fn set_overwrites_existing_values_and_keeps_siblings() {
        let doc = json!({"a": {"b": 1, "c": 2}});
        assert_eq!(
            set(doc, "a.b", json!("new")),
            Ok(json!({"a": {"b": "new", "c": 2}}))
        );
    }

    #[test]
    fn set_numeric_keys_index_arrays_and_pad_with_null() {
        assert_eq!(set(Value::Null, "0", json!("x")), Ok(json!(["x"])));
        assert_eq!(
            set(Value::Null, "a.2", json!(true)),
            Ok(json!({"a": [null, null, true]}))
        );
        assert_eq!(
            set(json!({"a": [1, 2]}), "a.1", json!(9)),
            Ok(json!({"a": [1, 9]}))
        );
        assert_eq!(
            set(json!({"a": [1]}), "a.3", json!(9)),
            Ok(json!({"a": [1, null, null, 9]}))
        );
    }

    #[test]
    fn set_minus_one_appends() {
        assert_eq!(set(json!({"a": [1]}), "a.-1", json!(2)), Ok(json!({"a": [1, 2]})));
        assert_eq!(set(Value::Null, "a.-1", json!(2)), Ok(json!({"a": [2]})));
        assert_eq!(
            set(json!({"a": [[1]]}), "a.0.-1", json!(2)),
            Ok(json!({"a": [[1, 2]]}))
        );
    }

    #[test]
    fn set_escaped_dot_is_part_of_the_key() {
        assert_eq!(
            set(
                Value::Null,
                r"metadata.labels.app\.kubernetes\.io/name",
                json!("x")
            ),
            Ok(json!({"metadata": {"labels": {"app.kubernetes.io/name": "x"}}}))
        );
    }

    #[test]
    fn set_colon_forces_an_object_key() {
        assert_eq!(set(Value::Null, "a.:0", json!(1)), Ok(json!({"a": {"0": 1}})));
    }

    #[test]
    fn set_replaces_a_scalar_parent() {
        assert_eq!(
            set(json!({"a": "text"}), "a.b", json!(1)),
            Ok(json!({"a": {"b": 1}}))
        );
    }

    #[test]
    fn set_rejects_what_sjson_rejects() {
        assert_eq!(set(json!({}), "", json!(1)), Err(SetPathError::EmptyPath));
        assert!(matches!(
            set(json!({"a": []}), "a.x", json!(1)),
            Err(SetPathError::NotAnIndex { .. })
        ));
        assert!(matches!(
            set(json!({}), "a.#.b", json!(1)),
            Err(SetPathError::ComplexPath { .. })
        ));
        assert!(matches!(
            set(json!({}), "a.99999999999", json!(1)),
            Err(SetPathError::IndexTooLarge { .. })
        ));
    }

    #[test]
    fn go_conversions_match_go_gjson() {
        let doc = r#"{"i":42,"neg":-7,"f":1.50,"e":1e3,"s":"a\"b","t":true,"n":null,"o":{"x":1},"bs":"True","z":0.5}"#;
        assert_eq!(go_string(&gjson::get(doc, "i")), "42");
        assert_eq!(go_string(&gjson::get(doc, "neg")), "-7");
        assert_eq!(go_string(&gjson::get(doc, "f")), "1.5");
        assert_eq!(go_string(&gjson::get(doc, "e")), "1000");
        assert_eq!(go_string(&gjson::get(doc, "s")), "a\"b");
        assert_eq!(go_string(&gjson::get(doc, "t")), "true");
        assert_eq!(go_string(&gjson::get(doc, "n")), "");
        assert_eq!(go_string(&gjson::get(doc, "o")), r#"{"x":1}"#);
        assert!(go_bool(&gjson::get(doc, "bs")));
        assert!(
            go_bool(&gjson::get(doc, "z")),
            "Go reads a non-zero number as true"
        );
        assert!(!go_bool(&gjson::get(doc, "n")));
        assert_eq!(go_float(&gjson::get(doc, "t")), 1.0);
        assert_eq!(go_float(&gjson::get(doc, "s")), 0.0);
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            "[a-z0-9.]{0,6}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[a-z0-9]{0,3}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn set_path_never_panics(doc in arb_json(), path in r"[a-z0-9.:\\#*-]{0,12}", v in arb_json()) {
            let mut doc = doc;
            let _ = set_path(&mut doc, &path, v);
        }

        #[test]
        fn a_set_value_reads_back(doc in arb_json(), keys in prop::collection::vec("[a-z]{1,4}", 1..4), v in arb_json()) {
            let path = keys.join(".");
            let mut doc = doc;
            // Only arrays on the way can refuse a non-numeric key; everything else must succeed.
            match set_path(&mut doc, &path, v.clone()) {
                Ok(()) => {
                    let pointer = format!("/{}", keys.join("/"));
                    prop_assert_eq!(doc.pointer(&pointer), Some(&v));
                }
                Err(e) => prop_assert!(matches!(e, SetPathError::NotAnIndex { .. }), "{}", e),
            }
        }

        #[test]
        fn sjson_set_then_gjson_get_round_trips(doc in arb_json(), keys in prop::collection::vec("[a-z]{1,4}|[0-3]", 1..4), v in arb_json()) {
            let path = keys.join(".");
            let mut doc = doc;
            if set_path(&mut doc, &path, v.clone()).is_ok() {
                let text = doc.to_string();
                let found = gjson::get(&text, &path);
                prop_assert!(found.exists());
                prop_assert_eq!(serde_json::from_str::<Value>(found.json()).ok(), Some(v.clone()));
                // The parsed-document fast path agrees with gjson on the text.
                prop_assert_eq!(get_simple(&doc, &path), Some(Some(&v)));
            }
        }

        #[test]
        fn get_simple_agrees_with_gjson(doc in arb_json(), path in "[a-c0-2]{1,2}(\\.[a-c0-2]{1,2}){0,3}") {
            let text = doc.to_string();
            let found = gjson::get(&text, &path);
            match get_simple(&doc, &path) {
                Some(Some(v)) => {
                    prop_assert!(found.exists());
                    prop_assert_eq!(serde_json::from_str::<Value>(found.json()).ok(), Some(v.clone()));
                }
                Some(None) => prop_assert!(!found.exists()),
                None => {}
            }
        }
    }
}
