//! Dependency filters: does an event count for a dependency?
//!
//! All five upstream kinds — [`exprs`], [`data`], `context` (exact CloudEvent attributes), [`time`]
//! and [`script`] (Lua) — plus the Sluice extension [`cel`], combined with the dependency's
//! `filtersLogicalOperator` exactly as upstream combines them:
//! - `and` (default): the kinds are evaluated in upstream's order (exprs, data, context, time,
//!   script, then cel); the first *error* fails the event with that error; otherwise every present
//!   kind must pass;
//! - `or`: a kind counts only when it is present; errors are collected and reported alongside the
//!   decision — except a `script` error, which fails the event at once (upstream's rule).
//!
//! An error while evaluating always counts as *false*, as upstream. The result follows upstream's
//! shape: a pass/fail decision plus the errors met. An event that fails with errors is logged at warn
//! ("discarded due to a filter error"); one that passes with errors (possible under `or`) is logged
//! at warn too; a plain fail at debug. [`DependencyFilter::explain`] also records, per filter, the
//! verdict and the value it saw (for `sluice sensor test`). Transforms (see [`crate::transform`])
//! run before the filters: [`DependencyFilter::apply`] does both. All pure; no I/O.

pub mod cel;
pub mod data;
pub mod exprs;
mod regex;
pub mod script;
pub mod time;
mod view;

use serde::Serialize;
use sluice_crds::sensor::{EventContext, EventDependency, EventDependencyFilter};
use sluice_eventbus::Event;

use crate::eval::EvalLimits;
use crate::transform::{Transform, TransformError};

pub use self::cel::CompiledCelFilter;
pub use data::{evaluate_data_filters, CompiledDataFilter, DataOutcome};
pub use exprs::{evaluate_expr_filters, CompiledExprFilter, ExprOutcome};
pub use regex::compile_go_regex;
pub use script::CompiledScriptFilter;
pub use time::CompiledTimeFilter;
pub use view::DataView;

/// How several filters combine. Upstream treats every value other than `or` as `and`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogicalOperator {
    /// All must pass (the default).
    #[default]
    And,
    /// One must pass.
    Or,
}

impl LogicalOperator {
    /// Reads `dataLogicalOperator` / `exprLogicalOperator` / `filtersLogicalOperator`: `or` is or,
    /// anything else and.
    pub fn parse(text: Option<&str>) -> Self {
        match text {
            Some("or") => LogicalOperator::Or,
            _ => LogicalOperator::And,
        }
    }
}

/// The kinds of filter, as named in the manifest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum FilterKind {
    /// `filters.exprs`.
    Exprs,
    /// `filters.data`.
    Data,
    /// `filters.context`.
    Context,
    /// `filters.time`.
    Time,
    /// `filters.script`.
    Script,
    /// `filters.cel` (Sluice extension).
    Cel,
}

impl FilterKind {
    /// The field name, as in the manifest.
    pub fn field(self) -> &'static str {
        match self {
            FilterKind::Exprs => "exprs",
            FilterKind::Data => "data",
            FilterKind::Context => "context",
            FilterKind::Time => "time",
            FilterKind::Script => "script",
            FilterKind::Cel => "cel",
        }
    }
}

