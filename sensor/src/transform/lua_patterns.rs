//! Lua 5.4's pattern functions — `string.find`, `string.match`, `string.gmatch`, `string.gsub` — in
//! Rust, installed in place of Lua's own in every sandbox (the string metatable's `__index` is the
//! `string` table, so `s:match(p)` reaches these too).
//!
//! Why not Lua's own: they run in C, where the instruction hook never fires, and they backtrack: a
//! pattern such as `(.-)(.-)(.-)x` on a long string runs for hours. These follow the semantics of the
//! Lua 5.4 manual (§6.4.1, patterns; §6.4, the four functions) with three differences:
//! - every matching step counts on the run's [`Meter`], so the run's deadline stops them;
//! - a subject longer than [`MAX_SUBJECT`] bytes is an error, not a search (a bound on the work
//!   one call may start, and on what a single step may cost);
//! - `gsub`'s result may be at most [`MAX_RESULT`] bytes (it is built outside Lua's allocator, so
//!   Lua's memory limit would not see it).

use std::rc::Rc;

use mlua::{Function, Lua, MultiValue, Table, Value};

use super::lua::{limit_error, MEMORY_LIMIT};
use crate::eval::Meter;

/// The longest string (bytes) the pattern functions search.
pub const MAX_SUBJECT: usize = 64 * 1024;
/// The longest result (bytes) `string.gsub` builds.
pub const MAX_RESULT: usize = MEMORY_LIMIT;
/// How deeply matching may recurse (Lua's `MAXCCALLS`).
const MAX_MATCH_DEPTH: usize = 200;
/// The most captures in one pattern (Lua's `LUA_MAXCAPTURES`).
const MAX_CAPTURES: usize = 32;
/// The escape character of patterns.
const ESC: u8 = b'%';
/// Characters that make a pattern more than a plain string (for `find`).
const SPECIALS: &[u8] = b"^$*+?.([%-";

type MatchResult = mlua::Result<Option<usize>>;

fn error(message: impl std::fmt::Display) -> mlua::Error {
    mlua::Error::runtime(message)
}

/// Replaces the pattern functions of the `string` table of `lua` with the ones here, all counting
/// on `meter`.
pub(super) fn install(lua: &Lua, meter: &Rc<Meter>) -> mlua::Result<()> {
    let string: Table = lua.globals().get("string")?;
    let m = meter.clone();
    string.raw_set(
        "find",
        lua.create_function(move |lua, args: MultiValue| find_or_match(lua, &m, &args, true))?,
    )?;
    let m = meter.clone();
    string.raw_set(
        "match",
        lua.create_function(move |lua, args: MultiValue| find_or_match(lua, &m, &args, false))?,
    )?;
    let m = meter.clone();
    string.raw_set(
        "gmatch",
        lua.create_function(move |lua, args: MultiValue| gmatch(lua, &m, &args))?,
    )?;
    let m = meter.clone();
    string.raw_set(
        "gsub",
        lua.create_function(move |lua, args: MultiValue| gsub(lua, &m, &args))?,
    )?;
    Ok(())
}

/// The length of a capture.
#[derive(Clone, Copy, Debug)]
enum CaptureLen {
    /// Opened, not closed yet.
    Unfinished,
    /// A position capture `()`.
    Position,
    /// A closed capture of this many bytes.
    Len(usize),
}

/// The state of matching one pattern against one subject (Lua's `MatchState`).
struct Matcher<'s> {
    src: &'s [u8],
    pat: &'s [u8],
    meter: &'s Meter,
    depth: usize,
    level: usize,
    captures: [(usize, CaptureLen); MAX_CAPTURES],
}

impl<'s> Matcher<'s> {
    fn new(src: &'s [u8], pat: &'s [u8], meter: &'s Meter) -> Self {
        Self {
            src,
            pat,
            meter,
            depth: 0,
            level: 0,
            captures: [(0, CaptureLen::Unfinished); MAX_CAPTURES],
        }
    }

    /// Forgets the captures of an earlier attempt.
    fn reset(&mut self) {
        self.level = 0;
        self.depth = 0;
    }

