//! Offline checks of a Sensor beyond what parsing proves: the spec-wide rules (at least one
//! dependency and trigger, unique names) and the dependency filters. Trigger rules are in
//! [`super::validate_triggers`]. The rules follow upstream's sensor validation, plus checks upstream
//! only makes at run time (regexes, number literals, time windows).

use std::collections::{BTreeMap, BTreeSet};

use super::conditions::is_valid_name;
use super::dependency::{DataFilter, EventDependency, EventDependencyFilter, ExprFilter, TimeFilter};
use super::validate_triggers::check_trigger;
use super::{Sensor, SensorSpec};
use crate::validate::{check_regex, Problems, Validate};

impl Validate for Sensor {
    fn validate(&self, path: &str, problems: &mut Problems) {
        self.spec.validate(&Problems::at(path, "spec"), problems);
    }
}

impl Validate for SensorSpec {
    fn validate(&self, path: &str, problems: &mut Problems) {
        let deps_path = Problems::at(path, "dependencies");
        if self.dependencies.is_empty() {
            problems.error(&deps_path, "a sensor needs at least one dependency");
        }
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, dep) in self.dependencies.iter().enumerate() {
            let p = Problems::index(&deps_path, i);
            check_dependency(dep, &p, problems);
            if dep.name.is_empty() {
                continue;
            }
            if let Some(first) = seen.insert(dep.name.as_str(), i) {
                problems.error(
                    Problems::at(&p, "name"),
                    format!(
                        "dependency name {:?} is already used by dependencies[{first}]; names must be unique",
                        dep.name
                    ),
                );
            }
        }
        let known: BTreeSet<&str> = seen.keys().copied().collect();

        let triggers_path = Problems::at(path, "triggers");
        if self.triggers.is_empty() {
            problems.error(&triggers_path, "a sensor needs at least one trigger");
        }
        let mut names: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, trigger) in self.triggers.iter().enumerate() {
            let p = Problems::index(&triggers_path, i);
            check_trigger(trigger, &p, &known, false, problems);
            let Some(name) = trigger
                .template
                .as_ref()
                .map(|t| t.name.as_str())
                .filter(|n| !n.is_empty())
            else {
                continue;
            };
            if let Some(first) = names.insert(name, i) {
                problems.error(
                    Problems::at(&p, "template.name"),
                    format!(
                        "trigger name {name:?} is already used by triggers[{first}]; names must be unique"
                    ),
                );
            }
        }

        for (field, value) in [
            ("replicas", self.replicas),
            ("revisionHistoryLimit", self.revision_history_limit),
        ] {
            if value.is_some_and(|v| v < 0) {
                problems.error(Problems::at(path, field), "must not be negative");
            }
        }
    }
}

fn check_dependency(dep: &EventDependency, path: &str, problems: &mut Problems) {
    if dep.name.is_empty() {
        problems.error(Problems::at(path, "name"), "every dependency needs a name");
    } else if !is_valid_name(&dep.name) {
        problems.warning(
            Problems::at(path, "name"),
            format!(
                "dependency name {:?} cannot be written in trigger conditions; use only letters, digits, '-', '_' and '.'",
                dep.name
            ),
        );
    }
    if dep.event_source_name.is_empty() {
        problems.error(
            Problems::at(path, "eventSourceName"),
            "name the EventSource the event comes from",
        );
    }
    if dep.event_name.is_empty() {
        problems.error(
            Problems::at(path, "eventName"),
            "name the event within the EventSource",
        );
    }
    check_logical_operator(
        dep.filters_logical_operator.as_deref(),
        &Problems::at(path, "filtersLogicalOperator"),
        problems,
    );
    if let Some(filters) = &dep.filters {
        check_filters(filters, &Problems::at(path, "filters"), problems);
    }
    if let Some(t) = &dep.transform {
        let jq = t.jq.as_deref().is_some_and(|s| !s.is_empty());
        let script = t.script.as_deref().is_some_and(|s| !s.is_empty());
        if jq && script {
            problems.warning(
                Problems::at(path, "transform"),
                "both jq and script are set; only jq is applied",
            );
        }
    }
}