/// A problem met while evaluating a filter. Under upstream's rules each one makes its filter false.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum FilterError {
    /// A path is not in the event data.
    #[error("failed to evaluate the filter: path `{path}` does not exist in the event data")]
    PathNotFound {
        /// The gjson path.
        path: String,
    },
    /// The data filter has no values to compare with.
    #[error("failed to evaluate the data filter on `{path}`: no values specified")]
    NoValues {
        /// The gjson path.
        path: String,
    },
    /// A `bool` filter value is not a boolean.
    #[error(
        "failed to evaluate the data filter on `{path}`: `{value}` is not a boolean (use true or false)"
    )]
    InvalidBool {
        /// The gjson path.
        path: String,
        /// The value as written.
        value: String,
    },
    /// A `number` filter value is not a number.
    #[error("failed to evaluate the data filter on `{path}`: `{value}` is not a number")]
    InvalidNumber {
        /// The gjson path.
        path: String,
        /// The value as written.
        value: String,
    },
    /// A `string` filter value is not a valid regular expression.
    #[error("failed to compile the data filter regex `{value}` on `{path}`")]
    InvalidRegex {
        /// The gjson path.
        path: String,
        /// The pattern as written.
        value: String,
        /// Why it does not compile.
        source: ::regex::Error,
    },
    /// The data filter's `type` is not `string`, `number` or `bool`.
    #[error("failed to evaluate the data filter on `{path}`: unsupported type `{ty}` (use string, number or bool)")]
    UnknownType {
        /// The gjson path.
        path: String,
        /// The type as written.
        ty: String,
    },
    /// The data filter's `template` did not parse, failed, or rendered nothing.
    #[error("failed to apply the data filter template on `{path}`: {reason}")]
    Template {
        /// The gjson path.
        path: String,
        /// Why.
        reason: String,
    },
    /// An `exprs` expression did not compile or failed to evaluate.
    #[error("failed to evaluate the expression `{expr}`: {reason}")]
    Expr {
        /// The expression as written.
        expr: String,
        /// Why.
        reason: String,
    },
    /// The time filter's start, stop or timezone is invalid.
    #[error("failed to evaluate the time filter: {reason}")]
    Time {
        /// Why.
        reason: String,
    },
    /// The script filter failed to compile or run.
    #[error("failed to evaluate the script filter: {reason}")]
    Script {
        /// Why.
        reason: String,
    },
    /// The CEL filter failed to compile or evaluate.
    #[error("failed to evaluate the CEL filter `{expr}`: {reason}")]
    Cel {
        /// The expression as written.
        expr: String,
        /// Why.
        reason: String,
    },
    /// The dependency's transform failed, so no filter ran (the event does not count).
    #[error("failed to transform the event before filtering: {reason}")]
    Transform {
        /// Why.
        reason: String,
    },
    /// The evaluation of the dependency's script or jq program did not finish normally (see
    /// [`crate::eval::EvalPool`]); no decision was made.
    #[error("failed to evaluate the dependency's filters: {reason}")]
    Evaluate {
        /// Why.
        reason: String,
    },
}

/// One filter's verdict on one event, with the value it looked at.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FilterVerdict {
    /// Which kind of filter.
    pub kind: FilterKind,
    /// Its position in the list (`data`, `exprs`), for a field path such as `filters.data[1]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// What it checks: a path, an expression, a window.
    pub subject: String,
    /// The value it saw (after a data filter's template), when it got that far.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seen: Option<String>,
    /// `pass`, `fail`, `skipped` or `error`.
    pub result: &'static str,
    /// The error, for `error`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What a dependency's filters decided about one event.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FilterOutcome {
    /// True when the event counts for the dependency.
    pub passed: bool,
    /// Problems met while deciding (see the module doc for how they are logged).
    pub errors: Vec<FilterError>,
    /// Per-filter verdicts; filled only by [`DependencyFilter::explain`].
    pub verdicts: Vec<FilterVerdict>,
}

/// An event after the dependency's transform and filters.
#[derive(Clone, Debug)]
pub struct Applied {
    /// The event as transformed (the one to hold and to read parameters from); `None` when the
    /// transform failed.
    pub event: Option<Event>,
    /// The filters' decision on the transformed event.
    pub outcome: FilterOutcome,
}

/// A problem found in a dependency's filters or transform without any event (for
/// `sluice validate` and a startup warning), with the field path under the dependency.
#[derive(Clone, Debug, PartialEq)]
pub struct StaticProblem {
    /// Field path under the dependency, e.g. `filters.exprs[0].expr`.
    pub field: String,
    /// What is wrong.
    pub reason: String,
}

