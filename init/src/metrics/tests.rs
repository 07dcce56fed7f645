//! The formatter's output read back by a strict parser of the text format 0.0.4 (written
//! here from the format's description, stricter than Prometheus: every family has HELP
//! and TYPE before its samples, families are contiguous, no sample repeats, counters end
//! in `_total`). The QEMU test parses the real endpoint with Python's prometheus_client.

use super::format::{escape_label, Exposition, Kind, Value};
use super::*;
use keel_supervisor::metrics::KeelCounters;
use std::collections::{BTreeMap, BTreeSet};

type Labels = BTreeMap<String, String>;

#[derive(Debug, Default)]
struct FamilyText {
    help: Option<String>,
    kind: Option<String>,
    samples: Vec<(Labels, f64)>,
}

fn name_ok(name: &str) -> bool {
    format::valid_name(name)
}

fn unescape(text: &str, quote_allowed: bool) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('\\') => out.push('\\'),
                Some('n') => out.push('\n'),
                Some('"') if quote_allowed => out.push('"'),
                other => return Err(format!("bad escape \\{other:?} in {text:?}")),
            },
            '\n' => return Err("raw newline".into()),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// `{a="x",b="y"}` → labels and the rest of the line.
fn parse_labels(text: &str) -> Result<(Labels, &str), String> {
    let mut labels = Labels::new();
    let mut rest = text.strip_prefix('{').ok_or("no {")?;
    if let Some(after) = rest.strip_prefix('}') {
        return Ok((labels, after));
    }
    loop {
        let eq = rest.find('=').ok_or("no =")?;
        let name = &rest[..eq];
        if !format::valid_label(name) {
            return Err(format!("bad label name {name:?}"));
        }
        rest = rest[eq + 1..].strip_prefix('"').ok_or("label value not quoted")?;
        // The value ends at the first unescaped quote.
        let bytes = rest.as_bytes();
        let mut i = 0;
        while i < bytes.len() && bytes[i] != b'"' {
            i += if bytes[i] == b'\\' { 2 } else { 1 };
        }
        if i >= bytes.len() {
            return Err("unterminated label value".into());
        }
        let value = unescape(&rest[..i], true)?;
        if labels.insert(name.to_string(), value).is_some() {
            return Err(format!("label {name} twice"));
        }
        rest = &rest[i + 1..];
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        rest = rest.strip_prefix(',').ok_or("no , between labels")?;
    }
}

fn parse_value(text: &str) -> Result<f64, String> {
    match text {
        "NaN" => Ok(f64::NAN),
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        _ if text.contains(|c: char| c.is_ascii_alphabetic() && c != 'e' && c != 'E') => Err(format!("bad value {text:?}")),
        _ => text.parse().map_err(|_| format!("bad value {text:?}")),
    }
}

