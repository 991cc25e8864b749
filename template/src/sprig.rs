//! The sprig functions upstream manifests use, with sprig's argument order (the piped value last)
//! and sprig's forgiving behaviour (e.g. `b64dec` of bad input gives the error text, `fromJson` of
//! bad input gives an empty value) so a template renders what it renders upstream.

use std::collections::HashMap;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use gtmpl_value::{Func, FuncError, Number, Value};
use sha2::Digest as _;

use crate::convert::{from_json, to_json};
use crate::MAX_OUTPUT;

/// Every function added to gtmpl's builtins (`len` replaces gtmpl's, which refuses maps).
pub const FUNCS: &[(&str, Func)] = &[
    ("upper", upper),
    ("lower", lower),
    ("title", title),
    ("trim", trim),
    ("trimPrefix", trim_prefix),
    ("trimSuffix", trim_suffix),
    ("trimAll", trim_all),
    ("nospace", nospace),
    ("replace", replace),
    ("substr", substr),
    ("trunc", trunc),
    ("repeat", repeat),
    ("contains", contains),
    ("hasPrefix", has_prefix),
    ("hasSuffix", has_suffix),
    ("quote", quote),
    ("squote", squote),
    ("split", split),
    ("splitList", split_list),
    ("join", join),
    ("toJson", to_json_fn),
    ("toRawJson", to_raw_json),
    ("toPrettyJson", to_pretty_json),
    ("fromJson", from_json_fn),
    ("b64enc", b64enc),
    ("b64dec", b64dec),
    ("default", default),
    ("empty", empty),
    ("coalesce", coalesce),
    ("toString", to_string_fn),
    ("atoi", atoi),
    ("int", int),
    ("int64", int),
    ("float64", float64),
    ("add", add),
    ("sub", sub),
    ("mul", mul),
    ("div", div),
    ("mod", modulo),
    ("list", list),
    ("dict", dict),
    ("get", get),
    ("hasKey", has_key),
    ("keys", keys),
    ("now", now),
    ("date", date),
    ("unixEpoch", unix_epoch),
    ("regexMatch", regex_match),
    ("regexReplaceAll", regex_replace_all),
    ("regexFind", regex_find),
    ("sha256sum", sha256sum),
    ("len", len),
];

fn exactly(name: &str, args: &[Value], n: usize) -> Result<(), FuncError> {
    if args.len() == n {
        Ok(())
    } else {
        Err(FuncError::ExactlyXArgs(name.to_owned(), n))
    }
}

fn at_least(name: &str, args: &[Value], n: usize) -> Result<(), FuncError> {
    if args.len() >= n {
        Ok(())
    } else {
        Err(FuncError::AtLeastXArgs(name.to_owned(), n))
    }
}

/// A value as text, as sprig's `toString` (`nil` and a missing key are empty).
pub(crate) fn text(v: &Value) -> String {
    match v {
        Value::NoValue | Value::Nil => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(_) | Value::Map(_) | Value::Object(_) => to_json(v).to_string(),
        other => other.to_string(),
    }
}

fn number_i64(v: &Value) -> i64 {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)).unwrap_or(0),
        Value::String(s) => s.trim().parse().unwrap_or(0),
        Value::Bool(b) => i64::from(*b),
        _ => 0,
    }
}

fn number_f64(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().unwrap_or(0.0),
        Value::String(s) => s.trim().parse().unwrap_or(0.0),
        Value::Bool(b) => f64::from(u8::from(*b)),
        _ => 0.0,
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::NoValue | Value::Nil => true,
        Value::Bool(b) => !b,
        Value::String(s) => s.is_empty(),
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::Array(a) => a.is_empty(),
        Value::Map(m) | Value::Object(m) => m.is_empty(),
        Value::Function(_) => false,
    }
}

fn string_fn(name: &str, args: &[Value], f: impl Fn(&str) -> String) -> Result<Value, FuncError> {
    exactly(name, args, 1)?;
    Ok(Value::String(f(&text(&args[0]))))
}

fn upper(args: &[Value]) -> Result<Value, FuncError> {
    string_fn("upper", args, str::to_uppercase)
}

fn lower(args: &[Value]) -> Result<Value, FuncError> {
    string_fn("lower", args, str::to_lowercase)
}

