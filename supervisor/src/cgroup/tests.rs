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
    let tree = CgroupTree::new(tmp.path());
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
}

#[test]
fn prepare_without_limits_only_creates_the_leaf() {
    let (tmp, tree) = hierarchy("");
    let cgroup = tree.prepare(&name("plain"), &Resources::default()).unwrap();
    assert!(cgroup.dir().is_dir());
    assert!(!tmp.path().join("cgroup.subtree_control").exists());
    assert!(!tmp.path().join("keel/cgroup.subtree_control").exists());
    assert_eq!(fs::read_dir(cgroup.dir()).unwrap().count(), 0);
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
    fs::create_dir_all(&leaf).unwrap();
    for (file, old) in [("cgroup.kill", "0"), ("memory.max", "123"), ("pids.max", "5")] {
        fs::write(leaf.join(file), old).unwrap();
    }
    let limits = Resources { memory_max: Some(4096), ..Resources::default() };
    tree.prepare(&name("web"), &limits).unwrap();
    assert_eq!(read(&leaf.join("cgroup.kill")), "1");
    assert_eq!(read(&leaf.join("memory.max")), "4096");
    assert_eq!(read(&leaf.join("pids.max")), "max", "stale limit reset");
    assert!(!leaf.join("cpu.max").exists(), "resets only touch existing files");
}

#[test]
fn write_errors_name_the_path() {
    let (tmp, tree) = hierarchy("pids");
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
fn add_process_writes_the_pid() {
    let tmp = tempfile::tempdir().unwrap();
    let cgroup = ContainerCgroup::at(tmp.path());
    cgroup.add_process(Pid::from_raw(4242)).unwrap();
    assert_eq!(read(&tmp.path().join("cgroup.procs")), "4242");
}

#[test]
fn open_dir_fd_opens_directories_only() {
    let tmp = tempfile::tempdir().unwrap();
    assert!(ContainerCgroup::at(tmp.path()).open_dir_fd().is_ok());
    fs::write(tmp.path().join("file"), "").unwrap();
    assert!(ContainerCgroup::at(tmp.path().join("file")).open_dir_fd().is_err());
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
    assert!(matches!(&err, CgroupError::Parse { path, source: ParseError::MissingKey { .. } }
        if *path == events), "{err:?}");
}

#[test]
fn remove_deletes_the_directory_and_tolerates_absence() {
    let (_tmp, tree) = hierarchy("");
    let cgroup = tree.prepare(&name("gone"), &Resources::default()).unwrap();
    cgroup.remove().unwrap();
    assert!(!cgroup.dir().exists());
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