fn parse_strict(text: &str) -> Result<BTreeMap<String, FamilyText>, String> {
    if !text.ends_with('\n') {
        return Err("no final newline".into());
    }
    let mut families: BTreeMap<String, FamilyText> = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut enter = |name: &str, current: &mut Option<String>| -> Result<(), String> {
        if current.as_deref() != Some(name) {
            if done.contains(name) {
                return Err(format!("family {name} is split"));
            }
            if let Some(previous) = current.take() {
                done.insert(previous);
            }
            *current = Some(name.to_string());
        }
        Ok(())
    };
    for (number, line) in text.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}: {line:?}", number + 1);
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').ok_or_else(|| at("HELP without text".into()))?;
            if !name_ok(name) {
                return Err(at("bad name".into()));
            }
            enter(name, &mut current).map_err(at)?;
            let family = families.entry(name.into()).or_default();
            if family.help.is_some() || !family.samples.is_empty() {
                return Err(at("HELP twice or after samples".into()));
            }
            family.help = Some(unescape(help, false).map_err(at)?);
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').ok_or_else(|| at("TYPE without type".into()))?;
            if !["counter", "gauge", "untyped", "summary", "histogram"].contains(&kind) {
                return Err(at("unknown type".into()));
            }
            enter(name, &mut current).map_err(at)?;
            let family = families.entry(name.into()).or_default();
            if family.kind.is_some() || !family.samples.is_empty() {
                return Err(at("TYPE twice or after samples".into()));
            }
            if kind == "counter" && !name.ends_with("_total") {
                return Err(at("a counter's name must end in _total".into()));
            }
            family.kind = Some(kind.into());
        } else if line.starts_with('#') || line.trim().is_empty() {
            return Err(at("comment or blank line".into()));
        } else {
            let end = line.find(['{', ' ']).ok_or_else(|| at("no value".into()))?;
            let name = &line[..end];
            let (labels, rest) =
                if line[end..].starts_with('{') { parse_labels(&line[end..]).map_err(at)? } else { (Labels::new(), &line[end..]) };
            let value = rest.strip_prefix(' ').ok_or_else(|| at("no space before the value".into()))?;
            if value.contains(' ') {
                return Err(at("timestamps are not written".into()));
            }
            let value = parse_value(value).map_err(at)?;
            enter(name, &mut current).map_err(at)?;
            let family = families.get_mut(name).ok_or_else(|| at("sample without HELP and TYPE".into()))?;
            if family.help.is_none() || family.kind.is_none() {
                return Err(at("sample without HELP and TYPE".into()));
            }
            if family.samples.iter().any(|(l, _)| *l == labels) {
                return Err(at("the same sample twice".into()));
            }
            family.samples.push((labels, value));
        }
    }
    Ok(families)
}

fn sample(families: &BTreeMap<String, FamilyText>, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let want: Labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    families.get(name)?.samples.iter().find(|(l, _)| *l == want).map(|(_, v)| *v)
}

fn snapshot() -> MetricsSnapshot {
    MetricsSnapshot {
        host: HostMetrics {
            load: Some([0.25, 1.5, 3.0]),
            memory_total_bytes: Some(2 << 30),
            memory_available_bytes: Some(1 << 30),
            var_size_bytes: Some(10 << 30),
            var_available_bytes: Some(9 << 30),
            boot_time_seconds: Some(1_765_000_000),
            ready_seconds: Some(2.345),
            phase: "ready".into(),
            firstboot: Some("applied".into()),
        },
        containers: vec![
            ContainerMetrics {
                name: "web".into(),
                state: "running".into(),
                restarts: 2,
                health: Some("healthy".into()),
                cpu_usage_usec: 1_500_000,
                memory_bytes: 4096,
                pids: 3,
                oom_kills: 1,
                pids_limit_hits: 0,
            },
            ContainerMetrics { name: "hello".into(), state: "exited".into(), ..ContainerMetrics::default() },
        ],
        keel: KeelCounters { console_lines_dropped: 7, syslog_lines_dropped: 9, syslog_lines_sent: 11, syslog_configured: true },
    }
}

