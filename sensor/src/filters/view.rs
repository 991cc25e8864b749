//! The event data as filters read it: gjson paths on the parsed JSON where the path is plain
//! (see [`crate::jsonpath::get_simple`]), else gjson on the JSON text, serialized once per event.

use std::borrow::Cow;
use std::cell::OnceCell;

use serde_json::Value;

use crate::jsonpath::GjsonPath;

/// One event's data, shared by all filters of a dependency.
pub struct DataView<'a> {
    value: &'a Value,
    text: OnceCell<String>,
}

/// What a path found.
pub enum Found<'a> {
    /// A value in the parsed data.
    Parsed(&'a Value),
    /// The raw JSON gjson returned for a complex path.
    Raw(String),
}

impl Found<'_> {
    /// The raw JSON of the value, for gjson's Go-compatible conversions.
    pub fn raw(&self) -> Cow<'_, str> {
        match self {
            Found::Parsed(v) => Cow::Owned(v.to_string()),
            Found::Raw(raw) => Cow::Borrowed(raw),
        }
    }

    /// The value as the expression engine sees it (upstream binds gjson's `Result.Value()`).
    pub fn to_expr_value(&self) -> sluice_expr::Value {
        match self {
            Found::Parsed(v) => sluice_expr::Value::from(*v),
            Found::Raw(raw) => {
                let parsed = gjson::parse(raw);
                match parsed.kind() {
                    gjson::Kind::String => sluice_expr::Value::String(parsed.str().to_owned()),
                    gjson::Kind::Number => sluice_expr::Value::Number(parsed.f64()),
                    gjson::Kind::True => sluice_expr::Value::Bool(true),
                    gjson::Kind::False => sluice_expr::Value::Bool(false),
                    gjson::Kind::Null => sluice_expr::Value::Null,
                    gjson::Kind::Array | gjson::Kind::Object => serde_json::from_str::<Value>(raw)
                        .map(sluice_expr::Value::from)
                        .unwrap_or(sluice_expr::Value::Null),
                }
            }
        }
    }
}

impl<'a> DataView<'a> {
    /// A view of `value`.
    pub fn new(value: &'a Value) -> Self {
        Self {
            value,
            text: OnceCell::new(),
        }
    }

    /// The data as parsed JSON.
    pub fn value(&self) -> &'a Value {
        self.value
    }

    /// The data as JSON text (serialized on first use).
    pub fn text(&self) -> &str {
        self.text.get_or_init(|| self.value.to_string())
    }

    /// gjson's `Get(data, path)`; `None` when the path does not exist.
    pub fn get(&self, path: &GjsonPath) -> Option<Found<'a>> {
        match path.get_parsed(self.value) {
            Some(found) => found.map(Found::Parsed),
            None => {
                let found = gjson::get(self.text(), path.as_str());
                found.exists().then(|| Found::Raw(found.json().to_owned()))
            }
        }
    }
}