fn title(args: &[Value]) -> Result<Value, FuncError> {
    string_fn("title", args, |s| {
        let mut out = String::with_capacity(s.len());
        let mut at_word_start = true;
        for c in s.chars() {
            if at_word_start && c.is_alphabetic() {
                out.extend(c.to_uppercase());
            } else {
                out.push(c);
            }
            at_word_start = c.is_whitespace() || c == '-' || c == '_';
        }
        out
    })
}

fn trim(args: &[Value]) -> Result<Value, FuncError> {
    string_fn("trim", args, |s| s.trim().to_owned())
}

fn nospace(args: &[Value]) -> Result<Value, FuncError> {
    string_fn("nospace", args, |s| {
        s.chars().filter(|c| !c.is_whitespace()).collect()
    })
}

fn two_strings(name: &str, args: &[Value]) -> Result<(String, String), FuncError> {
    exactly(name, args, 2)?;
    Ok((text(&args[0]), text(&args[1])))
}

fn trim_prefix(args: &[Value]) -> Result<Value, FuncError> {
    let (prefix, s) = two_strings("trimPrefix", args)?;
    Ok(Value::String(
        s.strip_prefix(prefix.as_str()).unwrap_or(&s).to_owned(),
    ))
}

fn trim_suffix(args: &[Value]) -> Result<Value, FuncError> {
    let (suffix, s) = two_strings("trimSuffix", args)?;
    Ok(Value::String(
        s.strip_suffix(suffix.as_str()).unwrap_or(&s).to_owned(),
    ))
}

fn trim_all(args: &[Value]) -> Result<Value, FuncError> {
    let (cutset, s) = two_strings("trimAll", args)?;
    Ok(Value::String(s.trim_matches(|c| cutset.contains(c)).to_owned()))
}

fn replace(args: &[Value]) -> Result<Value, FuncError> {
    exactly("replace", args, 3)?;
    let (old, new, s) = (text(&args[0]), text(&args[1]), text(&args[2]));
    // The exact size before building it: an empty `old` (as Go's strings.Replace) inserts `new`
    // before every character and at the end, so a small input can ask for a huge result.
    let count = if old.is_empty() {
        s.chars().count() + 1
    } else {
        s.matches(old.as_str()).count()
    };
    let size = (s.len() - count * old.len()).saturating_add(count.saturating_mul(new.len()));
    if size > MAX_OUTPUT {
        return Err(FuncError::Generic(format!(
            "replace: the result would be {size} bytes, more than {MAX_OUTPUT}"
        )));
    }
    Ok(Value::String(s.replace(&old, &new)))
}

/// sprig's `substr start end s` on characters (Go slices bytes; characters never split a rune).
fn substr(args: &[Value]) -> Result<Value, FuncError> {
    exactly("substr", args, 3)?;
    let (start, end) = (number_i64(&args[0]), number_i64(&args[1]));
    let chars: Vec<char> = text(&args[2]).chars().collect();
    let len = chars.len() as i64;
    let (from, to) = if start < 0 {
        (0, end.clamp(0, len))
    } else if end < 0 || end > len {
        (start.min(len), len)
    } else {
        (start.min(end), end)
    };
    Ok(Value::String(chars[from as usize..to as usize].iter().collect()))
}

fn trunc(args: &[Value]) -> Result<Value, FuncError> {
    exactly("trunc", args, 2)?;
    let n = number_i64(&args[0]);
    let chars: Vec<char> = text(&args[1]).chars().collect();
    let len = chars.len() as i64;
    let out: String = if n >= 0 {
        chars[..n.min(len) as usize].iter().collect()
    } else {
        chars[(len + n).max(0) as usize..].iter().collect()
    };
    Ok(Value::String(out))
}

fn repeat(args: &[Value]) -> Result<Value, FuncError> {
    exactly("repeat", args, 2)?;
    let count = number_i64(&args[0]).max(0) as usize;
    let s = text(&args[1]);
    if s.len().saturating_mul(count) > MAX_OUTPUT {
        return Err(FuncError::Generic("repeat: the result is too large".into()));
    }
    Ok(Value::String(s.repeat(count)))
}

fn contains(args: &[Value]) -> Result<Value, FuncError> {
    let (needle, s) = two_strings("contains", args)?;
    Ok(Value::Bool(s.contains(&needle)))
}

