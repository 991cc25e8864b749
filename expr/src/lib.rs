//! The expression language of Sluice's filters.
//!
//! Upstream Argo Events uses two expression languages: sensor `exprs` filters are
//! [govaluate](https://github.com/Knetic/govaluate) expressions over names bound with `fields`, and
//! the EventSource `filter.expression` is an [expr-lang](https://expr-lang.org) expression over the
//! payload's top-level keys. This crate is one engine for the **common subset of both**, plus the
//! handful of operators each one has that the other lacks but does not give another meaning:
//!
//! | feature | syntax | govaluate | expr-lang |
//! |---|---|---|---|
//! | literals | `12`, `1.5`, `1e3`, `'text'`, `"text"`, `true`, `false`, `nil`/`null` | ✓ | ✓ |
//! | names | `name`, `name_2` (bound by the [`Env`]) | ✓ | ✓ |
//! | member access | `a.b`, `a["b"]`, `a[0]` (objects and arrays) | `.` only | ✓ |
//! | arithmetic | `+ - * / % **`, unary `-` | ✓ | ✓ |
//! | string concatenation | `"a" + "b"` (a string and a number: the number as text, as govaluate) | ✓ | strings only |
//! | comparison | `== != < <= > >=` (numbers, or strings lexically) | ✓ | ✓ |
//! | logic | `&&`/`and`, `\|\|`/`or`, `!`/`not` (short-circuit) | symbols | ✓ |
//! | regex | `=~`, `!~` (govaluate), `matches` (expr-lang); Rust `regex` syntax (RE2, as Go's) | ✓ | `matches` |
//! | membership | `x in [1, 2]`, `x in (1, 2)`, `k in obj`, `not in` | `( )` lists | `[ ]` lists |
//! | string tests | `contains`, `startsWith`, `endsWith` (infix) | — | ✓ |
//! | conditional | `c ? a : b`, `a ?? b` | ✓ | ✓ |
//!
//! Not supported (a compile error, never a silent difference): function calls, govaluate's
//! `[escaped name]` parameters, bitwise operators, dates compared as strings, expr-lang's
//! closures, pipes, slices and builtins. Comparing values of different types with `==` is `false`
//! (as both upstreams); ordering them is an evaluation error.
//!
//! The API: [`compile`] parses once (errors carry the position); [`eval`] runs a [`Program`] over an
//! [`Env`]. Neither panics on any input: nesting is capped at [`MAX_DEPTH`], regexes are size-limited,
//! and the property tests feed random text to both. [`Program`] prints back to source (fully
//! parenthesized) that compiles to the same program.

mod eval;
mod lexer;
mod parser;
mod print;
mod value;

use std::collections::BTreeMap;

pub use value::Value;

/// The deepest nesting an expression may have (parentheses, operators, member accesses). Bounds
/// the recursion of the parser, evaluator and printer.
pub const MAX_DEPTH: usize = 50;

/// The longest expression accepted, in bytes.
pub const MAX_LENGTH: usize = 64 * 1024;

/// A compiled expression, ready to evaluate any number of times.
#[derive(Clone, Debug)]
pub struct Program {
    pub(crate) root: Expr,
}

impl PartialEq for Program {
    fn eq(&self, other: &Self) -> bool {
        self.root == other.root
    }
}

impl Program {
    /// The names the expression reads from its [`Env`] (each once, in order of first use).
    pub fn names(&self) -> Vec<&str> {
        let mut out = Vec::new();
        self.root.collect_names(&mut out);
        out
    }
}

impl std::fmt::Display for Program {
    /// The expression as source text, fully parenthesized; it compiles back to an equal program.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        print::write_expr(f, &self.root)
    }
}

/// Why an expression does not compile.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("failed to compile the expression at column {column}: {message}")]
pub struct CompileError {
    /// Byte offset into the source where the problem is (0-based).
    pub position: usize,
    /// 1-based column (in characters) of `position`, for messages.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

/// Why an expression could not be evaluated. Filters count every one of them as *false*.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    /// The expression reads a name the environment does not bind.
    #[error("failed to evaluate the expression: no value named `{name}`")]
    UnknownName {
        /// The name.
        name: String,
    },
    /// An operator met operands it is not defined for.
    #[error("failed to evaluate the expression: `{op}` is not defined for {left} and {right}")]
    TypeMismatch {
        /// The operator.
        op: &'static str,
        /// The type of the left (or only) operand.
        left: &'static str,
        /// The type of the right operand (`-` for unary operators).
        right: &'static str,
    },
    /// Division or remainder by zero.
    #[error("failed to evaluate the expression: division by zero")]
    DivisionByZero,
    /// Arithmetic gave a value that is not a finite number.
    #[error("failed to evaluate the expression: the result of `{op}` is not a finite number")]
    NotFinite {
        /// The operator.
        op: &'static str,
    },
    /// A regular expression built at run time does not compile.
    #[error("failed to evaluate the expression: invalid regular expression `{pattern}`: {reason}")]
    InvalidRegex {
        /// The pattern.
        pattern: String,
        /// Why.
        reason: String,
    },
    /// A member access on something that has no members (e.g. `nil.a`).
    #[error("failed to evaluate the expression: cannot read `{member}` of {of}")]
    NoMember {
        /// The member or index.
        member: String,
        /// The type it was read from.
        of: &'static str,
    },
}

