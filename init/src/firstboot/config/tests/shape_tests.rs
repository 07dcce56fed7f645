//! Versions, unknown keys, types, required keys and unsupported features.

use super::{bad, cfg, find, ok, only_error, storage};
use crate::firstboot::config::{parse, IdOrName, Severity};

#[test]
fn accepts_every_spec_3_version() {
    for minor in 0..=6 {
        let text = format!(r#"{{"ignition":{{"version":"3.{minor}.0"}}}}"#);
        let (config, warnings) = ok(&text);
        assert_eq!(config, Default::default());
        assert!(warnings.problems.is_empty());
    }
}

#[test]
fn rejects_other_versions() {
    for (version, needle) in [
        ("2.3.0", "translate the config to spec 3"),
        ("3.7.0", "3.0.0 to 3.6.0"),
        ("3.1.1", "3.0.0 to 3.6.0"),
        ("3.5.0-experimental", "experimental"),
        ("4.0.0", "3.0.0 to 3.6.0"),
        ("", "3.0.0 to 3.6.0"),
    ] {
        let text = format!(r#"{{"ignition":{{"version":"{version}"}}}}"#);
        only_error(&text, "ignition.version", needle);
    }
    only_error(r#"{"ignition":{"version":3}}"#, "ignition.version", "expected a string, found a number");
    only_error(r#"{"ignition":{}}"#, "ignition.version", "missing");
    only_error("{}", "ignition.version", "missing");
}

#[test]
fn keeps_walking_after_a_bad_version() {
    let r = bad(r#"{"ignition":{"version":"2.2.0"},"storage":{"files":[{"path":"/etc/a","moed":420}]}}"#);
    find(&r, Severity::Error, "ignition.version", "spec 3");
    find(&r, Severity::Error, "storage.files[0].moed", "did you mean \"mode\"");
}

#[test]
fn unknown_keys_are_errors_with_suggestions_and_positions() {
    let text = "{\"ignition\":{\"version\":\"3.4.0\"},\n\"storage\":{\"files\":[{\"path\":\"/etc/a\",\n  \"moed\":420}]}}";
    let p = only_error(text, "storage.files[0].moed", "unknown key \"moed\" (did you mean \"mode\"?)");
    assert_eq!((p.line, p.column), (3, 3));
    only_error(&cfg(r#""storag":{}"#), "storag", "did you mean \"storage\"");
    only_error(
        &cfg(r#""passwd":{"users":[{"name":"a","sshAuthorizedKey":[]}]}"#),
        "passwd.users[0].sshAuthorizedKey",
        "did you mean \"sshAuthorizedKeys\"",
    );
    let p = only_error(&cfg(r#""frobnicate":1"#), "frobnicate", "unknown key \"frobnicate\"");
    assert!(!p.message.contains("did you mean"));
    let r = bad(&cfg(r#""passwd":{"users":[{"Name":"a"}]}"#));
    find(&r, Severity::Error, "passwd.users[0].Name", "did you mean \"name\"");
    find(&r, Severity::Error, "passwd.users[0].name", "missing required key");
}

#[test]
fn wrong_types_are_errors() {
    only_error(&storage("files", r#"{"path":"/etc/a","mode":"0644"}"#), "storage.files[0].mode", "expected an integer, found a string");
    only_error(&storage("files", r#"{"path":"/etc/a","mode":420.5}"#), "storage.files[0].mode", "expected an integer");
    only_error(&storage("files", r#"{"path":"/etc/a","mode":-1}"#), "storage.files[0].mode", "non-negative");
    only_error(
        &storage("files", r#"{"path":"/etc/a","overwrite":"yes"}"#),
        "storage.files[0].overwrite",
        "expected a boolean, found a string",
    );
    only_error(&storage("files", r#"{"path":7}"#), "storage.files[0].path", "expected a string, found a number");
    only_error(&cfg(r#""storage":{"files":{}}"#), "storage.files", "expected an array, found an object");
    only_error(&storage("files", r#""/etc/a""#), "storage.files[0]", "expected an object, found a string");
    only_error(&cfg(r#""passwd":{"users":[{"name":"a","uid":99999999999}]}"#), "passwd.users[0].uid", "too large");
    find(&bad("[]"), Severity::Error, "", "expected an object, found an array");
}

#[test]
fn missing_required_keys() {
    only_error(&storage("files", r#"{"mode":420}"#), "storage.files[0].path", "missing required key \"path\"");
    only_error(&storage("links", r#"{"path":"/etc/l"}"#), "storage.links[0].target", "missing required key \"target\"");
    only_error(&cfg(r#""passwd":{"users":[{"uid":5}]}"#), "passwd.users[0].name", "missing");
    only_error(&cfg(r#""passwd":{"groups":[{"gid":5}]}"#), "passwd.groups[0].name", "missing");
    only_error(
        r#"{"ignition":{"version":"3.4.0","config":{"merge":[{"compression":"gzip"}]}}}"#,
        "ignition.config.merge[0].source",
        "missing",
    );
}

#[test]
fn version_gated_keys() {
    let headers = r#"{"path":"/etc/a","contents":{"source":"data:,x","httpHeaders":[]}}"#;
    let text = storage("files", headers).replace("3.4.0", "3.0.0");
    only_error(&text, "storage.files[0].contents.httpHeaders", "needs spec 3.1.0");
    ok(&storage("files", headers).replace("3.4.0", "3.1.0"));
    let kargs = r#"{"ignition":{"version":"3.2.0"},"kernelArguments":{}}"#;
    only_error(kargs, "kernelArguments", "needs spec 3.3.0 or later; this config declares 3.2.0");
    ok(&kargs.replace("3.2.0", "3.3.0"));
    only_error(&cfg(r#""storage":{"luks":[]}"#).replace("3.4.0", "3.1.0"), "storage.luks", "needs spec 3.2.0");
    only_error(r#"{"ignition":{"version":"3.0.0","proxy":{}}}"#, "ignition.proxy", "needs spec 3.1.0");
    only_error(
        &cfg(r#""passwd":{"users":[{"name":"a","shouldExist":true}]}"#).replace("3.4.0", "3.1.0"),
        "passwd.users[0].shouldExist",
        "3.2.0",
    );
}

#[test]
fn unsupported_features_name_the_field_and_the_alternative() {
    let units = cfg(r#""systemd":{"units":[{"name":"a.service","enabled":true}]}"#);
    only_error(&units, "systemd.units", "keel has no systemd: declare a container in /etc/keel/containers/NAME.toml");
    only_error(&cfg(r#""storage":{"disks":[{"device":"/dev/vdb"}]}"#), "storage.disks", "keel-var");
    only_error(&cfg(r#""storage":{"raid":[{"name":"md0"}]}"#), "storage.raid", "not supported by keel");
    only_error(&cfg(r#""storage":{"filesystems":[{"device":"/dev/vdb"}]}"#), "storage.filesystems", "keel's /var is its data disk");
    only_error(&cfg(r#""storage":{"luks":[{"name":"x"}]}"#), "storage.luks", "LUKS");
    only_error(&cfg(r#""kernelArguments":{"shouldExist":["quiet"]}"#), "kernelArguments.shouldExist", "host.toml");
}

#[test]
fn tls_cas_must_be_pem_certificates() {
    only_error(
        r#"{"ignition":{"version":"3.4.0","security":{"tls":{"certificateAuthorities":[{"source":"data:,x"}]}}}}"#,
        "ignition.security.tls.certificateAuthorities[0].source",
        "no PEM certificate",
    );
    only_error(
        r#"{"ignition":{"version":"3.4.0","security":{"tls":{"certificateAuthorities":[{"compression":"gzip"}]}}}}"#,
        "ignition.security.tls.certificateAuthorities[0].source",
        "missing",
    );
    only_error(
        r#"{"ignition":{"version":"3.4.0","security":{"tls":{"certificateAuthorities":[{"source":"ftp://x/ca.pem"}]}}}}"#,
        "ignition.security.tls.certificateAuthorities[0].source",
        "not supported",
    );
    let (c, _) = parse(br#"{"ignition":{"version":"3.4.0","security":{"tls":{"certificateAuthorities":[{"source":"https://pki.example/ca.pem","verification":{"hash":"sha256-0000000000000000000000000000000000000000000000000000000000000000"}}]}}}}"#).unwrap();
    assert_eq!(c.certificate_authorities[0].source, "https://pki.example/ca.pem");
}

#[test]
fn proxies_must_be_plain_http_urls() {
    let (c, _) = parse(br#"{"ignition":{"version":"3.4.0","proxy":{"httpProxy":"http://p:3128","httpsProxy":"http://p:3129","noProxy":["10.0.0.0/8",".internal"]}}}"#).unwrap();
    assert_eq!(c.proxy.http_proxy.as_deref(), Some("http://p:3128"));
    assert_eq!(c.proxy.https_proxy.as_deref(), Some("http://p:3129"));
    assert_eq!(c.proxy.no_proxy, ["10.0.0.0/8", ".internal"]);
    only_error(r#"{"ignition":{"version":"3.4.0","proxy":{"httpsProxy":"https://p:3128"}}}"#, "ignition.proxy.httpsProxy", "plain http");
    only_error(r#"{"ignition":{"version":"3.4.0","proxy":{"httpProxy":"p:3128"}}}"#, "ignition.proxy.httpProxy", "not an http");
    only_error(r#"{"ignition":{"version":"3.0.0","proxy":{"httpProxy":"http://p"}}}"#, "ignition.proxy", "needs spec 3.1.0");
}

#[test]
fn http_headers_follow_ignitions_rules() {
    let file = |headers: &str, source: &str| {
        storage("files", &format!(r#"{{"path":"/etc/a","contents":{{"source":"{source}","httpHeaders":{headers}}}}}"#))
    };
    let (c, _) = parse(file(r#"[{"name":"Authorization","value":"Bearer x"}]"#, "HTTPS://h/a").as_bytes()).unwrap();
    let contents = c.files[0].contents.as_ref().unwrap();
    assert_eq!((contents.http_headers[0].name.as_str(), contents.http_headers[0].value.as_str()), ("Authorization", "Bearer x"));
    assert_eq!(contents.source.as_deref(), Some("https://h/a"), "the scheme is lowercased for the fetcher");
    only_error(&file(r#"[{"name":"A"}]"#, "http://h/a"), "storage.files[0].contents.httpHeaders[0].value", "missing");
    only_error(&file(r#"[{"name":"A","value":""}]"#, "http://h/a"), "storage.files[0].contents.httpHeaders[0].value", "empty");
    only_error(
        &file(r#"[{"name":"A","value":"b"},{"name":"A","value":"c"}]"#, "http://h/a"),
        "storage.files[0].contents.httpHeaders[1].name",
        "given twice",
    );
    only_error(&file(r#"[{"name":"A","value":"b"}]"#, "data:,x"), "storage.files[0].contents.httpHeaders", "only sent with http");
    only_error(
        &file(r#"[{"name":"A","value":"b"},{"name":"a","value":"c"}]"#, "http://h/a"),
        "storage.files[0].contents.httpHeaders[1].name",
        "twice",
    );
    only_error(&file(r#"[{"name":"","value":"b"}]"#, "http://h/a"), "storage.files[0].contents.httpHeaders[0].name", "empty");
    only_error(
        &file(r#"[{"name":"a b","value":"b"}]"#, "http://h/a"),
        "storage.files[0].contents.httpHeaders[0].name",
        "not a valid HTTP token",
    );
    only_error(&file(r#"[{"value":"b"}]"#, "http://h/a"), "storage.files[0].contents.httpHeaders[0].name", "missing");
    only_error(
        &file(r#"[{"name":"A","value":"b\r\nX: y"}]"#, "http://h/a"),
        "storage.files[0].contents.httpHeaders[0].value",
        "line break",
    );
    only_error(&file(r#"[{"name":"A","value":"b","valeu":"b"}]"#, "http://h/a"), "storage.files[0].contents.httpHeaders[0].valeu", "value");
}

#[test]
fn empty_unsupported_sections_are_accepted() {
    ok(&cfg(r#""systemd":{"units":[]},"storage":{"disks":[],"raid":[],"filesystems":[],"luks":[]},"kernelArguments":{"shouldExist":[]}"#));
    ok(r#"{"ignition":{"version":"3.4.0","security":{"tls":{}},"proxy":{},"config":{"replace":{"verification":{}}}}}"#);
}

#[test]
fn unsupported_user_and_group_options() {
    for (field, value) in [
        ("system", "true"),
        ("noCreateHome", "true"),
        ("gecos", "\"Core\""),
        ("primaryGroup", "\"wheel\""),
        ("noUserGroup", "true"),
        ("noLogInit", "true"),
    ] {
        let text = cfg(&format!(r#""passwd":{{"users":[{{"name":"core","{field}":{value}}}]}}"#));
        only_error(&text, &format!("passwd.users[0].{field}"), "not supported by keel");
        let default = if value == "true" { "false" } else { "\"\"" };
        ok(&cfg(&format!(r#""passwd":{{"users":[{{"name":"core","{field}":{default}}}]}}"#)));
    }
    only_error(&cfg(r#""passwd":{"users":[{"name":"core","shouldExist":false}]}"#), "passwd.users[0].shouldExist", "never deletes");
    only_error(&cfg(r#""passwd":{"groups":[{"name":"g","system":true}]}"#), "passwd.groups[0].system", "gid");
    ok(&cfg(r#""passwd":{"groups":[{"name":"g","shouldExist":true}]}"#));
}

#[test]
fn owners_by_id_or_name() {
    let (c, _) = ok(&storage("files", r#"{"path":"/etc/a","user":{"id":1000},"group":{"name":"wheel"}}"#));
    assert_eq!(c.files[0].owner.user, Some(IdOrName::Id(1000)));
    assert_eq!(c.files[0].owner.group, Some(IdOrName::Name("wheel".into())));
    only_error(&storage("files", r#"{"path":"/etc/a","user":{"id":1,"name":"core"}}"#), "storage.files[0].user", "either id or name");
    only_error(&storage("directories", r#"{"path":"/etc/d","group":{"id":1,"name":"core"}}"#), "storage.directories[0].group", "not both");
    only_error(
        &storage("links", r#"{"path":"/etc/l","target":"/x","user":{"uid":1}}"#),
        "storage.links[0].user.uid",
        "did you mean \"id\"",
    );
}

#[test]
fn compression_and_hashes() {
    let h256 = "a".repeat(64);
    let (c, _) = ok(&storage(
        "files",
        &format!(r#"{{"path":"/etc/a","contents":{{"source":"data:,x","compression":"","verification":{{"hash":"sha256-{h256}"}}}}}}"#),
    ));
    let r = c.files[0].contents.as_ref().unwrap();
    assert_eq!(r.compression, None);
    assert_eq!(r.verification.as_ref().unwrap().hex, h256);
    let h512 = "AB".repeat(64);
    let (c, _) =
        ok(&storage("files", &format!(r#"{{"path":"/etc/a","contents":{{"source":"","verification":{{"hash":"sha512-{h512}"}}}}}}"#)));
    assert_eq!(c.files[0].contents.as_ref().unwrap().verification.as_ref().unwrap().hex, "ab".repeat(64));
    assert_eq!(c.files[0].contents.as_ref().unwrap().source, None, "\"\" is no source");
    let file = |hash: &str| {
        storage("files", &format!(r#"{{"path":"/etc/a","contents":{{"source":"data:,x","verification":{{"hash":"{hash}"}}}}}}"#))
    };
    let path = "storage.files[0].contents.verification.hash";
    only_error(&file(&format!("sha256-{}", "a".repeat(63))), path, "64 hex digits");
    only_error(&file(&format!("sha512-{}", "g".repeat(128))), path, "is not hex");
    // Ignition's rules: a hash needs a source (null is none; "" is one); 3.0.0 knows only sha512.
    let no_source = format!(r#"{{"path":"/etc/a","contents":{{"source":null,"verification":{{"hash":"sha512-{h512}"}}}}}}"#);
    only_error(&storage("files", &no_source), path, "needs a source");
    let v30 = format!(
        r#"{{"ignition":{{"version":"3.0.0"}},"storage":{{"files":[{{"path":"/etc/a","contents":{{"source":"data:,x","verification":{{"hash":"sha256-{h256}"}}}}}}]}}}}"#
    );
    only_error(&v30, path, "3.0.0 knows only sha512");
    only_error(&file(&format!("md5-{}", "a".repeat(32))), path, "\"md5\" is not supported");
    only_error(&file("abc"), path, "ALGORITHM-HEX");
    only_error(
        &storage("files", r#"{"path":"/etc/a","contents":{"compression":"xz"}}"#),
        "storage.files[0].contents.compression",
        "\"xz\" is not supported",
    );
}

#[test]
fn config_references_and_timeouts_parse() {
    let text = r#"{"ignition":{"version":"3.4.0","config":{"merge":[{"source":"https://example.com/a.ign"},{"source":"data:,%7B%7D","compression":null}],"replace":{"source":"http://10.0.2.2/r.ign"}},"timeouts":{"httpResponseHeaders":5,"httpTotal":30}}}"#;
    let (c, _) = ok(text);
    assert_eq!(c.merge.len(), 2);
    assert_eq!(c.merge[0].source, "https://example.com/a.ign");
    assert_eq!(c.replace.as_ref().unwrap().source, "http://10.0.2.2/r.ign");
    assert_eq!(c.timeouts.http_response_headers, Some(5));
    assert_eq!(c.timeouts.http_total, Some(30));
    only_error(r#"{"ignition":{"version":"3.4.0","timeouts":{"httpTotal":-3}}}"#, "ignition.timeouts.httpTotal", "non-negative");
}

#[test]
fn collects_every_problem_not_just_the_first() {
    let text = storage(
        "files",
        r#"{"path":"etc/a","moed":420},{"path":"/usr/bin/x","mode":9999},{"path":"/etc/b","contents":{"source":"s3://b/k"}}"#,
    );
    let r = bad(&text);
    assert_eq!(r.errors().count(), 5, "{r}");
    find(&r, Severity::Error, "storage.files[1].mode", "mode 0o23417 is above 0o7777");
    find(&r, Severity::Error, "storage.files[0].moed", "unknown key");
    find(&r, Severity::Error, "storage.files[0].path", "not absolute");
    find(&r, Severity::Error, "storage.files[1].path", "/usr");
    find(&r, Severity::Error, "storage.files[2].contents.source", "\"s3\" is not supported by keel");
}