fn has_prefix(args: &[Value]) -> Result<Value, FuncError> {
    let (prefix, s) = two_strings("hasPrefix", args)?;
    Ok(Value::Bool(s.starts_with(&prefix)))
}

fn has_suffix(args: &[Value]) -> Result<Value, FuncError> {
    let (suffix, s) = two_strings("hasSuffix", args)?;
    Ok(Value::Bool(s.ends_with(&suffix)))
}

fn quote(args: &[Value]) -> Result<Value, FuncError> {
    let quoted: Vec<String> = args
        .iter()
        .filter(|a| !matches!(a, Value::Nil | Value::NoValue))
        .map(|a| serde_json::Value::String(text(a)).to_string())
        .collect();
    Ok(Value::String(quoted.join(" ")))
}

fn squote(args: &[Value]) -> Result<Value, FuncError> {
    let quoted: Vec<String> = args
        .iter()
        .filter(|a| !matches!(a, Value::Nil | Value::NoValue))
        .map(|a| format!("'{}'", text(a)))
        .collect();
    Ok(Value::String(quoted.join(" ")))
}

/// sprig's `split sep s`: a map `_0`, `_1`, … of the parts.
fn split(args: &[Value]) -> Result<Value, FuncError> {
    let (sep, s) = two_strings("split", args)?;
    let parts: HashMap<String, Value> = s
        .split(sep.as_str())
        .enumerate()
        .map(|(i, p)| (format!("_{i}"), Value::String(p.to_owned())))
        .collect();
    Ok(Value::Map(parts))
}

fn split_list(args: &[Value]) -> Result<Value, FuncError> {
    let (sep, s) = two_strings("splitList", args)?;
    Ok(Value::Array(
        s.split(sep.as_str())
            .map(|p| Value::String(p.to_owned()))
            .collect(),
    ))
}

fn join(args: &[Value]) -> Result<Value, FuncError> {
    exactly("join", args, 2)?;
    let sep = text(&args[0]);
    Ok(Value::String(match &args[1] {
        Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(&sep),
        other => text(other),
    }))
}

/// Go's `json.Marshal` escapes `<`, `>` and `&` for HTML safety; sprig's `toJson` keeps that.
fn html_escape(json: String) -> String {
    json.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

fn to_json_fn(args: &[Value]) -> Result<Value, FuncError> {
    exactly("toJson", args, 1)?;
    Ok(Value::String(html_escape(to_json(&args[0]).to_string())))
}

fn to_raw_json(args: &[Value]) -> Result<Value, FuncError> {
    exactly("toRawJson", args, 1)?;
    Ok(Value::String(to_json(&args[0]).to_string()))
}

fn to_pretty_json(args: &[Value]) -> Result<Value, FuncError> {
    exactly("toPrettyJson", args, 1)?;
    let pretty = serde_json::to_string_pretty(&to_json(&args[0])).unwrap_or_default();
    Ok(Value::String(html_escape(pretty)))
}

fn from_json_fn(args: &[Value]) -> Result<Value, FuncError> {
    exactly("fromJson", args, 1)?;
    Ok(serde_json::from_str::<serde_json::Value>(&text(&args[0]))
        .map(|v| from_json(&v))
        .unwrap_or_else(|_| Value::Map(HashMap::new())))
}

fn b64enc(args: &[Value]) -> Result<Value, FuncError> {
    string_fn("b64enc", args, |s| {
        base64::engine::general_purpose::STANDARD.encode(s)
    })
}

fn b64dec(args: &[Value]) -> Result<Value, FuncError> {
    // sprig returns the decoder's error text instead of failing.
    string_fn(
        "b64dec",
        args,
        |s| match base64::engine::general_purpose::STANDARD.decode(s) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) => format!("illegal base64 data: {e}"),
        },
    )
}

fn default(args: &[Value]) -> Result<Value, FuncError> {
    at_least("default", args, 1)?;
    match args.get(1) {
        Some(given) if !is_empty(given) => Ok(given.clone()),
        _ => Ok(args[0].clone()),
    }
}

fn empty(args: &[Value]) -> Result<Value, FuncError> {
    exactly("empty", args, 1)?;
    Ok(Value::Bool(is_empty(&args[0])))
}

