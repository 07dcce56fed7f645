//! Tests of [`super::write::apply`] against temp directories (run as root: they chown).

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::{Path, PathBuf};

use super::plan::*;
use super::write::{apply, apply_with, ApplyErrorKind, ApplyReport, ApplyStep};

struct Root(PathBuf);

impl Root {
    fn new(name: &str) -> Root {
        let d = std::env::temp_dir().join(format!("keel-apply-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(d.join("etc")).unwrap();
        fs::write(d.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
        fs::write(d.join("etc/group"), "root:x:0:\nwheel:x:10:\n").unwrap();
        fs::write(d.join("etc/shadow"), "root:*:::::::\n").unwrap();
        Root(d)
    }
    fn p(&self, rel: &str) -> PathBuf {
        self.0.join(rel.trim_start_matches('/'))
    }
    fn marker(&self) -> PathBuf {
        self.p("var/lib/keel/firstboot.done")
    }
    fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.p(rel)).unwrap()
    }
    fn meta(&self, rel: &str) -> fs::Metadata {
        fs::symlink_metadata(self.p(rel)).unwrap()
    }
    /// Every path under the root with its type, mode, owner and contents, the marker excluded.
    fn snapshot(&self) -> Vec<String> {
        let mut out = Vec::new();
        walk(&self.0, &self.0, &mut out);
        out.retain(|l| !l.starts_with("var/lib/keel/firstboot.done"));
        out.sort();
        out
    }
    fn temps(&self) -> Vec<String> {
        self.snapshot().into_iter().filter(|l| l.contains(".keel-firstboot.")).collect()
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let m = fs::symlink_metadata(&p).unwrap();
        let rel = p.strip_prefix(root).unwrap().display().to_string();
        let what = if m.is_symlink() {
            format!("-> {}", fs::read_link(&p).unwrap().display())
        } else if m.is_file() {
            format!("{:?}", fs::read(&p).unwrap())
        } else {
            walk(root, &p, out);
            "dir".into()
        };
        out.push(format!("{rel} {:o} {}:{} {what}", m.mode(), m.uid(), m.gid()));
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn file(path: &str, contents: &str) -> PlannedFile {
    PlannedFile { path: path.into(), contents: Some(contents.as_bytes().to_vec()), overwrite: true, ..Default::default() }
}

fn full_plan() -> WritePlan {
    WritePlan {
        files: vec![
            PlannedFile {
                mode: Some(0o640),
                uid: Some(IdOrName::Name("core".into())),
                gid: Some(IdOrName::Name("wheel".into())),
                ..file("/etc/keel/containers/web.toml", "image = \"nginx\"\n")
            },
            PlannedFile { contents: None, append: vec![b"10.0.0.1 db\n".to_vec()], overwrite: false, ..file("/etc/hosts", "") },
            PlannedFile { overwrite: false, ..file("/etc/motd", "hello\n") },
        ],
        directories: vec![PlannedDir {
            path: "/var/lib/app".into(),
            mode: Some(0o750),
            uid: Some(IdOrName::Id(1234)),
            ..Default::default()
        }],
        links: vec![
            PlannedLink { path: "/etc/localtime".into(), target: "/usr/share/zoneinfo/UTC".into(), ..Default::default() },
            PlannedLink { path: "/etc/motd.link".into(), target: "/etc/motd".into(), hard: true, ..Default::default() },
        ],
        users: vec![PlannedUser {
            name: "core".into(),
            groups: vec!["wheel".into()],
            ssh_authorized_keys: vec!["ssh-ed25519 AAAA one".into(), "ssh-rsa BBBB two".into()],
            ..Default::default()
        }],
        groups: vec![],
    }
}

#[test]
fn contents_mode_and_owner_are_exact() {
    let r = Root::new("exact");
    fs::write(r.p("etc/hosts"), "127.0.0.1 localhost\n").unwrap();
    let report = apply(&r.0, &full_plan(), &r.marker()).unwrap();
    assert_eq!(report, ApplyReport { files: 3, directories: 1, links: 2, users: 1 });
    assert_eq!(r.read("etc/keel/containers/web.toml"), "image = \"nginx\"\n");
    let m = r.meta("etc/keel/containers/web.toml");
    assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o640, 1000, 10), "owned by the new user");
    let parent = r.meta("etc/keel/containers");
    assert_eq!((parent.mode() & 0o7777, parent.uid(), parent.gid()), (0o755, 0, 0));
    let m = r.meta("etc/motd");
    assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o644, 0, 0));
    let d = r.meta("var/lib/app");
    assert!(d.is_dir());
    assert_eq!((d.mode() & 0o7777, d.uid(), d.gid()), (0o750, 1234, 0));
    assert_eq!(fs::read_link(r.p("etc/localtime")).unwrap(), Path::new("/usr/share/zoneinfo/UTC"));
    assert_eq!(r.meta("etc/motd.link").ino(), r.meta("etc/motd").ino());
    assert!(r.temps().is_empty(), "{:?}", r.temps());
    let marker: serde_json::Value = serde_json::from_str(&fs::read_to_string(r.marker()).unwrap()).unwrap();
    assert_eq!(marker["files"], 3);
    assert_eq!(marker["users"], 1);
    assert!(marker["applied_at_unix"].as_u64().unwrap() > 0);
    assert!(!r.p("var/lib/keel/firstboot.done.journal").exists());
}

