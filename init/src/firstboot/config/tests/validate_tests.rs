//! Semantic rules: paths, duplicates, links, modes, sources, users and groups.

use super::{bad, cfg, find, ok, only_error, storage};
use crate::firstboot::config::validate::{check_clean_path, check_mode, check_source, check_writable};
use crate::firstboot::config::validate_passwd::check_name;
use crate::firstboot::config::{report_json, validate, Config, FileEntry, Severity};

#[test]
fn clean_paths() {
    for p in ["/", "/etc/a", "/etc/a.b/c..d/.e"] {
        assert!(check_clean_path(p).is_ok(), "{p}");
    }
    for (p, needle) in [
        ("", "empty"),
        ("etc/a", "not absolute"),
        ("/etc/../a", "\"..\""),
        ("/etc/./a", "\".\""),
        ("/etc//a", "'//'"),
        ("/etc/a/", "ends with '/'"),
        ("/etc/a\0", "NUL"),
    ] {
        let e = check_clean_path(p).unwrap_err();
        assert!(e.contains(needle), "{p:?}: {e}");
    }
    only_error(&storage("files", r#"{"path":"/etc/../usr/a"}"#), "storage.files[0].path", "\"..\" component");
    only_error(&storage("directories", r#"{"path":"/var/x/"}"#), "storage.directories[0].path", "ends with '/'");
    only_error(&storage("links", r#"{"path":"var/l","target":"/x"}"#), "storage.links[0].path", "not absolute");
}

#[test]
fn writable_trees() {
    for p in ["/etc/hostname", "/var/lib/x", "/home/core/.bashrc", "/root/.profile", "/opt/app", "/srv/www", "/usr/local/bin/tool"] {
        assert!(check_writable(p).is_ok(), "{p}");
    }
    assert!(check_writable("/usr/bin/x").unwrap_err().contains("read-only image"));
    assert!(check_writable("/usr").unwrap_err().contains("/usr"));
    assert!(check_writable("/etc").unwrap_err().contains("top of a writable tree"));
    assert!(check_writable("/etcetera/x").unwrap_err().contains("outside keel's writable trees"));
    assert!(check_writable("/boot/x").unwrap_err().contains("outside"));
    only_error(&storage("files", r#"{"path":"/usr/lib/os-release"}"#), "storage.files[0].path", "only /usr/local is writable");
    only_error(&storage("directories", r#"{"path":"/proc/x"}"#), "storage.directories[0].path", "outside");
}

#[test]
fn duplicate_paths_across_kinds() {
    let text = cfg(
        r#""storage":{"files":[{"path":"/etc/a"}],"directories":[{"path":"/etc/a"}],"links":[{"path":"/etc/b","target":"x"},{"path":"/etc/b","target":"y"}]}"#,
    );
    let r = bad(&text);
    assert_eq!(r.errors().count(), 2, "{r}");
    find(&r, Severity::Error, "storage.directories[0].path", "duplicate path \"/etc/a\": storage.files[0] already");
    find(&r, Severity::Error, "storage.links[1].path", "storage.links[0]");
    ok(&storage("files", r#"{"path":"/etc/a"},{"path":"/etc/a2"}"#));
}

#[test]
fn nothing_below_a_link() {
    let text = cfg(r#""storage":{"links":[{"path":"/etc/l","target":"/var/real"}],"files":[{"path":"/etc/l/sub/f"}]}"#);
    only_error(&text, "storage.files[0].path", "below \"/etc/l\", which storage.links[0] makes a link");
    let text = cfg(r#""storage":{"links":[{"path":"/etc/l","target":"/var/real"}],"directories":[{"path":"/etc/l/d"}]}"#);
    only_error(&text, "storage.directories[0].path", "below");
    ok(&cfg(r#""storage":{"links":[{"path":"/etc/l","target":"/var/real"}],"files":[{"path":"/etc/l2"},{"path":"/etc/lx/f"}]}"#));
}

#[test]
fn modes() {
    assert!(check_mode(0o7777, false).0.is_none());
    assert_eq!(check_mode(0o17777, false).0.unwrap(), "mode 0o17777 is above 0o7777 (JSON modes are decimal: 0o644 is 420)");
    assert!(check_mode(0o644, false).1.is_empty());
    assert!(check_mode(0o4755, false).1[0].contains("setuid"));
    assert!(check_mode(0o2755, true).1.is_empty());
    assert!(check_mode(0o666, false).1[0].contains("world-writable file"));
    assert!(check_mode(0o777, true).1[0].contains("without the sticky bit"));
    assert!(check_mode(0o1777, true).1.is_empty());
    let text = "{\"ignition\":{\"version\":\"3.4.0\"},\n\"storage\":{\"files\":[{\"path\":\"/etc/a\"},{\"path\":\"/etc/b\"},\n{\"path\":\"/etc/c\", \"mode\": 8191}]}}";
    let p = only_error(text, "storage.files[2].mode", "above");
    assert_eq!(
        p.to_string(),
        "ERROR storage.files[2].mode (line 3, column 27): mode 0o17777 is above 0o7777 (JSON modes are decimal: 0o644 is 420)"
    );
    only_error(&storage("directories", r#"{"path":"/var/d","mode":4096}"#), "storage.directories[0].mode", "0o10000");
}

#[test]
fn risky_modes_are_warnings_not_errors() {
    let (_, warnings) = ok(&storage("files", r#"{"path":"/opt/bin/tool","mode":2541},{"path":"/var/shared","mode":438}"#));
    assert!(warnings.is_valid());
    find(&warnings, Severity::Warning, "storage.files[0].mode", "setuid");
    find(&warnings, Severity::Warning, "storage.files[1].mode", "world-writable file");
    let (_, warnings) = ok(&storage("directories", r#"{"path":"/var/tmp2","mode":511},{"path":"/var/tmp3","mode":1023}"#));
    assert_eq!(warnings.problems.len(), 1);
    find(&warnings, Severity::Warning, "storage.directories[0].mode", "sticky");
}

#[test]
fn overwrite_needs_a_source() {
    only_error(&storage("files", r#"{"path":"/etc/a","overwrite":true}"#), "storage.files[0].overwrite", "contents.source");
    only_error(
        &storage("files", r#"{"path":"/etc/a","overwrite":true,"contents":{"compression":"gzip"}}"#),
        "storage.files[0].overwrite",
        "source",
    );
    let (c, _) = ok(&storage("files", r#"{"path":"/etc/a","overwrite":true,"contents":{"source":"data:,x"}}"#));
    assert!(c.files[0].overwrite);
    let (c, _) = ok(&storage("files", r#"{"path":"/etc/a"}"#));
    assert!(!c.files[0].overwrite, "spec 3 default is false");
}

#[test]
fn sources() {
    for s in ["data:,x", "data:;base64,aGk=", "http://10.0.2.2:8080/c.ign", "https://example.com/x?y=z", "https://example.com"] {
        assert!(check_source(s).is_ok(), "{s}");
    }
    for (s, needle) in [
        ("s3://bucket/key", "not supported by keel"),
        ("gs://bucket/key", "not supported by keel"),
        ("tftp://host/x", "not supported by keel"),
        ("arn:aws:s3:::bucket/key", "not supported by keel"),
        ("ftp://x/y", "use data:, http: or https:"),
        ("/etc/passwd", "not a URL"),
        ("", "not a URL"),
        ("http:/x", "keel cannot fetch"),
        ("https:///x", "keel cannot fetch"),
        ("http://h/%zz", "not a valid URL"),
        ("http://h/a\u{1}", "not a valid URL"),
        ("data:;base64,%%%", "malformed data URL"),
    ] {
        let e = check_source(s).unwrap_err();
        assert!(e.contains(needle), "{s}: {e}");
    }
    only_error(
        &storage("files", r#"{"path":"/etc/a","append":[{"source":"data:,ok"},{"source":"gs://b/o"}]}"#),
        "storage.files[0].append[1].source",
        "\"gs\"",
    );
    only_error(
        r#"{"ignition":{"version":"3.4.0","config":{"replace":{"source":"tftp://x/y"}}}}"#,
        "ignition.config.replace.source",
        "tftp",
    );
    only_error(
        r#"{"ignition":{"version":"3.4.0","config":{"merge":[{"source":"data:,a"},{"source":"data:;base64,a"}]}}}"#,
        "ignition.config.merge[1].source",
        "malformed data URL",
    );
}

#[test]
fn gzip_data_must_be_gzip() {
    only_error(
        &storage("files", r#"{"path":"/etc/a","contents":{"source":"data:,plain","compression":"gzip"}}"#),
        "storage.files[0].contents.compression",
        "gzip",
    );
    ok(&storage(
        "files",
        r#"{"path":"/etc/a","contents":{"source":"data:;base64,H4sIAAAAAAAAA8tIzcnJBwCGphA2BQAAAA==","compression":"gzip"}}"#,
    ));
}

#[test]
fn links() {
    let (c, _) = ok(&storage(
        "links",
        r#"{"path":"/etc/localtime","target":"../usr/share/zoneinfo/UTC"},{"path":"/var/h","target":"/etc/hostname","hard":true}"#,
    ));
    assert!(!c.links[0].hard && c.links[1].hard);
    only_error(&storage("links", r#"{"path":"/etc/l","target":""}"#), "storage.links[0].target", "empty");
    only_error(
        &storage("links", r#"{"path":"/etc/l","target":"rel/x","hard":true}"#),
        "storage.links[0].target",
        "must be an absolute path",
    );
    only_error(&storage("links", r#"{"path":"/etc/l","target":"/usr/bin/x","hard":true}"#), "storage.links[0].target", "hard link target");
}

#[test]
fn user_and_group_names() {
    for n in ["core", "_svc", "a-b_c1", "machine$"] {
        assert!(check_name(n).is_ok(), "{n}");
    }
    for n in ["", "Core", "1abc", "a b", "a:b", &"a".repeat(33)] {
        assert!(check_name(n).is_err(), "{n}");
    }
    only_error(&cfg(r#""passwd":{"users":[{"name":"Bad Name"}]}"#), "passwd.users[0].name", "not valid");
    only_error(&cfg(r#""passwd":{"users":[{"name":"core","groups":["wheel","Bad"]}]}"#), "passwd.users[0].groups[1]", "not valid");
    only_error(&cfg(r#""passwd":{"groups":[{"name":"9g"}]}"#), "passwd.groups[0].name", "not valid");
    only_error(&storage("files", r#"{"path":"/etc/a","user":{"name":"Root"}}"#), "storage.files[0].user.name", "not valid");
}

#[test]
fn duplicate_users_and_groups() {
    only_error(
        &cfg(r#""passwd":{"users":[{"name":"core"},{"name":"core"}]}"#),
        "passwd.users[1].name",
        "duplicate name \"core\": passwd.users[0]",
    );
    only_error(&cfg(r#""passwd":{"groups":[{"name":"g"},{"name":"h"},{"name":"g"}]}"#), "passwd.groups[2].name", "duplicate");
    ok(&cfg(r#""passwd":{"users":[{"name":"core"}],"groups":[{"name":"core"}]}"#));
}

#[test]
fn user_fields() {
    only_error(&cfg(r#""passwd":{"users":[{"name":"core","shell":"bash"}]}"#), "passwd.users[0].shell", "not absolute");
    only_error(&cfg(r#""passwd":{"users":[{"name":"core","homeDir":"/home/core/"}]}"#), "passwd.users[0].homeDir", "ends with");
    only_error(&cfg(r#""passwd":{"users":[{"name":"core","passwordHash":"$6$a:b"}]}"#), "passwd.users[0].passwordHash", "':'");
    only_error(
        &cfg(r#""passwd":{"users":[{"name":"core","sshAuthorizedKeys":["ssh-ed25519 AAAA a","  "]}]}"#),
        "passwd.users[0].sshAuthorizedKeys[1]",
        "empty",
    );
    only_error(
        &cfg(r#""passwd":{"users":[{"name":"core","sshAuthorizedKeys":["ssh-ed25519 A\nssh-rsa B"]}]}"#),
        "passwd.users[0].sshAuthorizedKeys[0]",
        "one key per list entry",
    );
    only_error(&cfg(r#""passwd":{"users":[{"name":"core","uid":4294967295}]}"#), "passwd.users[0].uid", "reserved");
    only_error(&cfg(r#""passwd":{"groups":[{"name":"g","passwordHash":"x\ny"}]}"#), "passwd.groups[0].passwordHash", "newline");
}

#[test]
fn validate_without_source_has_no_positions() {
    let config =
        Config { files: vec![FileEntry { path: "/usr/x".into(), mode: Some(0o10000), ..Default::default() }], ..Default::default() };
    let r = validate(&config);
    assert_eq!(r.errors().count(), 2, "{r}");
    let p = find(&r, Severity::Error, "storage.files[0].path", "/usr");
    assert_eq!((p.line, p.column), (0, 0));
    assert!(r.to_string().starts_with("ERROR storage.files[0].path: "));
}

#[test]
fn report_display_and_json() {
    let r = bad(&storage("files", r#"{"path":"/etc/a","mode":2541},{"path":"/bin/x"}"#));
    let text = r.to_string();
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(text.lines().any(|l| l.starts_with("WARNING storage.files[0].mode (line 1, column ")), "{text}");
    let json: serde_json::Value = serde_json::from_str(&report_json(&r)).unwrap();
    assert_eq!(json["valid"], false);
    assert_eq!(json["errors"], 1);
    assert_eq!(json["warnings"], 1);
    let problems = json["problems"].as_array().unwrap();
    let error = problems.iter().find(|p| p["severity"] == "error").unwrap();
    assert_eq!(error["path"], "storage.files[1].path");
    assert_eq!(error["line"], 1);
    assert!(error["column"].as_u64().unwrap() > 1);
}