fn coalesce(args: &[Value]) -> Result<Value, FuncError> {
    Ok(args.iter().find(|a| !is_empty(a)).cloned().unwrap_or(Value::Nil))
}

fn to_string_fn(args: &[Value]) -> Result<Value, FuncError> {
    string_fn("toString", args, str::to_owned)
}

fn atoi(args: &[Value]) -> Result<Value, FuncError> {
    exactly("atoi", args, 1)?;
    Ok(Value::Number(Number::from(
        text(&args[0]).trim().parse::<i64>().unwrap_or(0),
    )))
}

fn int(args: &[Value]) -> Result<Value, FuncError> {
    exactly("int", args, 1)?;
    Ok(Value::Number(Number::from(number_i64(&args[0]))))
}

fn float64(args: &[Value]) -> Result<Value, FuncError> {
    exactly("float64", args, 1)?;
    Ok(Value::Number(Number::from(number_f64(&args[0]))))
}

fn arith(name: &str, args: &[Value], f: fn(i64, i64) -> Option<i64>) -> Result<Value, FuncError> {
    at_least(name, args, 2)?;
    let mut acc = number_i64(&args[0]);
    for a in &args[1..] {
        acc = f(acc, number_i64(a))
            .ok_or_else(|| FuncError::Generic(format!("{name}: overflow or division by zero")))?;
    }
    Ok(Value::Number(Number::from(acc)))
}

fn add(args: &[Value]) -> Result<Value, FuncError> {
    arith("add", args, i64::checked_add)
}

fn sub(args: &[Value]) -> Result<Value, FuncError> {
    arith("sub", args, i64::checked_sub)
}

fn mul(args: &[Value]) -> Result<Value, FuncError> {
    arith("mul", args, i64::checked_mul)
}

fn div(args: &[Value]) -> Result<Value, FuncError> {
    arith("div", args, i64::checked_div)
}

fn modulo(args: &[Value]) -> Result<Value, FuncError> {
    arith("mod", args, i64::checked_rem)
}

fn list(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::Array(args.to_vec()))
}

fn dict(args: &[Value]) -> Result<Value, FuncError> {
    let mut map = HashMap::new();
    for pair in args.chunks(2) {
        map.insert(
            text(&pair[0]),
            pair.get(1).cloned().unwrap_or(Value::String(String::new())),
        );
    }
    Ok(Value::Map(map))
}

fn get(args: &[Value]) -> Result<Value, FuncError> {
    exactly("get", args, 2)?;
    match &args[0] {
        Value::Map(m) | Value::Object(m) => Ok(m
            .get(&text(&args[1]))
            .cloned()
            .unwrap_or(Value::String(String::new()))),
        _ => Ok(Value::String(String::new())),
    }
}

fn has_key(args: &[Value]) -> Result<Value, FuncError> {
    exactly("hasKey", args, 2)?;
    match &args[0] {
        Value::Map(m) | Value::Object(m) => Ok(Value::Bool(m.contains_key(&text(&args[1])))),
        _ => Ok(Value::Bool(false)),
    }
}

fn keys(args: &[Value]) -> Result<Value, FuncError> {
    let mut out = Vec::new();
    for a in args {
        if let Value::Map(m) | Value::Object(m) = a {
            out.extend(m.keys().cloned());
        }
    }
    out.sort();
    Ok(Value::Array(out.into_iter().map(Value::String).collect()))
}

fn now(args: &[Value]) -> Result<Value, FuncError> {
    exactly("now", args, 0)?;
    Ok(Value::String(
        Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
    ))
}

/// A time argument: an RFC 3339 string (what `now` returns) or Unix seconds.
fn time_arg(v: &Value) -> Result<DateTime<Utc>, FuncError> {
    match v {
        Value::Number(_) => DateTime::from_timestamp(number_i64(v), 0)
            .ok_or_else(|| FuncError::Generic("date: time out of range".into())),
        other => DateTime::parse_from_rfc3339(&text(other))
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| FuncError::Generic(format!("date: not an RFC 3339 time: {e}"))),
    }
}

/// sprig's `date FORMAT TIME`, with a Go layout (`2006-01-02T15:04:05Z07:00`).
fn date(args: &[Value]) -> Result<Value, FuncError> {
    exactly("date", args, 2)?;
    let time = time_arg(&args[1])?;
    Ok(Value::String(format_go_layout(&time, &text(&args[0]))))
}

