//! The `keel api` process's own cgroup, `/sys/fs/cgroup/keel-api`: a memory cap (no
//! swap, the whole group killed on OOM) and a pids cap, as the workers have, so a flood
//! of TLS clients or a bug in the API process is charged and stopped there and never
//! reaches PID 1 or the containers. It is a sibling of the containers' `keel/` (whose
//! `keel/NAME` a container called `api` would own) and of the workers' `workers/`.
//!
//! PID 1 prepares it before each start and opens its `cgroup.procs`; the forked child
//! writes `0` there before exec, so everything the API process allocates is charged to
//! it. Skipped where cgroup v2 is not mounted (the API then runs in PID 1's cgroup).

use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind, Write};
use std::path::{Path, PathBuf};

/// The cgroup's name under the cgroup2 root.
pub const API_GROUP: &str = "keel-api";
/// memory.max of the API process: its TLS sessions and buffers need a few MiB; 64 MiB
/// leaves room for its connection cap and bounds a leak.
pub const API_MEMORY_MAX: u64 = 64 << 20;
/// pids.max of the API process (it forks nothing; this bounds a bug).
pub const API_PIDS_MAX: u64 = 64;

/// Why the API cgroup could not be prepared (the API then starts without it).
#[derive(Debug, thiserror::Error)]
#[error("api cgroup: {op} {}: {source}", path.display())]
pub struct ApiCgroupError {
    /// The operation (`read`, `write`, `mkdir`, `open`).
    pub op: &'static str,
    /// The file or directory.
    pub path: PathBuf,
    /// The OS error.
    #[source]
    pub source: io::Error,
}

/// The files written into the API cgroup, in order.
pub fn limit_writes() -> [(&'static str, String); 4] {
    [
        ("memory.max", API_MEMORY_MAX.to_string()),
        ("memory.swap.max", "0".to_string()),
        ("memory.oom.group", "1".to_string()),
        ("pids.max", API_PIDS_MAX.to_string()),
    ]
}

/// The `+memory +pids` line for the root's `cgroup.subtree_control`, limited to what
/// `available` (its `cgroup.controllers`) offers.
pub fn enable_line(available: &str) -> String {
    let offered: Vec<&str> = available.split_whitespace().collect();
    ["memory", "pids"].iter().filter(|c| offered.contains(c)).map(|c| format!("+{c}")).collect::<Vec<_>>().join(" ")
}

/// Create (or reuse, killing what an earlier run left) `<root>/keel-api` with its
/// limits, and open its `cgroup.procs` for the child to join. `Ok(None)`: `root` is not a
/// cgroup2 root, so the API runs without a cgroup of its own.
pub fn prepare(root: &Path) -> Result<Option<File>, ApiCgroupError> {
    let Some(root) = keel_supervisor::worker::cgroup2_root(root) else { return Ok(None) };
    fn err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ApiCgroupError {
        let path = path.to_path_buf();
        move |source| ApiCgroupError { op, path, source }
    }
    let controllers = root.join("cgroup.controllers");
    let available = fs::read_to_string(&controllers).map_err(err("read", &controllers))?;
    let line = enable_line(&available);
    if !line.is_empty() {
        let control = root.join("cgroup.subtree_control");
        write_existing(&control, &line).map_err(err("write", &control))?;
    }
    let dir = root.join(API_GROUP);
    match fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            // An earlier API process is gone (PID 1 starts one at a time); kill anything
            // it left (absent cgroup.kill: an older kernel, nothing to do).
            let kill = dir.join("cgroup.kill");
            match write_existing(&kill, "1") {
                Err(e) if e.kind() != ErrorKind::NotFound => return Err(err("write", &kill)(e)),
                _ => {}
            }
        }
        Err(e) => return Err(err("mkdir", &dir)(e)),
    }
    for (file, data) in limit_writes() {
        let path = dir.join(file);
        match write_existing(&path, &data) {
            // A controller this kernel does not have: its files are absent.
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            other => other.map_err(err("write", &path))?,
        }
    }
    let procs = dir.join("cgroup.procs");
    OpenOptions::new().write(true).open(&procs).map(Some).map_err(err("open", &procs))
}

/// Write `data` to an existing file (cgroupfs files are never created by writing).
fn write_existing(path: &Path, data: &str) -> io::Result<()> {
    OpenOptions::new().write(true).open(path)?.write_all(data.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(label: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("keel-api-cgroup-{}-{label}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn without_cgroup2_there_is_no_cgroup() {
        let root = scratch("none");
        assert!(prepare(&root).unwrap().is_none());
        assert!(!root.join(API_GROUP).exists());
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn limits_are_written_and_the_controllers_enabled() {
        // A cgroup2 root as a fixture: cgroupfs makes the interface files itself, so a
        // reused directory with empty files stands in for them.
        let root = scratch("limits");
        fs::write(root.join("cgroup.controllers"), "cpuset cpu io memory pids\n").unwrap();
        fs::write(root.join("cgroup.subtree_control"), "").unwrap();
        let dir = root.join(API_GROUP);
        fs::create_dir(&dir).unwrap();
        for file in ["cgroup.kill", "cgroup.procs", "memory.max", "memory.swap.max", "memory.oom.group", "pids.max"] {
            fs::write(dir.join(file), "").unwrap();
        }
        let mut procs = prepare(&root).unwrap().expect("a cgroup");
        procs.write_all(b"0").unwrap();
        let read = |file: &str| fs::read_to_string(dir.join(file)).unwrap();
        assert_eq!(read("cgroup.kill"), "1", "what an earlier run left is killed");
        assert_eq!(read("memory.max"), (64u64 << 20).to_string());
        assert_eq!(read("memory.swap.max"), "0");
        assert_eq!(read("memory.oom.group"), "1");
        assert_eq!(read("pids.max"), "64");
        assert_eq!(read("cgroup.procs"), "0");
        assert_eq!(fs::read_to_string(root.join("cgroup.subtree_control")).unwrap(), "+memory +pids");
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn only_offered_controllers_are_enabled() {
        assert_eq!(enable_line("cpu io memory pids"), "+memory +pids");
        assert_eq!(enable_line("cpu pids"), "+pids");
        assert_eq!(enable_line(""), "");
    }
}
