//! The answer to the `metrics` control command: plain figures PID 1 gathers cheaply (a
//! few small files per container, a few under /proc, one statvfs) and the remote API and
//! `keelctl metrics` turn into Prometheus' text format. Kept as data here, not as text,
//! so the protocol stays JSON and the format lives with its one writer (keel-init's
//! `metrics::format`).

use serde::{Deserialize, Serialize};

/// Everything `metrics` reports.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricsSnapshot {
    /// The host's figures.
    pub host: HostMetrics,
    /// One entry per declared container, sorted by name.
    pub containers: Vec<ContainerMetrics>,
    /// keel's own counters.
    pub keel: KeelCounters,
}

/// One container's figures. The cgroup figures are those of the current run (0 when it
/// does not run); `oom_kills` counts every run since boot.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerMetrics {
    /// Container name.
    pub name: String,
    /// The `keelctl ps` state word (waiting, running, restarting, …).
    pub state: String,
    /// Restarts since boot.
    pub restarts: u32,
    /// starting, healthy or unhealthy; None without a healthcheck.
    pub health: Option<String>,
    /// CPU time of the current run (`cpu.stat` `usage_usec`), microseconds.
    pub cpu_usage_usec: u64,
    /// Memory in use (`memory.current`), bytes.
    pub memory_bytes: u64,
    /// Tasks (`pids.current`).
    pub pids: u64,
    /// Processes the OOM killer killed (`memory.events` `oom_kill`), all runs since boot.
    pub oom_kills: u64,
    /// Forks refused at the pids limit (`pids.events` `max`), all runs since boot.
    pub pids_limit_hits: u64,
}

/// The host's figures; each is None when its source could not be read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HostMetrics {
    /// 1, 5 and 15 minute load averages (/proc/loadavg).
    pub load: Option<[f64; 3]>,
    /// MemTotal, bytes (/proc/meminfo).
    pub memory_total_bytes: Option<u64>,
    /// MemAvailable, bytes (/proc/meminfo).
    pub memory_available_bytes: Option<u64>,
    /// Size of the filesystem holding /var, bytes.
    pub var_size_bytes: Option<u64>,
    /// Bytes of /var an unprivileged writer could still use (statvfs f_bavail).
    pub var_available_bytes: Option<u64>,
    /// Unix time the kernel booted (/proc/stat `btime`), seconds.
    pub boot_time_seconds: Option<u64>,
    /// Seconds from the kernel's start until keel reported `ready` (None before that).
    pub ready_seconds: Option<f64>,
    /// The boot phase: booting, ready or emergency.
    pub phase: String,
    /// What first boot did (skipped, no-config, deferred, applied, failed), None while it runs.
    pub firstboot: Option<String>,
}

/// keel's own counters since boot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeelCounters {
    /// Container lines the console echo dropped (the log files have them).
    pub console_lines_dropped: u64,
    /// Lines not forwarded to the remote syslog (its buffer was full).
    pub syslog_lines_dropped: u64,
    /// Lines handed whole to the syslog forwarder.
    pub syslog_lines_sent: u64,
    /// Whether remote syslog forwarding is configured.
    pub syslog_configured: bool,
}
