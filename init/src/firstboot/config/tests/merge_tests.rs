//! Merge semantics: child wins; lists merged by path or name.

use super::ok;
use crate::firstboot::config::{
    merge, Config, ConfigRef, DirEntry, FileEntry, Group, IdOrName, LinkEntry, Owner, Resource, Timeouts, User,
};

fn file(path: &str, source: Option<&str>, mode: Option<u32>) -> FileEntry {
    let contents = source.map(|s| Resource { source: Some(s.into()), ..Default::default() });
    FileEntry { path: path.into(), contents, mode, ..Default::default() }
}

#[test]
fn files_merge_by_path_child_wins_order_kept() {
    let parent = Config { files: vec![file("/etc/a", Some("data:,p"), Some(0o600)), file("/etc/b", None, None)], ..Default::default() };
    let child = Config { files: vec![file("/etc/c", None, None), file("/etc/a", Some("data:,c"), None)], ..Default::default() };
    let m = merge(parent, child);
    let paths: Vec<_> = m.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["/etc/a", "/etc/b", "/etc/c"]);
    assert_eq!(m.files[0].contents.as_ref().unwrap().source.as_deref(), Some("data:,c"));
    assert_eq!(m.files[0].mode, Some(0o600), "unset child field keeps the parent's");
}

#[test]
fn fields_and_owner_parts_override_separately() {
    let mut p = file("/etc/a", None, Some(0o644));
    p.owner = Owner { user: Some(IdOrName::Id(1)), group: Some(IdOrName::Name("g".into())) };
    let mut c = file("/etc/a", None, Some(0o600));
    c.owner.user = Some(IdOrName::Name("core".into()));
    let m = merge(Config { files: vec![p], ..Default::default() }, Config { files: vec![c], ..Default::default() });
    assert_eq!(m.files[0].mode, Some(0o600));
    assert_eq!(m.files[0].owner.user, Some(IdOrName::Name("core".into())));
    assert_eq!(m.files[0].owner.group, Some(IdOrName::Name("g".into())));
}

#[test]
fn one_path_space_across_files_directories_and_links() {
    let parent = Config {
        directories: vec![DirEntry { path: "/etc/x".into(), ..Default::default() }],
        links: vec![LinkEntry { path: "/etc/y".into(), target: "/a".into(), ..Default::default() }],
        ..Default::default()
    };
    let child = Config {
        files: vec![file("/etc/x", None, None)],
        directories: vec![DirEntry { path: "/etc/y".into(), ..Default::default() }],
        ..Default::default()
    };
    let m = merge(parent, child);
    assert_eq!(m.files.len(), 1);
    assert_eq!(m.directories.iter().map(|d| d.path.as_str()).collect::<Vec<_>>(), ["/etc/y"]);
    assert!(m.links.is_empty());
}

#[test]
fn users_and_groups_merge_by_name() {
    let parent = Config {
        users: vec![User {
            name: "core".into(),
            uid: Some(1000),
            groups: vec!["wheel".into()],
            ssh_authorized_keys: vec!["k1".into()],
            shell: Some("/bin/sh".into()),
            ..Default::default()
        }],
        groups: vec![Group { name: "g".into(), gid: Some(5), password_hash: None }],
        ..Default::default()
    };
    let child = Config {
        users: vec![
            User {
                name: "core".into(),
                groups: vec!["wheel".into(), "docker".into()],
                ssh_authorized_keys: vec!["k2".into()],
                shell: Some("/bin/bash".into()),
                ..Default::default()
            },
            User { name: "ops".into(), ..Default::default() },
        ],
        groups: vec![Group { name: "g".into(), gid: None, password_hash: Some("!".into()) }],
        ..Default::default()
    };
    let m = merge(parent, child);
    assert_eq!(m.users.len(), 2);
    let core = &m.users[0];
    assert_eq!(core.uid, Some(1000));
    assert_eq!(core.groups, ["wheel", "docker"]);
    assert_eq!(core.ssh_authorized_keys, ["k1", "k2"]);
    assert_eq!(core.shell.as_deref(), Some("/bin/bash"));
    assert_eq!(m.groups, [Group { name: "g".into(), gid: Some(5), password_hash: Some("!".into()) }]);
}

#[test]
fn ignition_section_and_empty_child() {
    let r = |s: &str| ConfigRef { source: s.into(), compression: None, verification: None, http_headers: Vec::new() };
    let parent = Config {
        merge: vec![r("data:,a")],
        replace: Some(r("data:,r")),
        timeouts: Timeouts { http_response_headers: Some(10), http_total: Some(60) },
        ..Default::default()
    };
    let child =
        Config { merge: vec![r("data:,b")], timeouts: Timeouts { http_response_headers: None, http_total: Some(5) }, ..Default::default() };
    let m = merge(parent.clone(), child);
    assert_eq!(m.merge, [r("data:,a"), r("data:,b")]);
    assert_eq!(m.replace, Some(r("data:,r")));
    assert_eq!(m.timeouts, Timeouts { http_response_headers: Some(10), http_total: Some(5) });
    assert_eq!(merge(parent.clone(), Config::default()), parent);
    assert_eq!(merge(Config::default(), parent.clone()), parent);
}

#[test]
fn merging_parsed_configs() {
    let (a, _) =
        ok(r#"{"ignition":{"version":"3.0.0"},"storage":{"files":[{"path":"/etc/motd","contents":{"source":"data:,a"},"mode":420}]}}"#);
    let (b, _) = ok(r#"{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/etc/motd","contents":{"source":"data:,b"}}]}}"#);
    let m = merge(a, b);
    assert_eq!(m.files.len(), 1);
    assert_eq!(m.files[0].mode, Some(420));
    assert_eq!(m.files[0].contents.as_ref().unwrap().source.as_deref(), Some("data:,b"));
    assert!(crate::firstboot::config::validate(&m).is_valid());
}