/// All filters of one dependency, compiled once.
#[derive(Clone, Debug, Default)]
pub struct DependencyFilter {
    operator: LogicalOperator,
    exprs: Option<(Vec<CompiledExprFilter>, LogicalOperator)>,
    data: Option<(Vec<CompiledDataFilter>, LogicalOperator)>,
    context: Option<EventContext>,
    time: Option<CompiledTimeFilter>,
    script: Option<CompiledScriptFilter>,
    cel: Option<CompiledCelFilter>,
    transform: Option<Result<Transform, TransformError>>,
}

impl DependencyFilter {
    /// Compiles the filters and the transform of `dependency`. No filters: every event passes.
    /// Never fails: problems are reported by [`Self::static_problems`] and count as false.
    pub fn new(dependency: &EventDependency) -> Self {
        let mut filter = Self::from_parts(
            dependency.filters.as_ref(),
            dependency.filters_logical_operator.as_deref(),
        );
        filter.transform = dependency.transform.as_ref().map(Transform::compile);
        filter
    }

    /// Compiles `filters` combined with `filters_logical_operator` (no transform).
    pub fn from_parts(
        filters: Option<&EventDependencyFilter>,
        filters_logical_operator: Option<&str>,
    ) -> Self {
        let operator = LogicalOperator::parse(filters_logical_operator);
        let Some(filters) = filters else {
            return Self {
                operator,
                ..Self::default()
            };
        };
        let data = (!filters.data.is_empty()).then(|| {
            (
                filters.data.iter().map(CompiledDataFilter::new).collect(),
                LogicalOperator::parse(filters.data_logical_operator.as_deref()),
            )
        });
        let exprs = (!filters.exprs.is_empty()).then(|| {
            (
                filters.exprs.iter().map(CompiledExprFilter::new).collect(),
                LogicalOperator::parse(filters.expr_logical_operator.as_deref()),
            )
        });
        Self {
            operator,
            exprs,
            data,
            context: filters.context.clone(),
            time: filters.time.as_ref().map(CompiledTimeFilter::new),
            script: filters
                .script
                .as_deref()
                .filter(|s| !s.is_empty())
                .map(CompiledScriptFilter::new),
            cel: filters
                .cel
                .as_deref()
                .filter(|s| !s.is_empty())
                .map(CompiledCelFilter::new),
            transform: None,
        }
    }

    /// Problems visible without an event (invalid values, expressions, templates, scripts, times,
    /// transforms), for a startup warning.
    pub fn static_problems(&self) -> Vec<FilterError> {
        self.located_problems().into_iter().map(|(_, e)| e).collect()
    }

    /// [`Self::static_problems`] with the field path (under the dependency) of each.
    pub fn problems(&self) -> Vec<StaticProblem> {
        self.located_problems()
            .into_iter()
            .map(|(field, e)| StaticProblem {
                field,
                reason: e.to_string(),
            })
            .collect()
    }

    fn located_problems(&self) -> Vec<(String, FilterError)> {
        let mut out = Vec::new();
        if let Some(Err(e)) = &self.transform {
            let field = match e {
                TransformError::Jq(_) => "transform.jq",
                _ => "transform.script",
            };
            out.push((
                field.to_owned(),
                FilterError::Transform {
                    reason: e.to_string(),
                },
            ));
        }
        if let Some((filters, _)) = &self.exprs {
            for (i, f) in filters.iter().enumerate() {
                if let Some(e) = f.compile_error() {
                    out.push((format!("filters.exprs[{i}].expr"), e));
                }
            }
        }
        if let Some((filters, _)) = &self.data {
            for (i, f) in filters.iter().enumerate() {
                for e in f.static_problems() {
                    let field = match &e {
                        FilterError::Template { .. } => "template",
                        FilterError::UnknownType { .. } => "type",
                        _ => "value",
                    };
                    out.push((format!("filters.data[{i}].{field}"), e));
                }
            }
        }
        if let Some(e) = self.time.as_ref().and_then(CompiledTimeFilter::static_problem) {
            out.push(("filters.time".to_owned(), e));
        }
        if let Some(e) = self
            .script
            .as_ref()
            .and_then(CompiledScriptFilter::static_problem)
        {
            out.push(("filters.script".to_owned(), e));
        }
        if let Some(e) = self.cel.as_ref().and_then(CompiledCelFilter::static_problem) {
            out.push(("filters.cel".to_owned(), e));
        }
        out
    }