    fn step(&self) -> mlua::Result<()> {
        self.meter.step().map_err(limit_error)
    }

    /// The end of the single-character class starting at `p`.
    fn class_end(&self, mut p: usize) -> mlua::Result<usize> {
        let c = self.pat[p];
        p += 1;
        if c == ESC {
            if p >= self.pat.len() {
                return Err(error("malformed pattern (ends with '%')"));
            }
            return Ok(p + 1);
        }
        if c == b'[' {
            if self.pat.get(p) == Some(&b'^') {
                p += 1;
            }
            // The first character of a set is never its end, so `[]]` is a set of `]`.
            loop {
                if p >= self.pat.len() {
                    return Err(error("malformed pattern (missing ']')"));
                }
                let c = self.pat[p];
                p += 1;
                if c == ESC && p < self.pat.len() {
                    p += 1;
                }
                if self.pat.get(p) == Some(&b']') {
                    return Ok(p + 1);
                }
            }
        }
        Ok(p)
    }

    /// Does the set `[...]` from `p` (its `[`) to `end` (its `]`) contain `c`?
    fn set_matches(&self, c: u8, mut p: usize, end: usize) -> bool {
        let mut found = true;
        if self.pat[p + 1] == b'^' {
            found = false;
            p += 1;
        }
        p += 1;
        while p < end {
            if self.pat[p] == ESC {
                p += 1;
                if class_matches(c, self.pat[p]) {
                    return found;
                }
            } else if self.pat[p + 1] == b'-' && p + 2 < end {
                p += 2;
                if self.pat[p - 2] <= c && c <= self.pat[p] {
                    return found;
                }
            } else if self.pat[p] == c {
                return found;
            }
            p += 1;
        }
        !found
    }

    /// Does the subject's byte at `s` match the class from `p` to `ep`?
    fn single_match(&self, s: usize, p: usize, ep: usize) -> bool {
        let Some(&c) = self.src.get(s) else {
            return false;
        };
        match self.pat[p] {
            b'.' => true,
            ESC => class_matches(c, self.pat[p + 1]),
            b'[' => self.set_matches(c, p, ep - 1),
            literal => literal == c,
        }
    }

    /// Where a match of `pat[p..]` at `src[s..]` ends, if there is one.
    fn do_match(&mut self, s: usize, p: usize) -> MatchResult {
        if self.depth >= MAX_MATCH_DEPTH {
            return Err(error("pattern too complex"));
        }
        self.depth += 1;
        let result = self.match_here(s, p);
        self.depth -= 1;
        result
    }

    fn match_here(&mut self, mut s: usize, mut p: usize) -> MatchResult {
        loop {
            self.step()?;
            let Some(&pc) = self.pat.get(p) else {
                return Ok(Some(s));
            };
            match pc {
                b'(' => {
                    return if self.pat.get(p + 1) == Some(&b')') {
                        self.start_capture(s, p + 2, CaptureLen::Position)
                    } else {
                        self.start_capture(s, p + 1, CaptureLen::Unfinished)
                    };
                }
                b')' => return self.end_capture(s, p + 1),
                b'$' if p + 1 == self.pat.len() => {
                    return Ok((s == self.src.len()).then_some(s));
                }
                ESC => match self.pat.get(p + 1) {
                    Some(b'b') => match self.match_balance(s, p + 2)? {
                        Some(end) => {
                            s = end;
                            p += 4;
                            continue;
                        }
                        None => return Ok(None),
                    },
                    Some(b'f') => {
                        p += 2;
                        if self.pat.get(p) != Some(&b'[') {
                            return Err(error("missing '[' after '%f' in pattern"));
                        }
                        let ep = self.class_end(p)?;
                        let previous = s.checked_sub(1).map_or(0, |i| self.src[i]);
                        let current = self.src.get(s).copied().unwrap_or(0);
                        if !self.set_matches(previous, p, ep - 1) && self.set_matches(current, p, ep - 1) {
                            p = ep;
                            continue;
                        }
                        return Ok(None);
                    }
                    Some(&d) if d.is_ascii_digit() => match self.match_capture(s, d)? {
                        Some(end) => {
                            s = end;
                            p += 2;
                            continue;
                        }
                        None => return Ok(None),
                    },
                    _ => {}
                },
                _ => {}
            }
            // A single-character class, maybe with a quantifier.
            let ep = self.class_end(p)?;
            let quantifier = self.pat.get(ep).copied();
            if !self.single_match(s, p, ep) {
                if matches!(quantifier, Some(b'*' | b'?' | b'-')) {
                    // The item may match nothing.
                    p = ep + 1;
                    continue;
                }
                return Ok(None);
            }
            match quantifier {
                Some(b'?') => {
                    if let Some(end) = self.do_match(s + 1, ep + 1)? {
                        return Ok(Some(end));
                    }
                    p = ep + 1;
                }
                Some(b'+') => return self.max_expand(s + 1, p, ep),
                Some(b'*') => return self.max_expand(s, p, ep),
                Some(b'-') => return self.min_expand(s, p, ep),
                _ => {
                    s += 1;
                    p = ep;
                }
            }
        }
    }

