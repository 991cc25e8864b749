//! The Lua sandbox shared by the `script` filter and the `script` transform.
//!
//! Each run gets a fresh Lua 5.4 state (vendored, built from source by `mlua`), as upstream creates a
//! fresh gopher-lua state per event, so no state leaks between events. The state loads only the
//! `table`, `string`, `math` and `utf8` libraries — no `os`, `io`, `package`/`require` or `debug` —
//! and the base library's `load`, `loadfile`, `dofile`, `loadstring`, `require`, `collectgarbage` and
//! `print` are removed. The event data is the global `event` (JSON objects and arrays as tables,
//! `null` as `nil`).
//!
//! Bounds (see [`crate::eval`]): a run is cut off after [`MAX_INSTRUCTIONS`] VM instructions or its
//! [`EvalLimits::timeout`], whichever comes first, and may allocate at most [`MEMORY_LIMIT`] bytes.
//! The pattern functions (`string.find`, `match`, `gmatch`, `gsub`) are Sluice's own (see
//! `lua_patterns`): Lua's run in C, out of the hook's reach, and backtrack for hours on a long
//! string; these count their steps against the same deadline and refuse subjects longer than
//! [`MAX_PATTERN_SUBJECT`]. `pcall` and `xpcall` rethrow a limit error instead of catching it, so a
//! script cannot swallow its own stop.

use std::rc::Rc;

use mlua::{HookTriggers, Lua, LuaOptions, MultiValue, StdLib, VmState};
use serde_json::Value;

use super::lua_patterns;
use crate::eval::{EvalLimits, Exceeded, Meter};

pub use super::lua_patterns::MAX_SUBJECT as MAX_PATTERN_SUBJECT;

/// The most VM instructions one run may execute.
pub const MAX_INSTRUCTIONS: u64 = 10_000_000;
/// The most memory one run may allocate, in bytes.
pub const MEMORY_LIMIT: usize = 32 * 1024 * 1024;
/// How deeply nested a table returned by a script may be (tables can refer to themselves).
const MAX_NESTING: usize = 64;
/// How often the instruction hook runs.
const HOOK_EVERY: u32 = 1_000;

/// Why a script failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScriptError {
    /// The script does not parse.
    #[error("failed to compile the Lua script: {reason}")]
    Compile {
        /// What Lua said.
        reason: String,
    },
    /// The script raised an error, ran too long or used too much memory.
    #[error("failed to run the Lua script: {reason}")]
    Run {
        /// What went wrong.
        reason: String,
    },
    /// The script's result could not be turned into JSON.
    #[error("failed to convert the Lua script's result to JSON: {reason}")]
    Convert {
        /// What went wrong.
        reason: String,
    },
}

/// The Lua error for a run that reached a limit.
pub(super) fn limit_error(e: Exceeded) -> mlua::Error {
    mlua::Error::runtime(format!("the script {e}"))
}

fn sandbox(limits: &EvalLimits) -> Result<Lua, ScriptError> {
    let run_error = |e: mlua::Error| ScriptError::Run {
        reason: e.to_string(),
    };
    let lua = Lua::new_with(
        StdLib::TABLE | StdLib::STRING | StdLib::MATH | StdLib::UTF8,
        LuaOptions::new(),
    )
    .map_err(run_error)?;
    lua.set_memory_limit(MEMORY_LIMIT).map_err(run_error)?;
    let globals = lua.globals();
    for name in [
        "load",
        "loadfile",
        "dofile",
        "loadstring",
        "require",
        "collectgarbage",
        "print",
    ] {
        globals.raw_set(name, mlua::Value::Nil).map_err(run_error)?;
    }
    let meter = Rc::new(Meter::new(limits, MAX_INSTRUCTIONS));
    lua_patterns::install(&lua, &meter).map_err(run_error)?;
    for name in ["pcall", "xpcall"] {
        let original: mlua::Function = globals.get(name).map_err(run_error)?;
        let m = meter.clone();
        let guarded = lua
            .create_function(move |_, args: MultiValue| {
                let results: MultiValue = original.call(args)?;
                // Why: once a limit is reached the run must end; a caught limit error would let
                // `while true do pcall(f) end` go on for ever.
                match m.exceeded() {
                    Some(e) => Err(limit_error(e)),
                    None => Ok(results),
                }
            })
            .map_err(run_error)?;
        globals.raw_set(name, guarded).map_err(run_error)?;
    }
    lua.set_hook(
        HookTriggers::new().every_nth_instruction(HOOK_EVERY),
        move |_lua, _debug| {
            meter.steps_taken(HOOK_EVERY).map_err(limit_error)?;
            Ok(VmState::Continue)
        },
    )
    .map_err(run_error)?;
    Ok(lua)
}

