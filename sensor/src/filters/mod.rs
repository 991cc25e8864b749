//! Dependency filters: does an event count for a dependency?
//!
//! Upstream has five kinds of filter (`data`, `context`, `exprs`, `time`, `script`) combined with the
//! dependency's `filtersLogicalOperator`. Implemented here: `data` (see [`data`]) and `context` (exact
//! CloudEvent attributes). `exprs`, `time` and `script` are not yet: when one is present it counts as
//! *false* with an [`FilterError::UnsupportedKind`] error, so an event is never let through by a
//! filter we cannot evaluate; the runner warns about them at startup.
//!
//! The result follows upstream's shape: a pass/fail decision plus the errors met. An event that fails
//! with errors is logged at warn ("discarded due to a filter error"); one that passes with errors
//! (possible under `or`) is logged at warn too; a plain fail at debug. All pure; no I/O.

pub mod data;
mod regex;

use sluice_crds::sensor::{EventContext, EventDependency, EventDependencyFilter};
use sluice_eventbus::Event;

pub use data::{evaluate_data_filters, CompiledDataFilter, DataOutcome};
pub use regex::compile_go_regex;

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
    /// Reads `dataLogicalOperator` / `filtersLogicalOperator`: `or` is or, anything else and.
    pub fn parse(text: Option<&str>) -> Self {
        match text {
            Some("or") => LogicalOperator::Or,
            _ => LogicalOperator::And,
        }
    }
}

/// A filter kind Sluice cannot evaluate yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnsupportedKind {
    /// `filters.exprs` (govaluate expressions).
    Exprs,
    /// `filters.time` (time-of-day window).
    Time,
    /// `filters.script` (Lua).
    Script,
}

impl UnsupportedKind {
    /// The field name, as in the manifest.
    pub fn field(self) -> &'static str {
        match self {
            UnsupportedKind::Exprs => "exprs",
            UnsupportedKind::Time => "time",
            UnsupportedKind::Script => "script",
        }
    }
}

/// A problem met while evaluating a filter. Under upstream's rules each one makes its filter false.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum FilterError {
    /// The data filter's path is not in the event data.
    #[error("failed to evaluate the data filter: path `{path}` does not exist in the event data")]
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
    /// The data filter has a `template`, which Sluice cannot render yet.
    #[error("failed to evaluate the data filter on `{path}`: `template` is not supported yet")]
    UnsupportedTemplate {
        /// The gjson path.
        path: String,
    },
    /// A filter kind Sluice cannot evaluate yet.
    #[error("failed to evaluate the `{}` filter: not supported yet, counted as not passing", .kind.field())]
    UnsupportedKind {
        /// Which kind.
        kind: UnsupportedKind,
    },
}

/// What a dependency's filters decided about one event.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FilterOutcome {
    /// True when the event counts for the dependency.
    pub passed: bool,
    /// Problems met while deciding (see the module doc for how they are logged).
    pub errors: Vec<FilterError>,
}

/// All filters of one dependency, compiled once.
#[derive(Clone, Debug, Default)]
pub struct DependencyFilter {
    operator: LogicalOperator,
    data: Option<(Vec<CompiledDataFilter>, LogicalOperator)>,
    context: Option<EventContext>,
    unsupported: Vec<UnsupportedKind>,
}

impl DependencyFilter {
    /// Compiles the filters of `dependency`. No filters: every event passes.
    pub fn new(dependency: &EventDependency) -> Self {
        Self::from_parts(
            dependency.filters.as_ref(),
            dependency.filters_logical_operator.as_deref(),
        )
    }

