//! Errors of the cgroup module. Every variant names the file or directory it is about.

use nix::errno::Errno;
use std::io;
use std::path::PathBuf;

/// Why a cgroup operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// The device filter could not be attached to a container's cgroup.
    #[error(transparent)]
    DeviceFilter(#[from] super::devices::DeviceFilterError),
    /// The root is not a cgroup v2 mount (it has no `cgroup.controllers`).
    #[error("{} is not a cgroup v2 hierarchy (no cgroup.controllers)", root.display())]
    NotV2 {
        /// The hierarchy root that was checked.
        root: PathBuf,
    },
    /// Controllers the limits need are not offered by the hierarchy.
    #[error(
        "cgroup controller(s) {} not available in {} (available: {})",
        missing.join(", "),
        path.display(),
        available.join(" ")
    )]
    ControllersUnavailable {
        /// The `cgroup.controllers` file that was read.
        path: PathBuf,
        /// The needed controllers it does not list.
        missing: Vec<&'static str>,
        /// What it lists.
        available: Vec<String>,
    },
    /// Something other than a directory sits where a cgroup directory belongs.
    #[error("{} exists and is not a cgroup directory", path.display())]
    NotADirectory {
        /// The path.
        path: PathBuf,
    },
    /// A filesystem operation (`read`, `mkdir`, `rmdir`, `open`, `stat`) failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// The operation.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Writing a cgroup file failed.
    #[error("write {}: {source} (data {data:?})", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// What was written.
        data: String,
        /// The OS error.
        source: io::Error,
    },
    /// rmdir refused: the cgroup still has processes or child cgroups.
    #[error("rmdir {}: cgroup is busy (it still has processes or child cgroups)", path.display())]
    Busy {
        /// The cgroup directory.
        path: PathBuf,
    },
    /// A cgroup file's content was not what the kernel documents.
    #[error("parse {}: {source}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        source: ParseError,
    },
    /// SIGKILL to a process listed in `cgroup.procs` failed (other than "already gone").
    #[error("kill pid {pid} listed in {}: {source}", path.display())]
    Signal {
        /// The `cgroup.procs` file the pid came from.
        path: PathBuf,
        /// The pid.
        pid: i32,
        /// The OS error.
        source: Errno,
    },
    /// Processes were still listed after every round of the SIGKILL fallback.
    #[error(
        "kill {}: {} process(es) still listed after {rounds} round(s) of SIGKILL: {remaining:?}",
        path.display(),
        remaining.len()
    )]
    KillIncomplete {
        /// The `cgroup.procs` file.
        path: PathBuf,
        /// How many rounds were tried.
        rounds: u32,
        /// The pids still listed (0 = a process outside our pid namespace).
        remaining: Vec<i32>,
    },
}

/// Why the text of a cgroup file could not be parsed (pure; the caller adds the path).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// A flat-keyed line that is not `key value`.
    #[error("line {line}: expected \"key value\", found {text:?}")]
    Malformed {
        /// 1-based line number.
        line: usize,
        /// The line.
        text: String,
    },
    /// A value that is not an unsigned integer.
    #[error("{key}: {value:?} is not an unsigned integer")]
    NotANumber {
        /// The key (or the file's single value's description).
        key: String,
        /// The text found.
        value: String,
    },
    /// A key the caller needs is absent.
    #[error("key {key:?} is missing")]
    MissingKey {
        /// The key.
        key: String,
    },
    /// A `cgroup.procs` line that is not a pid.
    #[error("line {line}: {text:?} is not a pid")]
    NotAPid {
        /// 1-based line number.
        line: usize,
        /// The line.
        text: String,
    },
}
