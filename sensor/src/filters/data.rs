//! `filters.data`: comparisons of values found in the event's JSON data, with upstream's semantics.
//!
//! Each filter reads `path` (a gjson path) from the data and compares it, by `type`, with its
//! `value` list, any one of which may match:
//! - `string`: every value is a Go regular expression matched unanchored against the text;
//!   `comparator` `=` (default) passes on a match, `!=` on a non-match, anything else never passes;
//! - `number`: values are decimals compared with `>=`, `>`, `=` (default), `!=`, `<`, `<=`;
//! - `bool`: values are read as Go's `strconv.ParseBool` does; the comparator is ignored.
//!
//! Filters combine with `dataLogicalOperator`: `and` (default, anything other than `or`) or `or`.
//! Upstream's error rules are kept: a missing path, an empty value list, an unparsable value or an
//! unknown type is an *error*. With `and` the first error fails the whole set; with `or` errors are
//! collected and the set still passes when a later filter passes. Event without data: passes.
//!
//! `template` (a Go template, see [`sluice_template`]) is rendered over `.Input` = the value found
//! (as text) before comparing; its output is then compared as a string. A template that does not
//! parse, fails to render, or renders empty or `<no value>` is an error, as upstream.

use regex::Regex;
use sluice_crds::sensor::DataFilter;

use super::regex::compile_go_regex;
use std::borrow::Cow;

use super::view::{DataView, Found};
use super::{FilterError, LogicalOperator};
use crate::jsonpath::{
    go_bool, go_bool_of, go_float, go_float_of, go_parse_bool, go_parse_float, go_string, go_string_of,
    GjsonPath,
};

/// How a filter's value is compared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Comparator {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    /// A comparator upstream does not know; it never matches (upstream does not report it).
    Other,
}

impl Comparator {
    fn parse(text: Option<&str>) -> Self {
        match text.unwrap_or_default() {
            "" | "=" => Comparator::Eq,
            "!=" => Comparator::Ne,
            ">" => Comparator::Gt,
            ">=" => Comparator::Ge,
            "<" => Comparator::Lt,
            "<=" => Comparator::Le,
            _ => Comparator::Other,
        }
    }
}

/// The values of one filter, parsed once for its type. A value that does not parse keeps its error,
/// reported only when evaluation reaches it, as upstream.
#[derive(Clone, Debug)]
enum Values {
    Bool(Vec<Result<bool, FilterError>>),
    Number(Vec<Result<f64, FilterError>>),
    String(Vec<Result<Regex, FilterError>>),
    UnknownType(String),
}

/// One `filters.data` entry, ready to evaluate.
#[derive(Clone, Debug)]
pub struct CompiledDataFilter {
    path: String,
    gjson: GjsonPath,
    values: Values,
    value_count: usize,
    comparator: Comparator,
    template: Option<Result<sluice_template::Template, sluice_template::CompileError>>,
}

impl CompiledDataFilter {
    /// Parses the filter's values for its type. Never fails: problems surface when it is evaluated.
    pub fn new(filter: &DataFilter) -> Self {
        let path = filter.path.clone();
        let values = match filter.type_.as_str() {
            "bool" => Values::Bool(
                filter
                    .value
                    .iter()
                    .map(|v| {
                        go_parse_bool(v).ok_or_else(|| FilterError::InvalidBool {
                            path: path.clone(),
                            value: v.clone(),
                        })
                    })
                    .collect(),
            ),
            "number" => Values::Number(
                filter
                    .value
                    .iter()
                    .map(|v| {
                        go_parse_float(v).ok_or_else(|| FilterError::InvalidNumber {
                            path: path.clone(),
                            value: v.clone(),
                        })
                    })
                    .collect(),
            ),
            "string" => Values::String(
                filter
                    .value
                    .iter()
                    .map(|v| {
                        compile_go_regex(v).map_err(|source| FilterError::InvalidRegex {
                            path: path.clone(),
                            value: v.clone(),
                            source,
                        })
                    })
                    .collect(),
            ),
            other => Values::UnknownType(other.to_owned()),
        };
        Self {
            gjson: GjsonPath::new(&path),
            path,
            values,
            value_count: filter.value.len(),
            comparator: Comparator::parse(filter.comparator.as_deref()),
            template: filter
                .template
                .as_deref()
                .filter(|t| !t.is_empty())
                .map(sluice_template::compile),
        }
    }

