//! jq programs run by the [`jaq`](https://github.com/01mf02/jaq) crates (jaq-core, jaq-std,
//! jaq-json): a Rust implementation of jq with the standard library.
//!
//! The program is parsed and compiled at sensor start ([`JqProgram::compile`]) so a bad program is
//! a `sluice validate` error; it is compiled again for each run, because jaq's compiled filters are
//! tied to the arena their source was loaded into.
//!
//! Bounds (see [`crate::eval`]). jaq has no hook per step, but it clones its evaluation context at
//! every function call and for every value a generator hands on, and the context carries data of
//! our choosing. So the context's data here is a [`Guard`] whose `clone` counts a step on the run's
//! [`Meter`] and measures the stack; past [`MAX_STEPS`] steps, the run's deadline or [`MAX_STACK`]
//! bytes of stack it unwinds with a payload of its own, which the run catches and turns into
//! [`JqError::Limit`] (jq's `try` cannot catch it). `range/3`, jaq's one native generator that
//! does not clone the context per value, is replaced by one that counts each value.
//!
//! As gojq does for upstream, the program cannot read the process environment (`env` and `$ENV`
//! are `{}`), `halt` is an error instead of ending the process, and `debug`/`stderr` write nothing.
//!
//! Not bounded: the size of values a program builds (`"x" * 1e9`) and the depth of nesting it
//! builds step by step (a value nested a hundred thousand deep overflows the stack when dropped).
//! Both need a malicious program, not just a malicious event; outputs are refused past
//! [`MAX_OUTPUT_DEPTH`].

use std::panic::{self, AssertUnwindSafe};

use jaq_core::data::{DataT, HasLut};
use jaq_core::load::{Arena, File, Loader};
use jaq_core::native::{bome, v, Fun};
use jaq_core::{Compiler, Ctx, Cv, Error, Exn, RunPtr, ValXs, Vars};
use jaq_json::Val;
use serde_json::Value;

use crate::eval::{EvalLimits, Exceeded, Meter};

/// The most steps one run may take (context clones: about one per function call and per value a
/// generator yields).
pub const MAX_STEPS: u64 = 10_000_000;
/// How much stack one run may use, in bytes, before it is stopped as nested too deeply. Tokio's
/// threads have 2 MiB; this leaves room for what runs between two checks.
pub const MAX_STACK: usize = 1024 * 1024;
/// How deeply the output may nest (as deep as the JSON parser reads).
pub const MAX_OUTPUT_DEPTH: usize = 128;

/// A jq program that compiled.
#[derive(Clone, Debug, PartialEq)]
pub struct JqProgram {
    source: String,
}

/// Why a jq program failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JqError {
    /// The program does not parse or compile.
    #[error("failed to compile the jq program: {reason}")]
    Compile {
        /// What jaq said.
        reason: String,
    },
    /// The program raised an error.
    #[error("failed to run the jq program: {reason}")]
    Run {
        /// What jaq said.
        reason: String,
    },
    /// The program ran into a limit and was stopped.
    #[error("failed to run the jq program: it {reason}")]
    Limit {
        /// Which limit.
        reason: String,
    },
    /// The program produced no output.
    #[error("failed to run the jq program: it produced no output")]
    NoOutput,
}

/// Why a run was stopped from inside (the unwinding payload).
#[derive(Debug)]
enum Stop {
    Limit(Exceeded),
    Deep,
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::Limit(e) => e.fmt(f),
            Stop::Deep => write!(f, "nested deeper than {MAX_STACK} bytes of stack allow"),
        }
    }
}

/// The bounds of one run.
struct RunBounds {
    meter: Meter,
    stack_base: usize,
}

/// The address of a local of the caller's frame: how deep the stack is.
#[inline(never)]
fn stack_address() -> usize {
    let here = 0u8;
    std::hint::black_box(&here) as *const u8 as usize
}

impl RunBounds {
    fn new(limits: &EvalLimits) -> Self {
        Self {
            meter: Meter::new(limits, MAX_STEPS),
            stack_base: stack_address(),
        }
    }

    /// One step of the run; unwinds out of jaq when a bound is reached.
    fn tick(&self) {
        // Never a second unwind while one is under way (that would abort the process).
        if std::thread::panicking() {
            return;
        }
        let stop = if self.stack_base.abs_diff(stack_address()) > MAX_STACK {
            Some(Stop::Deep)
        } else {
            self.meter.step().err().map(Stop::Limit)
        };
        if let Some(stop) = stop {
            // Why unwind: jaq offers no way to stop a run from inside, and this is reached through
            // `Clone`, which cannot fail. The payload is ours and caught in `run_bounded`;
            // `resume_unwind` skips the panic hook, so nothing is printed.
            panic::resume_unwind(Box::new(stop));
        }
    }
}

