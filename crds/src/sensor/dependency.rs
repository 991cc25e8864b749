//! What a sensor listens for: its event dependencies, and the filters and transforms applied to
//! each dependency's events before they can take part in a trigger.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::serde_util::null_as_default;

/// One event the sensor waits for, named so trigger `conditions` and parameters can refer to it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventDependency {
    /// The dependency's name, unique within the sensor. Letters, digits, `-`, `_` and `.` only, so it
    /// can be used in trigger `conditions`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The `metadata.name` of the EventSource that produces the event.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub event_source_name: String,
    /// The event's name inside that EventSource (the key under e.g. `spec.webhook`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub event_name: String,
    /// Conditions an event must meet to count for this dependency. Unset: every event counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filters: Option<EventDependencyFilter>,
    /// A jq program or Lua script rewriting the event's data before filters see it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transform: Option<EventDependencyTransformer>,
    /// How the kinds of filter (time, context, data, exprs, script) combine: `and` (default) or `or`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filters_logical_operator: Option<String>,
}

/// The filters of one dependency. Each kind that is set must pass (or one of them, with
/// `filtersLogicalOperator: or`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventDependencyFilter {
    /// A daily time-of-day window the event must arrive in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<TimeFilter>,
    /// Exact values the CloudEvent attributes (type, source, subject, …) must have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<EventContext>,
    /// Comparisons of values found in the event's JSON data.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub data: Vec<DataFilter>,
    /// Boolean expressions over named values taken from the event's JSON data.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub exprs: Vec<ExprFilter>,
    /// How the `data` filters combine: `and` (default) or `or`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_logical_operator: Option<String>,
    /// How the `exprs` filters combine: `and` (default) or `or`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expr_logical_operator: Option<String>,
    /// A Lua script that receives the event as `event` and returns true to keep it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<String>,
    /// Sluice extension: a CEL expression over `data` (the event's JSON data) and `context` (its
    /// CloudEvent attributes) that must evaluate to `true`, e.g. `data.body.action == "opened"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cel: Option<String>,
}

/// A time-of-day window, evaluated each day. Events outside it are ignored.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TimeFilter {
    /// Start of the window, `HH:MM:SS`, inclusive.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub start: String,
    /// End of the window, `HH:MM:SS`, exclusive. When earlier than `start` the window spans midnight.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stop: String,
    /// IANA time zone the times are in, e.g. `Europe/Berlin`. Default UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
}

/// CloudEvent attribute values an event must match exactly. Unset or empty attributes are not checked.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventContext {
    /// The event id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The event source URI (for Argo-style events: the EventSource name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The CloudEvents spec version, e.g. `1.0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub specversion: Option<String>,
    /// The event type (for Argo-style events: the EventSource kind, e.g. `webhook`).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// The media type of the event data, e.g. `application/json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datacontenttype: Option<String>,
    /// The event subject (for Argo-style events: the event name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The event time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
}

/// A comparison of one value in the event's JSON data with one or more given values.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataFilter {
    /// Dotted path into the event data (gjson syntax: `body.action`, wildcards `*` and `?`,
    /// `\.` for a literal dot).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// How to read the value: `string`, `number` or `bool`.
    #[serde(rename = "type", default, skip_serializing_if = "String::is_empty")]
    pub type_: String,
    /// Values to compare with; the filter passes when any one matches. Strings are regular
    /// expressions, numbers decimal, booleans `true`/`false`.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub value: Vec<String>,
    /// `=` (default), `!=`, `>`, `>=`, `<` or `<=`. The ordering comparators apply to numbers only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comparator: Option<String>,
    /// A Go template applied to the value found at `path` before comparing, e.g.
    /// `{{ b64dec .Input }}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
}

/// A boolean expression (govaluate syntax) over values taken from the event's JSON data.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExprFilter {
    /// The expression, e.g. `a == "push" && b > 3`, using the names declared in `fields`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub expr: String,
    /// The values the expression may use, each read from a path in the event data.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub fields: Vec<PayloadField>,
}

/// A named value read from the event data for an [`ExprFilter`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PayloadField {
    /// Dotted gjson path into the event data.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// The name the expression uses for the value.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// A rewrite of the event data before filtering: a jq program or a Lua script (one of them).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventDependencyTransformer {
    /// A jq program whose output replaces the event data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jq: Option<String>,
    /// A Lua script that receives the event as `event` and returns the new event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<String>,
}