    /// The gjson path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Problems visible without an event (bad values, unknown type, a template that does not
    /// parse), for `sluice validate` and a startup warning.
    pub fn static_problems(&self) -> Vec<FilterError> {
        let mut out = Vec::new();
        if let Some(Err(e)) = &self.template {
            out.push(FilterError::Template {
                path: self.path.clone(),
                reason: e.to_string(),
            });
        }
        match &self.values {
            Values::Bool(v) => out.extend(v.iter().filter_map(|r| r.as_ref().err().cloned())),
            Values::Number(v) => out.extend(v.iter().filter_map(|r| r.as_ref().err().cloned())),
            Values::String(v) => out.extend(v.iter().filter_map(|r| r.as_ref().err().cloned())),
            Values::UnknownType(ty) => out.push(FilterError::UnknownType {
                path: self.path.clone(),
                ty: ty.clone(),
            }),
        }
        out
    }

    /// `Ok(true)` when one of the values matches, `Ok(false)` when none does, `Err` at the first
    /// problem met on the way (upstream's order: path, values, template, type, each value in turn).
    pub(crate) fn evaluate(&self, data: &DataView<'_>) -> Result<bool, FilterError> {
        self.evaluate_seen(data, None)
    }

    /// [`Self::evaluate`], recording the value compared (after the template) in `seen` when given
    /// (`sluice sensor test` and the debug verdicts; the hot path passes `None` and allocates
    /// nothing for it).
    pub(crate) fn evaluate_seen(
        &self,
        data: &DataView<'_>,
        seen: Option<&mut Option<String>>,
    ) -> Result<bool, FilterError> {
        let Some(found) = data.get(&self.gjson) else {
            return Err(FilterError::PathNotFound {
                path: self.path.clone(),
            });
        };
        if self.value_count == 0 {
            return Err(FilterError::NoValues {
                path: self.path.clone(),
            });
        }
        // The common case reads the parsed value directly; gjson over JSON text is kept for complex
        // paths and template output (both readings agree: see `jsonpath`'s property test).
        let text: String;
        let actual = match (&found, &self.template) {
            (Found::Parsed(value), None) => Actual::Parsed(value),
            (_, None) => {
                text = found.raw().into_owned();
                Actual::Gjson(gjson::parse(&text))
            }
            (_, Some(template)) => {
                let template = template.as_ref().map_err(|e| FilterError::Template {
                    path: self.path.clone(),
                    reason: e.to_string(),
                })?;
                let input = go_string(&gjson::parse(&found.raw()));
                let out = template
                    .render_input(&serde_json::Value::String(input))
                    .map_err(|e| FilterError::Template {
                        path: self.path.clone(),
                        reason: e.to_string(),
                    })?;
                if out.is_empty() || out == "<no value>" {
                    return Err(FilterError::Template {
                        path: self.path.clone(),
                        reason: format!("`{}` rendered an empty string or no value", template.source()),
                    });
                }
                // Upstream compares the output as a JSON string.
                text = serde_json::Value::String(out).to_string();
                Actual::Gjson(gjson::parse(&text))
            }
        };
        if let Some(seen) = seen {
            if seen.is_none() {
                *seen = Some(actual.string().into_owned());
            }
        }
        match &self.values {
            Values::Bool(values) => {
                let actual = actual.bool();
                for value in values {
                    if *value.as_ref().map_err(Clone::clone)? == actual {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Values::Number(values) => {
                let actual = actual.float();
                for value in values {
                    let wanted = *value.as_ref().map_err(Clone::clone)?;
                    let matched = match self.comparator {
                        Comparator::Eq => actual == wanted,
                        Comparator::Ne => actual != wanted,
                        Comparator::Gt => actual > wanted,
                        Comparator::Ge => actual >= wanted,
                        Comparator::Lt => actual < wanted,
                        Comparator::Le => actual <= wanted,
                        Comparator::Other => false,
                    };
                    if matched {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Values::String(values) => {
                let actual = actual.string();
                for value in values {
                    let is_match = value.as_ref().map_err(Clone::clone)?.is_match(&actual);
                    let matched = match self.comparator {
                        Comparator::Eq => is_match,
                        Comparator::Ne => !is_match,
                        _ => false,
                    };
                    if matched {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Values::UnknownType(ty) => Err(FilterError::UnknownType {
                path: self.path.clone(),
                ty: ty.clone(),
            }),
        }
    }
}

/// The value a data filter compares, read with Go gjson's conversions.
enum Actual<'a> {
    /// Straight from the parsed data.
    Parsed(&'a serde_json::Value),
    /// gjson over JSON text (a complex path's result, a template's output).
    Gjson(gjson::Value<'a>),
}

impl Actual<'_> {
    fn string(&self) -> Cow<'_, str> {
        match self {
            Actual::Parsed(v) => go_string_of(v),
            Actual::Gjson(v) => Cow::Owned(go_string(v)),
        }
    }

    fn float(&self) -> f64 {
        match self {
            Actual::Parsed(v) => go_float_of(v),
            Actual::Gjson(v) => go_float(v),
        }
    }

    fn bool(&self) -> bool {
        match self {
            Actual::Parsed(v) => go_bool_of(v),
            Actual::Gjson(v) => go_bool(v),
        }
    }
}

/// What a set of data filters decided, and the errors met (empty when it passed under `or`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DataOutcome {
    /// True when the event passes.
    pub passed: bool,
    /// Problems met while deciding. Under `and` at most one (the first).
    pub errors: Vec<FilterError>,
}

/// Evaluates `filters` against the event data `data` (CloudEvent data as JSON text; `None` when the
/// event has no data, which passes, as upstream).
pub fn evaluate_data_filters(
    filters: &[CompiledDataFilter],
    operator: LogicalOperator,
    data: Option<&DataView<'_>>,
) -> DataOutcome {
    if filters.is_empty() {
        return DataOutcome {
            passed: true,
            errors: Vec::new(),
        };
    }
    let Some(data) = data else {
        return DataOutcome {
            passed: true,
            errors: Vec::new(),
        };
    };
    match operator {
        LogicalOperator::And => {
            for filter in filters {
                match filter.evaluate(data) {
                    Ok(true) => {}
                    Ok(false) => {
                        return DataOutcome {
                            passed: false,
                            errors: Vec::new(),
                        }
                    }
                    Err(error) => {
                        return DataOutcome {
                            passed: false,
                            errors: vec![error],
                        }
                    }
                }
            }
            DataOutcome {
                passed: true,
                errors: Vec::new(),
            }
        }
        LogicalOperator::Or => {
            let mut errors = Vec::new();
            for filter in filters {
                match filter.evaluate(data) {
                    // Upstream returns on the first pass and drops errors met before it.
                    Ok(true) => {
                        return DataOutcome {
                            passed: true,
                            errors: Vec::new(),
                        }
                    }
                    Ok(false) => {}
                    Err(error) => errors.push(error),
                }
            }
            DataOutcome {
                passed: false,
                errors,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(path: &str, ty: &str, values: &[&str], comparator: Option<&str>) -> CompiledDataFilter {
        CompiledDataFilter::new(&DataFilter {
            path: path.into(),
            type_: ty.into(),
            value: values.iter().map(|v| v.to_string()).collect(),
            comparator: comparator.map(Into::into),
            template: None,
        })
    }

    fn eval_str(filters: &[CompiledDataFilter], op: LogicalOperator, data: Option<&str>) -> DataOutcome {
        let value: Option<serde_json::Value> = data.map(|d| serde_json::from_str(d).unwrap_or_default());
        let view = value.as_ref().map(DataView::new);
        evaluate_data_filters(filters, op, view.as_ref())
    }

    fn passes(filters: &[CompiledDataFilter], op: LogicalOperator, data: &str) -> bool {
        eval_str(filters, op, Some(data)).passed
    }

    const DATA: &str = r#"{"body":{"action":"opened","count":5,"ratio":0.5,"draft":false,"name":"a.b","tags":["x","y"],"flag":"True"}}"#;

    #[test]
    fn string_values_are_unanchored_regexes_any_of() {
        let and = LogicalOperator::And;
        assert!(passes(
            &[filter("body.action", "string", &["open"], None)],
            and,
            DATA
        ));
        assert!(passes(
            &[filter("body.action", "string", &["^closed$", "^opened$"], None)],
            and,
            DATA
        ));
        assert!(!passes(
            &[filter("body.action", "string", &["^open$"], None)],
            and,
            DATA
        ));
        assert!(passes(
            &[filter("body.action", "string", &["closed"], Some("!="))],
            and,
            DATA
        ));
        assert!(!passes(
            &[filter("body.action", "string", &["opened"], Some("!="))],
            and,
            DATA
        ));
        assert!(!passes(
            &[filter("body.action", "string", &["opened"], Some(">"))],
            and,
            DATA
        ));
    }

    #[test]
    fn number_comparators() {
        let and = LogicalOperator::And;
        let cases = [
            (">=", "5", true),
            (">", "5", false),
            (">", "4.5", true),
            ("=", "5.0", true),
            ("!=", "5", false),
            ("<", "6", true),
            ("<=", "4", false),
            ("~", "5", false),
        ];
        for (comparator, value, expected) in cases {
            let f = filter("body.count", "number", &[value], Some(comparator));
            assert_eq!(passes(&[f], and, DATA), expected, "count {comparator} {value}");
        }
        assert!(passes(&[filter("body.count", "number", &["5"], None)], and, DATA));
        assert!(passes(
            &[filter("body.ratio", "number", &["0.5"], None)],
            and,
            DATA
        ));
    }

    #[test]
    fn bool_values_use_go_parsing_and_go_truthiness() {
        let and = LogicalOperator::And;
        assert!(passes(
            &[filter("body.draft", "bool", &["false"], None)],
            and,
            DATA
        ));
        assert!(passes(&[filter("body.draft", "bool", &["F"], None)], and, DATA));
        assert!(passes(&[filter("body.flag", "bool", &["true"], None)], and, DATA));
        let out = eval_str(&[filter("body.draft", "bool", &["nope"], None)], and, Some(DATA));
        assert!(!out.passed);
        assert!(matches!(out.errors.as_slice(), [FilterError::InvalidBool { .. }]));
    }

    #[test]
    fn missing_path_and_empty_values_are_errors() {
        let and = LogicalOperator::And;
        let out = eval_str(&[filter("body.nope", "string", &["x"], None)], and, Some(DATA));
        assert!(!out.passed);
        assert!(matches!(out.errors.as_slice(), [FilterError::PathNotFound { path }] if path == "body.nope"));
        let out = eval_str(&[filter("body.action", "string", &[], None)], and, Some(DATA));
        assert!(matches!(out.errors.as_slice(), [FilterError::NoValues { .. }]));
        let out = eval_str(&[filter("body.action", "date", &["x"], None)], and, Some(DATA));
        assert!(matches!(out.errors.as_slice(), [FilterError::UnknownType { ty, .. }] if ty == "date"));
    }

    fn templated(template: &str, ty: &str, value: &str) -> CompiledDataFilter {
        CompiledDataFilter::new(&DataFilter {
            path: "body.action".into(),
            type_: ty.into(),
            value: vec![value.into()],
            comparator: None,
            template: Some(template.into()),
        })
    }

    #[test]
    fn template_renders_the_value_before_comparing() {
        let and = LogicalOperator::And;
        assert!(passes(
            &[templated("{{ .Input | upper }}", "string", "^OPENED$")],
            and,
            DATA
        ));
        assert!(!passes(
            &[templated("{{ .Input | upper }}", "string", "^opened$")],
            and,
            DATA
        ));
        assert!(passes(&[templated("{{ len .Input }}", "number", "6")], and, DATA));
        // Renders empty: an error, as upstream.
        let out = eval_str(
            &[templated("{{ if false }}x{{ end }}", "string", "x")],
            and,
            Some(DATA),
        );
        assert!(matches!(out.errors.as_slice(), [FilterError::Template { .. }]));
        // Does not parse: an error at evaluation and a static problem.
        let bad = templated("{{ .Input", "string", "x");
        assert_eq!(bad.static_problems().len(), 1);
        let out = eval_str(&[bad], and, Some(DATA));
        assert!(!out.passed);
        assert!(matches!(out.errors.as_slice(), [FilterError::Template { .. }]));
    }

    #[test]
    fn or_passes_on_any_and_drops_earlier_errors() {
        let or = LogicalOperator::Or;
        let filters = [
            filter("body.nope", "string", &["x"], None),
            filter("body.count", "number", &["5"], None),
        ];
        let out = eval_str(&filters, or, Some(DATA));
        assert_eq!(
            out,
            DataOutcome {
                passed: true,
                errors: vec![]
            }
        );
        let filters = [
            filter("body.nope", "string", &["x"], None),
            filter("body.count", "number", &["6"], None),
        ];
        let out = eval_str(&filters, or, Some(DATA));
        assert!(!out.passed);
        assert_eq!(out.errors.len(), 1);
    }

    #[test]
    fn and_needs_all() {
        let and = LogicalOperator::And;
        let filters = [
            filter("body.action", "string", &["opened"], None),
            filter("body.count", "number", &["6"], None),
        ];
        assert!(!passes(&filters, and, DATA));
        let filters = [
            filter("body.action", "string", &["opened"], None),
            filter("body.count", "number", &["5"], None),
        ];
        assert!(passes(&filters, and, DATA));
    }

    #[test]
    fn no_data_or_no_filters_pass() {
        let f = filter("body.action", "string", &["x"], None);
        assert!(eval_str(&[f], LogicalOperator::And, None).passed);
        assert!(eval_str(&[], LogicalOperator::And, Some(DATA)).passed);
    }

    #[test]
    fn gjson_paths_reach_arrays_and_escaped_keys() {
        let and = LogicalOperator::And;
        assert!(passes(
            &[filter("body.tags.1", "string", &["^y$"], None)],
            and,
            DATA
        ));
        assert!(passes(
            &[filter("body.tags.#", "number", &["2"], None)],
            and,
            DATA
        ));
        let data = r#"{"a.b":"dot"}"#;
        assert!(passes(&[filter(r"a\.b", "string", &["dot"], None)], and, data));
    }
}
