//! Evaluation: a tree walk over [`Expr`]; errors instead of panics for every ill-typed operation.

use std::cmp::Ordering;

use crate::parser::compile_regex;
use crate::value::write_number;
use crate::{BinaryOp, Env, EvalError, Expr, UnaryOp, Value};

pub(crate) fn eval(expr: &Expr, env: &Env) -> Result<Value, EvalError> {
    match expr {
        Expr::Literal(v) => Ok(v.clone()),
        Expr::Name(name) => env
            .get(name)
            .cloned()
            .ok_or_else(|| EvalError::UnknownName { name: name.clone() }),
        Expr::Member(object, member) => {
            let object = eval(object, env)?;
            member_of(&object, &Value::String(member.clone()))
        }
        Expr::Index(object, index) => {
            let object = eval(object, env)?;
            let index = eval(index, env)?;
            member_of(&object, &index)
        }
        Expr::List(items) => Ok(Value::Array(
            items.iter().map(|i| eval(i, env)).collect::<Result<_, _>>()?,
        )),
        Expr::Unary(op, operand) => {
            let v = eval(operand, env)?;
            match (op, v) {
                (UnaryOp::Not | UnaryOp::NotWord, Value::Bool(b)) => Ok(Value::Bool(!b)),
                (UnaryOp::Neg, Value::Number(n)) => Ok(Value::Number(-n)),
                (UnaryOp::Plus, Value::Number(n)) => Ok(Value::Number(n)),
                (op, v) => Err(EvalError::TypeMismatch {
                    op: match op {
                        UnaryOp::Not => "!",
                        UnaryOp::NotWord => "not",
                        UnaryOp::Neg => "-",
                        UnaryOp::Plus => "+",
                    },
                    left: v.type_name(),
                    right: "-",
                }),
            }
        }
        Expr::Match {
            negated,
            keyword,
            subject,
            pattern,
        } => {
            let op = match (negated, keyword) {
                (true, _) => "!~",
                (false, true) => "matches",
                (false, false) => "=~",
            };
            match eval(subject, env)? {
                Value::String(s) => Ok(Value::Bool(pattern.regex.is_match(&s) != *negated)),
                other => Err(EvalError::TypeMismatch {
                    op,
                    left: other.type_name(),
                    right: "string",
                }),
            }
        }
        Expr::Conditional(cond, then, otherwise) => match eval(cond, env)? {
            Value::Bool(true) => eval(then, env),
            Value::Bool(false) => eval(otherwise, env),
            other => Err(EvalError::TypeMismatch {
                op: "?:",
                left: other.type_name(),
                right: "-",
            }),
        },
        Expr::Binary(op, left, right) => binary(*op, left, right, env),
    }
}

fn member_of(object: &Value, key: &Value) -> Result<Value, EvalError> {
    match (object, key) {
        // A missing key reads as nil, as both upstream languages read maps.
        (Value::Object(map), Value::String(k)) => Ok(map.get(k).cloned().unwrap_or(Value::Null)),
        (Value::Array(items), Value::Number(n)) => {
            // Negative indexes count from the end, as expr-lang.
            let len = items.len() as f64;
            let i = if *n < 0.0 { len + n } else { *n };
            if i.fract() == 0.0 && i >= 0.0 && i < len {
                Ok(items[i as usize].clone())
            } else {
                Err(EvalError::NoMember {
                    member: {
                        let mut s = String::new();
                        let _ = write_number(&mut s, *n);
                        s
                    },
                    of: "array (index out of range)",
                })
            }
        }
        (other, key) => Err(EvalError::NoMember {
            member: key.to_string(),
            of: other.type_name(),
        }),
    }
}

fn mismatch(op: BinaryOp, l: &Value, r: &Value) -> EvalError {
    EvalError::TypeMismatch {
        op: op.symbol(),
        left: l.type_name(),
        right: r.type_name(),
    }
}

fn finite(op: BinaryOp, n: f64) -> Result<Value, EvalError> {
    if n.is_finite() {
        Ok(Value::Number(n))
    } else {
        Err(EvalError::NotFinite { op: op.symbol() })
    }
}

/// Deep equality; numbers compare numerically, different types are unequal.
pub(crate) fn equal(a: &Value, b: &Value) -> bool {
    a == b
}

fn order(op: BinaryOp, l: &Value, r: &Value) -> Result<Ordering, EvalError> {
    match (l, r) {
        (Value::Number(a), Value::Number(b)) => a.partial_cmp(b).ok_or_else(|| mismatch(op, l, r)),
        (Value::String(a), Value::String(b)) => Ok(a.cmp(b)),
        _ => Err(mismatch(op, l, r)),
    }
}

