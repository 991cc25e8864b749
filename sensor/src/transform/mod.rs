//! Dependency transforms: a jq program or a Lua script rewriting an event's data before the
//! dependency's filters see it (and before its trigger parameters read it), with upstream's rules:
//! - `jq` wins when both are set; neither: the event passes unchanged;
//! - an event without data passes unchanged;
//! - jq runs on the data (which must be a JSON object, as upstream decodes it into a map) and its
//!   **first** output must be a JSON object; it becomes the data;
//! - the Lua script sees the data as the global `event` and must return a table; the table (as
//!   JSON) becomes the data. See [`lua`] for the sandbox.
//!
//! Any failure is a [`TransformError`]; upstream then drops the event for this dependency (the
//! runner logs it and counts it as filtered out). Both kinds run under [`EvalLimits`] (see
//! [`crate::eval`]): past a limit the transform fails like any other error.

pub mod jq;
pub mod lua;
mod lua_patterns;

use sluice_crds::sensor::EventDependencyTransformer;
use sluice_eventbus::Event;

use crate::eval::EvalLimits;

pub use jq::{JqError, JqProgram};
pub use lua::ScriptError;

/// Why a transform could not be compiled or applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TransformError {
    /// The jq program failed to compile or run.
    #[error(transparent)]
    Jq(#[from] JqError),
    /// The Lua script failed to compile or run.
    #[error(transparent)]
    Script(#[from] ScriptError),
    /// The data is not what the transform takes.
    #[error("failed to transform the event: the data is {found}, the jq transform takes a JSON object")]
    NotAnObject {
        /// What the data is.
        found: &'static str,
    },
    /// The transform's result is not what upstream accepts.
    #[error("failed to transform the event: {0}")]
    BadOutput(&'static str),
    /// The event with the new data could not be built.
    #[error("failed to set the transformed data on the event: {reason}")]
    Rebuild {
        /// Why.
        reason: String,
    },
}

/// A compiled transform.
#[derive(Clone, Debug, PartialEq)]
pub enum Transform {
    /// No transform: events pass unchanged.
    Identity,
    /// A jq program.
    Jq(JqProgram),
    /// A Lua script (checked to parse).
    Script(String),
}

fn json_type(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

impl Transform {
    /// Compiles a dependency's `transform`.
    pub fn compile(spec: &EventDependencyTransformer) -> Result<Self, TransformError> {
        if let Some(jq) = spec.jq.as_deref().filter(|s| !s.is_empty()) {
            return Ok(Transform::Jq(JqProgram::compile(jq)?));
        }
        if let Some(script) = spec.script.as_deref().filter(|s| !s.is_empty()) {
            lua::check(script)?;
            return Ok(Transform::Script(script.to_owned()));
        }
        Ok(Transform::Identity)
    }

    /// Compiles an optional `transform` (unset: [`Transform::Identity`]).
    pub fn compile_optional(spec: Option<&EventDependencyTransformer>) -> Result<Self, TransformError> {
        spec.map_or(Ok(Transform::Identity), Self::compile)
    }

    /// True for [`Transform::Identity`].
    pub fn is_identity(&self) -> bool {
        matches!(self, Transform::Identity)
    }

    /// The event with its data transformed, under the default [`EvalLimits`].
    pub fn apply(&self, event: &Event) -> Result<Event, TransformError> {
        self.apply_limited(event, &EvalLimits::default())
    }

    /// The event with its data transformed, the jq program or script running under `limits`.
    pub fn apply_limited(&self, event: &Event, limits: &EvalLimits) -> Result<Event, TransformError> {
        let Some(data) = event.data() else {
            return Ok(event.clone());
        };
        let new_data = match self {
            Transform::Identity => return Ok(event.clone()),
            Transform::Jq(program) => {
                if !data.is_object() {
                    return Err(TransformError::NotAnObject {
                        found: json_type(data),
                    });
                }
                let out = program.first_output(data, limits)?;
                if !out.is_object() {
                    return Err(TransformError::BadOutput(
                        "the jq program's first output must be a JSON object",
                    ));
                }
                out
            }
            Transform::Script(script) => match lua::run(script, data, limits)? {
                lua::Returned::Table(table) => table,
                _ => {
                    return Err(TransformError::BadOutput(
                        "the transformation script must return a Lua table",
                    ))
                }
            },
        };
        with_data(event, new_data)
    }
}

/// `event` with `data` as its JSON data; every attribute and extension is kept.
pub fn with_data(event: &Event, data: serde_json::Value) -> Result<Event, TransformError> {
    let mut inner = event.as_cloudevent().clone();
    inner.set_data("application/json", data);
    Event::try_from(inner).map_err(|e| TransformError::Rebuild {
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests;
