//! `filters.cel` (a **Sluice extension**): a [CEL](https://cel.dev) expression, evaluated by the
//! `cel` crate, over `data` (the event's JSON data) and `context` (the CloudEvent attributes `id`,
//! `source`, `subject`, `type`, `datacontenttype`, `time`). The event passes when the result is
//! `true`; any other result is false; an error is an error (false), as for `exprs`. An event
//! without data still runs the expression, with `data` = `null`.
//!
//! CEL is not Turing-complete (no loops beyond macros over the data), so no instruction cap is
//! needed; the source is limited in length and bracket nesting before parsing, so a hostile
//! expression cannot exhaust the parser's stack.

use serde_json::{json, Value};
use sluice_eventbus::Event;

use super::FilterError;

/// The longest CEL expression accepted, in bytes.
const MAX_LENGTH: usize = 16 * 1024;
/// The deepest bracket nesting accepted.
const MAX_NESTING: usize = 32;

/// A CEL filter, parsed once.
#[derive(Clone)]
pub struct CompiledCelFilter {
    source: String,
    program: Result<std::sync::Arc<cel::Program>, FilterError>,
}

impl std::fmt::Debug for CompiledCelFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("CompiledCelFilter").field(&self.source).finish()
    }
}

fn cel_error(source: &str, reason: impl Into<String>) -> FilterError {
    FilterError::Cel {
        expr: source.to_owned(),
        reason: reason.into(),
    }
}

fn nesting(source: &str) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    for c in source.chars() {
        match c {
            '(' | '[' | '{' => {
                depth += 1;
                max = max.max(depth);
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

impl CompiledCelFilter {
    /// Parses `source`; a problem is kept and reported on evaluation.
    pub fn new(source: &str) -> Self {
        let program = if source.len() > MAX_LENGTH {
            Err(cel_error(source, format!("longer than {MAX_LENGTH} bytes")))
        } else if nesting(source) > MAX_NESTING {
            Err(cel_error(
                source,
                format!("nested more than {MAX_NESTING} levels deep"),
            ))
        } else {
            cel::Program::compile(source)
                .map(std::sync::Arc::new)
                .map_err(|e| cel_error(source, e.to_string()))
        };
        Self {
            source: source.to_owned(),
            program,
        }
    }

    /// The parse problem, if any (for `sluice validate`).
    pub fn static_problem(&self) -> Option<FilterError> {
        self.program.as_ref().err().cloned()
    }

    /// Evaluates over `event`; `seen` receives the result.
    pub fn evaluate_seen(&self, event: &Event, seen: &mut Option<String>) -> Result<bool, FilterError> {
        let program = self.program.as_ref().map_err(Clone::clone)?;
        let mut context = cel::Context::default();
        let data = event.data().cloned().unwrap_or(Value::Null);
        let attributes = json!({
            "id": event.id(),
            "source": event.source(),
            "subject": event.subject().unwrap_or_default(),
            "type": event.ty(),
            "datacontenttype": event.datacontenttype().unwrap_or_default(),
            "time": event.time().map(|t| t.to_rfc3339()).unwrap_or_default(),
        });
        context
            .add_variable("data", data)
            .map_err(|e| cel_error(&self.source, e.to_string()))?;
        context
            .add_variable("context", attributes)
            .map_err(|e| cel_error(&self.source, e.to_string()))?;
        let result = program
            .execute(&context)
            .map_err(|e| cel_error(&self.source, e.to_string()))?;
        if seen.is_none() {
            *seen = Some(format!("{result:?}"));
        }
        Ok(matches!(result, cel::Value::Bool(true)))
    }
}
