//! Trigger `conditions`: which of a sensor's dependencies must have delivered events for a trigger
//! to fire, written as dependency names joined with `&&` and `||`, with parentheses:
//! `(dep01 || dep02) && dep04`.
//!
//! Upstream semantics, which this module keeps:
//! - `&&` binds tighter than `||`; both are left-associative; whitespace is insignificant.
//! - A dependency name is made of ASCII letters, digits, `-`, `_` and `.`. Upstream rewrites `-` to `_`
//!   before handing the text to its expression engine, so `-` is part of a name, never a minus.
//! - An absent or empty `conditions` means "all of the sensor's dependencies" ([`Expr::all_of`]).
//!
//! The parser is a hand-written recursive descent over characters; it reports the 1-based column and
//! what it expected. Nesting and length are bounded so that no input can exhaust the stack.

use std::collections::BTreeSet;
use std::fmt;

/// Most parentheses open at once. Real conditions use two or three levels.
const MAX_NESTING: usize = 64;
/// Most `&&`/`||` operators in one expression, which bounds the depth of the tree (and so the
/// recursion in [`Expr::eval`], [`fmt::Display`] and `Drop`).
const MAX_OPERATORS: usize = 512;

/// A parsed condition.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Expr {
    /// True when the named dependency has an event.
    Dep(String),
    /// True when both sides are.
    And(Box<Expr>, Box<Expr>),
    /// True when either side is.
    Or(Box<Expr>, Box<Expr>),
}

/// Why a condition did not parse: where, what the parser expected there, and what it found.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("failed to parse trigger condition at column {column}: expected {expected}, found {found}")]
pub struct ConditionError {
    /// 1-based column (in characters) of the offending token; one past the end for a truncated input.
    pub column: usize,
    /// What would have been valid at that point, e.g. `a dependency name or '('`.
    pub expected: String,
    /// What was there instead, e.g. `'|'` or `end of input`.
    pub found: String,
}

/// Parses a condition such as `(a || b) && c-1`.
pub fn parse(text: &str) -> Result<Expr, ConditionError> {
    let mut parser = Parser {
        chars: text.chars().collect(),
        pos: 0,
        depth: 0,
        operators: 0,
    };
    let expr = parser.parse_or()?;
    parser.skip_whitespace();
    if parser.pos < parser.chars.len() {
        return Err(parser.error("'&&', '||' or end of input"));
    }
    Ok(expr)
}

/// True for the characters a dependency name may contain.
pub fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

/// True when `name` can be written in a condition as it is.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(is_name_char)
}

impl Expr {
    /// The dependency `name`.
    pub fn dep(name: impl Into<String>) -> Expr {
        Expr::Dep(name.into())
    }

    /// `self && other`.
    pub fn and(self, other: Expr) -> Expr {
        Expr::And(Box::new(self), Box::new(other))
    }

    /// `self || other`.
    pub fn or(self, other: Expr) -> Expr {
        Expr::Or(Box::new(self), Box::new(other))
    }