#[test]
fn users_get_home_and_authorized_keys() {
    let r = Root::new("users");
    apply(&r.0, &full_plan(), &r.marker()).unwrap();
    assert!(r.read("etc/passwd").contains("core:x:1000:1000::/home/core:/bin/sh\n"));
    assert!(r.read("etc/group").contains("wheel:x:10:core\n"));
    assert!(r.read("etc/shadow").contains("core:!:::::::\n"));
    assert_eq!(r.meta("etc/shadow").mode() & 0o7777, 0o644, "existing mode kept");
    for (path, mode) in [("home/core", 0o700), ("home/core/.ssh", 0o700), ("home/core/.ssh/authorized_keys", 0o600)] {
        let m = r.meta(path);
        assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (mode, 1000, 1000), "{path}");
    }
    assert_eq!(r.read("home/core/.ssh/authorized_keys"), "ssh-ed25519 AAAA one\nssh-rsa BBBB two\n");
}

#[test]
fn append_semantics_follow_ignition() {
    let r = Root::new("append");
    fs::write(r.p("etc/existing"), "a\n").unwrap();
    let plan = WritePlan {
        files: vec![
            PlannedFile { contents: None, append: vec![b"b\n".to_vec(), b"c\n".to_vec()], ..file("/etc/existing", "") },
            PlannedFile { append: vec![b"tail\n".to_vec()], ..file("/etc/fresh", "head\n") },
            PlannedFile { contents: None, append: vec![b"only\n".to_vec()], ..file("/etc/new", "") },
        ],
        ..Default::default()
    };
    apply(&r.0, &plan, &r.marker()).unwrap();
    assert_eq!(r.read("etc/existing"), "a\nb\nc\n");
    assert_eq!(r.read("etc/fresh"), "head\ntail\n");
    assert_eq!(r.read("etc/new"), "only\n");
}

#[test]
fn existing_file_without_overwrite_fails_and_changes_nothing() {
    let r = Root::new("nooverwrite");
    fs::write(r.p("etc/motd"), "old\n").unwrap();
    let before = r.snapshot();
    let mut plan = full_plan();
    plan.files[2].contents = Some(b"new\n".to_vec());
    let err = apply(&r.0, &plan, &r.marker()).unwrap_err();
    assert_eq!(err.step, ApplyStep::Stage);
    assert_eq!(err.path, r.p("etc/motd"));
    assert!(matches!(err.kind, ApplyErrorKind::ExistsNoOverwrite));
    assert!(err.to_string().ends_with("etc/motd: exists and overwrite is false"), "{err}");
    assert!(err.cleanup.is_empty(), "{:?}", err.cleanup);
    assert_eq!(r.snapshot(), before, "nothing changed, no temps, no new directories");
    assert!(!r.marker().exists());
}

