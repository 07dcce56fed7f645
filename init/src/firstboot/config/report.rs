//! The validation report: every problem with its JSON path, line and column.

use serde::Serialize;
use std::fmt;

/// One step of a JSON path: an object key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    /// `.key`
    Key(String),
    /// `[index]`
    Index(usize),
}

/// A JSON path such as `storage.files[2].mode`; the empty path is the document root.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JsonPath(pub Vec<Seg>);

impl JsonPath {
    /// The path extended by an object key.
    pub fn key(&self, key: &str) -> JsonPath {
        let mut segs = self.0.clone();
        segs.push(Seg::Key(key.to_string()));
        JsonPath(segs)
    }

    /// The path extended by an array index.
    pub fn index(&self, index: usize) -> JsonPath {
        let mut segs = self.0.clone();
        segs.push(Seg::Index(index));
        JsonPath(segs)
    }

    /// Builds a path from dotted keys, e.g. `JsonPath::of(&["storage", "files"])`.
    pub fn of(keys: &[&str]) -> JsonPath {
        JsonPath(keys.iter().map(|k| Seg::Key((*k).to_string())).collect())
    }
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if i == 0 => write!(f, "{k}")?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The config is refused.
    Error,
    /// Shown to the operator; the config is still applied.
    Warning,
}

/// One problem found in a config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// JSON path of the offending value, like `storage.files[2].mode` (empty: the whole document).
    pub path: String,
    /// 1-based line of the offending key or value; 0 when unknown (e.g. a merged config).
    pub line: usize,
    /// 1-based column (in characters); 0 when unknown.
    pub column: usize,
    /// What is wrong and, where possible, what to do instead.
    pub message: String,
    /// Error or warning.
    pub severity: Severity,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Error => "ERROR",
            Severity::Warning => "WARNING",
        };
        write!(f, "{level}")?;
        if !self.path.is_empty() {
            write!(f, " {}", self.path)?;
        }
        if self.line > 0 {
            write!(f, " (line {}, column {})", self.line, self.column)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found in a config, in document order per check.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The problems, errors and warnings mixed.
    pub problems: Vec<Problem>,
}

impl Report {
    /// True when the report holds no error (warnings are allowed).
    pub fn is_valid(&self) -> bool {
        !self.problems.iter().any(|p| p.severity == Severity::Error)
    }

    /// The errors only.
    pub fn errors(&self) -> impl Iterator<Item = &Problem> {
        self.problems.iter().filter(|p| p.severity == Severity::Error)
    }

    /// The warnings only.
    pub fn warnings(&self) -> impl Iterator<Item = &Problem> {
        self.problems.iter().filter(|p| p.severity == Severity::Warning)
    }
}

impl fmt::Display for Report {
    /// One line per problem, e.g.
    /// `ERROR storage.files[2].mode (line 14, column 19): mode 0o17777 is above 0o7777`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.problems {
            writeln!(f, "{p}")?;
        }
        Ok(())
    }
}

#[derive(Serialize)]
struct JsonReport<'a> {
    valid: bool,
    errors: usize,
    warnings: usize,
    problems: &'a [Problem],
}

/// The report as JSON for `/run/keel/firstboot.json`:
/// `{"valid":false,"errors":1,"warnings":0,"problems":[{"path":…,"line":…,"column":…,"message":…,"severity":"error"}]}`.
pub fn report_json(report: &Report) -> String {
    let doc = JsonReport {
        valid: report.is_valid(),
        errors: report.errors().count(),
        warnings: report.warnings().count(),
        problems: &report.problems,
    };
    // Serializing plain strings and integers cannot fail; fall back to a minimal document anyway.
    serde_json::to_string_pretty(&doc).unwrap_or_else(|_| String::from("{\"valid\":false}"))
}
