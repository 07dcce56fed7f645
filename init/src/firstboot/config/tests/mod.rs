//! Tests for the config parser and validator. Every rejection test checks the
//! message *and* the JSON path (and, where it matters, the line and column).

mod data_url_tests;
mod json_tests;
mod merge_tests;
mod realistic;
mod shape_tests;
mod validate_tests;

use super::{parse, Config, Problem, Report, Severity};

/// Wraps storage/passwd JSON fragments into a 3.4.0 config.
pub fn cfg(body: &str) -> String {
    if body.is_empty() {
        r#"{"ignition":{"version":"3.4.0"}}"#.to_string()
    } else {
        format!(r#"{{"ignition":{{"version":"3.4.0"}},{body}}}"#)
    }
}

/// A config with one storage list.
pub fn storage(list: &str, items: &str) -> String {
    cfg(&format!(r#""storage":{{"{list}":[{items}]}}"#))
}

/// Parses text that must be valid; returns the config and warnings.
pub fn ok(text: &str) -> (Config, Report) {
    match parse(text.as_bytes()) {
        Ok(v) => v,
        Err(r) => panic!("expected a valid config, got:\n{r}"),
    }
}

/// Parses text that must be invalid; returns the report.
pub fn bad(text: &str) -> Report {
    match parse(text.as_bytes()) {
        Ok((c, _)) => panic!("expected an invalid config, got {c:?}"),
        Err(r) => r,
    }
}

/// The single problem at `path` whose message contains `needle`; panics otherwise.
pub fn find<'r>(report: &'r Report, severity: Severity, path: &str, needle: &str) -> &'r Problem {
    report
        .problems
        .iter()
        .find(|p| p.severity == severity && p.path == path && p.message.contains(needle))
        .unwrap_or_else(|| panic!("no {severity:?} at {path} containing {needle:?} in:\n{report}"))
}

/// Asserts the config is invalid with exactly one error, at `path`, containing `needle`.
pub fn only_error(text: &str, path: &str, needle: &str) -> Problem {
    let r = bad(text);
    let errors: Vec<_> = r.errors().collect();
    assert_eq!(errors.len(), 1, "expected one error, got:\n{r}");
    find(&r, Severity::Error, path, needle).clone()
}