/// `and`, `or` or empty (which means `and`), spelled in lower case as upstream compares them.
pub(super) fn check_logical_operator(op: Option<&str>, path: &str, problems: &mut Problems) {
    match op {
        None | Some("" | "and" | "or") => {}
        Some(other) => problems.error(
            path,
            format!("unknown logical operator {other:?}: use \"and\" or \"or\""),
        ),
    }
}

fn check_filters(filters: &EventDependencyFilter, path: &str, problems: &mut Problems) {
    check_logical_operator(
        filters.data_logical_operator.as_deref(),
        &Problems::at(path, "dataLogicalOperator"),
        problems,
    );
    check_logical_operator(
        filters.expr_logical_operator.as_deref(),
        &Problems::at(path, "exprLogicalOperator"),
        problems,
    );
    if let Some(time) = &filters.time {
        check_time_filter(time, &Problems::at(path, "time"), problems);
    }
    if let Some(ctx) = &filters.context {
        let set = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.is_empty());
        if !(set(&ctx.type_) || set(&ctx.subject) || set(&ctx.source) || set(&ctx.datacontenttype)) {
            problems.error(
                Problems::at(path, "context"),
                "set at least one of type, subject, source or datacontenttype (an empty context filter drops every event)",
            );
        }
    }
    for (i, data) in filters.data.iter().enumerate() {
        check_data_filter(data, &Problems::index(&Problems::at(path, "data"), i), problems);
    }
    for (i, expr) in filters.exprs.iter().enumerate() {
        check_expr_filter(expr, &Problems::index(&Problems::at(path, "exprs"), i), problems);
    }
}

fn check_data_filter(f: &DataFilter, path: &str, problems: &mut Problems) {
    if f.path.is_empty() {
        problems.error(
            Problems::at(path, "path"),
            "give the path of the value in the event data, e.g. body.action",
        );
    }
    let comparator = f.comparator.as_deref().unwrap_or("");
    if !matches!(comparator, "" | "=" | "!=" | ">" | ">=" | "<" | "<=") {
        problems.error(
            Problems::at(path, "comparator"),
            format!("unknown comparator {comparator:?}: use =, !=, >, >=, < or <="),
        );
    }
    if f.value.is_empty() {
        problems.error(
            Problems::at(path, "value"),
            "give at least one value to compare with",
        );
    }
    let value_path = |i| Problems::index(&Problems::at(path, "value"), i);
    for (i, v) in f.value.iter().enumerate() {
        if v.is_empty() {
            problems.error(value_path(i), "values must not be empty");
        }
    }
    match f.type_.as_str() {
        "string" => {
            if matches!(comparator, ">" | ">=" | "<" | "<=") {
                problems.error(
                    Problems::at(path, "comparator"),
                    format!("{comparator} compares numbers; string values match with = or != only"),
                );
            }
            for (i, v) in f.value.iter().enumerate().filter(|(_, v)| !v.is_empty()) {
                check_regex(v, &value_path(i), problems);
            }
        }
        "number" => {
            for (i, v) in f.value.iter().enumerate().filter(|(_, v)| !v.is_empty()) {
                if v.trim().parse::<f64>().is_err() {
                    problems.error(value_path(i), format!("{v:?} is not a number"));
                }
            }
        }
        "bool" => {
            if !comparator.is_empty() && comparator != "=" {
                problems.warning(
                    Problems::at(path, "comparator"),
                    "booleans are only compared for equality",
                );
            }
            for (i, v) in f.value.iter().enumerate().filter(|(_, v)| !v.is_empty()) {
                if parse_go_bool(v).is_none() {
                    problems.error(
                        value_path(i),
                        format!("{v:?} is not a boolean: use true or false"),
                    );
                }
            }
        }
        "" => problems.error(
            Problems::at(path, "type"),
            "set the type of the value: string, number or bool",
        ),
        other => problems.error(
            Problems::at(path, "type"),
            format!("unknown type {other:?}: use string, number or bool"),
        ),
    }
}

/// The spellings Go's `strconv.ParseBool` accepts.
fn parse_go_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