/// jaq's data kind for a bounded run: JSON values, and a [`Guard`] as the context's data.
struct Bounded;

impl DataT for Bounded {
    type V<'a> = Val;
    type Data<'a> = Guard<'a>;
}

/// The context's data: the lookup table jaq needs, and the run's bounds, ticked on every clone.
struct Guard<'a> {
    lut: &'a jaq_core::Lut<Bounded>,
    bounds: &'a RunBounds,
}

impl Clone for Guard<'_> {
    fn clone(&self) -> Self {
        self.bounds.tick();
        Self {
            lut: self.lut,
            bounds: self.bounds,
        }
    }
}

impl<'a> HasLut<'a, Bounded> for Guard<'a> {
    fn lut(&self) -> &'a jaq_core::Lut<Bounded> {
        self.lut
    }
}

type Filter = jaq_core::Filter<Bounded>;

/// `range($from; $upto; $by)`, counting a step per value: up while below `$upto` for a positive
/// `$by`, down while above it for a negative one, else until equal (jq's definition).
fn bounded_range<'a>(mut cv: Cv<'a, Bounded>) -> ValXs<'a, Val> {
    use std::cmp::Ordering;
    let by = cv.0.pop_var();
    let to = cv.0.pop_var();
    let from = cv.0.pop_var();
    let bounds = cv.0.data().bounds;
    let direction = by.partial_cmp(&Val::from(0isize)).unwrap_or(Ordering::Equal);
    let mut next = Some(from);
    Box::new(std::iter::from_fn(move || {
        bounds.tick();
        let x = next.take()?;
        let more = match direction {
            Ordering::Greater => x < to,
            Ordering::Less => x > to,
            Ordering::Equal => x != to,
        };
        if !more {
            return None;
        }
        match x.clone() + by.clone() {
            Ok(after) => next = Some(after),
            Err(e) => return Some(Err(Exn::from(e))),
        }
        Some(Ok(x))
    }))
}