    /// All of `names` joined with `&&` (left to right); `None` when there are none. This is the
    /// condition of a trigger without `conditions`.
    pub fn all_of<I, S>(names: I) -> Option<Expr>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        names.into_iter().map(|n| Expr::Dep(n.into())).reduce(Expr::and)
    }

    /// The condition a trigger waits for: `conditions` parsed when it is set and not blank, otherwise
    /// the AND of all `dependency_names`. An error when `conditions` does not parse, or when it is
    /// absent and there are no dependencies.
    pub fn for_trigger<I, S>(conditions: Option<&str>, dependency_names: I) -> Result<Expr, ConditionError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        match conditions {
            Some(text) if !text.trim().is_empty() => parse(text),
            _ => Expr::all_of(dependency_names).ok_or_else(|| ConditionError {
                column: 1,
                expected: "at least one dependency in the sensor".to_string(),
                found: "none".to_string(),
            }),
        }
    }

    /// The dependency names the expression mentions, each once, sorted.
    pub fn deps(&self) -> BTreeSet<&str> {
        let mut out = BTreeSet::new();
        let mut stack = vec![self];
        while let Some(e) = stack.pop() {
            match e {
                Expr::Dep(name) => {
                    out.insert(name.as_str());
                }
                Expr::And(l, r) | Expr::Or(l, r) => {
                    stack.push(r);
                    stack.push(l);
                }
            }
        }
        out
    }

    /// True when the condition has an `&&` anywhere in its tree: `a && b`, `a && (b || c)` and
    /// `(a && b) || c` have one, `a` and `a || b` do not.
    ///
    /// This is what decides whether a trigger keeps state (upstream's rule, which checks the text
    /// for `&&`). Without an `&&`, the event of any one dependency the condition names satisfies it
    /// on its own, so each event fires the trigger by itself; with one, some way of satisfying it
    /// needs events of several dependencies, so events are held until the condition is true. (A
    /// condition such as `a && a`, which one event satisfies, is held too; holding evaluates it
    /// at once, so it still fires on that event.)
    pub fn has_and(&self) -> bool {
        let mut stack = vec![self];
        while let Some(e) = stack.pop() {
            match e {
                Expr::Dep(_) => {}
                Expr::And(..) => return true,
                Expr::Or(l, r) => {
                    stack.push(r);
                    stack.push(l);
                }
            }
        }
        false
    }

    /// Evaluates the expression; `has_event(name)` says whether a dependency is satisfied.
    /// Short-circuits left to right.
    pub fn eval(&self, has_event: &dyn Fn(&str) -> bool) -> bool {
        match self {
            Expr::Dep(name) => has_event(name),
            Expr::And(l, r) => l.eval(has_event) && r.eval(has_event),
            Expr::Or(l, r) => l.eval(has_event) || r.eval(has_event),
        }
    }

    fn fmt_child(&self, f: &mut fmt::Formatter<'_>, parens: bool) -> fmt::Result {
        if parens {
            write!(f, "({self})")
        } else {
            write!(f, "{self}")
        }
    }
}

/// The canonical form: single spaces around operators, and parentheses only where needed to parse
/// back into the same tree (`a && b || c`, `a && (b || c)`, `a || (b || c)`).
impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Dep(name) => f.write_str(name),
            Expr::And(l, r) => {
                l.fmt_child(f, matches!(**l, Expr::Or(..)))?;
                f.write_str(" && ")?;
                r.fmt_child(f, !matches!(**r, Expr::Dep(_)))
            }
            Expr::Or(l, r) => {
                l.fmt_child(f, false)?;
                f.write_str(" || ")?;
                r.fmt_child(f, matches!(**r, Expr::Or(..)))
            }
        }
    }
}

impl std::str::FromStr for Expr {
    type Err = ConditionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s)
    }
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
    depth: usize,
    operators: usize,
}

impl Parser {
    fn skip_whitespace(&mut self) {
        while self.chars.get(self.pos).is_some_and(|c| c.is_whitespace()) {
            self.pos += 1;
        }
    }

    fn error(&self, expected: &str) -> ConditionError {
        let found = match self.chars.get(self.pos) {
            None => "end of input".to_string(),
            Some(c) => format!("{c:?}"),
        };
        ConditionError {
            column: self.pos + 1,
            expected: expected.to_string(),
            found,
        }
    }

    /// Consumes the two-character operator `op` (after whitespace) if it is next.
    fn eat_operator(&mut self, op: char) -> Result<bool, ConditionError> {
        self.skip_whitespace();
        if self.chars.get(self.pos) != Some(&op) {
            return Ok(false);
        }
        if self.chars.get(self.pos + 1) != Some(&op) {
            self.pos += 1;
            return Err(self.error(&format!("'{op}' (operators are '&&' and '||')")));
        }
        self.operators += 1;
        if self.operators > MAX_OPERATORS {
            return Err(ConditionError {
                column: self.pos + 1,
                expected: format!("at most {MAX_OPERATORS} operators"),
                found: "more".to_string(),
            });
        }
        self.pos += 2;
        Ok(true)
    }

    fn parse_or(&mut self) -> Result<Expr, ConditionError> {
        let mut left = self.parse_and()?;
        while self.eat_operator('|')? {
            let right = self.parse_and()?;
            left = left.or(right);
        }
        Ok(left)
    }

    fn parse_and(&mut self) -> Result<Expr, ConditionError> {
        let mut left = self.parse_atom()?;
        while self.eat_operator('&')? {
            let right = self.parse_atom()?;
            left = left.and(right);
        }
        Ok(left)
    }