    /// True when evaluating runs code (a Lua script filter, or a jq or Lua transform), which
    /// [`crate::eval::EvalPool`] then runs off the async runtime.
    pub fn runs_code(&self) -> bool {
        self.script.is_some() || matches!(&self.transform, Some(Ok(t)) if !t.is_identity())
    }

    /// The compiled transform (identity when there is none or it failed to compile).
    pub fn transform(&self) -> Option<&Result<Transform, TransformError>> {
        self.transform.as_ref()
    }

    /// Transforms `event` (see [`crate::transform`]) and decides whether the result counts. Call
    /// this once per delivery; hold [`Applied::event`], not the original.
    pub fn apply(&self, event: &Event) -> Applied {
        self.apply_with(event, false, &EvalLimits::default())
    }

    /// [`Self::apply`] with scripts and jq running under `limits`.
    pub fn apply_limited(&self, event: &Event, limits: &EvalLimits) -> Applied {
        self.apply_with(event, false, limits)
    }

    /// [`Self::apply`] recording per-filter verdicts (for `sluice sensor test`).
    pub fn apply_explained(&self, event: &Event) -> Applied {
        self.apply_with(event, true, &EvalLimits::default())
    }

    fn apply_with(&self, event: &Event, explain: bool, limits: &EvalLimits) -> Applied {
        let transformed = match &self.transform {
            None => Ok(event.clone()),
            Some(Ok(t)) => t.apply_limited(event, limits),
            Some(Err(e)) => Err(e.clone()),
        };
        match transformed {
            Ok(event) => {
                let view = event.data().map(DataView::new);
                let mut outcome = self.decide(&event, view.as_ref(), limits);
                if explain {
                    outcome.verdicts = self.verdicts(&event, view.as_ref(), limits);
                }
                Applied {
                    event: Some(event),
                    outcome,
                }
            }
            Err(e) => Applied {
                event: None,
                outcome: FilterOutcome {
                    passed: false,
                    errors: vec![FilterError::Transform {
                        reason: e.to_string(),
                    }],
                    verdicts: Vec::new(),
                },
            },
        }
    }

    /// Decides whether `event` counts for the dependency (filters only; see [`Self::apply`] for the
    /// transform).
    pub fn evaluate(&self, event: &Event) -> FilterOutcome {
        let view = event.data().map(DataView::new);
        self.decide(event, view.as_ref(), &EvalLimits::default())
    }

    /// [`Self::evaluate`] plus the verdict of each filter with the value it saw.
    pub fn explain(&self, event: &Event) -> FilterOutcome {
        let view = event.data().map(DataView::new);
        let limits = EvalLimits::default();
        let mut outcome = self.decide(event, view.as_ref(), &limits);
        outcome.verdicts = self.verdicts(event, view.as_ref(), &limits);
        outcome
    }