/// Natives replaced for a Sensor (see the module doc), by name and arity.
fn replacements() -> Vec<Fun<Bounded>> {
    let natives: [(&'static str, usize, RunPtr<Bounded>); 5] = [
        ("range", 3, bounded_range),
        ("env", 0, |_| bome(<Val as jaq_core::ValT>::from_map([]))),
        ("halt", 1, |_| {
            bome(Err(Error::str("halt is not available in a Sensor's jq program")))
        }),
        ("debug_empty", 0, |_| Box::new(std::iter::empty())),
        ("stderr_empty", 0, |_| Box::new(std::iter::empty())),
    ];
    natives
        .into_iter()
        .map(|(name, arity, run)| jaq_core::native::run::<Bounded>((name, v(arity), run)))
        .collect()
}

fn with_filter<T>(source: &str, f: impl FnOnce(&Filter) -> T) -> Result<T, JqError> {
    let defs = jaq_core::defs().chain(jaq_std::defs()).chain(jaq_json::defs());
    let replaced = replacements();
    let is_replaced = |(name, args, _): &Fun<Bounded>| {
        replaced
            .iter()
            .any(|(n, a, _)| n == name && a.len() == args.len())
    };
    let funs = jaq_core::funs::<Bounded>()
        .chain(jaq_std::funs::<Bounded>())
        .chain(jaq_json::funs::<Bounded>())
        .filter(|fun| !is_replaced(fun))
        .collect::<Vec<_>>();
    let loader = Loader::new(defs);
    let arena = Arena::default();
    let program = File {
        code: source,
        path: (),
    };
    let modules = loader.load(&arena, program).map_err(|errors| JqError::Compile {
        reason: format!("{errors:?}"),
    })?;
    let filter = Compiler::default()
        .with_funs(funs.into_iter().chain(replacements()))
        .compile(modules)
        .map_err(|errors| JqError::Compile {
            reason: format!("{errors:?}"),
        })?;
    Ok(f(&filter))
}

/// The first output of `filter` on `input`, within the bounds of `limits`.
fn run_bounded(filter: &Filter, input: Val, limits: &EvalLimits) -> Result<Val, JqError> {
    let bounds = RunBounds::new(limits);
    let result = panic::catch_unwind(AssertUnwindSafe(|| {
        let guard = Guard {
            lut: &filter.lut,
            bounds: &bounds,
        };
        let ctx = Ctx::<Bounded>::new(guard, Vars::new([]));
        // Only the first output is used; reading one more would tell nothing.
        let first = filter.id.run((ctx, input)).next();
        match first {
            None => Err(JqError::NoOutput),
            Some(Ok(value)) => Ok(value),
            Some(Err(exn)) => Err(JqError::Run {
                reason: match exn.get_err() {
                    Ok(error) => error.to_string(),
                    Err(_) => "the program stopped without an error value".to_owned(),
                },
            }),
        }
    }));
    match result {
        Ok(result) => result,
        Err(payload) => match payload.downcast::<Stop>() {
            Ok(stop) => Err(JqError::Limit {
                reason: stop.to_string(),
            }),
            Err(_) => Err(JqError::Run {
                reason: "jaq panicked".to_owned(),
            }),
        },
    }
}

/// Fails when `value` nests deeper than [`MAX_OUTPUT_DEPTH`] (checked without recursion, so a deep
/// value cannot overflow the stack here).
fn check_depth(value: &Val) -> Result<(), JqError> {
    let mut pending = vec![(value, 0usize)];
    while let Some((value, depth)) = pending.pop() {
        if depth > MAX_OUTPUT_DEPTH {
            return Err(JqError::Limit {
                reason: format!("produced an output nested deeper than {MAX_OUTPUT_DEPTH}"),
            });
        }
        match value {
            Val::Arr(items) => pending.extend(items.iter().map(|v| (v, depth + 1))),
            Val::Obj(map) => pending.extend(map.values().map(|v| (v, depth + 1))),
            _ => {}
        }
    }
    Ok(())
}

impl JqProgram {
    /// Parses and compiles `source`.
    pub fn compile(source: &str) -> Result<Self, JqError> {
        with_filter(source, |_| ())?;
        Ok(Self {
            source: source.to_owned(),
        })
    }

    /// The first output of the program run on `input`, under `limits`.
    pub fn first_output(&self, input: &Value, limits: &EvalLimits) -> Result<Value, JqError> {
        let run_error = |reason: String| JqError::Run { reason };
        let input = jaq_json::read::parse_single(input.to_string().as_bytes())
            .map_err(|e| run_error(format!("{e:?}")))?;
        let value = with_filter(&self.source, |filter| run_bounded(filter, input, limits))??;
        check_depth(&value)?;
        serde_json::from_str(&value.to_string())
            .map_err(|e| run_error(format!("the output is not JSON: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::{Duration, Instant};

    fn run(program: &str, input: Value) -> Result<Value, JqError> {
        JqProgram::compile(program)?.first_output(&input, &EvalLimits::default())
    }

    #[test]
    fn range_keeps_jq_semantics() {
        assert_eq!(run("[range(3)]", json!(null)), Ok(json!([0, 1, 2])));
        assert_eq!(run("[range(1; 10; 4)]", json!(null)), Ok(json!([1, 5, 9])));
        assert_eq!(run("[range(5; 0; -2)]", json!(null)), Ok(json!([5, 3, 1])));
        assert_eq!(
            run("[range(0; 1; 0.25)]", json!(null)),
            Ok(json!([0, 0.25, 0.5, 0.75]))
        );
        assert_eq!(run("[range(.n)] | length", json!({"n": 1000})), Ok(json!(1000)));
    }

    #[test]
    fn endless_generators_stop_with_a_limit_error() {
        let limits = EvalLimits {
            timeout: Duration::from_millis(300),
        };
        for program in [
            "last(range(1e18))",
            "[range(1e18)] | length",
            "last(repeat(1))",
            "def f: f; f",
            "[limit(1e18; repeat(1))] | length",
            "try last(range(1e18)) catch 0",
        ] {
            let started = Instant::now();
            let result = JqProgram::compile(program).and_then(|p| p.first_output(&json!({}), &limits));
            assert!(
                matches!(result, Err(JqError::Limit { .. })),
                "{program}: {result:?}"
            );
            assert!(started.elapsed() < Duration::from_secs(10), "{program}");
        }
    }

    #[test]
    fn deep_recursion_is_stopped_before_the_stack_overflows() {
        let result = run("def f: [f]; f", json!(null));
        assert!(matches!(result, Err(JqError::Limit { .. })), "{result:?}");
        let result = run("def f: 1 + f; f", json!(null));
        assert!(matches!(result, Err(JqError::Limit { .. })), "{result:?}");
    }

    #[test]
    fn env_halt_and_stderr_are_harmless() {
        assert_eq!(run("env", json!(null)), Ok(json!({})));
        assert!(matches!(run("halt", json!(null)), Err(JqError::Run { .. })));
        assert!(matches!(run("halt_error", json!("x")), Err(JqError::Run { .. })));
        assert_eq!(run("debug | stderr | .a", json!({"a": 1})), Ok(json!(1)));
    }

    #[test]
    fn deeply_nested_outputs_are_refused() {
        let result = run("reduce range(200) as $i (null; [.])", json!(null));
        assert!(matches!(result, Err(JqError::Limit { .. })), "{result:?}");
        assert!(run("reduce range(100) as $i (null; [.])", json!(null)).is_ok());
    }
}