fn unix_epoch(args: &[Value]) -> Result<Value, FuncError> {
    exactly("unixEpoch", args, 1)?;
    Ok(Value::String(time_arg(&args[0])?.timestamp().to_string()))
}

/// Formats `time` with a Go reference-time layout. Unknown text is copied.
pub fn format_go_layout(time: &DateTime<Utc>, layout: &str) -> String {
    // Longest tokens first, so `2006` wins over `2` and `January` over `Jan`.
    const TOKENS: [(&str, &str); 27] = [
        ("January", "%B"),
        ("Monday", "%A"),
        ("2006", "%Y"),
        ("-07:00", "%:z"),
        ("-0700", "%z"),
        ("Z07:00", "Z07:00"),
        (".000000000", "%.9f"),
        (".000000", "%.6f"),
        (".000", "%.3f"),
        (".999999999", "%.f"),
        ("Jan", "%b"),
        ("Mon", "%a"),
        ("MST", "UTC"),
        ("01", "%m"),
        ("02", "%d"),
        ("_2", "%e"),
        ("03", "%I"),
        ("04", "%M"),
        ("05", "%S"),
        ("06", "%y"),
        ("15", "%H"),
        ("PM", "%p"),
        ("pm", "%P"),
        ("1", "%-m"),
        ("2", "%-d"),
        ("3", "%-I"),
        ("4", "%-M"),
    ];
    let mut format = String::new();
    let mut rest = layout;
    'outer: while !rest.is_empty() {
        for (go, chrono_fmt) in TOKENS {
            if let Some(tail) = rest.strip_prefix(go) {
                if go == "Z07:00" {
                    // UTC prints as `Z`.
                    format.push('Z');
                } else {
                    format.push_str(chrono_fmt);
                }
                rest = tail;
                continue 'outer;
            }
        }
        if let Some(tail) = rest.strip_prefix('5') {
            format.push_str("%-S");
            rest = tail;
            continue;
        }
        let c = rest.chars().next().unwrap_or(' ');
        if c == '%' {
            format.push_str("%%");
        } else {
            format.push(c);
        }
        rest = &rest[c.len_utf8()..];
    }
    let mut out = String::new();
    // A format chrono cannot render is reported as the layout itself rather than a panic.
    if std::fmt::write(&mut out, format_args!("{}", time.format(&format))).is_err() {
        return layout.to_owned();
    }
    out
}

fn regex(pattern: &str) -> Result<regex::Regex, FuncError> {
    regex::RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| FuncError::Generic(format!("invalid regular expression: {e}")))
}

fn regex_match(args: &[Value]) -> Result<Value, FuncError> {
    let (pattern, s) = two_strings("regexMatch", args)?;
    Ok(Value::Bool(regex(&pattern)?.is_match(&s)))
}

fn regex_find(args: &[Value]) -> Result<Value, FuncError> {
    let (pattern, s) = two_strings("regexFind", args)?;
    Ok(Value::String(
        regex(&pattern)?
            .find(&s)
            .map(|m| m.as_str().to_owned())
            .unwrap_or_default(),
    ))
}

fn regex_replace_all(args: &[Value]) -> Result<Value, FuncError> {
    exactly("regexReplaceAll", args, 3)?;
    let (pattern, s, replacement) = (text(&args[0]), text(&args[1]), text(&args[2]));
    Ok(Value::String(
        regex(&pattern)?
            .replace_all(&s, replacement.as_str())
            .into_owned(),
    ))
}

fn sha256sum(args: &[Value]) -> Result<Value, FuncError> {
    string_fn("sha256sum", args, |s| {
        hex::encode(sha2::Sha256::digest(s.as_bytes()))
    })
}

fn len(args: &[Value]) -> Result<Value, FuncError> {
    exactly("len", args, 1)?;
    let n = match &args[0] {
        Value::String(s) => s.len(),
        Value::Array(a) => a.len(),
        Value::Map(m) | Value::Object(m) => m.len(),
        Value::NoValue | Value::Nil => 0,
        other => {
            return Err(FuncError::Generic(format!("len of {other} is not defined")));
        }
    };
    Ok(Value::Number(Number::from(n)))
}