    /// Compiles `filters` combined with `filters_logical_operator`.
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
        let mut unsupported = Vec::new();
        if !filters.exprs.is_empty() {
            unsupported.push(UnsupportedKind::Exprs);
        }
        if filters.time.is_some() {
            unsupported.push(UnsupportedKind::Time);
        }
        if filters.script.as_deref().is_some_and(|s| !s.is_empty()) {
            unsupported.push(UnsupportedKind::Script);
        }
        Self {
            operator,
            data,
            context: filters.context.clone(),
            unsupported,
        }
    }

    /// Filter kinds present that Sluice cannot evaluate (each counts as false), for a startup warning.
    pub fn unsupported_kinds(&self) -> &[UnsupportedKind] {
        &self.unsupported
    }

    /// Problems visible without an event (invalid values, unsupported templates), for a startup warning.
    pub fn static_problems(&self) -> Vec<FilterError> {
        self.data
            .iter()
            .flat_map(|(filters, _)| filters.iter().flat_map(|f| f.static_problems()))
            .collect()
    }

    /// Decides whether `event` counts for the dependency.
    pub fn evaluate(&self, event: &Event) -> FilterOutcome {
        let data_text = event.data().map(|d| d.to_string());
        self.evaluate_with(event, data_text.as_deref())
    }

    fn evaluate_with(&self, event: &Event, data: Option<&str>) -> FilterOutcome {
        let data_outcome = self
            .data
            .as_ref()
            .map(|(filters, op)| evaluate_data_filters(filters, *op, data));
        let context_passed = self
            .context
            .as_ref()
            .map(|expected| context_matches(expected, event));
        let unsupported_errors: Vec<FilterError> = self
            .unsupported
            .iter()
            .map(|&kind| FilterError::UnsupportedKind { kind })
            .collect();

        match self.operator {
            LogicalOperator::And => {
                // Upstream's order: exprs, data, context, time, script; the first error decides.
                if let Some(UnsupportedKind::Exprs) = self.unsupported.first() {
                    return FilterOutcome {
                        passed: false,
                        errors: vec![FilterError::UnsupportedKind {
                            kind: UnsupportedKind::Exprs,
                        }],
                    };
                }
                if let Some(outcome) = &data_outcome {
                    if !outcome.errors.is_empty() {
                        return FilterOutcome {
                            passed: false,
                            errors: outcome.errors.clone(),
                        };
                    }
                }
                if !unsupported_errors.is_empty() {
                    return FilterOutcome {
                        passed: false,
                        errors: unsupported_errors,
                    };
                }
                let passed = data_outcome.is_none_or(|o| o.passed) && context_passed.unwrap_or(true);
                FilterOutcome {
                    passed,
                    errors: Vec::new(),
                }
            }
            LogicalOperator::Or => {
                // Upstream: a kind counts only when it is present; errors are collected.
                let data_passed = data_outcome.as_ref().is_some_and(|o| o.passed);
                let passed = data_passed || context_passed.unwrap_or(false);
                let mut errors = data_outcome.map(|o| o.errors).unwrap_or_default();
                errors.extend(unsupported_errors);
                FilterOutcome { passed, errors }
            }
        }
    }
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
    use sluice_crds::sensor::{DataFilter, ExprFilter, TimeFilter};
    use sluice_eventbus::EventBuilder;

    fn event(data: Value) -> Event {
        match EventBuilder::new("webhook", "example", "webhook")
            .id("e1")
            .data_json(data)
            .build()
        {
            Ok(e) => e,
            Err(e) => panic!("test event: {e}"),
        }
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

    #[test]
    fn unsupported_kinds_count_as_false_with_an_error() {
        let filters = EventDependencyFilter {
            data: vec![data_filter("a", "string", "x")],
            exprs: vec![ExprFilter {
                expr: "a == 1".into(),
                fields: vec![],
            }],
            ..EventDependencyFilter::default()
        };
        let f = DependencyFilter::from_parts(Some(&filters), None);
        assert_eq!(f.unsupported_kinds(), &[UnsupportedKind::Exprs]);
        let out = f.evaluate(&event(json!({"a": "x"})));
        assert!(!out.passed);
        assert_eq!(
            out.errors,
            vec![FilterError::UnsupportedKind {
                kind: UnsupportedKind::Exprs
            }]
        );

        // Under `or` the data filter can still let the event through, as upstream would if the
        // expression were false.
        let f = DependencyFilter::from_parts(Some(&filters), Some("or"));
        let out = f.evaluate(&event(json!({"a": "x"})));
        assert!(out.passed);
        assert_eq!(out.errors.len(), 1);
    }

    #[test]
    fn or_of_kinds_counts_only_present_kinds() {
        let filters = EventDependencyFilter {
            data: vec![data_filter("a", "string", "nomatch")],
            time: Some(TimeFilter::default()),
            ..EventDependencyFilter::default()
        };
        let out =
            DependencyFilter::from_parts(Some(&filters), Some("or")).evaluate(&event(json!({"a": "x"})));
        assert!(!out.passed);
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
            let _ = evaluate_data_filters(&compiled, op, Some(&data.to_string()));
        }

        #[test]
        fn and_of_data_filters_is_commutative(data in arb_json(), a in arb_filter(), b in arb_filter()) {
            let text = data.to_string();
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