#[test]
fn the_rendering_parses_strictly_and_carries_every_figure() {
    let text = render(&snapshot());
    let families = parse_strict(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let web = |name: &str| sample(&families, name, &[("container", "web")]);
    assert_eq!(sample(&families, "keel_container_state", &[("container", "web"), ("state", "running")]), Some(1.0));
    assert_eq!(sample(&families, "keel_container_state", &[("container", "web"), ("state", "exited")]), Some(0.0));
    assert_eq!(sample(&families, "keel_container_state", &[("container", "hello"), ("state", "exited")]), Some(1.0));
    assert_eq!(sample(&families, "keel_container_health", &[("container", "web"), ("health", "healthy")]), Some(1.0));
    assert_eq!(sample(&families, "keel_container_health", &[("container", "hello"), ("health", "none")]), Some(1.0));
    assert_eq!(web("keel_container_restarts_total"), Some(2.0));
    assert_eq!(web("keel_container_cpu_seconds_total"), Some(1.5));
    assert_eq!(web("keel_container_memory_bytes"), Some(4096.0));
    assert_eq!(web("keel_container_pids"), Some(3.0));
    assert_eq!(web("keel_container_oom_kills_total"), Some(1.0));
    assert_eq!(sample(&families, "keel_container_memory_bytes", &[("container", "hello")]), Some(0.0));
    assert_eq!(sample(&families, "keel_host_load5", &[]), Some(1.5));
    assert_eq!(sample(&families, "keel_host_memory_available_bytes", &[]), Some((1u64 << 30) as f64));
    assert_eq!(sample(&families, "keel_host_var_size_bytes", &[]), Some((10u64 << 30) as f64));
    assert_eq!(sample(&families, "keel_host_boot_time_seconds", &[]), Some(1_765_000_000.0));
    assert_eq!(sample(&families, "keel_ready_seconds", &[]), Some(2.345));
    assert_eq!(sample(&families, "keel_firstboot_result", &[("result", "applied")]), Some(1.0));
    assert_eq!(sample(&families, "keel_boot_phase", &[("phase", "ready")]), Some(1.0));
    assert_eq!(sample(&families, "keel_console_lines_dropped_total", &[]), Some(7.0));
    assert_eq!(sample(&families, "keel_syslog_lines_dropped_total", &[]), Some(9.0));
    for (name, family) in &families {
        assert!(name.starts_with("keel_"), "{name}");
        assert!(family.help.as_ref().is_some_and(|h| !h.is_empty()), "{name}");
    }
}

#[test]
fn every_family_is_listed_in_the_readme() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let families = parse_strict(&render(&snapshot())).unwrap();
    for name in families.keys() {
        assert!(readme.contains(&format!("`{name}`")), "README.md does not list {name}");
    }
}

#[test]
fn missing_host_figures_are_left_out_not_zero() {
    let mut snap = snapshot();
    snap.host = HostMetrics { phase: "booting".into(), ..HostMetrics::default() };
    let families = parse_strict(&render(&snap)).unwrap();
    assert!(!families.contains_key("keel_host_load1") && !families.contains_key("keel_firstboot_result"));
    assert_eq!(sample(&families, "keel_boot_phase", &[("phase", "booting")]), Some(1.0));
}

#[test]
fn label_values_and_help_are_escaped() {
    let tricky = "a\"b\\c\nd}e,f=g";
    let mut out = Exposition::default();
    out.family("keel_test", Kind::Gauge, "help with \\ and\nnewline").sample(&[("v", tricky)], Value::Float(0.5));
    let text = out.finish();
    assert_eq!(text, "# HELP keel_test help with \\\\ and\\nnewline\n# TYPE keel_test gauge\nkeel_test{v=\"a\\\"b\\\\c\\nd}e,f=g\"} 0.5\n");
    let families = parse_strict(&text).unwrap();
    assert_eq!(sample(&families, "keel_test", &[("v", tricky)]), Some(0.5));
    assert_eq!(families["keel_test"].help.as_deref(), Some("help with \\ and\nnewline"));
    assert_eq!(escape_label("plain"), "plain");
}

#[test]
fn the_strict_parser_refuses_what_the_format_forbids() {
    // Negative controls: the parser above would see each of these mistakes.
    let good = "# HELP a_total x\n# TYPE a_total counter\na_total 1\n";
    assert!(parse_strict(good).is_ok());
    for (bad, why) in [
        ("a_total 1\n", "sample without HELP and TYPE"),
        ("# HELP a x\n# TYPE a counter\na 1\n", "_total"),
        ("# HELP a x\n# TYPE a gauge\n# HELP b x\n# TYPE b gauge\nb 1\na 1\n", "split"),
        ("# HELP a x\n# TYPE a gauge\na{v=\"x\"} 1\na{v=\"x\"} 2\n", "twice"),
        ("# HELP a x\n# TYPE a gauge\na{v=\"\\q\"} 1\n", "bad escape"),
        ("# HELP a x\n# TYPE a gauge\na{v=\"x\"\"} 1\n", ","),
        ("# HELP a x\n# TYPE a gauge\na 1 1700000000\n", "timestamps"),
        ("# HELP a x\n# TYPE a gauge\na one\n", "bad value"),
        ("# HELP a x\n# TYPE a gauge\na 1", "final newline"),
        ("# HELP 1a x\n", "bad name"),
    ] {
        let err = parse_strict(bad).expect_err(bad);
        assert!(err.contains(why), "{bad:?}: {err}");
    }
}
