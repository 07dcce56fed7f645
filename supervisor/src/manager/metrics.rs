//! The manager's part of `metrics`: each container's state and counters, with its
//! current run's cgroup figures (six small files per running container, nothing else).

use super::{Health, Manager};
use crate::metrics::ContainerMetrics;

impl Manager {
    /// Every declared container's figures, sorted by name.
    pub fn metrics(&self) -> Vec<ContainerMetrics> {
        self.entries
            .iter()
            .map(|(name, entry)| {
                let current = entry.pid.and_then(|_| self.launcher.stats(name).ok()).unwrap_or_default();
                ContainerMetrics {
                    name: name.to_string(),
                    state: entry.phase.word().to_string(),
                    restarts: entry.restart.total,
                    health: entry.health.map(|h| health_word(h).to_string()),
                    cpu_usage_usec: current.cpu_usage_usec,
                    memory_bytes: current.memory_current,
                    pids: current.pids_current,
                    oom_kills: entry.oom_kills + current.oom_kill,
                    pids_limit_hits: entry.pids_limit_hits + current.pids_limit_hits,
                }
            })
            .collect()
    }

    /// Container lines the console echo dropped since boot.
    pub fn console_lines_dropped(&self) -> u64 {
        self.logs.console_lines_dropped()
    }
}

/// The word `ps` and `metrics` use for a health state.
pub(super) fn health_word(health: Health) -> &'static str {
    match health {
        Health::Starting => "starting",
        Health::Healthy => "healthy",
        Health::Unhealthy => "unhealthy",
    }
}
