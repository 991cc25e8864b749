//! Runtime values: JSON's types, with every number an `f64` (as govaluate and gjson read them).

use std::collections::BTreeMap;
use std::fmt;

/// A value an expression reads or produces.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `nil` / `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// Every number, as a 64-bit float.
    Number(f64),
    /// Text.
    String(String),
    /// A list.
    Array(Vec<Value>),
    /// A JSON object.
    Object(BTreeMap<String, Value>),
}

impl Value {
    /// The type's name, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "nil",
            Value::Bool(_) => "bool",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        }
    }

    /// The value as JSON (a number that is not finite becomes `null`).
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Number(n) => serde_json::Number::from_f64(*n)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            Value::String(s) => serde_json::Value::String(s.clone()),
            Value::Array(a) => serde_json::Value::Array(a.iter().map(Value::to_json).collect()),
            Value::Object(o) => {
                serde_json::Value::Object(o.iter().map(|(k, v)| (k.clone(), v.to_json())).collect())
            }
        }
    }
}

impl From<&serde_json::Value> for Value {
    fn from(json: &serde_json::Value) -> Self {
        match json {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => Value::Number(n.as_f64().unwrap_or(0.0)),
            serde_json::Value::String(s) => Value::String(s.clone()),
            serde_json::Value::Array(a) => Value::Array(a.iter().map(Value::from).collect()),
            serde_json::Value::Object(o) => {
                Value::Object(o.iter().map(|(k, v)| (k.clone(), Value::from(v))).collect())
            }
        }
    }
}

impl From<serde_json::Value> for Value {
    fn from(json: serde_json::Value) -> Self {
        Value::from(&json)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

impl From<f64> for Value {
    fn from(n: f64) -> Self {
        Value::Number(n)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::String(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::String(s)
    }
}

/// Writes a number as Go's `%v` does for the common cases: whole numbers without a fraction.
pub(crate) fn write_number(f: &mut impl fmt::Write, n: f64) -> fmt::Result {
    if n.is_finite() && n.fract() == 0.0 && n.abs() < 1e21 {
        write!(f, "{}", n as i128)
    } else {
        write!(f, "{n}")
    }
}

impl fmt::Display for Value {
    /// Text as govaluate concatenates it: strings bare, numbers as Go prints them, the rest as JSON.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("<nil>"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Number(n) => write_number(f, *n),
            Value::String(s) => f.write_str(s),
            Value::Array(_) | Value::Object(_) => write!(f, "{}", self.to_json()),
        }
    }
}
