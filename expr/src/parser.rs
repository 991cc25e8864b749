//! A precedence-climbing parser. Every node's depth is tracked so no tree deeper than
//! [`MAX_DEPTH`] is built (deep trees would overflow the stack of the evaluator and of `Drop`).

use crate::lexer::{error, tokenize, Tok};
use crate::{BinaryOp, CompileError, CompiledRegex, Expr, UnaryOp, Value, MAX_DEPTH, MAX_LENGTH};

/// The largest compiled regex, in bytes (the `regex` crate's limit; keeps hostile patterns cheap).
pub(crate) const REGEX_SIZE_LIMIT: usize = 1 << 20;

pub(crate) fn compile_regex(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .nest_limit(MAX_DEPTH as u32)
        .build()
}

pub(crate) fn parse(source: &str) -> Result<Expr, CompileError> {
    if source.len() > MAX_LENGTH {
        return Err(error(
            source,
            MAX_LENGTH,
            format!("the expression is longer than {MAX_LENGTH} bytes"),
        ));
    }
    let tokens = tokenize(source)?;
    let mut parser = Parser {
        source,
        tokens,
        at: 0,
        level: 0,
    };
    if parser.peek() == &Tok::End {
        return Err(error(source, 0, "the expression is empty"));
    }
    let (expr, _) = parser.expr(0)?;
    match parser.peek() {
        Tok::End => Ok(expr),
        other => {
            let what = describe(other);
            Err(parser.err(format!("unexpected {what} after the end of the expression")))
        }
    }
}

fn describe(tok: &Tok) -> String {
    match tok {
        Tok::Number(n) => format!("number `{n}`"),
        Tok::Str(s) => format!("string {s:?}"),
        Tok::Ident(i) => format!("`{i}`"),
        Tok::Op(o) => format!("`{o}`"),
        Tok::End => "end of the expression".to_owned(),
    }
}

struct Parser<'a> {
    source: &'a str,
    tokens: Vec<(Tok, usize)>,
    at: usize,
    /// Current recursion depth of `expr` and `unary`.
    level: usize,
}

type Parsed = Result<(Expr, usize), CompileError>;

/// Binary operators by binding power (higher binds tighter); `None` when `tok` is not one.
fn binary(tok: &Tok, next: Option<&Tok>) -> Option<(BinaryOp, u8, usize)> {
    // (operator, power, tokens consumed)
    let op = match tok {
        Tok::Op("??") => (BinaryOp::Coalesce, 1, 1),
        Tok::Op("||") => (BinaryOp::Or, 2, 1),
        Tok::Op("&&") => (BinaryOp::And, 3, 1),
        Tok::Op("==") => (BinaryOp::Eq, 4, 1),
        Tok::Op("!=") => (BinaryOp::Ne, 4, 1),
        Tok::Op("<") => (BinaryOp::Lt, 4, 1),
        Tok::Op("<=") => (BinaryOp::Le, 4, 1),
        Tok::Op(">") => (BinaryOp::Gt, 4, 1),
        Tok::Op(">=") => (BinaryOp::Ge, 4, 1),
        Tok::Op("=~") => (BinaryOp::RegexMatch, 4, 1),
        Tok::Op("!~") => (BinaryOp::RegexNotMatch, 4, 1),
        Tok::Op("+") => (BinaryOp::Add, 5, 1),
        Tok::Op("-") => (BinaryOp::Sub, 5, 1),
        Tok::Op("*") => (BinaryOp::Mul, 6, 1),
        Tok::Op("/") => (BinaryOp::Div, 6, 1),
        Tok::Op("%") => (BinaryOp::Rem, 6, 1),
        Tok::Op("**") => (BinaryOp::Pow, 7, 1),
        Tok::Ident(word) => match word.as_str() {
            "or" => (BinaryOp::OrWord, 2, 1),
            "and" => (BinaryOp::AndWord, 3, 1),
            "in" => (BinaryOp::In, 4, 1),
            "matches" => (BinaryOp::Matches, 4, 1),
            "contains" => (BinaryOp::Contains, 4, 1),
            "startsWith" => (BinaryOp::StartsWith, 4, 1),
            "endsWith" => (BinaryOp::EndsWith, 4, 1),
            "not" if matches!(next, Some(Tok::Ident(w)) if w == "in") => (BinaryOp::NotIn, 4, 2),
            _ => return None,
        },
        _ => return None,
    };
    Some(op)
}

