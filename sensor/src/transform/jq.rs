//! jq programs run by the [`jaq`](https://github.com/01mf02/jaq) crates (jaq-core, jaq-std,
//! jaq-json): a Rust implementation of jq with the standard library.
//!
//! The program is parsed and compiled at sensor start ([`JqProgram::compile`]) so a bad program is
//! a `sluice validate` error; it is compiled again for each run, because jaq's compiled filters are
//! tied to the arena their source was loaded into.

use jaq_core::load::{Arena, File, Loader};
use jaq_core::{data, unwrap_valr, Compiler, Ctx, Vars};
use jaq_json::Val;
use serde_json::Value;

/// The most outputs read from a program (only the first is used; reading one more tells nothing).
const OUTPUTS_READ: usize = 1;

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
    /// The program produced no output.
    #[error("failed to run the jq program: it produced no output")]
    NoOutput,
}

type Filter = jaq_core::Filter<data::JustLut<Val>>;

fn with_filter<T>(source: &str, f: impl FnOnce(&Filter) -> T) -> Result<T, JqError> {
    let defs = jaq_core::defs().chain(jaq_std::defs()).chain(jaq_json::defs());
    let funs = jaq_core::funs().chain(jaq_std::funs()).chain(jaq_json::funs());
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
        .with_funs(funs)
        .compile(modules)
        .map_err(|errors| JqError::Compile {
            reason: format!("{errors:?}"),
        })?;
    Ok(f(&filter))
}

impl JqProgram {
    /// Parses and compiles `source`.
    pub fn compile(source: &str) -> Result<Self, JqError> {
        with_filter(source, |_| ())?;
        Ok(Self {
            source: source.to_owned(),
        })
    }

    /// The first output of the program run on `input`.
    pub fn first_output(&self, input: &Value) -> Result<Value, JqError> {
        let run_error = |reason: String| JqError::Run { reason };
        let input = jaq_json::read::parse_single(input.to_string().as_bytes())
            .map_err(|e| run_error(format!("{e:?}")))?;
        with_filter(&self.source, |filter| {
            let ctx = Ctx::<data::JustLut<Val>>::new(&filter.lut, Vars::new([]));
            let mut outputs = filter.id.run((ctx, input)).map(unwrap_valr).take(OUTPUTS_READ);
            match outputs.next() {
                None => Err(JqError::NoOutput),
                Some(Err(e)) => Err(run_error(e.to_string())),
                Some(Ok(value)) => serde_json::from_str(&value.to_string())
                    .map_err(|e| run_error(format!("the output is not JSON: {e}"))),
            }
        })?
    }
}
