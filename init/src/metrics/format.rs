//! Prometheus' text exposition format, version 0.0.4: for each metric family a `# HELP`
//! line, a `# TYPE` line, then its samples `name{label="value",…} value`, one a line,
//! families never interleaved. Label values escape `\`, `"` and newline; HELP text
//! escapes `\` and newline.

use std::fmt::Write;

/// The Content-Type of this format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A metric family's type, as the TYPE line names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (resets when its source restarts); the name ends in `_total`.
    Counter,
    /// Goes up and down.
    Gauge,
}

impl Kind {
    fn word(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// A sample value: integers are written exactly, floats with Rust's shortest form.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    /// An exact count or size.
    Int(u64),
    /// A measurement.
    Float(f64),
}

/// Writes families into one exposition text.
#[derive(Debug, Default)]
pub struct Exposition {
    text: String,
}

/// One family being written: samples go under its HELP and TYPE lines.
pub struct Family<'a> {
    out: &'a mut String,
    name: &'static str,
}

impl Exposition {
    /// Start the family `name` of `kind`, described by `help`.
    pub fn family(&mut self, name: &'static str, kind: Kind, help: &str) -> Family<'_> {
        debug_assert!(valid_name(name), "{name}");
        debug_assert!(kind != Kind::Counter || name.ends_with("_total"), "{name}");
        let _ = writeln!(self.text, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.text, "# TYPE {name} {}", kind.word());
        Family { out: &mut self.text, name }
    }

    /// The text written so far.
    pub fn finish(self) -> String {
        self.text
    }
}

impl Family<'_> {
    /// One sample with `labels` (name, value) pairs.
    pub fn sample(&mut self, labels: &[(&str, &str)], value: Value) -> &mut Self {
        self.out.push_str(self.name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (label, text)) in labels.iter().enumerate() {
                debug_assert!(valid_label(label), "{label}");
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{label}=\"{}\"", escape_label(text));
            }
            self.out.push('}');
        }
        match value {
            Value::Int(n) => {
                let _ = writeln!(self.out, " {n}");
            }
            Value::Float(f) if f.is_nan() => self.out.push_str(" NaN\n"),
            Value::Float(f) if f.is_infinite() => self.out.push_str(if f > 0.0 { " +Inf\n" } else { " -Inf\n" }),
            Value::Float(f) => {
                let _ = writeln!(self.out, " {f}");
            }
        }
        self
    }
}

/// A label value with `\`, `"` and newline escaped.
pub fn escape_label(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// HELP text with `\` and newline escaped.
pub fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`, not starting with `__` (reserved).
pub fn valid_label(name: &str) -> bool {
    let mut chars = name.chars();
    !name.starts_with("__")
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
