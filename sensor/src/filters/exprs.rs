//! `filters.exprs`: boolean expressions over named values from the event data, upstream's
//! govaluate filters, evaluated by [`sluice_expr`] (its module doc lists the syntax).
//!
//! Upstream's rules, kept: each `fields` entry binds `name` to the value at gjson `path` (a missing
//! path is an error); an expression without fields is skipped; an expression that does not
//! compile or fails to evaluate is an error; a result other than `true` is false. Expressions
//! combine with `exprLogicalOperator` like data filters do (under `and` the first false or error
//! decides; under `or` the first true wins and errors are collected).

use sluice_crds::sensor::ExprFilter;
use sluice_expr::{CompileError, Env, Program, Value};

use super::view::DataView;
use super::{FilterError, LogicalOperator};
use crate::jsonpath::GjsonPath;

/// One `filters.exprs` entry, compiled once.
#[derive(Clone, Debug)]
pub struct CompiledExprFilter {
    source: String,
    program: Result<Program, CompileError>,
    fields: Vec<(String, GjsonPath)>,
}

/// What a set of expression filters decided.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExprOutcome {
    /// True when the event passes.
    pub passed: bool,
    /// Problems met while deciding.
    pub errors: Vec<FilterError>,
}

impl CompiledExprFilter {
    /// Compiles the expression (a compile error is kept and reported when evaluated).
    pub fn new(filter: &ExprFilter) -> Self {
        Self {
            source: filter.expr.clone(),
            program: sluice_expr::compile(&filter.expr),
            fields: filter
                .fields
                .iter()
                .map(|f| (f.name.clone(), GjsonPath::new(&f.path)))
                .collect(),
        }
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The compile error, if any (for `sluice validate`).
    pub fn compile_error(&self) -> Option<FilterError> {
        self.program.as_ref().err().map(|e| FilterError::Expr {
            expr: self.source.clone(),
            reason: e.to_string(),
        })
    }

    /// `Ok(None)`: skipped (no fields). `seen`, when given, receives the bound values as
    /// `name=value` pairs (the hot path passes `None` and formats nothing).
    pub(crate) fn evaluate_seen(
        &self,
        data: &DataView<'_>,
        seen: Option<&mut Option<String>>,
    ) -> Result<Option<bool>, FilterError> {
        if self.fields.is_empty() {
            return Ok(None);
        }
        let mut env = Env::new();
        for (name, path) in &self.fields {
            let Some(found) = data.get(path) else {
                return Err(FilterError::PathNotFound {
                    path: path.as_str().to_owned(),
                });
            };
            env.insert(name.clone(), found.to_expr_value());
        }
        if let Some(seen) = seen.filter(|s| s.is_none()) {
            *seen = Some(
                self.fields
                    .iter()
                    .filter_map(|(name, _)| {
                        env.get(name).map(|v| match v {
                            Value::String(_) | Value::Array(_) | Value::Object(_) => {
                                format!("{name}={}", v.to_json())
                            }
                            _ => format!("{name}={v}"),
                        })
                    })
                    .collect::<Vec<_>>()
                    .join(" "),
            );
        }
        let program = self.program.as_ref().map_err(|e| FilterError::Expr {
            expr: self.source.clone(),
            reason: e.to_string(),
        })?;
        match sluice_expr::eval(program, &env) {
            Ok(Value::Bool(b)) => Ok(Some(b)),
            // Upstream tests `result == true`: any other value is false, not an error.
            Ok(_) => Ok(Some(false)),
            Err(e) => Err(FilterError::Expr {
                expr: self.source.clone(),
                reason: e.to_string(),
            }),
        }
    }
}

/// Evaluates `filters` combined with `operator`; `None` data passes, as upstream.
pub fn evaluate_expr_filters(
    filters: &[CompiledExprFilter],
    operator: LogicalOperator,
    data: Option<&DataView<'_>>,
) -> ExprOutcome {
    let pass = ExprOutcome {
        passed: true,
        errors: Vec::new(),
    };
    let Some(data) = data else { return pass };
    if filters.is_empty() {
        return pass;
    }
    let mut errors = Vec::new();
    for filter in filters {
        match (filter.evaluate_seen(data, None), operator) {
            (Ok(None), _) => {}
            (Ok(Some(true)), LogicalOperator::Or) => {
                return ExprOutcome {
                    passed: true,
                    errors: Vec::new(),
                }
            }
            (Ok(Some(false)), LogicalOperator::And) => {
                return ExprOutcome {
                    passed: false,
                    errors: Vec::new(),
                }
            }
            (Ok(Some(_)), _) => {}
            (Err(e), LogicalOperator::And) => {
                return ExprOutcome {
                    passed: false,
                    errors: vec![e],
                }
            }
            (Err(e), LogicalOperator::Or) => errors.push(e),
        }
    }
    match operator {
        LogicalOperator::And => pass,
        LogicalOperator::Or => ExprOutcome {
            passed: false,
            errors,
        },
    }
}