/// Checks that `script` parses (nothing runs).
pub fn check(script: &str) -> Result<(), ScriptError> {
    let lua = sandbox(&EvalLimits::default())?;
    lua.load(script)
        .set_name("script")
        .into_function()
        .map(|_| ())
        .map_err(|e| ScriptError::Compile {
            reason: e.to_string(),
        })
}

/// What a script returned: its last value, as upstream reads the top of the Lua stack.
pub enum Returned {
    /// `true` / `false`.
    Bool(bool),
    /// A table, converted to JSON.
    Table(Value),
    /// Anything else (nothing, `nil`, a number, a string, a function …).
    Other(&'static str),
}

/// Runs `script` with the global `event` set to `data`, under `limits`.
pub fn run(script: &str, data: &Value, limits: &EvalLimits) -> Result<Returned, ScriptError> {
    let lua = sandbox(limits)?;
    let run_error = |e: mlua::Error| ScriptError::Run {
        reason: e.to_string(),
    };
    let event = to_lua(&lua, data).map_err(run_error)?;
    lua.globals().raw_set("event", event).map_err(run_error)?;
    let function = lua
        .load(script)
        .set_name("script")
        .into_function()
        .map_err(|e| ScriptError::Compile {
            reason: e.to_string(),
        })?;
    let results: mlua::MultiValue = function.call(()).map_err(run_error)?;
    Ok(match results.into_iter().last() {
        Some(mlua::Value::Boolean(b)) => Returned::Bool(b),
        Some(mlua::Value::Table(t)) => Returned::Table(from_lua_table(&t, 0)?),
        Some(other) => Returned::Other(other.type_name()),
        None => Returned::Other("nothing"),
    })
}

fn to_lua(lua: &Lua, value: &Value) -> mlua::Result<mlua::Value> {
    Ok(match value {
        Value::Null => mlua::Value::Nil,
        Value::Bool(b) => mlua::Value::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => mlua::Value::Integer(i),
            None => mlua::Value::Number(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => mlua::Value::String(lua.create_string(s)?),
        Value::Array(items) => {
            let table = lua.create_table_with_capacity(items.len(), 0)?;
            for (i, item) in items.iter().enumerate() {
                table.raw_set(i + 1, to_lua(lua, item)?)?;
            }
            mlua::Value::Table(table)
        }
        Value::Object(map) => {
            let table = lua.create_table_with_capacity(0, map.len())?;
            for (k, v) in map {
                table.raw_set(k.as_str(), to_lua(lua, v)?)?;
            }
            mlua::Value::Table(table)
        }
    })
}

fn convert_error(reason: impl Into<String>) -> ScriptError {
    ScriptError::Convert {
        reason: reason.into(),
    }
}

/// A table as JSON, as upstream converts it: a table with a sequence part is an array of its
/// elements `1..n`, any other table an object with the keys as text.
fn from_lua_table(table: &mlua::Table, depth: usize) -> Result<Value, ScriptError> {
    if depth > MAX_NESTING {
        return Err(convert_error(format!(
            "tables are nested more than {MAX_NESTING} deep (a table that contains itself?)"
        )));
    }
    let len = table.raw_len();
    if len > 0 {
        let mut items = Vec::with_capacity(len);
        for i in 1..=len {
            let v: mlua::Value = table.raw_get(i).map_err(|e| convert_error(e.to_string()))?;
            items.push(from_lua(&v, depth + 1)?);
        }
        return Ok(Value::Array(items));
    }
    let mut map = serde_json::Map::new();
    for pair in table.pairs::<mlua::Value, mlua::Value>() {
        let (k, v) = pair.map_err(|e| convert_error(e.to_string()))?;
        let key = match &k {
            mlua::Value::String(s) => s.to_string_lossy(),
            mlua::Value::Integer(i) => i.to_string(),
            mlua::Value::Number(n) => n.to_string(),
            mlua::Value::Boolean(b) => b.to_string(),
            other => {
                return Err(convert_error(format!(
                    "a {} cannot be a JSON key",
                    other.type_name()
                )))
            }
        };
        map.insert(key, from_lua(&v, depth + 1)?);
    }
    Ok(Value::Object(map))
}

fn from_lua(value: &mlua::Value, depth: usize) -> Result<Value, ScriptError> {
    Ok(match value {
        mlua::Value::Nil => Value::Null,
        mlua::Value::Boolean(b) => Value::Bool(*b),
        mlua::Value::Integer(i) => Value::from(*i),
        mlua::Value::Number(n) => serde_json::Number::from_f64(*n)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        mlua::Value::String(s) => Value::String(s.to_string_lossy()),
        mlua::Value::Table(t) => from_lua_table(t, depth)?,
        other => return Err(convert_error(format!("a {} has no JSON form", other.type_name()))),
    })
}
