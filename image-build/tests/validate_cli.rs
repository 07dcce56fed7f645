//! `keel-build validate`: the report as text and, with `--json`, as JSON with each
//! problem's path, line, column, severity and message.

use std::process::Command;

fn validate(args: &[&str], config: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.ign");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_keel-build")).arg("validate").args(args).arg(&path).output().unwrap();
    (out.status.code(), String::from_utf8(out.stdout).unwrap())
}

const BAD: &str = "{\"ignition\":{\"version\":\"3.4.0\"},\n \"storage\":{\"files\":[{\"path\":null},{\"path\":\"/etc/a\",\"mode\":4095}]}}";

#[test]
fn json_report_has_path_line_column_severity_message() {
    let (code, out) = validate(&["--json"], BAD);
    assert_eq!(code, Some(1), "{out}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!((doc["valid"].as_bool(), doc["errors"].as_u64(), doc["warnings"].as_u64()), (Some(false), Some(1), Some(2)));
    let problems = doc["problems"].as_array().unwrap();
    let error = problems.iter().find(|p| p["severity"] == "error").unwrap();
    assert_eq!(
        (error["path"].as_str(), error["line"].as_u64(), error["column"].as_u64()),
        (Some("storage.files[0].path"), Some(2), Some(30))
    );
    assert!(error["message"].as_str().unwrap().contains("path is required"), "{error}");
    let warning = problems.iter().find(|p| p["severity"] == "warning").unwrap();
    assert_eq!(warning["path"], "storage.files[1].mode");

    let (code, out) = validate(&["--json"], r#"{"ignition":{"version":"3.4.0"}}"#);
    assert_eq!(code, Some(0), "{out}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!((doc["valid"].as_bool(), doc["problems"].as_array().map(Vec::len)), (Some(true), Some(0)));
}

#[test]
fn text_report_names_each_problem() {
    let (code, out) = validate(&[], BAD);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("ERROR storage.files[0].path (line 2, column 30): path is required"), "{out}");
    assert!(out.contains("WARNING storage.files[1].mode"), "{out}");
}
