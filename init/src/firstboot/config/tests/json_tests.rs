//! The positioned JSON parser.

use super::super::json::{parse, Kind, LineIndex, MAX_DEPTH};
use super::{bad, only_error};

fn string_of(text: &str) -> String {
    match parse(text).unwrap().kind {
        Kind::String(s) => s,
        other => panic!("not a string: {other:?}"),
    }
}

#[test]
fn parses_scalars_and_containers_with_offsets() {
    let root = parse("{\"a\": [1, -2.5e3, true, null], \"b\": \"x\"}").unwrap();
    let Kind::Object(members) = root.kind else { panic!() };
    assert_eq!(members[0].key, "a");
    assert_eq!(members[0].key_offset, 1);
    assert_eq!(members[0].value.offset, 6);
    let Kind::Array(items) = &members[0].value.kind else { panic!() };
    assert_eq!(items[1].kind, Kind::Number("-2.5e3".into()));
    assert_eq!(items[2].kind, Kind::Bool(true));
    assert_eq!(items[3].kind, Kind::Null);
    assert_eq!(members[1].value.kind, Kind::String("x".into()));
}

#[test]
fn decodes_escapes_and_surrogate_pairs() {
    assert_eq!(string_of(r#""a\"b\\c\/d\b\f\n\r\t""#), "a\"b\\c/d\u{8}\u{c}\n\r\t");
    assert_eq!(string_of(r#""\u00e9\u20AC""#), "é€");
    assert_eq!(string_of(r#""\ud83d\ude00""#), "😀");
    assert_eq!(string_of("\"ünïcødé\""), "ünïcødé");
}

#[test]
fn rejects_bad_strings() {
    for (text, needle) in [
        (r#""\ud83d""#, "low surrogate"),
        (r#""\ude00""#, "lone low surrogate"),
        (r#""\ud83d\u0041""#, "low surrogate"),
        (r#""\x""#, "invalid escape"),
        (r#""\u12G4""#, "four hex digits"),
        ("\"a\nb\"", "control character"),
        ("\"abc", "unterminated"),
    ] {
        let e = parse(text).unwrap_err();
        assert!(e.message.contains(needle), "{text}: {}", e.message);
    }
}

#[test]
fn rejects_bad_numbers_and_literals() {
    for text in ["01", "-", "1.", "1e", ".5", "+1", "tru", "nul", "NaN", "[1,]", "{\"a\":1,}", "[1 2]", "{\"a\" 1}", "{1:2}"] {
        assert!(parse(text).is_err(), "{text} should fail");
    }
    assert!(parse("0").is_ok());
    assert!(parse("-0.0e-0").is_ok());
}

#[test]
fn rejects_trailing_data_duplicate_keys_and_deep_nesting() {
    assert!(parse("{} {}").unwrap_err().message.contains("after the end"));
    assert!(parse(r#"{"a":1,"a":2}"#).unwrap_err().message.contains("duplicate key \"a\""));
    let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
    assert!(parse(&deep).unwrap_err().message.contains("deeper"));
    let ok_depth = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
    assert!(parse(&ok_depth).is_ok());
}

#[test]
fn accepts_whitespace_but_not_a_byte_order_mark() {
    assert!(parse(" \r\n\t{}\n").is_ok());
    assert!(parse("\u{feff}{}").unwrap_err().message.contains("byte order mark"));
}

#[test]
fn line_index_counts_characters() {
    let text = "ab\né€x\n\nz";
    let idx = LineIndex::new(text);
    assert_eq!(idx.position(0), (1, 1));
    assert_eq!(idx.position(3), (2, 1));
    assert_eq!(idx.position(text.find('x').unwrap()), (2, 3));
    assert_eq!(idx.position(text.find('z').unwrap()), (4, 1));
}

#[test]
fn syntax_errors_in_configs_have_path_line_and_column() {
    let text = "{\n  \"ignition\": {\"version\": \"3.4.0\"},\n  \"storage\": {\"files\": [\n    {\"path\": \"/etc/a\",}\n  ]}\n}";
    let p = only_error(text, "storage.files[0]", "expected a key");
    assert_eq!((p.line, p.column), (4, 23));
    let r = bad("{\"ignition\": {\"version\": \"3.4.0\"}");
    assert!(r.problems[0].message.contains("end of the document"), "{r}");
}

#[test]
fn invalid_utf8_is_an_error_with_position() {
    let mut text = b"{\n \"a\": \"".to_vec();
    text.extend_from_slice(&[0xff, b'"', b'}']);
    let r = super::super::parse(&text).unwrap_err();
    assert!(r.problems[0].message.contains("UTF-8"));
    assert_eq!((r.problems[0].line, r.problems[0].column), (2, 8));
}

#[test]
fn oversized_config_is_refused() {
    let big = format!("{{\"x\":\"{}\"}}", "a".repeat(super::super::json::MAX_SIZE));
    assert!(bad(&big).problems[0].message.contains("limit"));
}
