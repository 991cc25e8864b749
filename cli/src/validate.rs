//! `sluice validate PATH…`: parse and check manifests offline. Exit 0 when all are valid (warnings
//! allowed), 1 when any is invalid, 2 on a usage error (a path that cannot be read).

use std::io::Write;
use std::path::PathBuf;

use serde::Serialize;
use sluice_crds::validate::Severity;

use crate::manifests::{self, Document};

/// Output format.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Output {
    /// One line per problem: `FILE:DOC: KIND/NAME: field.path: reason`.
    Text,
    /// A JSON array of problems, for tools.
    Json,
}

#[derive(Serialize)]
struct JsonProblem<'a> {
    file: String,
    document: usize,
    kind: &'a str,
    name: &'a str,
    severity: Severity,
    path: &'a str,
    reason: &'a str,
}

/// One problem as a text line.
pub fn format_line(doc: &Document, p: &sluice_crds::validate::Problem) -> String {
    let level = match p.severity {
        Severity::Warning => "warning: ",
        Severity::Error => "",
    };
    let kind = if doc.kind.is_empty() {
        "?"
    } else {
        doc.kind.as_str()
    };
    let name = if doc.name.is_empty() {
        "?"
    } else {
        doc.name.as_str()
    };
    let path = if p.path.is_empty() {
        "(document)"
    } else {
        p.path.as_str()
    };
    format!(
        "{}:{}: {kind}/{name}: {path}: {level}{}",
        doc.file.display(),
        doc.index,
        p.reason
    )
}

/// Runs the command; returns the exit code.
pub fn run(paths: &[PathBuf], output: Output) -> i32 {
    let docs = match manifests::load(paths) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("sluice validate: {e}: {}", e.source_text());
            return 2;
        }
    };
    let invalid = docs.iter().filter(|d| d.has_errors()).count();
    let warnings: usize = docs
        .iter()
        .map(|d| {
            d.problems
                .iter()
                .filter(|p| p.severity == Severity::Warning)
                .count()
        })
        .sum();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match output {
        Output::Text => {
            for doc in &docs {
                for p in &doc.problems {
                    let _ = writeln!(out, "{}", format_line(doc, p));
                }
            }
            eprintln!(
                "{} manifest(s) checked: {} valid, {} invalid, {} warning(s)",
                docs.len(),
                docs.len() - invalid,
                invalid,
                warnings
            );
            if docs.is_empty() {
                eprintln!("warning: no EventSource, Sensor or EventBus manifests found");
            }
        }
        Output::Json => {
            let all: Vec<JsonProblem<'_>> = docs
                .iter()
                .flat_map(|d| {
                    d.problems.iter().map(move |p| JsonProblem {
                        file: d.file.display().to_string(),
                        document: d.index,
                        kind: &d.kind,
                        name: &d.name,
                        severity: p.severity,
                        path: &p.path,
                        reason: &p.reason,
                    })
                })
                .collect();
            let _ = serde_json::to_writer_pretty(&mut out, &all);
            let _ = writeln!(out);
        }
    }
    i32::from(invalid > 0)
}

trait SourceText {
    fn source_text(&self) -> String;
}

impl SourceText for manifests::LoadError {
    fn source_text(&self) -> String {
        match self {
            manifests::LoadError::Read { source, .. } => source.to_string(),
        }
    }
}
