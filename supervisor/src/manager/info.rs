//! What `keelctl ps`, `inspect` and `stats` show: plain serializable records, shared by
//! PID 1 (which fills them) and keelctl (which prints them).

use crate::cgroup::CgroupStats;
use serde::{Deserialize, Serialize};

/// One line of `keelctl ps`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerInfo {
    /// Container name.
    pub name: String,
    /// waiting, running, restarting, stopping, exited, stopped, failed or invalid.
    pub state: String,
    /// Host pid of the container's PID 1 while it runs.
    #[serde(default)]
    pub pid: Option<i32>,
    /// Restarts since boot.
    pub restarts: u32,
    /// Seconds since the current run started.
    #[serde(default)]
    pub uptime_secs: Option<f64>,
    /// Exit code of the last run (128+signal when killed).
    #[serde(default)]
    pub last_exit: Option<i32>,
    /// starting, healthy or unhealthy; absent without a healthcheck.
    #[serde(default)]
    pub health: Option<String>,
    /// Why it is not running: the declaration's errors, what it waits for, why it failed.
    #[serde(default)]
    pub detail: Option<String>,
}

/// `keelctl inspect NAME`: the ps line plus the declaration and history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerDetail {
    /// The ps line.
    #[serde(flatten)]
    pub info: ContainerInfo,
    /// The declaration file.
    pub file: String,
    /// Root filesystem.
    #[serde(default)]
    pub image: Option<String>,
    /// Program and arguments.
    #[serde(default)]
    pub command: Vec<String>,
    /// no, on-failure or always (with max_retries).
    #[serde(default)]
    pub restart: Option<String>,
    /// `NAME (condition)` for each dependency.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// Network mode.
    #[serde(default)]
    pub network: Option<String>,
    /// cgroup directory while it runs.
    #[serde(default)]
    pub cgroup: Option<String>,
    /// Unix time (seconds) the current or last run started.
    #[serde(default)]
    pub started_at: Option<f64>,
    /// Unix time (seconds) the last run ended.
    #[serde(default)]
    pub finished_at: Option<f64>,
    /// Processes the OOM killer killed in this container since boot.
    pub oom_kills: u64,
    /// Consecutive failed healthchecks.
    pub health_failures: u32,
    /// The log file.
    pub log_file: String,
}

/// `keelctl stats NAME`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerStats {
    /// Container name.
    pub name: String,
    /// Figures from its cgroup.
    pub cgroup: CgroupStats,
    /// OOM kills since boot, all runs included.
    pub oom_kills: u64,
}
