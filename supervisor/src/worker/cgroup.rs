//! A worker's cgroup, `<root>/workers/<kind>-<id>`: memory.max, no swap, the whole
//! group killed together on OOM, a pids cap. PID 1 creates it before forking; the
//! child moves itself in before doing any work, so everything it allocates is charged
//! there and not to PID 1.

use super::{JobId, JobKind, JobLimits, WORKER_PIDS_MAX};
use std::fs;
use std::io::{self, ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The cgroup under the root that holds every worker's cgroup.
pub const WORKERS_GROUP: &str = "workers";

/// Controllers a worker's cgroup needs from its parents.
const CONTROLLERS: &[&str] = &["memory", "pids"];

/// One worker's cgroup directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerCgroup {
    dir: PathBuf,
    memory_max: u64,
}

fn write_file(path: &Path, data: &str) -> Result<(), (PathBuf, io::Error)> {
    let mut file = fs::OpenOptions::new().write(true).open(path).map_err(|e| (path.to_path_buf(), e))?;
    file.write_all(data.as_bytes()).map_err(|e| (path.to_path_buf(), e))
}

/// Write when the file exists (a controller file absent on this kernel is skipped).
fn write_if_present(path: &Path, data: &str) -> Result<(), (PathBuf, io::Error)> {
    match write_file(path, data) {
        Err((_, e)) if e.kind() == ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// The `+memory +pids` line for a `cgroup.subtree_control`, limited to what `available`
/// (a `cgroup.controllers` text) offers.
pub(super) fn enable_line(available: &str) -> String {
    let offered: Vec<&str> = available.split_whitespace().collect();
    CONTROLLERS.iter().filter(|c| offered.contains(c)).map(|c| format!("+{c}")).collect::<Vec<_>>().join(" ")
}

/// Whether a `memory.events` text counts an OOM kill.
pub(super) fn counts_oom_kill(events: &str) -> bool {
    events.lines().any(|line| {
        let mut words = line.split_whitespace();
        matches!(words.next(), Some("oom_kill" | "oom_group_kill")) && words.next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) > 0
    })
}

impl WorkerCgroup {
    /// `<root>/workers/<kind>-<id>`.
    pub fn path(root: &Path, kind: JobKind, id: JobId) -> PathBuf {
        root.join(WORKERS_GROUP).join(format!("{kind}-{id}"))
    }

    /// Create the cgroup with `limits` (an old one of the same name is killed and
    /// replaced). `root` must be a cgroup2 root.
    pub fn create(root: &Path, kind: JobKind, id: JobId, limits: &JobLimits) -> Result<Self, (PathBuf, io::Error)> {
        let parent = root.join(WORKERS_GROUP);
        let available = fs::read_to_string(root.join("cgroup.controllers")).map_err(|e| (root.join("cgroup.controllers"), e))?;
        let line = enable_line(&available);
        if !line.is_empty() {
            write_file(&root.join("cgroup.subtree_control"), &line)?;
        }
        match fs::create_dir(&parent) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err((parent, e)),
        }
        if !line.is_empty() {
            write_file(&parent.join("cgroup.subtree_control"), &line)?;
        }
        let cgroup = WorkerCgroup { dir: Self::path(root, kind, id), memory_max: limits.memory_max };
        if cgroup.dir.exists() {
            cgroup.kill_and_remove(Duration::from_millis(500));
        }
        fs::create_dir(&cgroup.dir).map_err(|e| (cgroup.dir.clone(), e))?;
        let writes = [
            ("memory.max", limits.memory_max.to_string()),
            ("memory.swap.max", "0".to_string()),
            ("memory.oom.group", "1".to_string()),
            ("pids.max", WORKER_PIDS_MAX.to_string()),
        ];
        for (file, data) in writes {
            if let Err(e) = write_if_present(&cgroup.dir.join(file), &data) {
                let _ = fs::remove_dir(&cgroup.dir);
                return Err(e);
            }
        }
        Ok(cgroup)
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Its memory.max.
    pub fn memory_max(&self) -> u64 {
        self.memory_max
    }

    /// Move the calling process in (the child does this first thing).
    pub fn join_self(&self) -> Result<(), (PathBuf, io::Error)> {
        write_file(&self.dir.join("cgroup.procs"), "0")
    }

    /// SIGKILL everything in it through `cgroup.kill`; false when the kernel has no such file.
    pub fn kill(&self) -> bool {
        write_file(&self.dir.join("cgroup.kill"), "1").is_ok()
    }

    /// Whether its memory.events counts an OOM kill.
    pub fn oom_killed(&self) -> bool {
        fs::read_to_string(self.dir.join("memory.events")).is_ok_and(|text| counts_oom_kill(&text))
    }

    /// Remove the directory, retrying while its last processes exit (up to `wait`).
    pub fn remove(&self, wait: Duration) -> Result<(), (PathBuf, io::Error)> {
        let end = std::time::Instant::now() + wait;
        loop {
            match fs::remove_dir(&self.dir) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
                Err(e) if std::time::Instant::now() >= end => return Err((self.dir.clone(), e)),
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }

    /// Kill what is left and remove it (a stale one from an earlier worker of this name).
    pub fn kill_and_remove(&self, wait: Duration) {
        self.kill();
        let _ = self.remove(wait);
    }
}