    fn decide(&self, event: &Event, data: Option<&DataView<'_>>, limits: &EvalLimits) -> FilterOutcome {
        let or = self.operator == LogicalOperator::Or;
        let mut errors = Vec::new();
        let fail = |errors: Vec<FilterError>| FilterOutcome {
            passed: false,
            errors,
            verdicts: Vec::new(),
        };

        let exprs = self
            .exprs
            .as_ref()
            .map(|(filters, op)| evaluate_expr_filters(filters, *op, data));
        if let Some(out) = &exprs {
            if !out.errors.is_empty() {
                if !or {
                    return fail(out.errors.clone());
                }
                errors.extend(out.errors.iter().cloned());
            }
        }
        let data_outcome = self
            .data
            .as_ref()
            .map(|(filters, op)| evaluate_data_filters(filters, *op, data));
        if let Some(out) = &data_outcome {
            if !out.errors.is_empty() {
                if !or {
                    return fail(out.errors.clone());
                }
                errors.extend(out.errors.iter().cloned());
            }
        }
        let context = self
            .context
            .as_ref()
            .map(|expected| context_matches(expected, event));
        let time = match self
            .time
            .as_ref()
            .map(|t| t.evaluate_seen(event_time(event), &mut None))
        {
            Some(Err(e)) if !or => return fail(vec![e]),
            Some(Err(e)) => {
                errors.push(e);
                Some(false)
            }
            Some(Ok(b)) => Some(b),
            None => None,
        };
        let script = match self
            .script
            .as_ref()
            .map(|s| s.evaluate_seen(event.data(), &mut None, limits))
        {
            // Upstream fails the event on a script error even under `or`.
            Some(Err(e)) => {
                errors.push(e);
                return fail(errors);
            }
            Some(Ok(b)) => Some(b),
            None => None,
        };
        let cel = match self.cel.as_ref().map(|c| c.evaluate_seen(event, &mut None)) {
            Some(Err(e)) if !or => return fail(vec![e]),
            Some(Err(e)) => {
                errors.push(e);
                Some(false)
            }
            Some(Ok(b)) => Some(b),
            None => None,
        };
        let kinds = [
            exprs.map(|o| o.passed),
            data_outcome.map(|o| o.passed),
            context,
            time,
            script,
            cel,
        ];
        let passed = if or {
            kinds.contains(&Some(true))
        } else {
            kinds.iter().all(|k| k.unwrap_or(true))
        };
        FilterOutcome {
            passed,
            errors,
            verdicts: Vec::new(),
        }
    }

    fn verdicts(
        &self,
        event: &Event,
        data: Option<&DataView<'_>>,
        limits: &EvalLimits,
    ) -> Vec<FilterVerdict> {
        fn verdict(
            kind: FilterKind,
            index: Option<usize>,
            subject: String,
            seen: Option<String>,
            result: Result<Option<bool>, FilterError>,
        ) -> FilterVerdict {
            let (result, error) = match result {
                Ok(Some(true)) => ("pass", None),
                Ok(Some(false)) => ("fail", None),
                Ok(None) => ("skipped", None),
                Err(e) => ("error", Some(e.to_string())),
            };
            FilterVerdict {
                kind,
                index,
                subject,
                seen,
                result,
                error,
            }
        }
        let mut out = Vec::new();
        if let Some((filters, _)) = &self.exprs {
            for (i, f) in filters.iter().enumerate() {
                let mut seen = None;
                let result = match data {
                    Some(d) => f.evaluate_seen(d, Some(&mut seen)),
                    None => Ok(None),
                };
                out.push(verdict(
                    FilterKind::Exprs,
                    Some(i),
                    f.source().to_owned(),
                    seen,
                    result,
                ));
            }
        }
        if let Some((filters, _)) = &self.data {
            for (i, f) in filters.iter().enumerate() {
                let mut seen = None;
                let result = match data {
                    Some(d) => f.evaluate_seen(d, Some(&mut seen)).map(Some),
                    None => Ok(None),
                };
                out.push(verdict(
                    FilterKind::Data,
                    Some(i),
                    f.path().to_owned(),
                    seen,
                    result,
                ));
            }
        }
        if let Some(expected) = &self.context {
            let seen = format!(
                "type={} subject={} source={} datacontenttype={}",
                event.ty(),
                event.subject().unwrap_or_default(),
                event.source(),
                event.datacontenttype().unwrap_or_default()
            );
            out.push(verdict(
                FilterKind::Context,
                None,
                serde_json::to_string(expected).unwrap_or_default(),
                Some(seen),
                Ok(Some(context_matches(expected, event))),
            ));
        }
        if let Some(t) = &self.time {
            let mut seen = None;
            let result = t.evaluate_seen(event_time(event), &mut seen).map(Some);
            out.push(verdict(FilterKind::Time, None, "window".to_owned(), seen, result));
        }
        if let Some(s) = &self.script {
            let mut seen = None;
            let result = s.evaluate_seen(event.data(), &mut seen, limits).map(Some);
            out.push(verdict(FilterKind::Script, None, "lua".to_owned(), seen, result));
        }
        if let Some(c) = &self.cel {
            let mut seen = None;
            let result = c.evaluate_seen(event, &mut seen).map(Some);
            out.push(verdict(FilterKind::Cel, None, "cel".to_owned(), seen, result));
        }
        out
    }
}