/// Words that cannot be names.
const KEYWORDS: [&str; 13] = [
    "true",
    "false",
    "nil",
    "null",
    "and",
    "or",
    "not",
    "in",
    "matches",
    "contains",
    "startsWith",
    "endsWith",
    "nan",
];

pub(crate) fn is_keyword(word: &str) -> bool {
    KEYWORDS.contains(&word)
}

impl Parser<'_> {
    fn peek(&self) -> &Tok {
        self.tokens.get(self.at).map(|(t, _)| t).unwrap_or(&Tok::End)
    }

    fn position(&self) -> usize {
        self.tokens
            .get(self.at)
            .map(|(_, p)| *p)
            .unwrap_or(self.source.len())
    }

    fn err(&self, message: impl Into<String>) -> CompileError {
        error(self.source, self.position(), message)
    }

    fn bump(&mut self) -> Tok {
        let tok = self.peek().clone();
        if self.at < self.tokens.len() {
            self.at += 1;
        }
        tok
    }

    fn expect(&mut self, op: &'static str) -> Result<(), CompileError> {
        if self.peek() == &Tok::Op(op) {
            self.bump();
            Ok(())
        } else {
            let found = describe(self.peek());
            Err(self.err(format!("expected `{op}`, found {found}")))
        }
    }

    fn check_depth(&self, depth: usize) -> Result<usize, CompileError> {
        if depth > MAX_DEPTH {
            Err(self.err(format!(
                "the expression is nested more than {MAX_DEPTH} levels deep"
            )))
        } else {
            Ok(depth)
        }
    }

    /// An expression whose binary operators bind at least as tight as `min_power`, then an optional
    /// `? :` when `min_power` is 0.
    fn expr(&mut self, min_power: u8) -> Parsed {
        self.enter()?;
        let out = self.expr_inner(min_power);
        self.level -= 1;
        out
    }

    /// Counts one level of recursion; refuses to go deeper than the tree may be, before recursing,
    /// so `((((…` or `-----…` cannot exhaust the stack.
    fn enter(&mut self) -> Result<(), CompileError> {
        if self.level >= 4 * MAX_DEPTH {
            return Err(self.err(format!(
                "the expression is nested more than {MAX_DEPTH} levels deep"
            )));
        }
        self.level += 1;
        Ok(())
    }

    fn expr_inner(&mut self, min_power: u8) -> Parsed {
        let (mut left, mut depth) = self.unary()?;
        loop {
            let next = self.tokens.get(self.at + 1).map(|(t, _)| t);
            let Some((op, power, width)) = binary(self.peek(), next) else {
                break;
            };
            if power < min_power.max(1) {
                break;
            }
            let op_position = self.position();
            for _ in 0..width {
                self.bump();
            }
            // `**` is right-associative; the others are left-associative.
            let next_min = if op == BinaryOp::Pow { power } else { power + 1 };
            let (right, right_depth) = self.expr(next_min)?;
            depth = self.check_depth(depth.max(right_depth) + 1)?;
            left = match (op, right) {
                (
                    BinaryOp::RegexMatch | BinaryOp::RegexNotMatch | BinaryOp::Matches,
                    Expr::Literal(Value::String(pattern)),
                ) => {
                    let regex = compile_regex(&pattern).map_err(|e| {
                        error(
                            self.source,
                            op_position,
                            format!("invalid regular expression {pattern:?}: {e}"),
                        )
                    })?;
                    Expr::Match {
                        negated: op == BinaryOp::RegexNotMatch,
                        keyword: op == BinaryOp::Matches,
                        subject: Box::new(left),
                        pattern: CompiledRegex {
                            source: pattern,
                            regex,
                        },
                    }
                }
                (op, right) => Expr::Binary(op, Box::new(left), Box::new(right)),
            };
        }
        if min_power == 0 && self.peek() == &Tok::Op("?") {
            self.bump();
            let (then, then_depth) = self.expr(0)?;
            self.expect(":")?;
            let (otherwise, else_depth) = self.expr(0)?;
            depth = self.check_depth(depth.max(then_depth).max(else_depth) + 1)?;
            left = Expr::Conditional(Box::new(left), Box::new(then), Box::new(otherwise));
        }
        Ok((left, depth))
    }

    fn unary(&mut self) -> Parsed {
        self.enter()?;
        let out = self.unary_inner();
        self.level -= 1;
        out
    }

    fn unary_inner(&mut self) -> Parsed {
        let op = match self.peek() {
            Tok::Op("!") => Some(UnaryOp::Not),
            Tok::Op("-") => Some(UnaryOp::Neg),
            Tok::Op("+") => Some(UnaryOp::Plus),
            Tok::Ident(w) if w == "not" => Some(UnaryOp::NotWord),
            _ => None,
        };
        if let Some(op) = op {
            self.bump();
            let (operand, depth) = self.unary()?;
            let depth = self.check_depth(depth + 1)?;
            return Ok((Expr::Unary(op, Box::new(operand)), depth));
        }
        self.postfix()
    }

    fn postfix(&mut self) -> Parsed {
        let (mut expr, mut depth) = self.primary()?;
        loop {
            match self.peek() {
                Tok::Op(".") => {
                    self.bump();
                    let name = match self.bump() {
                        Tok::Ident(name) => name,
                        other => {
                            self.at -= 1;
                            let found = describe(&other);
                            return Err(self.err(format!("expected a member name after `.`, found {found}")));
                        }
                    };
                    depth = self.check_depth(depth + 1)?;
                    expr = Expr::Member(Box::new(expr), name);
                }
                Tok::Op("[") => {
                    self.bump();
                    let (index, index_depth) = self.nested()?;
                    self.expect("]")?;
                    depth = self.check_depth(depth.max(index_depth) + 1)?;
                    expr = Expr::Index(Box::new(expr), Box::new(index));
                }
                _ => return Ok((expr, depth)),
            }
        }
    }

    /// A full expression inside brackets.
    fn nested(&mut self) -> Parsed {
        self.expr(0)
    }

    fn primary(&mut self) -> Parsed {
        match self.bump() {
            Tok::Number(n) => Ok((Expr::Literal(Value::Number(n)), 1)),
            Tok::Str(s) => Ok((Expr::Literal(Value::String(s)), 1)),
            Tok::Ident(word) => match word.as_str() {
                "true" => Ok((Expr::Literal(Value::Bool(true)), 1)),
                "false" => Ok((Expr::Literal(Value::Bool(false)), 1)),
                "nil" | "null" => Ok((Expr::Literal(Value::Null), 1)),
                w if is_keyword(w) => {
                    self.at -= 1;
                    Err(self.err(format!("`{w}` is a keyword, not a value")))
                }
                _ => {
                    if self.peek() == &Tok::Op("(") {
                        return Err(self.err(format!("function calls (`{word}(…)`) are not supported")));
                    }
                    Ok((Expr::Name(word), 1))
                }
            },
            Tok::Op("(") => {
                let (first, first_depth) = self.nested()?;
                if self.peek() == &Tok::Op(",") {
                    // govaluate's list literal `(a, b)`.
                    let (items, depth) = self.list_rest(first, first_depth, ")")?;
                    return Ok((Expr::List(items), depth));
                }
                self.expect(")")?;
                Ok((first, first_depth))
            }
            Tok::Op("[") => {
                if self.peek() == &Tok::Op("]") {
                    self.bump();
                    return Ok((Expr::List(Vec::new()), 1));
                }
                let (first, first_depth) = self.nested()?;
                let (items, depth) = self.list_rest(first, first_depth, "]")?;
                Ok((Expr::List(items), depth))
            }
            other => {
                self.at = self.at.saturating_sub(1);
                let found = describe(&other);
                Err(self.err(format!("expected a value, found {found}")))
            }
        }
    }

    fn list_rest(
        &mut self,
        first: Expr,
        first_depth: usize,
        close: &'static str,
    ) -> Result<(Vec<Expr>, usize), CompileError> {
        let mut items = vec![first];
        let mut depth = first_depth;
        while self.peek() == &Tok::Op(",") {
            self.bump();
            if self.peek() == &Tok::Op(close) {
                break; // a trailing comma
            }
            let (item, item_depth) = self.expr(0)?;
            depth = depth.max(item_depth);
            items.push(item);
        }
        self.expect(close)?;
        Ok((items, self.check_depth(depth + 1)?))
    }
}
