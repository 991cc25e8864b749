//! Go `regexp` patterns compiled with the Rust `regex` crate.
//!
//! Both implement RE2 syntax, so almost every pattern means the same. The differences that matter
//! for filters, and how they are bridged before compiling:
//! - Go's `\d`, `\w`, `\s` and `\b` are ASCII-only; Rust's are Unicode-aware by default. They are
//!   rewritten to explicit ASCII classes (`\d` → `[0-9]`, `\b` → `(?-u:\b)`), so `٣` is not a digit
//!   in either.
//! - Go accepts `\Q…\E` literal text; Rust does not. It is rewritten to the escaped literal.
//!
//! Everything else is passed through; a pattern Rust still refuses is reported as a compile error,
//! which a filter treats as upstream treats an invalid pattern.

use regex::Regex;

/// Compiles a Go regular expression. Matching is unanchored, as Go's `Regexp.Match`.
pub fn compile_go_regex(pattern: &str) -> Result<Regex, regex::Error> {
    Regex::new(&translate(pattern))
}

/// Rewrites the Go-only or differently-meaning pieces of `pattern` (see the module doc).
fn translate(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut chars = pattern.chars().peekable();
    let mut in_class = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let Some(next) = chars.next() else {
                    // A trailing backslash: let the compiler report it.
                    out.push('\\');
                    break;
                };
                match (next, in_class) {
                    ('Q', false) => {
                        let mut literal = String::new();
                        while let Some(l) = chars.next() {
                            if l == '\\' && chars.peek() == Some(&'E') {
                                chars.next();
                                break;
                            }
                            literal.push(l);
                        }
                        out.push_str(&regex::escape(&literal));
                    }
                    ('d', false) => out.push_str("[0-9]"),
                    ('D', false) => out.push_str("[^0-9]"),
                    ('w', false) => out.push_str("[0-9A-Za-z_]"),
                    ('W', false) => out.push_str("[^0-9A-Za-z_]"),
                    ('s', false) => out.push_str(r"[\t\n\f\r ]"),
                    ('S', false) => out.push_str(r"[^\t\n\f\r ]"),
                    ('b', false) => out.push_str(r"(?-u:\b)"),
                    ('B', false) => out.push_str(r"(?-u:\B)"),
                    ('d', true) => out.push_str("0-9"),
                    ('w', true) => out.push_str("0-9A-Za-z_"),
                    ('s', true) => out.push_str(r"\t\n\f\r "),
                    (other, _) => {
                        out.push('\\');
                        out.push(other);
                    }
                }
            }
            '[' if !in_class => {
                in_class = true;
                out.push('[');
                if chars.peek() == Some(&'^') {
                    chars.next();
                    out.push('^');
                }
                // A `]` right after the opening bracket is a literal.
                if chars.peek() == Some(&']') {
                    chars.next();
                    out.push(']');
                }
            }
            '[' if in_class && chars.peek() == Some(&':') => {
                // A POSIX class such as `[:alpha:]` inside a bracket expression.
                out.push('[');
                for p in chars.by_ref() {
                    out.push(p);
                    if p == ']' {
                        break;
                    }
                }
            }
            ']' if in_class => {
                in_class = false;
                out.push(']');
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_match(pattern: &str, text: &str) -> bool {
        match compile_go_regex(pattern) {
            Ok(re) => re.is_match(text),
            Err(e) => panic!("pattern {pattern:?} did not compile: {e}"),
        }
    }

    #[test]
    fn perl_classes_are_ascii_as_in_go() {
        assert!(is_match(r"^\d+$", "123"));
        assert!(
            !is_match(r"^\d+$", "١٢٣"),
            "Arabic-Indic digits are not \\d in Go"
        );
        assert!(!is_match(r"^\w+$", "é"));
        assert!(is_match(r"^[\d.]+$", "1.2"));
        assert!(is_match(r"\bfoo\b", "a foo b"));
        assert!(!is_match(r"^\s$", "\u{b}"), "Go's \\s has no vertical tab");
    }

    #[test]
    fn quoted_literals_are_supported() {
        assert!(is_match(r"^\Qa.b*\E$", "a.b*"));
        assert!(!is_match(r"^\Qa.b\E$", "axb"));
    }

    #[test]
    fn matching_is_unanchored_and_posix_classes_survive() {
        assert!(is_match("push", "git push origin"));
        assert!(is_match(r"^[[:alpha:]]+$", "abc"));
        assert!(is_match(r"[]a]", "]"));
    }

    #[test]
    fn invalid_patterns_are_errors() {
        assert!(compile_go_regex("(unclosed").is_err());
        assert!(compile_go_regex(r"trailing\").is_err());
    }
}
