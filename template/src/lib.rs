//! Go `text/template` rendering with the [sprig](https://masterminds.github.io/sprig/) functions
//! Argo Events manifests use (`dataTemplate`, `contextTemplate`, data filter `template`).
//!
//! **Engine.** Parsing and execution are done by the [`gtmpl`] crate, a maintained Rust port of Go's
//! `text/template` (actions, pipelines, `if`/`else`/`range`/`with`, variables, `{{-` trimming,
//! comparisons and Go's builtins `printf`, `index`, `len`, `and`, `or`, `not`, `eq`…). Writing our
//! own engine would mean re-deriving all of that; what gtmpl lacks is only the sprig library, which
//! is added here ([`sprig`]) with upstream's argument order (the piped value comes last). Functions
//! from the upstream manifests and docs: `upper lower title trim trimPrefix trimSuffix trimAll
//! nospace replace substr trunc repeat contains hasPrefix hasSuffix quote squote split splitList
//! join toJson toRawJson toPrettyJson fromJson b64enc b64dec default empty coalesce toString atoi
//! int float64 add sub mul div mod list dict get hasKey keys now date unixEpoch regexMatch
//! regexReplaceAll regexFind sha256sum` and Go's `len` extended to maps.
//!
//! **Limits.** `define`, `template` and `block` are refused when compiling: real manifests do not use
//! them and a template calling itself would recurse without bound. Output is capped at
//! [`MAX_OUTPUT`] bytes. A panic inside the engine on some odd input is caught and reported as a
//! render error, so rendering never takes the process down (the property tests feed random text).
//!
//! Values: the data is JSON; objects become Go maps (a missing key renders `<no value>`, as Go's
//! `map[string]interface{}`), numbers keep their integer-ness, times are RFC 3339 strings (what
//! `now` returns and `date` reads).

mod convert;
pub mod sprig;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

pub use convert::{from_json, to_json};

/// The largest rendered output, in bytes.
pub const MAX_OUTPUT: usize = 4 * 1024 * 1024;

/// Why a template does not compile.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("failed to parse the template: {reason}")]
pub struct CompileError {
    /// What the parser said.
    pub reason: String,
}

/// Why a template could not be rendered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("failed to render the template: {reason}")]
pub struct RenderError {
    /// What went wrong (a function's error, a missing field, …).
    pub reason: String,
}

/// A parsed template, cheap to clone and shareable across threads.
#[derive(Clone)]
pub struct Template {
    inner: Arc<gtmpl::Template>,
    source: Arc<str>,
}

impl std::fmt::Debug for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Template").field(&self.source).finish()
    }
}

impl PartialEq for Template {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

/// Actions that are refused (see the module doc).
fn refused_action(source: &str) -> Option<&'static str> {
    let mut rest = source;
    while let Some(start) = rest.find("{{") {
        let mut action = rest[start + 2..].trim_start_matches('-').trim_start();
        if let Some(stripped) = action.strip_prefix("/*") {
            action = stripped;
        }
        for word in ["define", "template", "block"] {
            if action.starts_with(word)
                && !action[word.len()..]
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_alphanumeric() || c == '_')
            {
                return Some(word);
            }
        }
        rest = &rest[start + 2..];
    }
    None
}

/// What [`action_problem`] finds wrong with the actions of a source.
#[derive(Debug, PartialEq, Eq)]
enum ActionProblem {
    /// Go's "unclosed action": a `{{` whose `}}` never comes, counting a `}}` inside a string,
    /// character literal or comment as part of it. gtmpl's lexer does not stop on some of these
    /// (found by fuzzing: a string that runs past a `}}` to the end never returned), so they are
    /// refused before it sees them.
    Unclosed,
    /// A non-ASCII character inside an action outside a string, character literal or comment.
    /// gtmpl's lexer steps back one *byte*, not one character, after reading such a character (an
    /// identifier letter such as `é`, a space such as U+00A0), then slices the source inside it
    /// and panics — on a thread of its own, where the `catch_unwind` in [`compile`] does not reach.
    /// Found by fuzzing (`fuzz/fuzz_targets/template.rs`). Non-ASCII text outside actions and
    /// inside literals is read correctly and stays allowed.
    NonAscii(char),
}

