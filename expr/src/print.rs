//! Prints a tree back to source, fully parenthesized, so it parses to the same tree.

use std::fmt::{self, Write};

use crate::parser::is_keyword;
use crate::value::write_number;
use crate::{Expr, UnaryOp, Value};

pub(crate) fn write_expr(f: &mut impl Write, expr: &Expr) -> fmt::Result {
    match expr {
        Expr::Literal(v) => write_literal(f, v),
        Expr::Name(n) => f.write_str(n),
        Expr::Member(object, member) => {
            // A number before `.` would read as a decimal point (`0.x`): parenthesize it.
            if matches!(**object, Expr::Literal(Value::Number(_))) {
                f.write_char('(')?;
                write_expr(f, object)?;
                f.write_char(')')?;
            } else {
                write_expr(f, object)?;
            }
            if is_name(member) {
                write!(f, ".{member}")
            } else {
                // Only reachable for trees not built by the parser; still valid source.
                f.write_char('.')?;
                f.write_str(member)
            }
        }
        Expr::Index(object, index) => {
            write_expr(f, object)?;
            f.write_char('[')?;
            write_expr(f, index)?;
            f.write_char(']')
        }
        Expr::List(items) => {
            f.write_char('[')?;
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write_expr(f, item)?;
            }
            f.write_char(']')
        }
        Expr::Unary(op, operand) => {
            f.write_str(match op {
                UnaryOp::Not => "(!",
                UnaryOp::NotWord => "(not ",
                UnaryOp::Neg => "(-",
                UnaryOp::Plus => "(+",
            })?;
            write_expr(f, operand)?;
            f.write_char(')')
        }
        Expr::Binary(op, l, r) => {
            f.write_char('(')?;
            write_expr(f, l)?;
            write!(f, " {} ", op.symbol())?;
            write_expr(f, r)?;
            f.write_char(')')
        }
        Expr::Match {
            negated,
            keyword,
            subject,
            pattern,
        } => {
            f.write_char('(')?;
            write_expr(f, subject)?;
            let op = match (negated, keyword) {
                (true, _) => "!~",
                (false, true) => "matches",
                (false, false) => "=~",
            };
            write!(f, " {op} ")?;
            write_string(f, &pattern.source)?;
            f.write_char(')')
        }
        Expr::Conditional(c, a, b) => {
            f.write_char('(')?;
            write_expr(f, c)?;
            f.write_str(" ? ")?;
            write_expr(f, a)?;
            f.write_str(" : ")?;
            write_expr(f, b)?;
            f.write_char(')')
        }
    }
}

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '$')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
        && !is_keyword(s)
}

fn write_literal(f: &mut impl Write, v: &Value) -> fmt::Result {
    match v {
        Value::Null => f.write_str("nil"),
        Value::Bool(b) => write!(f, "{b}"),
        Value::Number(n) => {
            if n.fract() == 0.0 && n.abs() < 1e15 {
                write_number(f, *n)
            } else {
                // Rust prints the shortest text that reads back as the same f64.
                write!(f, "{n:e}")
            }
        }
        Value::String(s) => write_string(f, s),
        Value::Array(items) => {
            f.write_char('[')?;
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write_literal(f, item)?;
            }
            f.write_char(']')
        }
        Value::Object(_) => f.write_str("nil"),
    }
}

fn write_string(f: &mut impl Write, s: &str) -> fmt::Result {
    f.write_char('"')?;
    for c in s.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\t' => f.write_str("\\t")?,
            '\r' => f.write_str("\\r")?,
            '\0' => f.write_str("\\0")?,
            c if c.is_control() => write!(f, "\\u{:04x}", c as u32)?,
            c => f.write_char(c)?,
        }
    }
    f.write_char('"')
}