    /// Longest first: as many repetitions as match, then fewer until the rest matches.
    fn max_expand(&mut self, s: usize, p: usize, ep: usize) -> MatchResult {
        let mut n = 0;
        while self.single_match(s + n, p, ep) {
            self.step()?;
            n += 1;
        }
        loop {
            if let Some(end) = self.do_match(s + n, ep + 1)? {
                return Ok(Some(end));
            }
            let Some(fewer) = n.checked_sub(1) else {
                return Ok(None);
            };
            n = fewer;
        }
    }

    /// Shortest first: the rest at each position while the item keeps matching.
    fn min_expand(&mut self, mut s: usize, p: usize, ep: usize) -> MatchResult {
        loop {
            if let Some(end) = self.do_match(s, ep + 1)? {
                return Ok(Some(end));
            }
            if !self.single_match(s, p, ep) {
                return Ok(None);
            }
            s += 1;
        }
    }

    fn start_capture(&mut self, s: usize, p: usize, what: CaptureLen) -> MatchResult {
        if self.level >= MAX_CAPTURES {
            return Err(error("too many captures"));
        }
        self.captures[self.level] = (s, what);
        self.level += 1;
        let result = self.do_match(s, p)?;
        if result.is_none() {
            self.level -= 1;
        }
        Ok(result)
    }

    fn end_capture(&mut self, s: usize, p: usize) -> MatchResult {
        let Some(l) = (0..self.level)
            .rev()
            .find(|&l| matches!(self.captures[l].1, CaptureLen::Unfinished))
        else {
            return Err(error("invalid pattern capture"));
        };
        self.captures[l].1 = CaptureLen::Len(s - self.captures[l].0);
        let result = self.do_match(s, p)?;
        if result.is_none() {
            self.captures[l].1 = CaptureLen::Unfinished;
        }
        Ok(result)
    }

    /// `%bxy`: a balanced run from `x` to its matching `y`.
    fn match_balance(&self, s: usize, p: usize) -> MatchResult {
        if p + 1 >= self.pat.len() {
            return Err(error("malformed pattern (missing arguments to '%b')"));
        }
        let (open, close) = (self.pat[p], self.pat[p + 1]);
        if self.src.get(s) != Some(&open) {
            return Ok(None);
        }
        let mut depth = 1usize;
        for (i, &c) in self.src.iter().enumerate().skip(s + 1) {
            self.step()?;
            if c == close {
                depth -= 1;
                if depth == 0 {
                    return Ok(Some(i + 1));
                }
            } else if c == open {
                depth += 1;
            }
        }
        Ok(None)
    }

    /// `%1`…`%9`: the text of an earlier capture, again.
    fn match_capture(&self, s: usize, digit: u8) -> MatchResult {
        let index = usize::from(digit - b'0').checked_sub(1);
        let l = match index {
            Some(l) if l < self.level && !matches!(self.captures[l].1, CaptureLen::Unfinished) => l,
            _ => {
                return Err(error(format!(
                    "invalid capture index %{}",
                    index.map_or(0, |l| l + 1)
                )))
            }
        };
        let (init, len) = self.captures[l];
        // A position capture has no text; Lua never matches it either.
        let CaptureLen::Len(len) = len else {
            return Ok(None);
        };
        let matches = self.src.len() - s >= len && self.src[init..init + len] == self.src[s..s + len];
        Ok(matches.then_some(s + len))
    }