#[test]
fn symlink_escaping_the_root_is_refused() {
    let r = Root::new("escape");
    let outside = std::env::temp_dir().join(format!("keel-apply-outside-{}", std::process::id()));
    fs::create_dir_all(&outside).unwrap();
    symlink("../../../../../../../../..".to_string() + &outside.display().to_string(), r.p("etc/evil")).unwrap();
    let before = r.snapshot();
    let plan = WritePlan { files: vec![file("/etc/ok", "x"), file("/etc/evil/pwned", "x")], ..Default::default() };
    let err = apply(&r.0, &plan, &r.marker()).unwrap_err();
    assert!(matches!(err.kind, ApplyErrorKind::Escape { .. }), "{err}");
    assert_eq!(err.path, r.p("etc/evil"));
    assert!(fs::read_dir(&outside).unwrap().next().is_none(), "nothing written outside");
    assert_eq!(r.snapshot(), before);
    fs::remove_dir_all(&outside).unwrap();
}

#[test]
fn absolute_symlinks_are_resolved_inside_the_root() {
    let r = Root::new("abslink");
    fs::create_dir_all(r.p("run")).unwrap();
    fs::create_dir_all(r.p("var")).unwrap();
    symlink("/run", r.p("var/run")).unwrap();
    let plan = WritePlan { files: vec![file("/var/run/x", "x")], ..Default::default() };
    apply(&r.0, &plan, &r.marker()).unwrap();
    assert_eq!(r.read("run/x"), "x");
}

#[test]
fn reapplying_the_same_plan_gives_the_same_tree() {
    let r = Root::new("idem");
    let mut plan = full_plan();
    plan.files.remove(1); // an append after a completed apply appends again by design
    apply(&r.0, &plan, &r.marker()).unwrap();
    let once = r.snapshot();
    apply(&r.0, &plan, &r.marker()).unwrap();
    assert_eq!(r.snapshot(), once);
}

#[test]
fn interrupted_commit_leaves_no_marker_and_is_redone_exactly() {
    let clean = Root::new("clean");
    fs::write(clean.p("etc/hosts"), "127.0.0.1 localhost\n").unwrap();
    apply(&clean.0, &full_plan(), &clean.marker()).unwrap();
    // renames: passwd, group, shadow, authorized_keys, web.toml, hosts, motd, localtime, motd.link, marker
    for n in [1, 5, 7, 10] {
        let r = Root::new(&format!("cut{n}"));
        fs::write(r.p("etc/hosts"), "127.0.0.1 localhost\n").unwrap();
        let err = apply_with(&r.0, &full_plan(), &r.marker(), Some(n)).unwrap_err();
        assert!(err.to_string().contains(&format!("injected failure at rename {n}")), "{err}");
        assert!(!r.marker().exists(), "no marker after a cut at rename {n}");
        assert!(r.temps().is_empty(), "{:?}", r.temps());
        apply(&r.0, &full_plan(), &r.marker()).unwrap();
        assert!(r.marker().exists());
        assert_eq!(r.snapshot(), clean.snapshot(), "cut at rename {n}");
        assert_eq!(r.read("etc/hosts"), "127.0.0.1 localhost\n10.0.0.1 db\n");
    }
}

#[test]
fn unknown_owner_and_duplicate_paths_are_errors() {
    let r = Root::new("owner");
    let before = r.snapshot();
    let f = PlannedFile { uid: Some(IdOrName::Name("ghost".into())), ..file("/etc/x/y", "x") };
    let err = apply(&r.0, &WritePlan { files: vec![f], ..Default::default() }, &r.marker()).unwrap_err();
    assert!(matches!(err.kind, ApplyErrorKind::UnknownUser(ref n) if n == "ghost"), "{err}");
    assert_eq!(r.snapshot(), before, "the parent made while staging is removed again");
    let plan = WritePlan { files: vec![file("/etc/a", "1"), file("/etc/a", "2")], ..Default::default() };
    let err = apply(&r.0, &plan, &r.marker()).unwrap_err();
    assert!(matches!(err.kind, ApplyErrorKind::Duplicate), "{err}");
    assert_eq!(r.snapshot(), before);
}

#[test]
fn account_errors_surface_with_their_message() {
    let r = Root::new("acct");
    let plan = WritePlan { users: vec![PlannedUser { name: "x".into(), uid: Some(0), ..Default::default() }], ..Default::default() };
    let err = apply(&r.0, &plan, &r.marker()).unwrap_err();
    assert_eq!(err.step, ApplyStep::Accounts);
    assert!(err.to_string().ends_with("uid 0 of user x is already used by user root"), "{err}");
}
