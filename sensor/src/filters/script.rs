//! `filters.script`: a Lua script that sees the event data as `event` and passes the event by
//! returning `true` (any other result is false). An event without data passes; a script error is
//! an error, even under `filtersLogicalOperator: or` (upstream's rule). Sandbox:
//! [`crate::transform::lua`]; bounds: [`crate::eval`] (a script past a limit is an error).

use crate::eval::EvalLimits;
use crate::transform::lua::{self, Returned, ScriptError};

use super::FilterError;

/// A script filter, checked to parse.
#[derive(Clone, Debug)]
pub struct CompiledScriptFilter {
    source: String,
    compiled: Result<(), ScriptError>,
}

impl CompiledScriptFilter {
    /// Checks that `source` parses (nothing runs).
    pub fn new(source: &str) -> Self {
        Self {
            source: source.to_owned(),
            compiled: lua::check(source),
        }
    }

    /// The parse problem, if any (for `sluice validate`).
    pub fn static_problem(&self) -> Option<FilterError> {
        self.compiled.as_ref().err().map(|e| FilterError::Script {
            reason: e.to_string(),
        })
    }

    /// Runs the script on `data` under `limits`; `seen` receives what it returned.
    pub fn evaluate_seen(
        &self,
        data: Option<&serde_json::Value>,
        seen: &mut Option<String>,
        limits: &EvalLimits,
    ) -> Result<bool, FilterError> {
        let Some(data) = data else { return Ok(true) };
        self.compiled.as_ref().map_err(|e| FilterError::Script {
            reason: e.to_string(),
        })?;
        let returned = lua::run(&self.source, data, limits).map_err(|e| FilterError::Script {
            reason: e.to_string(),
        })?;
        let (passed, what) = match returned {
            Returned::Bool(b) => (b, b.to_string()),
            Returned::Table(_) => (false, "a table".to_owned()),
            Returned::Other(kind) => (false, kind.to_owned()),
        };
        if seen.is_none() {
            *seen = Some(format!("returned {what}"));
        }
        Ok(passed)
    }
}
