//! Metrics for monitoring: PID 1 answers the `metrics` control command with a
//! [`MetricsSnapshot`] (JSON like every answer), and the remote API's `GET /metrics` and
//! `keelctl metrics` render it in Prometheus' text format with [`render`]. The metric
//! names are listed in the README ("Metrics").
//!
//! Map:
//! - [`host`]: load, memory, /var, boot time (pure parsers of /proc files and the reads).
//! - [`format`]: the text exposition format 0.0.4.
//!
//! Limitations: the cgroup figures (CPU, memory, pids) are those of a container's
//! current run, so CPU time restarts from 0 when the container does (Prometheus' rate()
//! handles such counter resets); a container that does not run shows 0.

pub mod format;
pub mod host;

use format::{Exposition, Kind, Value};
use keel_supervisor::metrics::{ContainerMetrics, HostMetrics, MetricsSnapshot};
use std::path::Path;
use std::time::Duration;

/// Every state word a container can have (one `keel_container_state` sample each).
pub const CONTAINER_STATES: &[&str] = &["waiting", "running", "restarting", "stopping", "exited", "stopped", "failed", "invalid"];
/// Every health value (`none`: no healthcheck).
pub const HEALTH_STATES: &[&str] = &["none", "starting", "healthy", "unhealthy"];
/// Every first-boot result.
pub const FIRSTBOOT_RESULTS: &[&str] = &["skipped", "no-config", "deferred", "applied", "failed"];

/// The host's figures as PID 1 sees them: read now from /proc and /var, with the boot
/// phase, the time keel became ready and the first-boot result it knows.
pub fn host_metrics(phase: &str, ready: Option<Duration>, firstboot: Option<&str>) -> HostMetrics {
    let figures = host::read(Path::new("/proc"), Path::new("/var"));
    HostMetrics {
        load: figures.load,
        memory_total_bytes: figures.memory_total,
        memory_available_bytes: figures.memory_available,
        var_size_bytes: figures.disk.map(|d| d.0),
        var_available_bytes: figures.disk.map(|d| d.1),
        boot_time_seconds: figures.boot_time,
        ready_seconds: ready.map(|d| d.as_secs_f64()),
        phase: phase.to_string(),
        firstboot: firstboot.map(str::to_string),
    }
}

/// One sample per word of `all`: 1 for `current`, 0 for the others (a "state set").
fn state_set(family: &mut format::Family<'_>, container: &str, label: &str, all: &[&str], current: &str) {
    for word in all {
        family.sample(&[("container", container), (label, word)], Value::Int(u64::from(*word == current)));
    }
}

/// The snapshot in Prometheus' text format.
pub fn render(snapshot: &MetricsSnapshot) -> String {
    let mut out = Exposition::default();
    render_containers(&mut out, &snapshot.containers);
    render_host(&mut out, &snapshot.host);
    let keel = &snapshot.keel;
    out.family(
        "keel_console_lines_dropped_total",
        Kind::Counter,
        "Container output lines the console echo dropped (the log files keep them).",
    )
    .sample(&[], Value::Int(keel.console_lines_dropped));
    out.family("keel_syslog_configured", Kind::Gauge, "1 when container and keel logs are forwarded to a remote syslog.")
        .sample(&[], Value::Int(u64::from(keel.syslog_configured)));
    out.family("keel_syslog_lines_sent_total", Kind::Counter, "Log lines handed to the syslog forwarder.")
        .sample(&[], Value::Int(keel.syslog_lines_sent));
    out.family(
        "keel_syslog_lines_dropped_total",
        Kind::Counter,
        "Log lines not forwarded to the remote syslog because its buffer was full.",
    )
    .sample(&[], Value::Int(keel.syslog_lines_dropped));
    out.finish()
}