/// The time a time filter judges: the event's, or now for an event without one.
fn event_time(event: &Event) -> chrono::DateTime<chrono::Utc> {
    event.time().unwrap_or_else(chrono::Utc::now)
}

/// Upstream's context filter: each of `type`, `subject`, `source`, `datacontenttype` that is set
/// and non-empty must equal the event's. (`id`, `specversion` and `time` are not compared upstream.)
fn context_matches(expected: &EventContext, event: &Event) -> bool {
    let check = |want: &Option<String>, actual: &str| match want.as_deref() {
        None | Some("") => true,
        Some(want) => want == actual,
    };
    check(&expected.type_, event.ty())
        && check(&expected.subject, event.subject().unwrap_or_default())
        && check(&expected.source, event.source())
        && check(
            &expected.datacontenttype,
            event.datacontenttype().unwrap_or_default(),
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{json, Value};
    use sluice_crds::sensor::{DataFilter, ExprFilter, PayloadField, TimeFilter};
    use sluice_eventbus::EventBuilder;

    fn event(data: Value) -> Event {
        EventBuilder::new("webhook", "example", "webhook")
            .id("e1")
            .data_json(data)
            .build()
            .expect("a test event with an id builds")
    }

    fn data_filter(path: &str, ty: &str, value: &str) -> DataFilter {
        DataFilter {
            path: path.into(),
            type_: ty.into(),
            value: vec![value.into()],
            ..DataFilter::default()
        }
    }

    #[test]
    fn no_filters_pass() {
        let f = DependencyFilter::from_parts(None, None);
        assert!(f.evaluate(&event(json!({}))).passed);
    }

    #[test]
    fn context_filter_compares_set_attributes() {
        let filters = EventDependencyFilter {
            context: Some(EventContext {
                type_: Some("webhook".into()),
                source: Some("webhook".into()),
                ..EventContext::default()
            }),
            ..EventDependencyFilter::default()
        };
        assert!(
            DependencyFilter::from_parts(Some(&filters), None)
                .evaluate(&event(json!({})))
                .passed
        );
        let filters = EventDependencyFilter {
            context: Some(EventContext {
                subject: Some("other".into()),
                ..EventContext::default()
            }),
            ..EventDependencyFilter::default()
        };
        assert!(
            !DependencyFilter::from_parts(Some(&filters), None)
                .evaluate(&event(json!({})))
                .passed
        );
    }

    fn exprs(expr: &str, fields: &[(&str, &str)]) -> ExprFilter {
        ExprFilter {
            expr: expr.into(),
            fields: fields
                .iter()
                .map(|(name, path)| PayloadField {
                    name: (*name).into(),
                    path: (*path).into(),
                })
                .collect(),
        }
    }

    fn passes(filters: &EventDependencyFilter, op: Option<&str>, data: Value) -> FilterOutcome {
        DependencyFilter::from_parts(Some(filters), op).evaluate(&event(data))
    }

    #[test]
    fn upstream_expression_examples() {
        let filters = EventDependencyFilter {
            exprs: vec![
                exprs(r#"a == "b" || c == 10"#, &[("a", "a"), ("c", "c")]),
                exprs("e == false", &[("e", "d.e")]),
            ],
            ..EventDependencyFilter::default()
        };
        let data = json!({"a": "b", "c": 10, "d": {"e": false}});
        assert!(passes(&filters, None, data.clone()).passed);
        let data_false = json!({"a": "x", "c": 9, "d": {"e": false}});
        assert!(!passes(&filters, None, data_false.clone()).passed);
        // exprLogicalOperator: or — the second one passes.
        let or = EventDependencyFilter {
            expr_logical_operator: Some("or".into()),
            ..filters.clone()
        };
        assert!(passes(&or, None, data_false).passed);
        // A missing path is an error that fails the event.
        let out = passes(&filters, None, json!({"a": "b", "c": 10}));
        assert!(!out.passed);
        assert!(matches!(
            out.errors.as_slice(),
            [FilterError::PathNotFound { .. }]
        ));
    }

    #[test]
    fn expressions_cover_regex_arithmetic_and_non_boolean_results() {
        let data = json!({"branch": "refs/heads/main", "n": 4, "s": "x"});
        let cases = [
            ("b =~ '^refs/heads/'", true),
            ("b !~ 'release'", true),
            ("n * 2 + 1 == 9 && !(n < 2)", true),
            ("n / 0 == 1", false),
            ("s", false),
            ("n +", false),
        ];
        for (expr, expected) in cases {
            let filters = EventDependencyFilter {
                exprs: vec![exprs(expr, &[("b", "branch"), ("n", "n"), ("s", "s")])],
                ..EventDependencyFilter::default()
            };
            assert_eq!(passes(&filters, None, data.clone()).passed, expected, "{expr}");
        }
        let bad = EventDependencyFilter {
            exprs: vec![exprs("n +", &[("n", "n")])],
            ..EventDependencyFilter::default()
        };
        let problems = DependencyFilter::from_parts(Some(&bad), None).problems();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].field, "filters.exprs[0].expr");
    }

    #[test]
    fn script_filter_runs_lua_on_the_data() {
        let filters = EventDependencyFilter {
            script: Some("return event.a == 'b' and event.list[2] == 20".into()),
            ..EventDependencyFilter::default()
        };
        assert!(passes(&filters, None, json!({"a": "b", "list": [10, 20]})).passed);
        assert!(!passes(&filters, None, json!({"a": "c", "list": [10, 20]})).passed);
        // An error fails the event, even under `or` with another passing kind.
        let failing = EventDependencyFilter {
            script: Some("error('boom')".into()),
            data: vec![data_filter("a", "string", "b")],
            ..EventDependencyFilter::default()
        };
        let out = passes(&failing, Some("or"), json!({"a": "b"}));
        assert!(!out.passed);
        assert!(matches!(out.errors.as_slice(), [FilterError::Script { .. }]));
    }

    #[test]
    fn cel_filter_reads_data_and_context() {
        let filters = EventDependencyFilter {
            cel: Some("data.a == 'b' && context.type == 'webhook' && data.n > 2".into()),
            ..EventDependencyFilter::default()
        };
        assert!(passes(&filters, None, json!({"a": "b", "n": 3})).passed);
        assert!(!passes(&filters, None, json!({"a": "b", "n": 1})).passed);
        let out = passes(&filters, None, json!({"a": "b"}));
        assert!(!out.passed, "a missing key is an error, counted as false");
        let bad = EventDependencyFilter {
            cel: Some("data.a ==".into()),
            ..EventDependencyFilter::default()
        };
        assert_eq!(DependencyFilter::from_parts(Some(&bad), None).problems().len(), 1);
    }

    #[test]
    fn time_filter_uses_the_event_time() {
        let filters = EventDependencyFilter {
            time: Some(TimeFilter {
                start: "00:00:00".into(),
                stop: "00:00:00".into(),
                timezone: None,
            }),
            ..EventDependencyFilter::default()
        };
        assert!(passes(&filters, None, json!({})).passed, "a full-day window");
        let bad = EventDependencyFilter {
            time: Some(TimeFilter::default()),
            ..EventDependencyFilter::default()
        };
        let out = passes(&bad, None, json!({}));
        assert!(!out.passed);
        assert!(matches!(out.errors.as_slice(), [FilterError::Time { .. }]));
    }

    #[test]
    fn explain_records_each_verdict_and_value() {
        let filters = EventDependencyFilter {
            data: vec![data_filter("a", "string", "^b$"), data_filter("n", "number", "3")],
            exprs: vec![exprs("n > 1", &[("n", "n")])],
            ..EventDependencyFilter::default()
        };
        let out =
            DependencyFilter::from_parts(Some(&filters), None).explain(&event(json!({"a": "b", "n": 2})));
        assert!(!out.passed);
        let summary: Vec<(FilterKind, &str, Option<&str>)> = out
            .verdicts
            .iter()
            .map(|v| (v.kind, v.result, v.seen.as_deref()))
            .collect();
        assert_eq!(
            summary,
            vec![
                (FilterKind::Exprs, "pass", Some("n=2")),
                (FilterKind::Data, "pass", Some("b")),
                (FilterKind::Data, "fail", Some("2")),
            ]
        );
    }

    #[test]
    fn transforms_run_before_filters() {
        let dep = EventDependency {
            name: "d".into(),
            transform: Some(sluice_crds::sensor::EventDependencyTransformer {
                jq: Some(".a = (.a | ascii_upcase)".into()),
                script: None,
            }),
            filters: Some(EventDependencyFilter {
                data: vec![data_filter("a", "string", "^B$")],
                ..EventDependencyFilter::default()
            }),
            ..EventDependency::default()
        };
        let filter = DependencyFilter::new(&dep);
        let applied = filter.apply(&event(json!({"a": "b"})));
        assert!(applied.outcome.passed);
        assert_eq!(
            applied.event.and_then(|e| e.data().cloned()),
            Some(json!({"a": "B"}))
        );
        let broken = EventDependency {
            transform: Some(sluice_crds::sensor::EventDependencyTransformer {
                jq: Some(".a |||".into()),
                script: None,
            }),
            ..dep
        };
        let filter = DependencyFilter::new(&broken);
        assert_eq!(
            filter.problems().first().map(|p| p.field.as_str()),
            Some("transform.jq")
        );
        let applied = filter.apply(&event(json!({"a": "b"})));
        assert!(!applied.outcome.passed);
        assert!(applied.event.is_none());
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-100i64..100).prop_map(|n| json!(n)),
            (-100.0f64..100.0).prop_map(|n| json!(n)),
            "[a-z0-9 ]{0,5}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 20, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                prop::collection::btree_map("[a-c]", inner, 0..3)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn arb_filter() -> impl Strategy<Value = DataFilter> {
        (
            r"[a-c.#*0-9\\]{0,6}",
            prop_oneof![Just("string"), Just("number"), Just("bool"), Just("other")],
            prop::collection::vec(r"[a-z0-9.()*+?\[\]^$\\-]{0,5}", 0..3),
            prop::option::of(prop_oneof![
                Just("="),
                Just("!="),
                Just(">"),
                Just(">="),
                Just("<"),
                Just("<="),
                Just("~")
            ]),
            prop::option::of(Just("{{ .Input }}")),
        )
            .prop_map(|(path, ty, value, comparator, template)| DataFilter {
                path,
                type_: ty.into(),
                value,
                comparator: comparator.map(Into::into),
                template: template.map(Into::into),
            })
    }

    proptest! {
        #[test]
        fn data_filters_never_panic(data in arb_json(), filters in prop::collection::vec(arb_filter(), 0..4), or in any::<bool>()) {
            let compiled: Vec<_> = filters.iter().map(CompiledDataFilter::new).collect();
            let op = if or { LogicalOperator::Or } else { LogicalOperator::And };
            let _ = evaluate_data_filters(&compiled, op, Some(&DataView::new(&data)));
        }

        #[test]
        fn and_of_data_filters_is_commutative(data in arb_json(), a in arb_filter(), b in arb_filter()) {
            let text = DataView::new(&data);
            let ab = [CompiledDataFilter::new(&a), CompiledDataFilter::new(&b)];
            let ba = [CompiledDataFilter::new(&b), CompiledDataFilter::new(&a)];
            prop_assert_eq!(
                evaluate_data_filters(&ab, LogicalOperator::And, Some(&text)).passed,
                evaluate_data_filters(&ba, LogicalOperator::And, Some(&text)).passed
            );
            prop_assert_eq!(
                evaluate_data_filters(&ab, LogicalOperator::Or, Some(&text)).passed,
                evaluate_data_filters(&ba, LogicalOperator::Or, Some(&text)).passed
            );
        }
    }
}
