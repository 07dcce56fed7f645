//! Tempdir tests of the kernel-facing half: the tree and the leaf operations run against
//! plain directories seeded with the files cgroupfs would provide.

use super::*;
use crate::spec::{ContainerName, Resources};
use nix::unistd::Pid;
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::Duration;
use tempfile::TempDir;

/// A fake hierarchy whose root offers `controllers`.
fn hierarchy(controllers: &str) -> (TempDir, CgroupTree) {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("cgroup.controllers"), controllers).unwrap();
    let tree = CgroupTree::new(tmp.path()).without_device_filter();
    (tmp, tree)
}

fn name(n: &str) -> ContainerName {
    ContainerName::new(n).unwrap()
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap()
}

fn all_limits() -> Resources {
    Resources {
        memory_max: Some(1 << 28),
        memory_swap_max: Some(0),
        cpu_max: Some((None, 100_000)),
        pids_max: Some(64),
        io_weight: Some(50),
    }
}

#[test]
fn is_v2_needs_cgroup_controllers() {
    let (tmp, tree) = hierarchy("cpu memory");
    assert!(tree.is_v2());
    fs::remove_file(tmp.path().join("cgroup.controllers")).unwrap();
    assert!(!tree.is_v2());
}

#[test]
fn prepare_enables_controllers_on_parents_and_writes_limits_to_leaf() {
    let (tmp, tree) = hierarchy("cpuset cpu io memory hugetlb pids rdma misc\n");
    let cgroup = tree.prepare(&name("web"), &all_limits()).unwrap();

    let leaf = tmp.path().join("keel/web");
    assert_eq!(cgroup.dir(), leaf);
    let line = "+memory +cpu +pids +io";
    assert_eq!(read(&tmp.path().join("cgroup.subtree_control")), line);
    assert_eq!(read(&tmp.path().join("keel/cgroup.subtree_control")), line);
    assert!(!leaf.join("cgroup.subtree_control").exists());
    assert_eq!(read(&leaf.join("memory.max")), "268435456");
    assert_eq!(read(&leaf.join("memory.swap.max")), "0");
    assert_eq!(read(&leaf.join("cpu.max")), "max 100000");
    assert_eq!(read(&leaf.join("pids.max")), "64");
    assert_eq!(read(&leaf.join("io.weight")), "default 50");
    assert_eq!(read(&leaf.join("memory.oom.group")), "1");
    assert!(leaf.join("main").is_dir(), "the container's processes get a leaf of their own");
    assert_eq!(cgroup.main_dir(), leaf.join("main"));
}

#[test]
fn prepare_without_limits_writes_the_defaults() {
    let (tmp, tree) = hierarchy("memory pids");
    let cgroup = tree.prepare(&name("plain"), &Resources::default()).unwrap();
    assert_eq!(read(&tmp.path().join("cgroup.subtree_control")), "+memory +pids");
    assert_eq!(read(&tmp.path().join("keel/cgroup.subtree_control")), "+memory +pids");
    assert_eq!(read(&cgroup.dir().join("pids.max")), "2048");
    assert_eq!(read(&cgroup.dir().join("memory.oom.group")), "1");
    let mut entries: Vec<String> =
        fs::read_dir(cgroup.dir()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    entries.sort();
    assert_eq!(entries, ["main", "memory.oom.group", "pids.max"]);
    assert!(!tmp.path().join("keel/memory.max").exists(), "no parent limits unless given");
}

#[test]
fn prepare_writes_the_parent_limits_into_keel() {
    let (tmp, tree) = hierarchy("memory pids");
    let limits = reserve::ParentLimits { memory_max: 360 << 20, pids_max: 2775 };
    let tree = tree.with_parent_limits(limits);
    tree.prepare(&name("web"), &Resources::default()).unwrap();
    assert_eq!(read(&tmp.path().join("keel/memory.max")), (360u64 << 20).to_string());
    assert_eq!(read(&tmp.path().join("keel/pids.max")), "2775");
    assert_eq!(read(&tmp.path().join("keel/web/pids.max")), "2048");
}

#[test]
fn prepare_attaches_the_device_filter_before_the_leaf_exists() {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("cgroup.controllers"), "memory pids").unwrap();
    // A plain directory is no cgroup: the attach fails (as root; the load fails
    // without privilege), is reported, and the container's leaf is never made.
    let err = CgroupTree::new(tmp.path()).prepare(&name("web"), &Resources::default()).unwrap_err();
    assert!(matches!(err, CgroupError::DeviceFilter(_)), "{err:?}");
    assert!(!tmp.path().join("keel/web/main").exists(), "no leaf for processes without the filter");
}

