//! Differential test of keel's first-boot config validator against Ignition's.
//!
//! The table `data/ignition/differential.json` lists configs, each with the spec
//! versions it is tried under, Ignition's verdict, the Ignition rule that verdict comes
//! from, and — where keel differs on purpose — the class of the difference:
//! `by-design:FEATURE` (a feature keel refuses: systemd, disks, …) or `keel-only:RULE`
//! (a rule keel adds, documented with its reason in the validator's module doc).
//!
//! For spec 3.0.0–3.3.0 every config also goes through Ignition's own validator,
//! `ignition-validate` (Debian's `ignition` package, installed by
//! scripts/install-deps.sh), and the table's verdict must be the one it gives: the
//! table cannot drift from Ignition. For 3.4.0–3.6.0, which that validator predates,
//! the recorded verdict comes from reading Ignition's `config/v3_*/types` validate
//! functions, and the rule named is where it comes from.
//!
//! keel must agree with Ignition everywhere except the classed differences, and a
//! difference is only ever keel refusing what Ignition accepts, for its class's reason
//! (its error says so, see [`reason`]).
//!
//! Table entries: `name`; `versions` (the config is tried under each, its
//! `ignition.version` set; empty: as written); `ignition` (`valid` or `invalid`);
//! `rule` (the Ignition rule or its absence); `keel` (the class, absent when keel
//! agrees); and the config as `config` (JSON), `text` (`$VERSION` replaced; for
//! invalid JSON, duplicate keys, …) or `text_base64` (bytes that are not UTF-8 text).

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

/// Spec versions `ignition-validate` 2.14 knows.
const ORACLE_VERSIONS: &[&str] = &["3.0.0", "3.1.0", "3.2.0", "3.3.0"];

struct Case {
    name: String,
    versions: Vec<String>,
    ignition_valid: bool,
    rule: String,
    class: Option<String>,
    config: Option<Value>,
    text: Option<String>,
    /// Bytes that are not UTF-8 text (e.g. a byte order mark, invalid UTF-8), base64.
    bytes: Option<Vec<u8>>,
}

fn load() -> Vec<Case> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/ignition/differential.json");
    let table: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(&path).expect("read the table")).expect("the table is JSON");
    table
        .into_iter()
        .map(|c| {
            let s = |k: &str| c.get(k).and_then(Value::as_str).map(str::to_string);
            Case {
                name: s("name").expect("a name"),
                versions: c["versions"].as_array().expect("versions").iter().map(|v| v.as_str().expect("a version").to_string()).collect(),
                ignition_valid: match s("ignition").as_deref() {
                    Some("valid") => true,
                    Some("invalid") => false,
                    other => panic!("{:?}: ignition must be valid or invalid, not {other:?}", s("name")),
                },
                rule: s("rule").unwrap_or_default(),
                class: s("keel"),
                config: c.get("config").cloned(),
                text: s("text"),
                bytes: s("text_base64").map(|b| base64_decode(&b)),
            }
        })
        .collect()
}

/// Standard padded base64 (the table's `text_base64`).
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("bad base64 in the table: {text}"),
    };
    let mut out = Vec::new();
    for chunk in text.as_bytes().chunks(4) {
        let body: Vec<u8> = chunk.iter().copied().filter(|&c| c != b'=').map(value).collect();
        let n = body.iter().enumerate().fold(0u32, |acc, (i, &v)| acc | u32::from(v) << (18 - 6 * i));
        out.extend_from_slice(&n.to_be_bytes()[1..body.len()]);
    }
    out
}

/// The config bytes of `case` under `version` (`None`: the text as written).
fn text_of(case: &Case, version: Option<&str>) -> Vec<u8> {
    if let Some(bytes) = &case.bytes {
        return bytes.clone();
    }
    text_str(case, version).into_bytes()
}

fn text_str(case: &Case, version: Option<&str>) -> String {
    match (&case.text, &case.config, version) {
        (Some(text), _, Some(v)) => text.replace("$VERSION", v),
        (Some(text), _, None) => text.clone(),
        (None, Some(config), Some(v)) => {
            let mut config = config.clone();
            let root = config.as_object_mut().expect("a config object");
            let ignition = root.entry("ignition").or_insert_with(|| Value::Object(Default::default()));
            ignition.as_object_mut().expect("an ignition object").insert("version".into(), Value::String(v.into()));
            serde_json::to_string(&config).expect("serialize")
        }
        _ => panic!("{}: a config needs versions", case.name),
    }
}

