//! Offline checks of a manifest beyond what parsing proves: names unique, references resolve, regexes,
//! cron specs and durations compile, one action per trigger, no port collisions. Pure functions: they
//! collect [`Problem`]s with the field path and a reason the user can act on.

use std::fmt;

/// How bad a problem is: errors make `sluice validate` exit 1, warnings do not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Accepted, but probably not what the author meant (an unknown field, a deprecated one).
    Warning,
    /// The manifest cannot work as written.
    Error,
}

/// One finding: where (a dotted field path such as `spec.triggers[0].template.http.url`) and why.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// Error or warning.
    pub severity: Severity,
    /// Dotted path from the document root, with `[i]` for list items.
    pub path: String,
    /// What is wrong and, where possible, how to fix it.
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Warning => "warning: ",
            Severity::Error => "",
        };
        write!(f, "{}: {level}{}", self.path, self.reason)
    }
}

/// Collects problems while a validator walks a spec. Paths are built with [`Problems::at`].
#[derive(Debug, Default)]
pub struct Problems {
    items: Vec<Problem>,
}

impl Problems {
    /// An empty collection.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records an error at `path`.
    pub fn error(&mut self, path: impl Into<String>, reason: impl Into<String>) {
        self.items.push(Problem {
            severity: Severity::Error,
            path: path.into(),
            reason: reason.into(),
        });
    }

    /// Records a warning at `path`.
    pub fn warning(&mut self, path: impl Into<String>, reason: impl Into<String>) {
        self.items.push(Problem {
            severity: Severity::Warning,
            path: path.into(),
            reason: reason.into(),
        });
    }

    /// True when at least one error (not warning) was recorded.
    pub fn has_errors(&self) -> bool {
        self.items.iter().any(|p| p.severity == Severity::Error)
    }

    /// The problems found, in the order found.
    pub fn into_vec(self) -> Vec<Problem> {
        self.items
    }

    /// The problems found so far.
    pub fn as_slice(&self) -> &[Problem] {
        &self.items
    }

    /// Joins a parent path and a child field: `at("spec", "triggers")` is `spec.triggers`.
    pub fn at(parent: &str, child: &str) -> String {
        if parent.is_empty() {
            child.to_string()
        } else {
            format!("{parent}.{child}")
        }
    }

    /// A list item's path: `index("spec.triggers", 0)` is `spec.triggers[0]`.
    pub fn index(parent: &str, i: usize) -> String {
        format!("{parent}[{i}]")
    }
}

/// Implemented by every spec that can be checked offline.
pub trait Validate {
    /// Walks `self`, recording problems under `path` (the path of `self` in the document).
    fn validate(&self, path: &str, problems: &mut Problems);
}

/// Checks that a regular expression compiles (Go RE2 syntax is a subset of Rust's `regex`).
pub fn check_regex(pattern: &str, path: &str, problems: &mut Problems) {
    if let Err(e) = regex::Regex::new(pattern) {
        problems.error(path, format!("invalid regular expression {pattern:?}: {e}"));
    }
}

/// Checks a Go duration string (`"10s"`).
pub fn check_duration(text: &str, path: &str, problems: &mut Problems) {
    if let Err(e) = crate::duration::parse_go_duration(text) {
        problems.error(path, e.to_string());
    }
}