fn check_expr_filter(f: &ExprFilter, path: &str, problems: &mut Problems) {
    if f.expr.trim().is_empty() {
        problems.error(Problems::at(path, "expr"), "the expression is empty");
    }
    if f.fields.is_empty() {
        problems.error(
            Problems::at(path, "fields"),
            "declare the fields the expression uses (name and path)",
        );
    }
    for (i, field) in f.fields.iter().enumerate() {
        let p = Problems::index(&Problems::at(path, "fields"), i);
        if field.name.is_empty() {
            problems.error(
                Problems::at(&p, "name"),
                "give the name the expression uses for this value",
            );
        }
        if field.path.is_empty() {
            problems.error(
                Problems::at(&p, "path"),
                "give the path of the value in the event data",
            );
        }
    }
}

fn check_time_filter(f: &TimeFilter, path: &str, problems: &mut Problems) {
    let start = check_time_of_day(&f.start, &Problems::at(path, "start"), problems);
    let stop = check_time_of_day(&f.stop, &Problems::at(path, "stop"), problems);
    if let (Some(start), Some(stop)) = (start, stop) {
        if start == stop {
            problems.error(
                Problems::at(path, "stop"),
                "stop equals start, so the window is empty",
            );
        }
    }
}

/// Parses `HH:MM:SS` (the hour may have one digit, as Go's `15:04:05` layout allows) into seconds
/// since midnight, recording an error when it does not parse.
fn check_time_of_day(text: &str, path: &str, problems: &mut Problems) -> Option<u32> {
    let parsed = parse_time_of_day(text);
    if parsed.is_none() {
        problems.error(
            path,
            format!("{text:?} is not a time of day: use HH:MM:SS, e.g. 09:30:00"),
        );
    }
    parsed
}

/// Seconds since midnight of an `HH:MM:SS` time; `None` when malformed or out of range.
pub(crate) fn parse_time_of_day(text: &str) -> Option<u32> {
    let mut parts = text.split(':');
    let (h, m, s) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let digits = |p: &str, lens: &[usize]| lens.contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit());
    if !digits(h, &[1, 2]) || !digits(m, &[2]) || !digits(s, &[2]) {
        return None;
    }
    let (h, m, s): (u32, u32, u32) = (h.parse().ok()?, m.parse().ok()?, s.parse().ok()?);
    (h < 24 && m < 60 && s < 60).then_some(h * 3600 + m * 60 + s)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{errors, sensor};
    use super::*;

    const BASE: &str = r#"
metadata: {name: s}
spec:
  dependencies:
    - name: dep-a
      eventSourceName: webhook
      eventName: example
  triggers:
    - template:
        name: log
        log: {}