    fn parse_atom(&mut self) -> Result<Expr, ConditionError> {
        self.skip_whitespace();
        match self.chars.get(self.pos) {
            Some('(') => {
                if self.depth >= MAX_NESTING {
                    return Err(self.error(&format!("at most {MAX_NESTING} nested parentheses")));
                }
                self.pos += 1;
                self.depth += 1;
                let inner = self.parse_or()?;
                self.skip_whitespace();
                if self.chars.get(self.pos) != Some(&')') {
                    return Err(self.error("'&&', '||' or ')'"));
                }
                self.pos += 1;
                self.depth -= 1;
                Ok(inner)
            }
            Some(&c) if is_name_char(c) => {
                let start = self.pos;
                while self.chars.get(self.pos).is_some_and(|&c| is_name_char(c)) {
                    self.pos += 1;
                }
                Ok(Expr::Dep(self.chars[start..self.pos].iter().collect()))
            }
            _ => Err(self.error("a dependency name or '('")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(n: &str) -> Expr {
        Expr::dep(n)
    }

    #[test]
    fn parses_names_and_precedence() {
        assert_eq!(parse("a").expect("must parse"), d("a"));
        assert_eq!(parse("  dep-01.x_y ").expect("must parse"), d("dep-01.x_y"));
        assert_eq!(
            parse("a && b || c").expect("must parse"),
            d("a").and(d("b")).or(d("c"))
        );
        assert_eq!(
            parse("a || b && c").expect("must parse"),
            d("a").or(d("b").and(d("c")))
        );
        assert_eq!(
            parse("(a || b) && c").expect("must parse"),
            d("a").or(d("b")).and(d("c"))
        );
        assert_eq!(
            parse("a&&b&&c").expect("must parse"),
            d("a").and(d("b")).and(d("c"))
        );
        assert_eq!(parse("((a))").expect("must parse"), d("a"));
    }

    #[test]
    fn upstream_examples_parse() {
        for text in [
            "(dep01 || dep02) && dep04",
            "test-dep-1 && test-dep-2",
            "dep01",
            "A || (B && C)",
        ] {
            assert!(parse(text).is_ok(), "{text}");
        }
    }

    #[test]
    fn errors_name_column_and_expectation() {
        let e = parse("a && ").expect_err("must fail");
        assert_eq!(
            (e.column, e.expected.as_str(), e.found.as_str()),
            (6, "a dependency name or '('", "end of input")
        );
        let e = parse("a & b").expect_err("must fail");
        assert_eq!(e.column, 4);
        assert!(e.expected.contains("'&'"), "{e}");
        let e = parse("(a || b").expect_err("must fail");
        assert_eq!(e.column, 8);
        assert!(e.expected.contains("')'"));
        let e = parse("a b").expect_err("must fail");
        assert_eq!((e.column, e.found.as_str()), (3, "'b'"));
        let e = parse("").expect_err("must fail");
        assert_eq!(e.column, 1);
        let e = parse("a && !b").expect_err("must fail");
        assert_eq!((e.column, e.found.as_str()), (6, "'!'"));
        assert!(e
            .to_string()
            .starts_with("failed to parse trigger condition at column 6"));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let text = format!("{}a{}", "(".repeat(10_000), ")".repeat(10_000));
        assert!(parse(&text).is_err());
        let text = vec!["a"; 10_000].join(" && ");
        assert!(parse(&text).is_err());
    }

    #[test]
    fn deps_and_eval() {
        let e = parse("(a || b) && c && a").expect("must parse");
        assert_eq!(e.deps().into_iter().collect::<Vec<_>>(), vec!["a", "b", "c"]);
        assert!(e.eval(&|n| n == "a" || n == "c"));
        assert!(!e.eval(&|n| n == "a" || n == "b"));
        assert!(!e.eval(&|n| n != "a"));
        assert!(e.eval(&|n| n != "b"));
    }

    #[test]
    fn absent_conditions_mean_all_dependencies() {
        let e = Expr::for_trigger(None, ["a", "b", "c"]).expect("must parse");
        assert_eq!(e.to_string(), "a && b && c");
        let e = Expr::for_trigger(Some("  "), ["a"]).expect("must parse");
        assert_eq!(e, d("a"));
        assert!(Expr::for_trigger(None, Vec::<String>::new()).is_err());
        assert_eq!(
            Expr::for_trigger(Some("b || a"), ["a"]).expect("must parse"),
            d("b").or(d("a"))
        );
    }

    #[test]
    fn display_is_canonical() {
        assert_eq!(parse("a&&b||c").expect("must parse").to_string(), "a && b || c");
        assert_eq!(
            parse("a && (b || c)").expect("must parse").to_string(),
            "a && (b || c)"
        );
        assert_eq!(
            parse("a || (b || c)").expect("must parse").to_string(),
            "a || (b || c)"
        );
        assert_eq!(
            parse("(a || b) || c").expect("must parse").to_string(),
            "a || b || c"
        );
        assert_eq!(
            parse("a && (b && c)").expect("must parse").to_string(),
            "a && (b && c)"
        );
    }

    const NAMES: [&str; 5] = ["a", "b-1", "c_2", "d.e", "Dep05"];

    fn arb_expr() -> impl Strategy<Value = Expr> {
        let leaf = prop::sample::select(NAMES.to_vec()).prop_map(Expr::dep);
        leaf.prop_recursive(6, 64, 2, |inner| {
            prop_oneof![
                (inner.clone(), inner.clone()).prop_map(|(l, r)| l.and(r)),
                (inner.clone(), inner).prop_map(|(l, r)| l.or(r)),
            ]
        })
    }

    fn arb_assignment() -> impl Strategy<Value = Vec<bool>> {
        prop::collection::vec(any::<bool>(), NAMES.len())
    }

    fn lookup(values: &[bool]) -> impl Fn(&str) -> bool + '_ {
        move |name| NAMES.iter().position(|n| *n == name).is_some_and(|i| values[i])
    }

    #[test]
    fn has_and_answers_from_the_tree() {
        let has = |text: &str| parse(text).expect("must parse").has_and();
        assert!(has("a && b"));
        assert!(!has("a || b"));
        assert!(has("a && (b || c)"), "a needs b or c: events are held");
        assert!(has("(a && b) || c"), "a alone does not fire: events are held");
        assert!(has("a || (b || c && d)"), "an && at any depth counts");
        assert!(!has("a"));
        assert!(!has("(a || b) || (c || d)"));
        assert!(!Expr::all_of(["a"]).expect("one dependency").has_and());
        assert!(Expr::all_of(["a", "b"]).expect("two dependencies").has_and());
    }

    proptest! {
        #[test]
        fn has_and_matches_the_text_rule_it_replaces(e in arb_expr()) {
            // Names cannot contain `&`, so the old `to_string().contains("&&")` agreed with the
            // tree; this pins that the switch changes no trigger's behaviour.
            prop_assert_eq!(e.has_and(), e.to_string().contains("&&"));
        }

        #[test]
        fn without_and_any_one_dependency_satisfies_the_condition(e in arb_expr()) {
            // Why a trigger without `&&` needs no state: each event fires it on its own.
            if !e.has_and() {
                for dep in e.deps() {
                    prop_assert!(e.eval(&|d| d == dep), "{} alone must satisfy {}", dep, e);
                }
            }
        }

        #[test]
        fn print_parse_round_trip(e in arb_expr()) {
            let text = e.to_string();
            prop_assert_eq!(parse(&text), Ok(e), "{}", text);
        }

        #[test]
        fn and_or_commute(a in arb_expr(), b in arb_expr(), v in arb_assignment()) {
            let f = lookup(&v);
            prop_assert_eq!(a.clone().and(b.clone()).eval(&f), b.clone().and(a.clone()).eval(&f));
            prop_assert_eq!(a.clone().or(b.clone()).eval(&f), b.or(a).eval(&f));
        }

        #[test]
        fn distributivity(a in arb_expr(), b in arb_expr(), c in arb_expr(), v in arb_assignment()) {
            let f = lookup(&v);
            let lhs = a.clone().and(b.clone().or(c.clone()));
            let rhs = a.clone().and(b.clone()).or(a.clone().and(c.clone()));
            prop_assert_eq!(lhs.eval(&f), rhs.eval(&f));
            let lhs = a.clone().or(b.clone().and(c.clone()));
            let rhs = a.clone().or(b).and(a.or(c));
            prop_assert_eq!(lhs.eval(&f), rhs.eval(&f));
        }

        #[test]
        fn printed_text_evaluates_the_same(e in arb_expr(), v in arb_assignment()) {
            let f = lookup(&v);
            let reparsed = parse(&e.to_string()).map_err(|err| TestCaseError::fail(err.to_string()))?;
            prop_assert_eq!(reparsed.eval(&f), e.eval(&f));
        }

        #[test]
        fn random_text_never_panics(s in ".{0,64}") {
            let _ = parse(&s);
        }

        #[test]
        fn random_operator_soup_never_panics(s in "[ab()&| -]{0,64}") {
            if let Ok(e) = parse(&s) {
                prop_assert_eq!(parse(&e.to_string()), Ok(e));
            }
        }
    }
}