fn binary(op: BinaryOp, left: &Expr, right: &Expr, env: &Env) -> Result<Value, EvalError> {
    // Short-circuit operators first: the right side is evaluated only when needed.
    match op {
        BinaryOp::And | BinaryOp::AndWord | BinaryOp::Or | BinaryOp::OrWord => {
            let is_and = matches!(op, BinaryOp::And | BinaryOp::AndWord);
            let l = eval(left, env)?;
            let Value::Bool(lb) = l else {
                return Err(mismatch(op, &l, &Value::Bool(true)));
            };
            if lb != is_and {
                return Ok(Value::Bool(lb));
            }
            let r = eval(right, env)?;
            return match r {
                Value::Bool(rb) => Ok(Value::Bool(rb)),
                other => Err(mismatch(op, &l, &other)),
            };
        }
        BinaryOp::Coalesce => {
            return match eval(left, env) {
                Ok(Value::Null) | Err(EvalError::UnknownName { .. }) => eval(right, env),
                other => other,
            };
        }
        _ => {}
    }
    let l = eval(left, env)?;
    let r = eval(right, env)?;
    match op {
        BinaryOp::Eq => Ok(Value::Bool(equal(&l, &r))),
        BinaryOp::Ne => Ok(Value::Bool(!equal(&l, &r))),
        BinaryOp::Lt => Ok(Value::Bool(order(op, &l, &r)? == Ordering::Less)),
        BinaryOp::Le => Ok(Value::Bool(order(op, &l, &r)? != Ordering::Greater)),
        BinaryOp::Gt => Ok(Value::Bool(order(op, &l, &r)? == Ordering::Greater)),
        BinaryOp::Ge => Ok(Value::Bool(order(op, &l, &r)? != Ordering::Less)),
        BinaryOp::RegexMatch | BinaryOp::RegexNotMatch | BinaryOp::Matches => match (&l, &r) {
            (Value::String(s), Value::String(p)) => {
                let re = compile_regex(p).map_err(|e| EvalError::InvalidRegex {
                    pattern: p.clone(),
                    reason: e.to_string(),
                })?;
                Ok(Value::Bool(re.is_match(s) != (op == BinaryOp::RegexNotMatch)))
            }
            _ => Err(mismatch(op, &l, &r)),
        },
        BinaryOp::In | BinaryOp::NotIn => {
            let found = match &r {
                Value::Array(items) => items.iter().any(|i| equal(i, &l)),
                Value::Object(map) => match &l {
                    Value::String(k) => map.contains_key(k),
                    _ => return Err(mismatch(op, &l, &r)),
                },
                _ => return Err(mismatch(op, &l, &r)),
            };
            Ok(Value::Bool(found == (op == BinaryOp::In)))
        }
        BinaryOp::Contains | BinaryOp::StartsWith | BinaryOp::EndsWith => match (&l, &r) {
            (Value::String(s), Value::String(t)) => Ok(Value::Bool(match op {
                BinaryOp::Contains => s.contains(t.as_str()),
                BinaryOp::StartsWith => s.starts_with(t.as_str()),
                _ => s.ends_with(t.as_str()),
            })),
            _ => Err(mismatch(op, &l, &r)),
        },
        BinaryOp::Add => match (&l, &r) {
            (Value::Number(a), Value::Number(b)) => finite(op, a + b),
            // govaluate concatenates when either side is a string.
            (Value::String(_), Value::String(_) | Value::Number(_) | Value::Bool(_))
            | (Value::Number(_) | Value::Bool(_), Value::String(_)) => Ok(Value::String(format!("{l}{r}"))),
            _ => Err(mismatch(op, &l, &r)),
        },
        BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div | BinaryOp::Rem | BinaryOp::Pow => {
            let (Value::Number(a), Value::Number(b)) = (&l, &r) else {
                return Err(mismatch(op, &l, &r));
            };
            let (a, b) = (*a, *b);
            match op {
                BinaryOp::Sub => finite(op, a - b),
                BinaryOp::Mul => finite(op, a * b),
                BinaryOp::Div | BinaryOp::Rem if b == 0.0 => Err(EvalError::DivisionByZero),
                BinaryOp::Div => finite(op, a / b),
                BinaryOp::Rem => finite(op, a % b),
                _ => finite(op, a.powf(b)),
            }
        }
        // Handled above.
        BinaryOp::And | BinaryOp::AndWord | BinaryOp::Or | BinaryOp::OrWord | BinaryOp::Coalesce => {
            Err(mismatch(op, &l, &r))
        }
    }
}