/// The names an expression can read, and their values.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Env {
    values: BTreeMap<String, Value>,
}

impl Env {
    /// An empty environment.
    pub fn new() -> Self {
        Self::default()
    }

    /// Binds `name` to `value`, replacing an earlier binding.
    pub fn insert(&mut self, name: impl Into<String>, value: Value) {
        self.values.insert(name.into(), value);
    }

    /// The value bound to `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.values.get(name)
    }

    /// An environment binding each top-level key of a JSON object (expr-lang's environment for an
    /// EventSource `filter.expression`). Anything other than an object binds nothing.
    pub fn from_json_object(json: &serde_json::Value) -> Self {
        let mut env = Self::new();
        if let serde_json::Value::Object(map) = json {
            for (k, v) in map {
                env.insert(k.clone(), Value::from(v));
            }
        }
        env
    }
}

/// Parses `source` into a [`Program`].
pub fn compile(source: &str) -> Result<Program, CompileError> {
    parser::parse(source).map(|root| Program { root })
}

/// Evaluates `program` over `env`.
pub fn eval(program: &Program, env: &Env) -> Result<Value, EvalError> {
    eval::eval(&program.root, env)
}

/// The syntax tree.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Expr {
    Literal(Value),
    Name(String),
    Member(Box<Expr>, String),
    Index(Box<Expr>, Box<Expr>),
    List(Vec<Expr>),
    Unary(UnaryOp, Box<Expr>),
    Binary(BinaryOp, Box<Expr>, Box<Expr>),
    /// A `=~`/`!~`/`matches` whose pattern is a literal, compiled once.
    Match {
        negated: bool,
        keyword: bool,
        subject: Box<Expr>,
        pattern: CompiledRegex,
    },
    Conditional(Box<Expr>, Box<Expr>, Box<Expr>),
}

impl Expr {
    fn collect_names<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            Expr::Literal(_) => {}
            Expr::Name(n) => {
                if !out.contains(&n.as_str()) {
                    out.push(n);
                }
            }
            Expr::Member(e, _) | Expr::Unary(_, e) => e.collect_names(out),
            Expr::Match { subject, .. } => subject.collect_names(out),
            Expr::Index(a, b) | Expr::Binary(_, a, b) => {
                a.collect_names(out);
                b.collect_names(out);
            }
            Expr::List(items) => items.iter().for_each(|i| i.collect_names(out)),
            Expr::Conditional(a, b, c) => {
                a.collect_names(out);
                b.collect_names(out);
                c.collect_names(out);
            }
        }
    }
}

/// A regex compiled at compile time, compared by its source.
#[derive(Clone, Debug)]
pub(crate) struct CompiledRegex {
    pub(crate) source: String,
    pub(crate) regex: regex::Regex,
}

impl PartialEq for CompiledRegex {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum UnaryOp {
    Not,
    /// `not` spelled as a word (printed back the same way).
    NotWord,
    Neg,
    Plus,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BinaryOp {
    Or,
    OrWord,
    And,
    AndWord,
    Coalesce,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// `=~` / `!~` / `matches` with a pattern computed at run time.
    RegexMatch,
    RegexNotMatch,
    Matches,
    In,
    NotIn,
    Contains,
    StartsWith,
    EndsWith,
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Pow,
}

impl BinaryOp {
    pub(crate) fn symbol(self) -> &'static str {
        match self {
            BinaryOp::Or => "||",
            BinaryOp::OrWord => "or",
            BinaryOp::And => "&&",
            BinaryOp::AndWord => "and",
            BinaryOp::Coalesce => "??",
            BinaryOp::Eq => "==",
            BinaryOp::Ne => "!=",
            BinaryOp::Lt => "<",
            BinaryOp::Le => "<=",
            BinaryOp::Gt => ">",
            BinaryOp::Ge => ">=",
            BinaryOp::RegexMatch => "=~",
            BinaryOp::RegexNotMatch => "!~",
            BinaryOp::Matches => "matches",
            BinaryOp::In => "in",
            BinaryOp::NotIn => "not in",
            BinaryOp::Contains => "contains",
            BinaryOp::StartsWith => "startsWith",
            BinaryOp::EndsWith => "endsWith",
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
            BinaryOp::Rem => "%",
            BinaryOp::Pow => "**",
        }
    }
}

#[cfg(test)]
mod tests;