/// The first problem of the actions of `source` that gtmpl cannot be trusted with.
fn action_problem(source: &str) -> Option<ActionProblem> {
    let mut rest = source;
    loop {
        let start = rest.find("{{")?;
        let action = &rest[start + 2..];
        let mut chars = action.char_indices().peekable();
        // The offset in `action` where the text after this action starts.
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '}' if action[i..].starts_with("}}") => {
                    end = Some(i + 2);
                    break;
                }
                '/' if action[i..].starts_with("/*") => match action[i + 2..].find("*/") {
                    Some(close) => {
                        let resume = i + 2 + close + 2;
                        while chars.next_if(|(j, _)| *j < resume).is_some() {}
                    }
                    None => return Some(ActionProblem::Unclosed),
                },
                '"' | '\'' | '`' => {
                    let (mut escaped, mut closed) = (false, false);
                    for (_, d) in chars.by_ref() {
                        if escaped {
                            escaped = false;
                        } else if d == '\\' && c != '`' {
                            escaped = true;
                        } else if d == c {
                            closed = true;
                            break;
                        }
                    }
                    if !closed {
                        return Some(ActionProblem::Unclosed);
                    }
                }
                c if !c.is_ascii() => return Some(ActionProblem::NonAscii(c)),
                _ => {}
            }
        }
        let Some(end) = end else {
            return Some(ActionProblem::Unclosed);
        };
        rest = &action[end..];
    }
}

/// Parses `source`.
pub fn compile(source: &str) -> Result<Template, CompileError> {
    match action_problem(source) {
        None => {}
        Some(ActionProblem::Unclosed) => {
            return Err(CompileError {
                reason: "unclosed action (a `{{` without `}}`, or a string, character or comment in an \
                         action that does not end)"
                    .to_owned(),
            })
        }
        Some(ActionProblem::NonAscii(c)) => {
            return Err(CompileError {
                reason: format!(
                    "the character {c:?} (U+{:04X}) inside an action is not supported: only ASCII may \
                     appear in an action outside a string",
                    u32::from(c)
                ),
            })
        }
    }
    if let Some(word) = refused_action(source) {
        return Err(CompileError {
            reason: format!("`{{{{{word}}}}}` actions are not supported"),
        });
    }
    let mut inner = gtmpl::Template::default();
    inner.add_funcs(sprig::FUNCS);
    let owned = source.to_owned();
    let parsed = catch_unwind(AssertUnwindSafe(move || {
        inner.parse(owned).map(|()| inner).map_err(|e| e.to_string())
    }));
    match parsed {
        Ok(Ok(inner)) => Ok(Template {
            inner: Arc::new(inner),
            source: source.into(),
        }),
        Ok(Err(reason)) => Err(CompileError { reason }),
        Err(_) => Err(CompileError {
            reason: "the template engine failed on this text".to_owned(),
        }),
    }
}

impl Template {
    /// The source text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders with `.` bound to `dot`.
    pub fn render(&self, dot: &serde_json::Value) -> Result<String, RenderError> {
        let context = gtmpl::Context::from(from_json(dot));
        let rendered = catch_unwind(AssertUnwindSafe(|| {
            let mut out = LimitedWriter::default();
            self.inner
                .execute(&mut out, &context)
                .map(|()| out.buf)
                .map_err(|e| e.to_string())
        }));
        let bytes = match rendered {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(reason)) => return Err(RenderError { reason }),
            Err(_) => {
                return Err(RenderError {
                    reason: "the template engine failed while rendering".to_owned(),
                })
            }
        };
        String::from_utf8(bytes).map_err(|_| RenderError {
            reason: "the output is not UTF-8".to_owned(),
        })
    }

    /// Renders with `.Input` bound to `input` (upstream's context for `dataTemplate`,
    /// `contextTemplate` and data filter templates).
    pub fn render_input(&self, input: &serde_json::Value) -> Result<String, RenderError> {
        let mut dot = serde_json::Map::new();
        dot.insert("Input".to_owned(), input.clone());
        self.render(&serde_json::Value::Object(dot))
    }
}

/// A writer that refuses to grow past [`MAX_OUTPUT`].
#[derive(Default)]
struct LimitedWriter {
    buf: Vec<u8>,
}

impl std::io::Write for LimitedWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + data.len() > MAX_OUTPUT {
            return Err(std::io::Error::other(format!(
                "the output is larger than {MAX_OUTPUT} bytes"
            )));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