#[test]
fn defaults_need_the_memory_and_pids_controllers() {
    let (tmp, tree) = hierarchy("cpu io\n");
    let err = tree.prepare(&name("plain"), &Resources::default()).unwrap_err();
    let CgroupError::ControllersUnavailable { missing, .. } = &err else { panic!("{err:?}") };
    assert_eq!(missing, &["memory", "pids"]);
    assert!(!tmp.path().join("keel").exists());
}

#[test]
fn missing_controller_is_named_and_nothing_is_written() {
    let (tmp, tree) = hierarchy("cpu memory\n");
    let err = tree.prepare(&name("web"), &all_limits()).unwrap_err();
    match &err {
        CgroupError::ControllersUnavailable { path, missing, available } => {
            assert_eq!(path, &tmp.path().join("cgroup.controllers"));
            assert_eq!(missing, &["pids", "io"]);
            assert_eq!(available, &["cpu", "memory"]);
        }
        other => panic!("expected ControllersUnavailable, got {other:?}"),
    }
    assert!(err.to_string().contains("pids, io"), "{err}");
    assert!(!tmp.path().join("keel").exists());
    assert!(!tmp.path().join("cgroup.subtree_control").exists());
}

#[test]
fn negative_control_same_limits_pass_once_controllers_exist() {
    // Proves the test above fails for the missing controllers, not something else.
    let (_tmp, tree) = hierarchy("cpu memory pids io\n");
    tree.prepare(&name("web"), &all_limits()).unwrap();
}

#[test]
fn prepare_refuses_a_v1_root() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = CgroupTree::new(tmp.path());
    let err = tree.prepare(&name("web"), &Resources::default()).unwrap_err();
    assert!(matches!(&err, CgroupError::NotV2 { root } if root == tmp.path()), "{err:?}");
    assert!(!tmp.path().join("keel").exists());
}

#[test]
fn prepare_refuses_a_leaf_that_is_a_file() {
    let (tmp, tree) = hierarchy("memory pids");
    fs::create_dir(tmp.path().join("keel")).unwrap();
    fs::write(tmp.path().join("keel/memory.max"), "max").unwrap();
    // (a file where the container's cgroup belongs)
    let limits = Resources { pids_max: Some(5), ..Resources::default() };
    let err = tree.prepare(&name("memory.max"), &limits).unwrap_err();
    let leaf = tmp.path().join("keel/memory.max");
    assert!(matches!(&err, CgroupError::NotADirectory { path } if *path == leaf), "{err:?}");
    assert!(!tmp.path().join("cgroup.subtree_control").exists());
}

#[test]
fn prepare_reuses_an_existing_leaf_after_killing_it() {
    let (tmp, tree) = hierarchy("cpu memory pids");
    let leaf = tmp.path().join("keel/web");
    fs::create_dir_all(leaf.join("main")).unwrap();
    fs::create_dir_all(leaf.join("exec-7-0")).unwrap();
    for (file, old) in [("cgroup.kill", "0"), ("memory.max", "123"), ("pids.max", "5")] {
        fs::write(leaf.join(file), old).unwrap();
    }
    let limits = Resources { memory_max: Some(4096), ..Resources::default() };
    tree.prepare(&name("web"), &limits).unwrap();
    assert_eq!(read(&leaf.join("cgroup.kill")), "1");
    assert_eq!(read(&leaf.join("memory.max")), "4096");
    assert_eq!(read(&leaf.join("pids.max")), "2048", "stale limit replaced by the default");
    assert!(!leaf.join("cpu.max").exists(), "resets only touch existing files");
    assert!(leaf.join("main").is_dir());
    assert!(!leaf.join("exec-7-0").exists(), "a stale exec leaf is removed");
}