    /// Capture `i` of a match from `s` to `e` (the whole match when the pattern has no captures).
    fn capture(&self, lua: &Lua, i: usize, s: usize, e: usize) -> mlua::Result<Value> {
        if i >= self.level {
            if i != 0 {
                return Err(error(format!("invalid capture index %{}", i + 1)));
            }
            return Ok(Value::String(lua.create_string(&self.src[s..e])?));
        }
        let (init, len) = self.captures[i];
        match len {
            CaptureLen::Unfinished => Err(error("unfinished capture")),
            CaptureLen::Position => Ok(Value::Integer(position(init + 1))),
            CaptureLen::Len(len) => Ok(Value::String(lua.create_string(&self.src[init..init + len])?)),
        }
    }

    /// Every capture of a match; the whole match when there are none and `whole` is set.
    fn captures(&self, lua: &Lua, s: usize, e: usize, whole: bool) -> mlua::Result<Vec<Value>> {
        let n = if self.level == 0 && whole { 1 } else { self.level };
        (0..n).map(|i| self.capture(lua, i, s, e)).collect()
    }
}

/// Lua's character classes (`%a`, `%d`, …; upper case for the complement) in the C locale; any
/// other character after `%` stands for itself.
fn class_matches(c: u8, class: u8) -> bool {
    let found = match class.to_ascii_lowercase() {
        b'a' => c.is_ascii_alphabetic(),
        b'c' => c.is_ascii_control(),
        b'd' => c.is_ascii_digit(),
        b'g' => c.is_ascii_graphic(),
        b'l' => c.is_ascii_lowercase(),
        b'p' => c.is_ascii_punctuation(),
        // C's isspace, which (unlike `is_ascii_whitespace`) includes the vertical tab.
        b's' => matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r'),
        b'u' => c.is_ascii_uppercase(),
        b'w' => c.is_ascii_alphanumeric(),
        b'x' => c.is_ascii_hexdigit(),
        _ => return class == c,
    };
    if class.is_ascii_uppercase() {
        !found
    } else {
        found
    }
}

/// A byte position as a Lua integer (subjects are at most [`MAX_SUBJECT`] bytes).
fn position(p: usize) -> i64 {
    i64::try_from(p).unwrap_or(i64::MAX)
}

/// Lua's `posrelatI`: a 1-based start position, negative counting from the end, clipped to 1.
fn start_position(pos: i64, len: usize) -> usize {
    let len = position(len);
    let pos = if pos > 0 {
        pos
    } else if pos == 0 || pos < -len {
        1
    } else {
        len + pos + 1
    };
    usize::try_from(pos).unwrap_or(usize::MAX)
}

/// Argument `i` (0-based) as bytes; numbers are converted, as Lua does.
fn string_arg(lua: &Lua, args: &MultiValue, i: usize, function: &str) -> mlua::Result<Vec<u8>> {
    let value = args.get(i).cloned().unwrap_or(Value::Nil);
    let type_name = value.type_name();
    match lua.coerce_string(value)? {
        Some(s) => Ok(s.as_bytes().to_vec()),
        None => Err(error(format!(
            "bad argument #{} to '{function}' (string expected, got {type_name})",
            i + 1
        ))),
    }
}

/// Optional integer argument `i` (0-based).
fn integer_arg(lua: &Lua, args: &MultiValue, i: usize, function: &str) -> mlua::Result<Option<i64>> {
    let value = args.get(i).cloned().unwrap_or(Value::Nil);
    if value.is_nil() {
        return Ok(None);
    }
    let type_name = value.type_name();
    match lua.coerce_integer(value)? {
        Some(n) => Ok(Some(n)),
        None => Err(error(format!(
            "bad argument #{} to '{function}' (number expected, got {type_name})",
            i + 1
        ))),
    }
}