"#;

    fn with_filters(filters: &str) -> Vec<String> {
        let text = BASE.replace(
            "      eventName: example\n",
            &format!("      eventName: example\n      filters:\n{filters}"),
        );
        errors(&sensor(&text))
    }

    #[test]
    fn base_is_valid() {
        assert_eq!(errors(&sensor(BASE)), Vec::<String>::new());
    }

    #[test]
    fn needs_dependencies_and_triggers() {
        let errs = errors(&sensor(
            "metadata: {name: s}\nspec: {dependencies: [], triggers: []}",
        ));
        assert_eq!(
            errs,
            vec![
                "spec.dependencies: a sensor needs at least one dependency",
                "spec.triggers: a sensor needs at least one trigger",
            ]
        );
    }

    #[test]
    fn dependency_names_unique_and_complete() {
        let text = BASE.replace(
            "  triggers:",
            "    - name: dep-a\n      eventSourceName: other\n      eventName: e\n    - name: dep-b\n  triggers:",
        );
        let errs = errors(&sensor(&text));
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(errs[0].starts_with("spec.dependencies[1].name: dependency name \"dep-a\" is already used"));
        assert!(errs[1].starts_with("spec.dependencies[2].eventSourceName"));
        assert!(errs[2].starts_with("spec.dependencies[2].eventName"));
    }

    #[test]
    fn data_filter_rules() {
        let good = "        data:\n          - {path: body.n, type: number, value: [\"1.5\"], comparator: \">=\"}\n          - {path: body.s, type: string, value: [\"^push$\"]}\n          - {path: body.b, type: bool, value: [\"true\"]}\n        dataLogicalOperator: or\n";
        assert_eq!(with_filters(good), Vec::<String>::new());
        let errs = with_filters(
            "        data:\n          - {path: \"\", type: text, value: [\"(\"], comparator: \"~\"}\n",
        );
        assert!(
            errs.iter()
                .any(|e| e.starts_with("spec.dependencies[0].filters.data[0].path")),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.contains("data[0].comparator: unknown comparator")),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.contains("data[0].type: unknown type \"text\"")),
            "{errs:?}"
        );
        let errs = with_filters("        data:\n          - {path: a, type: string, value: [\"(\"]}\n");
        assert!(
            errs[0].starts_with("spec.dependencies[0].filters.data[0].value[0]: invalid regular expression"),
            "{errs:?}"
        );
        let errs = with_filters("        data:\n          - {path: a, type: number, value: [x]}\n");
        assert!(errs[0].contains("is not a number"), "{errs:?}");
        let errs = with_filters(
            "        data:\n          - {path: a, type: string, value: [x], comparator: \">\"}\n",
        );
        assert!(errs[0].contains("compares numbers"), "{errs:?}");
        let errs = with_filters("        data:\n          - {path: a, type: bool, value: [yes]}\n");
        assert!(errs[0].contains("not a boolean"), "{errs:?}");
        let errs = with_filters("        data:\n          - {path: a, type: string}\n");
        assert!(errs[0].contains("at least one value"), "{errs:?}");
    }

    #[test]
    fn logical_operators() {
        assert!(with_filters("        exprLogicalOperator: and\n").is_empty());
        let errs = with_filters("        dataLogicalOperator: AND\n");
        assert_eq!(errs, vec!["spec.dependencies[0].filters.dataLogicalOperator: unknown logical operator \"AND\": use \"and\" or \"or\""]);
        let text = BASE.replace(
            "      eventName: example\n",
            "      eventName: example\n      filtersLogicalOperator: xor\n",
        );
        assert!(errors(&sensor(&text))[0].starts_with("spec.dependencies[0].filtersLogicalOperator"));
    }

    #[test]
    fn expr_filter_rules() {
        assert!(with_filters(
            "        exprs:\n          - expr: a == \"b\"\n            fields: [{name: a, path: body.a}]\n"
        )
        .is_empty());
        let errs = with_filters("        exprs:\n          - expr: \"\"\n            fields: [{name: a}]\n");
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs[1].starts_with("spec.dependencies[0].filters.exprs[0].fields[0].path"));
    }

    #[test]
    fn time_filter_rules() {
        assert!(with_filters("        time: {start: \"9:00:00\", stop: \"17:30:00\"}\n").is_empty());
        assert!(with_filters("        time: {start: \"23:00:00\", stop: \"01:00:00\"}\n").is_empty());
        let errs = with_filters("        time: {start: \"25:00:00\", stop: \"10:0:00\"}\n");
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs[0].starts_with("spec.dependencies[0].filters.time.start"));
        let errs = with_filters("        time: {start: \"10:00:00\", stop: \"10:00:00\"}\n");
        assert!(errs[0].contains("window is empty"));
    }

    #[test]
    fn context_filter_needs_a_field() {
        assert!(with_filters("        context: {type: webhook}\n").is_empty());
        assert!(with_filters("        context: {id: x}\n")[0].contains("at least one of type"));
    }

    #[test]
    fn odd_dependency_names_warn() {
        let s = sensor(&BASE.replace("name: dep-a", "name: \"dep a\""));
        let mut p = Problems::new();
        s.validate("", &mut p);
        assert!(!p.has_errors());
        assert!(p.as_slice()[0]
            .reason
            .contains("cannot be written in trigger conditions"));
    }

    #[test]
    fn time_of_day_parsing() {
        assert_eq!(parse_time_of_day("00:00:00"), Some(0));
        assert_eq!(parse_time_of_day("9:05:01"), Some(9 * 3600 + 5 * 60 + 1));
        assert_eq!(parse_time_of_day("23:59:59"), Some(86_399));
        for bad in [
            "24:00:00",
            "12:60:00",
            "12:00",
            "12:00:00:00",
            "ab:00:00",
            "",
            "123:00:00",
            "12:0:00",
        ] {
            assert_eq!(parse_time_of_day(bad), None, "{bad}");
        }
    }
}