#[test]
fn write_errors_name_the_path() {
    let (tmp, tree) = hierarchy("memory pids");
    // A directory where the limit file belongs makes the write fail.
    fs::create_dir_all(tmp.path().join("keel/web/pids.max")).unwrap();
    fs::write(tmp.path().join("keel/web/cgroup.kill"), "").unwrap();
    let limits = Resources { pids_max: Some(5), ..Resources::default() };
    let err = tree.prepare(&name("web"), &limits).unwrap_err();
    let message = err.to_string();
    let CgroupError::Write { path, data, .. } = err else { panic!("{err:?}") };
    assert_eq!(path, tmp.path().join("keel/web/pids.max"));
    assert_eq!(data, "5");
    assert!(message.starts_with(&format!("write {}: ", path.display())), "{message}");
}

#[test]
fn add_process_writes_the_pid_into_main() {
    let tmp = tempfile::tempdir().unwrap();
    fs::create_dir(tmp.path().join("main")).unwrap();
    let cgroup = ContainerCgroup::at(tmp.path());
    cgroup.add_process(Pid::from_raw(4242)).unwrap();
    assert_eq!(read(&tmp.path().join("main/cgroup.procs")), "4242");
}

#[test]
fn open_main_fd_opens_the_main_leaf_only() {
    let tmp = tempfile::tempdir().unwrap();
    assert!(ContainerCgroup::at(tmp.path()).open_main_fd().is_err(), "no main leaf yet");
    fs::create_dir(tmp.path().join("main")).unwrap();
    assert!(ContainerCgroup::at(tmp.path()).open_main_fd().is_ok());
    fs::write(tmp.path().join("file"), "").unwrap();
    fs::create_dir(tmp.path().join("file2")).unwrap();
    fs::write(tmp.path().join("file2/main"), "").unwrap();
    assert!(ContainerCgroup::at(tmp.path().join("file2")).open_main_fd().is_err());
}

#[test]
fn exec_leaves_are_fresh_and_killed_and_removed_as_a_whole() {
    let (_tmp, tree) = hierarchy("memory pids");
    let cgroup = tree.prepare(&name("web"), &Resources::default()).unwrap();
    let first = cgroup.new_exec().unwrap();
    let second = cgroup.new_exec().unwrap();
    let me = std::process::id();
    assert_eq!(first.dir(), cgroup.dir().join(format!("exec-{me}-0")));
    assert_eq!(second.dir(), cgroup.dir().join(format!("exec-{me}-1")));
    // A fixture has no cgroup.kill: the fallback reads cgroup.procs (empty: done).
    fs::write(first.dir().join("cgroup.procs"), "").unwrap();
    first.kill().unwrap();
    fs::write(first.dir().join("cgroup.kill"), "").unwrap();
    first.kill().unwrap();
    assert_eq!(read(&first.dir().join("cgroup.kill")), "1");
    // The fixture's files make rmdir fail like a busy cgroup would; clear them first.
    let dir = first.dir().to_path_buf();
    for file in ["cgroup.procs", "cgroup.kill"] {
        fs::remove_file(dir.join(file)).unwrap();
    }
    fs::write(dir.join("cgroup.events"), "populated 0\n").unwrap();
    let err = first.finish(Duration::ZERO).unwrap_err();
    assert!(matches!(&err, CgroupError::Io { op: "rmdir", path, .. } if *path == dir), "{err:?}");
    fs::remove_file(dir.join("cgroup.events")).unwrap();
    second.finish(Duration::ZERO).unwrap();
    assert!(!cgroup.dir().join(format!("exec-{me}-1")).exists());
}

#[test]
fn procs_and_fallback_kill_cover_the_leaves() {
    let tmp = tempfile::tempdir().unwrap();
    for (dir, procs) in [("", ""), ("main", "11\n12\n"), ("exec-1-0", "13\n")] {
        fs::create_dir_all(tmp.path().join(dir)).unwrap();
        fs::write(tmp.path().join(dir).join("cgroup.procs"), procs).unwrap();
    }
    let mut pids = ContainerCgroup::at(tmp.path()).procs().unwrap();
    pids.sort();
    assert_eq!(pids, [11, 12, 13]);
}

#[test]
fn kill_writes_cgroup_kill_when_present() {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("cgroup.kill"), "").unwrap();
    ContainerCgroup::at(tmp.path()).kill().unwrap();
    assert_eq!(read(&tmp.path().join("cgroup.kill")), "1");
}