fn render_containers(out: &mut Exposition, containers: &[ContainerMetrics]) {
    let mut family = out.family("keel_container_state", Kind::Gauge, "1 for the container's current state, 0 for the others.");
    for c in containers {
        state_set(&mut family, &c.name, "state", CONTAINER_STATES, &c.state);
    }
    let mut family = out.family("keel_container_health", Kind::Gauge, "1 for the container's healthcheck state (none: no healthcheck).");
    for c in containers {
        state_set(&mut family, &c.name, "health", HEALTH_STATES, c.health.as_deref().unwrap_or("none"));
    }
    type Field = fn(&ContainerMetrics) -> Value;
    let families: [(&'static str, Kind, &str, Field); 6] = [
        ("keel_container_restarts_total", Kind::Counter, "Restarts since boot.", |c| Value::Int(u64::from(c.restarts))),
        ("keel_container_cpu_seconds_total", Kind::Counter, "CPU time of the current run (cgroup cpu.stat usage_usec).", |c| {
            Value::Float(c.cpu_usage_usec as f64 / 1e6)
        }),
        ("keel_container_memory_bytes", Kind::Gauge, "Memory in use (cgroup memory.current).", |c| Value::Int(c.memory_bytes)),
        ("keel_container_pids", Kind::Gauge, "Tasks (cgroup pids.current).", |c| Value::Int(c.pids)),
        (
            "keel_container_oom_kills_total",
            Kind::Counter,
            "Processes the OOM killer killed, all runs since boot (memory.events oom_kill).",
            |c| Value::Int(c.oom_kills),
        ),
        (
            "keel_container_pids_limit_hits_total",
            Kind::Counter,
            "Forks refused at the pids limit, all runs since boot (pids.events max).",
            |c| Value::Int(c.pids_limit_hits),
        ),
    ];
    for (name, kind, help, field) in families {
        let mut family = out.family(name, kind, help);
        for c in containers {
            family.sample(&[("container", &c.name)], field(c));
        }
    }
}

fn render_host(out: &mut Exposition, host: &HostMetrics) {
    if let Some([one, five, fifteen]) = host.load {
        for (name, value) in [("keel_host_load1", one), ("keel_host_load5", five), ("keel_host_load15", fifteen)] {
            out.family(name, Kind::Gauge, "Load average (/proc/loadavg).").sample(&[], Value::Float(value));
        }
    }
    let sizes: [(&'static str, &str, Option<u64>); 4] = [
        ("keel_host_memory_total_bytes", "MemTotal (/proc/meminfo).", host.memory_total_bytes),
        ("keel_host_memory_available_bytes", "MemAvailable (/proc/meminfo).", host.memory_available_bytes),
        ("keel_host_var_size_bytes", "Size of the filesystem holding /var.", host.var_size_bytes),
        ("keel_host_var_available_bytes", "Bytes of /var still available (statvfs f_bavail).", host.var_available_bytes),
    ];
    for (name, help, value) in sizes {
        if let Some(value) = value {
            out.family(name, Kind::Gauge, help).sample(&[], Value::Int(value));
        }
    }
    if let Some(btime) = host.boot_time_seconds {
        out.family("keel_host_boot_time_seconds", Kind::Gauge, "Unix time the kernel booted (/proc/stat btime).")
            .sample(&[], Value::Int(btime));
    }
    if let Some(ready) = host.ready_seconds {
        out.family("keel_ready_seconds", Kind::Gauge, "Seconds from the kernel's start until keel was ready.")
            .sample(&[], Value::Float(ready));
    }
    let mut family = out.family("keel_boot_phase", Kind::Gauge, "1 for the host's boot phase (booting, ready, emergency).");
    for phase in ["booting", "ready", "emergency"] {
        family.sample(&[("phase", phase)], Value::Int(u64::from(host.phase == phase)));
    }
    if let Some(result) = &host.firstboot {
        let mut family = out.family("keel_firstboot_result", Kind::Gauge, "1 for what the first-boot step did on this boot.");
        for word in FIRSTBOOT_RESULTS {
            family.sample(&[("result", word)], Value::Int(u64::from(result == word)));
        }
    }
}

#[cfg(test)]
mod tests;
