//! Splits source text into tokens, each with its byte offset.

use crate::CompileError;

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Tok {
    Number(f64),
    Str(String),
    Ident(String),
    /// An operator or punctuation, as written.
    Op(&'static str),
    End,
}

/// Operators, longest first so `**` wins over `*`.
const OPS: [&str; 27] = [
    "**", "==", "!=", "<=", ">=", "=~", "!~", "&&", "||", "??", "<", ">", "!", "+", "-", "*", "/", "%", "(",
    ")", "[", "]", ",", ".", "?", ":", "=",
];

pub(crate) fn error(source: &str, position: usize, message: impl Into<String>) -> CompileError {
    let position = position.min(source.len());
    let column = source.get(..position).map(|s| s.chars().count() + 1).unwrap_or(1);
    CompileError {
        position,
        column,
        message: message.into(),
    }
}

pub(crate) fn tokenize(source: &str) -> Result<Vec<(Tok, usize)>, CompileError> {
    let mut out = Vec::new();
    let bytes = source.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        if c.is_ascii_digit() || (c == b'.' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit)) {
            while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
                i += 1;
            }
            if i < bytes.len() && (bytes[i] == b'e' || bytes[i] == b'E') {
                let mut j = i + 1;
                if j < bytes.len() && (bytes[j] == b'+' || bytes[j] == b'-') {
                    j += 1;
                }
                if j < bytes.len() && bytes[j].is_ascii_digit() {
                    i = j;
                    while i < bytes.len() && bytes[i].is_ascii_digit() {
                        i += 1;
                    }
                }
            }
            let text = &source[start..i];
            let n: f64 = text
                .parse()
                .map_err(|_| error(source, start, format!("`{text}` is not a number")))?;
            if !n.is_finite() {
                return Err(error(source, start, format!("`{text}` is too large")));
            }
            out.push((Tok::Number(n), start));
            continue;
        }
        if c == b'"' || c == b'\'' {
            let (text, end) = string(source, i)?;
            out.push((Tok::Str(text), start));
            i = end;
            continue;
        }
        if c.is_ascii_alphabetic() || c == b'_' || c == b'$' {
            while i < bytes.len()
                && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] == b'$')
            {
                i += 1;
            }
            out.push((Tok::Ident(source[start..i].to_owned()), start));
            continue;
        }
        let Some(op) = OPS.iter().find(|op| bytes[i..].starts_with(op.as_bytes())) else {
            let ch = source[i..].chars().next().unwrap_or('?');
            return Err(error(source, i, format!("unexpected character `{ch}`")));
        };
        if *op == "=" {
            return Err(error(source, i, "`=` is not an operator; compare with `==`"));
        }
        out.push((Tok::Op(op), start));
        i += op.len();
    }
    out.push((Tok::End, source.len()));
    Ok(out)
}

/// Reads a quoted string starting at `start` (the quote); returns its text and the offset after it.
fn string(source: &str, start: usize) -> Result<(String, usize), CompileError> {
    let mut chars = source[start..].char_indices();
    let quote = chars.next().map(|(_, q)| q).unwrap_or('"');
    let mut out = String::new();
    while let Some((offset, c)) = chars.next() {
        match c {
            c if c == quote => return Ok((out, start + offset + c.len_utf8())),
            '\\' => {
                let Some((at, e)) = chars.next() else { break };
                match e {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    '0' => out.push('\0'),
                    '\\' | '\'' | '"' | '/' => out.push(e),
                    'u' => {
                        let hex: String = chars.by_ref().take(4).map(|(_, h)| h).collect();
                        let code = u32::from_str_radix(&hex, 16)
                            .ok()
                            .filter(|_| hex.len() == 4)
                            .and_then(char::from_u32)
                            .ok_or_else(|| {
                                error(source, start + at, "`\\u` needs four hex digits of a character")
                            })?;
                        out.push(code);
                    }
                    other => {
                        return Err(error(
                            source,
                            start + at,
                            format!("unknown escape `\\{other}` in a string"),
                        ))
                    }
                }
            }
            c => out.push(c),
        }
    }
    Err(error(source, start, "unterminated string"))
}