#[test]
fn kill_fallback_with_no_processes_is_done() {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("cgroup.procs"), "").unwrap();
    ContainerCgroup::at(tmp.path()).kill().unwrap();
    assert!(!tmp.path().join("cgroup.kill").exists(), "the fallback must not create cgroup.kill");
}

#[test]
fn kill_fallback_signals_listed_pids_and_reports_survivors() {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new("sleep").arg("1000").spawn().unwrap();
    // The fixture keeps listing the pid (and a pid 0, which must not be signalled).
    let listed = format!("{}\n0\n", child.id());
    fs::write(tmp.path().join("cgroup.procs"), &listed).unwrap();
    let err = ContainerCgroup::at(tmp.path()).kill_by_signal(1, Duration::ZERO).unwrap_err();
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(9), "child got SIGKILL");
    let CgroupError::KillIncomplete { rounds, remaining, .. } = err else { panic!("{err:?}") };
    assert_eq!(rounds, 1);
    assert_eq!(remaining, [child.id() as i32, 0]);
}

#[test]
fn is_empty_reads_populated() {
    let tmp = tempfile::tempdir().unwrap();
    let cgroup = ContainerCgroup::at(tmp.path());
    let events = tmp.path().join("cgroup.events");
    fs::write(&events, "populated 0\nfrozen 0\n").unwrap();
    assert!(cgroup.is_empty().unwrap());
    fs::write(&events, "populated 1\nfrozen 0\n").unwrap();
    assert!(!cgroup.is_empty().unwrap());
    fs::write(&events, "frozen 0\n").unwrap();
    let err = cgroup.is_empty().unwrap_err();
    assert!(
        matches!(&err, CgroupError::Parse { path, source: ParseError::MissingKey { .. } }
        if *path == events),
        "{err:?}"
    );
}

#[test]
fn remove_deletes_the_directory_with_its_leaves_and_tolerates_absence() {
    let (tmp, tree) = hierarchy("memory pids");
    let cgroup = tree.prepare(&name("gone"), &Resources::default()).unwrap();
    // Interface files would be gone with the directory on cgroupfs; not on a tempdir.
    for file in ["pids.max", "memory.oom.group"] {
        fs::remove_file(cgroup.dir().join(file)).unwrap();
    }
    let exec = cgroup.new_exec().unwrap();
    drop(exec);
    cgroup.remove().unwrap();
    assert!(!cgroup.dir().exists());
    assert!(tmp.path().join("keel").is_dir());
    cgroup.remove().unwrap();
}

#[test]
fn stats_parse_every_file() {
    let tmp = tempfile::tempdir().unwrap();
    for (file, text) in [
        ("cpu.stat", "usage_usec 900\nuser_usec 600\nsystem_usec 300\n"),
        ("memory.current", "8192\n"),
        ("memory.peak", "16384\n"),
        ("pids.current", "3\n"),
        ("memory.events", "low 0\nhigh 0\nmax 4\noom 2\noom_kill 1\n"),
        ("pids.events", "max 37\n"),
    ] {
        fs::write(tmp.path().join(file), text).unwrap();
    }
    let stats = ContainerCgroup::at(tmp.path()).stats().unwrap();
    let expected = CgroupStats {
        cpu_usage_usec: 900,
        memory_current: 8192,
        memory_peak: Some(16384),
        pids_current: 3,
        oom_events: 2,
        oom_kill: 1,
        pids_limit_hits: 37,
    };
    assert_eq!(stats, expected);
}

#[test]
fn stats_without_controller_files_are_zero() {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("cpu.stat"), "usage_usec 7\n").unwrap();
    let stats = ContainerCgroup::at(tmp.path()).stats().unwrap();
    assert_eq!(stats, CgroupStats { cpu_usage_usec: 7, ..CgroupStats::default() });
}

#[test]
fn stats_errors_name_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope");
    let err = ContainerCgroup::at(&missing).stats().unwrap_err();
    let stat_failed = matches!(&err, CgroupError::Io { op: "stat", path, .. } if *path == missing);
    assert!(stat_failed, "{err:?}");

    let bad = tmp.path().join("memory.current");
    fs::write(&bad, "lots\n").unwrap();
    let err = ContainerCgroup::at(tmp.path()).stats().unwrap_err();
    assert!(matches!(&err, CgroupError::Parse { path, .. } if *path == bad), "{err:?}");
}