/// Ignition's verdict from `ignition-validate` (true: valid).
fn oracle(dir: &std::path::Path, text: &[u8]) -> bool {
    let file = dir.join("config.ign");
    std::fs::write(&file, text).expect("write the config");
    let out = Command::new("ignition-validate")
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("ignition-validate: {e}; install it with scripts/install-deps.sh (Debian package ignition)"));
    match out.status.code() {
        Some(0) => true,
        Some(1) => false,
        other => panic!("ignition-validate exited with {other:?}: {}", String::from_utf8_lossy(&out.stderr)),
    }
}

#[test]
fn keel_agrees_with_ignition() {
    let cases = load();
    let dir = std::env::temp_dir().join(format!("keel-ignition-differential-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut failures = Vec::new();
    let (mut configs, mut oracle_runs, mut agree_valid, mut agree_invalid) = (0, 0, 0, 0);
    let mut classes: BTreeMap<String, usize> = BTreeMap::new();
    let mut names = std::collections::HashSet::new();
    for case in &cases {
        assert!(names.insert(case.name.as_str()), "{}: name used twice", case.name);
        assert!(!case.rule.is_empty(), "{}: every verdict names the Ignition rule it comes from", case.name);
        if let Some(class) = &case.class {
            let known = class.strip_prefix("by-design:").or_else(|| class.strip_prefix("keel-only:"));
            assert!(known.is_some_and(|k| !k.is_empty()), "{}: class {class:?} is neither by-design:X nor keel-only:X", case.name);
            assert!(case.ignition_valid, "{}: a deliberate difference must be keel refusing what Ignition accepts", case.name);
        }
        let runs: Vec<Option<&str>> =
            if case.versions.is_empty() { vec![None] } else { case.versions.iter().map(|v| Some(v.as_str())).collect() };
        for version in runs {
            configs += 1;
            let label = format!("{} [{}]", case.name, version.unwrap_or("as written"));
            let text = text_of(case, version);
            if version.is_none_or(|v| ORACLE_VERSIONS.contains(&v)) {
                oracle_runs += 1;
                let ignition = oracle(&dir, &text);
                if ignition != case.ignition_valid {
                    failures.push(format!(
                        "{label}: the table says Ignition finds it {}, ignition-validate says {}",
                        verdict(case.ignition_valid),
                        verdict(ignition)
                    ));
                    continue;
                }
            }
            let keel = keel_init::firstboot::config::parse(&text);
            let keel_valid = keel.is_ok();
            match &case.class {
                None if keel_valid == case.ignition_valid => {
                    if keel_valid {
                        agree_valid += 1
                    } else {
                        agree_invalid += 1
                    }
                }
                None => failures.push(format!(
                    "{label}: Ignition finds it {} ({}), keel {}{}",
                    verdict(case.ignition_valid),
                    case.rule,
                    verdict(keel_valid),
                    keel.err().map(|r| format!(":\n{r}")).unwrap_or_default()
                )),
                Some(class) if !keel_valid => {
                    // keel must refuse it for the classed reason, not another one.
                    let report = keel.err().map(|r| r.to_string()).unwrap_or_default();
                    if reason(class).split('|').any(|needle| report.contains(needle)) {
                        *classes.entry(class.clone()).or_default() += 1;
                    } else {
                        failures.push(format!("{label}: classed {class}, but keel refuses it for another reason:\n{report}"));
                    }
                }
                Some(class) => failures.push(format!("{label}: classed {class}, but keel accepts it")),
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!("configs in the table: {configs} ({} cases; {oracle_runs} checked with ignition-validate)", cases.len());
    println!("agree-valid: {agree_valid}");
    println!("agree-invalid: {agree_invalid}");
    for (class, n) in &classes {
        println!("{class}: {n}");
    }
    assert!(failures.is_empty(), "{} disagreement(s):\n{}", failures.len(), failures.join("\n"));
}

/// What keel's error says for each class of deliberate difference (alternatives split by `|`).
fn reason(class: &str) -> &'static str {
    match class {
        c if c.starts_with("by-design:") => "not supported by keel",
        "keel-only:unknown-keys" => "unknown key|needs spec",
        "keel-only:duplicate-json-keys" => "duplicate key",
        "keel-only:writable-trees" => "writable",
        "keel-only:names" => "name",
        "keel-only:passwd-fields" => "must not contain|not absolute|SSH key",
        "keel-only:integer-range" => "non-negative|too large",
        "keel-only:fetchable-url" => "keel cannot fetch|keel's rule",
        "keel-only:proxy-http-only" => "plain http",
        "keel-only:header-value" => "header value",
        "keel-only:header-names" => "keel's rule",
        "keel-only:hash-hex" => "not hex",
        "keel-only:ca-pem" => "CA certificate",
        "keel-only:gzip-data" => "gzip",
        "keel-only:hard-link-absolute" => "absolute",
        "keel-only:link-target" => "target",
        "keel-only:source-required" => "source",
        "keel-only:path-nul" => "NUL",
        "keel-only:json-strict" => "UTF-8|surrogate",
        "keel-only:experimental-spec" => "experimental",
        other => panic!("class {other:?} has no documented reason; add it to reason() and the validator's module doc"),
    }
}

fn verdict(valid: bool) -> &'static str {
    if valid {
        "valid"
    } else {
        "invalid"
    }
}

/// Pieces random source URLs are made of: the characters and fragments where URL and
/// data: URL parsers differ (escapes, reserved and unsafe characters, case, padding).
const DATA_PIECES: &[&str] = &[
    "data:",
    "DATA:",
    ",",
    ";",
    ";base64",
    "base64",
    "=",
    "%",
    "%2",
    "%zz",
    "%41",
    "%e9",
    "a",
    "Zm9v",
    "YQ==",
    "YQ",
    "==",
    "text",
    "/",
    "plain",
    "x-",
    "x",
    "charset",
    "utf-8",
    "\"",
    "\\",
    "é",
    " ",
    "#",
    "?",
    "+",
    "'",
    "(",
    "*",
    "~",
    "[",
    "{",
    "<",
    "@",
    ":",
    "!",
    "$",
    "&",
    "application",
    "octet-stream",
    "\n",
];
const HTTP_PIECES: &[&str] = &[
    "http://",
    "https://",
    "HTTP://",
    "http:",
    "//",
    "/",
    "h",
    "example.com",
    ":",
    "80",
    ":8x",
    "[",
    "]",
    "::1",
    "%",
    "%zz",
    "%41",
    "%e9",
    "%25",
    "@",
    "u",
    "?",
    "#",
    " ",
    "a",
    "é",
    "{",
    "|",
    "\\",
    "^",
    "`",
    "\"",
    "<",
    ">",
    "'",
    "!",
    "$",
    "&",
    "(",
    "*",
    "+",
    ",",
    ";",
    "=",
    "~",
    "-",
    "_",
    ".",
];

/// Random sources (a fixed seed, so a failure reproduces) through both validators:
/// keel never accepts one Ignition refuses, and refuses one Ignition accepts only for
/// its own fetchability rule or a scheme it does not support.
#[test]
fn random_sources_agree_with_ignition() {
    let dir = std::env::temp_dir().join(format!("keel-ignition-random-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    let (mut agree, mut keel_only, mut failures) = (0, 0, Vec::new());
    for i in 0..400 {
        let (pieces, prefixes): (&[&str], &[&str]) = if i % 2 == 0 {
            (DATA_PIECES, &["data:", "data:;", "data:text/", ""])
        } else {
            (HTTP_PIECES, &["http://", "https://h", "http://h/", ""])
        };
        let mut source = prefixes[next(prefixes.len())].to_string();
        for _ in 0..1 + next(8) {
            source.push_str(pieces[next(pieces.len())]);
        }
        let config = serde_json::json!({"ignition": {"version": "3.3.0"}, "storage": {"files": [{"path": "/etc/a", "contents": {"source": source}}]}});
        let text = config.to_string();
        let ignition = oracle(&dir, text.as_bytes());
        match (ignition, keel_init::firstboot::config::parse(text.as_bytes())) {
            (true, Ok(_)) | (false, Err(_)) => agree += 1,
            (true, Err(report))
                if report.to_string().contains("keel cannot fetch") || report.to_string().contains("not supported by keel") =>
            {
                keel_only += 1
            }
            (true, Err(report)) => failures.push(format!("{source:?}: Ignition accepts it, keel refuses it:\n{report}")),
            (false, Ok(_)) => failures.push(format!("{source:?}: Ignition refuses it, keel accepts it")),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!("random sources: {agree} agree, {keel_only} refused by keel's own rules");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(agree > 300, "the generator should mostly make configs both validators judge alike");
}