fn check_subject(function: &str, subject: &[u8]) -> mlua::Result<()> {
    if subject.len() > MAX_SUBJECT {
        return Err(error(format!(
            "string.{function}: the subject is {} bytes; pattern functions take at most {MAX_SUBJECT}",
            subject.len()
        )));
    }
    Ok(())
}

fn nil() -> MultiValue {
    MultiValue::from_vec(vec![Value::Nil])
}

/// `string.find(s, pattern [, init [, plain]])` and `string.match(s, pattern [, init])`.
fn find_or_match(lua: &Lua, meter: &Meter, args: &MultiValue, find: bool) -> mlua::Result<MultiValue> {
    let function = if find { "find" } else { "match" };
    let src = string_arg(lua, args, 0, function)?;
    let pat = string_arg(lua, args, 1, function)?;
    let init = start_position(integer_arg(lua, args, 2, function)?.unwrap_or(1), src.len());
    check_subject(function, &src)?;
    if init > src.len() + 1 {
        return Ok(nil());
    }
    let start = init - 1;
    let plain = find
        && args
            .get(3)
            .is_some_and(|v| !matches!(v, Value::Nil | Value::Boolean(false)));
    if find && (plain || !pat.iter().any(|c| SPECIALS.contains(c))) {
        // A plain search is linear (memchr's two-way search); nothing to count.
        return Ok(match memchr::memmem::find(&src[start..], &pat) {
            Some(i) => MultiValue::from_vec(vec![
                Value::Integer(position(start + i + 1)),
                Value::Integer(position(start + i + pat.len())),
            ]),
            None => nil(),
        });
    }
    let (anchored, pat) = match pat.strip_prefix(b"^") {
        Some(rest) => (true, rest),
        None => (false, &pat[..]),
    };
    let mut m = Matcher::new(&src, pat, meter);
    let mut s = start;
    loop {
        m.reset();
        if let Some(e) = m.do_match(s, 0)? {
            if find {
                let mut out = vec![Value::Integer(position(s + 1)), Value::Integer(position(e))];
                out.extend(m.captures(lua, s, e, false)?);
                return Ok(MultiValue::from_vec(out));
            }
            return Ok(MultiValue::from_vec(m.captures(lua, s, e, true)?));
        }
        s += 1;
        if anchored || s > src.len() {
            return Ok(nil());
        }
    }
}

/// `string.gmatch(s, pattern [, init])`: an iterator over the matches.
fn gmatch(lua: &Lua, meter: &Rc<Meter>, args: &MultiValue) -> mlua::Result<Function> {
    let src = string_arg(lua, args, 0, "gmatch")?;
    let pat = string_arg(lua, args, 1, "gmatch")?;
    let init = integer_arg(lua, args, 2, "gmatch")?.unwrap_or(1);
    check_subject("gmatch", &src)?;
    let mut next = (start_position(init, src.len()) - 1).min(src.len() + 1);
    let mut last_end: Option<usize> = None;
    let meter = meter.clone();
    lua.create_function_mut(move |lua, ()| {
        let mut m = Matcher::new(&src, &pat, &meter);
        while next <= src.len() {
            m.reset();
            match m.do_match(next, 0)? {
                // An empty match right where the previous one ended does not count.
                Some(e) if Some(e) != last_end => {
                    let captures = m.captures(lua, next, e, true)?;
                    next = e;
                    last_end = Some(e);
                    return Ok(MultiValue::from_vec(captures));
                }
                _ => next += 1,
            }
        }
        Ok(MultiValue::new())
    })
}

/// What `gsub` replaces a match with.
enum Replacement {
    Text(Vec<u8>),
    Table(Table),
    Function(Function),
}

