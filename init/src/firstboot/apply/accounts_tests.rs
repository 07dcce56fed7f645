use super::*;

fn base() -> AccountFiles {
    AccountFiles {
        passwd: "root:x:0:0:root:/root:/bin/sh\n# comment\nnobody:x:65534:65534::/:/sbin/nologin\n".into(),
        group: "root:x:0:\nwheel:x:10:root\nnobody:x:65534:\n".into(),
        shadow: "root:*:19000:0:99999:7:::\nnobody:!:19000::::::\n".into(),
    }
}

fn user(name: &str) -> PlannedUser {
    PlannedUser { name: name.into(), ..Default::default() }
}

#[test]
fn new_user_gets_defaults_and_own_group() {
    let up = merge_accounts(&base(), &[user("core")], &[]).unwrap();
    assert!(up.files.passwd.ends_with("core:x:1000:1000::/home/core:/bin/sh\n"));
    assert!(up.files.passwd.contains("# comment\n"));
    assert!(up.files.group.ends_with("core:x:1000:\n"));
    assert!(up.files.shadow.ends_with("core:!:::::::\n"));
    let want = AccountUser { name: "core".into(), uid: 1000, gid: 1000, home: "/home/core".into() };
    assert_eq!(up.users, vec![want]);
}

#[test]
fn explicit_fields_are_written() {
    let u = PlannedUser {
        name: "ops".into(),
        uid: Some(1500),
        groups: vec!["wheel".into()],
        shell: Some("/bin/bash".into()),
        password_hash: Some("$6$salt$hash".into()),
        ssh_authorized_keys: vec!["ssh-ed25519 AAAA ops".into()],
        home_dir: Some("/var/home/ops".into()),
    };
    let up = merge_accounts(&base(), &[u], &[]).unwrap();
    assert!(up.files.passwd.ends_with("ops:x:1500:1500::/var/home/ops:/bin/bash\n"));
    assert!(up.files.group.contains("wheel:x:10:root,ops\n"));
    assert!(up.files.shadow.ends_with("ops:$6$salt$hash:::::::\n"));
}

#[test]
fn ids_allocate_upwards_and_primary_gid_avoids_taken() {
    let mut files = base();
    files.group.push_str("staff:x:1000:\n");
    let up = merge_accounts(&files, &[user("a"), user("b")], &[]).unwrap();
    assert_eq!(up.users[0].uid, 1000);
    assert_eq!(up.users[0].gid, 1001, "gid 1000 is taken by staff");
    assert_eq!(up.users[1].uid, 1001);
    assert_eq!(up.users[1].gid, 1002);
}

#[test]
fn planned_group_named_like_user_is_its_primary_group() {
    let g = PlannedGroup { name: "app".into(), gid: Some(2000), password_hash: None };
    let up = merge_accounts(&base(), &[user("app")], &[g]).unwrap();
    assert_eq!(up.users[0].gid, 2000);
    assert_eq!(up.files.group.matches("app:").count(), 1);
}

#[test]
fn groups_allocate_and_update() {
    let groups = [
        PlannedGroup { name: "docker".into(), gid: None, password_hash: None },
        PlannedGroup { name: "wheel".into(), gid: None, password_hash: Some("$1$x".into()) },
    ];
    let up = merge_accounts(&base(), &[], &groups).unwrap();
    assert!(up.files.group.contains("docker:x:1000:\n"));
    assert!(up.files.group.contains("wheel:$1$x:10:root\n"));
}

#[test]
fn existing_user_is_updated_not_duplicated() {
    let u =
        PlannedUser { name: "root".into(), password_hash: Some("$6$new".into()), shell: Some("/bin/bash".into()), ..Default::default() };
    let up = merge_accounts(&base(), &[u], &[]).unwrap();
    assert!(up.files.passwd.starts_with("root:x:0:0:root:/root:/bin/bash\n"));
    assert!(up.files.shadow.starts_with("root:$6$new:19000:0:99999:7:::\n"));
    assert_eq!(up.files.passwd.lines().filter(|l| l.starts_with("root:")).count(), 1);
}

#[test]
fn merge_is_idempotent() {
    let u = PlannedUser { groups: vec!["wheel".into()], ..user("core") };
    let g = PlannedGroup { name: "docker".into(), gid: None, password_hash: None };
    let once = merge_accounts(&base(), std::slice::from_ref(&u), std::slice::from_ref(&g)).unwrap();
    let twice = merge_accounts(&once.files, &[u], &[g]).unwrap();
    assert_eq!(once, twice);
}

#[test]
fn taken_uid_names_both_users() {
    let u = PlannedUser { uid: Some(65534), ..user("core") };
    let err = merge_accounts(&base(), &[u], &[]).unwrap_err();
    assert_eq!(err.to_string(), "uid 65534 of user core is already used by user nobody");
}

#[test]
fn taken_gid_names_both_groups() {
    let g = PlannedGroup { name: "docker".into(), gid: Some(10), password_hash: None };
    let err = merge_accounts(&base(), &[], &[g]).unwrap_err();
    assert_eq!(err.to_string(), "gid 10 of group docker is already used by group wheel");
}

#[test]
fn two_planned_users_with_one_uid_conflict() {
    let a = PlannedUser { uid: Some(1200), ..user("a") };
    let b = PlannedUser { uid: Some(1200), ..user("b") };
    let err = merge_accounts(&base(), &[a, b], &[]).unwrap_err();
    assert_eq!(err.to_string(), "uid 1200 of user b is already used by user a");
}

#[test]
fn duplicate_names_and_unknown_groups_are_errors() {
    let err = merge_accounts(&base(), &[user("a"), user("a")], &[]).unwrap_err();
    assert_eq!(err.to_string(), "user a is listed twice");
    let u = PlannedUser { groups: vec!["nope".into()], ..user("a") };
    let err = merge_accounts(&base(), &[u], &[]).unwrap_err();
    assert_eq!(err.to_string(), "user a: group nope does not exist");
}

#[test]
fn fields_that_break_the_format_are_rejected() {
    let u = PlannedUser { shell: Some("/bin/sh:x".into()), ..user("a") };
    assert!(matches!(merge_accounts(&base(), &[u], &[]), Err(AccountsError::BadField { .. })));
    assert!(matches!(merge_accounts(&base(), &[user("a:b")], &[]), Err(AccountsError::BadField { .. })));
}

#[test]
fn malformed_existing_line_names_file_and_line() {
    let mut files = base();
    files.passwd.push_str("broken:x:1\n");
    let err = merge_accounts(&files, &[user("a")], &[]).unwrap_err();
    assert_eq!(err.to_string(), "/etc/passwd line 4: expected 7 fields, found 3");
}

#[test]
fn lookups_find_names() {
    let up = merge_accounts(&base(), &[user("core")], &[]).unwrap();
    assert_eq!(user_id(&up.files.passwd, "core"), Some(1000));
    assert_eq!(group_id(&up.files.group, "wheel"), Some(10));
    assert_eq!(user_id(&up.files.passwd, "ghost"), None);
}

#[test]
fn empty_files_start_fresh() {
    let up = merge_accounts(&AccountFiles::default(), &[user("core")], &[]).unwrap();
    assert_eq!(up.files.passwd, "core:x:1000:1000::/home/core:/bin/sh\n");
}
