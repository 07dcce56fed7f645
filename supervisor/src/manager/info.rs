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
    /// Forks refused because a pids limit was hit (`pids.events` `max`), all runs since
    /// boot: a fork bomb or a leak of processes.
    #[serde(default)]
    pub pids_limit_hits: u64,
    /// Processes the OOM killer killed (`memory.events` `oom_kill`), all runs since boot.
    #[serde(default)]
    pub oom_killed: u64,
    /// `privileged` or `privileged,host-pid` (and `,host-network`) for a privileged
    /// declaration, so that `ps` and `inspect` always show which containers are root on
    /// the host; None for an isolated one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privileged: Option<String>,
}

/// The words [`ContainerInfo::privileged`] holds for `spec`.
pub fn privilege_words(spec: &crate::spec::ContainerSpec) -> Option<String> {
    if !spec.privilege.is_privileged() {
        return None;
    }
    let mut words = vec!["privileged"];
    if spec.privilege.host_pid() {
        words.push("host-pid");
    }
    if spec.network == crate::spec::NetworkMode::Host {
        words.push("host-network");
    }
    Some(words.join(","))
}

impl ContainerInfo {
    /// The NAME cell of `keelctl ps`: the name, with ` [PRIV]` after a privileged one.
    pub fn name_cell(&self) -> String {
        match self.privileged {
            Some(_) => format!("{} [PRIV]", self.name),
            None => self.name.clone(),
        }
    }

    /// What `keelctl ps` shows in its LIMITS column: `pids-limit-hit` and `oom-killed`
    /// with their counts, comma separated; None when neither happened.
    pub fn limits_hit(&self) -> Option<String> {
        let mut hits = Vec::new();
        if self.pids_limit_hits > 0 {
            hits.push(format!("pids-limit-hit:{}", self.pids_limit_hits));
        }
        if self.oom_killed > 0 {
            hits.push(format!("oom-killed:{}", self.oom_killed));
        }
        (!hits.is_empty()).then(|| hits.join(","))
    }
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
    /// Processes the OOM killer killed in this container since boot (the runs that
    /// ended; `oom_killed` also counts the current one).
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