/// `string.gsub(s, pattern, repl [, n])`.
fn gsub(lua: &Lua, meter: &Meter, args: &MultiValue) -> mlua::Result<(mlua::LuaString, i64)> {
    let src = string_arg(lua, args, 0, "gsub")?;
    let pat = string_arg(lua, args, 1, "gsub")?;
    let replacement = match args.get(2).cloned().unwrap_or(Value::Nil) {
        Value::Table(t) => Replacement::Table(t),
        Value::Function(f) => Replacement::Function(f),
        v @ (Value::String(_) | Value::Integer(_) | Value::Number(_)) => {
            Replacement::Text(string_arg(lua, &MultiValue::from_vec(vec![v]), 0, "gsub")?)
        }
        other => {
            return Err(error(format!(
                "bad argument #3 to 'gsub' (string/function/table expected, got {})",
                other.type_name()
            )))
        }
    };
    let max = integer_arg(lua, args, 3, "gsub")?.unwrap_or_else(|| position(src.len() + 1));
    check_subject("gsub", &src)?;
    let (anchored, pat) = match pat.strip_prefix(b"^") {
        Some(rest) => (true, rest),
        None => (false, &pat[..]),
    };
    let mut m = Matcher::new(&src, pat, meter);
    let mut out = Vec::new();
    let (mut s, mut last_end, mut n) = (0usize, None, 0i64);
    while n < max {
        m.reset();
        match m.do_match(s, 0)? {
            Some(e) if Some(e) != last_end => {
                n += 1;
                add_replacement(lua, &m, &mut out, s, e, &replacement)?;
                s = e;
                last_end = Some(e);
            }
            _ if s < src.len() => {
                out.push(src[s]);
                s += 1;
            }
            _ => break,
        }
        if out.len() > MAX_RESULT {
            return Err(error(format!(
                "string.gsub: the result is larger than {MAX_RESULT} bytes"
            )));
        }
        if anchored {
            break;
        }
    }
    out.extend_from_slice(&src[s..]);
    if out.len() > MAX_RESULT {
        return Err(error(format!(
            "string.gsub: the result is larger than {MAX_RESULT} bytes"
        )));
    }
    Ok((lua.create_string(&out)?, n))
}

fn add_replacement(
    lua: &Lua,
    m: &Matcher<'_>,
    out: &mut Vec<u8>,
    s: usize,
    e: usize,
    replacement: &Replacement,
) -> mlua::Result<()> {
    let value = match replacement {
        Replacement::Text(text) => return add_text(lua, m, out, s, e, text),
        Replacement::Table(table) => table.get::<Value>(m.capture(lua, 0, s, e)?)?,
        Replacement::Function(f) => f.call::<Value>(MultiValue::from_vec(m.captures(lua, s, e, true)?))?,
    };
    match value {
        // false or nil: keep the original text.
        Value::Nil | Value::Boolean(false) => out.extend_from_slice(&m.src[s..e]),
        v @ (Value::String(_) | Value::Integer(_) | Value::Number(_)) => {
            out.extend_from_slice(&string_arg(lua, &MultiValue::from_vec(vec![v]), 0, "gsub")?)
        }
        other => {
            return Err(error(format!(
                "invalid replacement value (a {})",
                other.type_name()
            )))
        }
    }
    Ok(())
}

/// A replacement string: `%0` the whole match, `%1`…`%9` captures, `%%` a percent sign.
fn add_text(
    lua: &Lua,
    m: &Matcher<'_>,
    out: &mut Vec<u8>,
    s: usize,
    e: usize,
    text: &[u8],
) -> mlua::Result<()> {
    let mut i = 0;
    while i < text.len() {
        let c = text[i];
        i += 1;
        if c != ESC {
            out.push(c);
            continue;
        }
        match text.get(i) {
            Some(&ESC) => out.push(ESC),
            Some(b'0') => out.extend_from_slice(&m.src[s..e]),
            Some(&d) if d.is_ascii_digit() => match m.capture(lua, usize::from(d - b'1'), s, e)? {
                Value::String(text) => out.extend_from_slice(&text.as_bytes()),
                Value::Integer(p) => out.extend_from_slice(p.to_string().as_bytes()),
                _ => {}
            },
            _ => return Err(error("invalid use of '%' in replacement string")),
        }
        i += 1;
    }
    Ok(())
}

#[cfg(test)]
#[path = "lua_patterns_tests.rs"]
mod tests;
