//! PID 1's side of the remote API: start `keel api` (this binary again, from
//! /proc/self/exe) when api.toml exists, restart it with a growing delay when it dies,
//! and stop it at shutdown. The event loop calls [`ApiProcess::tick`],
//! [`ApiProcess::on_exit`] and [`ApiProcess::next_deadline`]; nothing here blocks.

use log::{info, warn};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

/// First restart delay; it doubles up to [`MAX_DELAY`].
pub const FIRST_DELAY: Duration = Duration::from_secs(1);
/// Longest restart delay.
pub const MAX_DELAY: Duration = Duration::from_secs(60);
/// A process that ran this long restarts after [`FIRST_DELAY`] again.
pub const STABLE_AFTER: Duration = Duration::from_secs(60);

/// The delay before the next start, after a run of `ran` that followed `previous` delay.
pub fn next_delay(previous: Option<Duration>, ran: Duration) -> Duration {
    match previous {
        Some(previous) if ran < STABLE_AFTER => (previous * 2).min(MAX_DELAY),
        _ => FIRST_DELAY,
    }
}

/// The supervised API process.
#[derive(Debug)]
pub struct ApiProcess {
    config: String,
    /// The cgroup2 root under which the API process gets [`super::cgroup::API_GROUP`].
    cgroup_root: std::path::PathBuf,
    pid: Option<(Pid, Instant)>,
    start_at: Option<Instant>,
    delay: Option<Duration>,
    stopping: bool,
}

impl ApiProcess {
    /// An API process to start at once, serving `config` (api.toml's path).
    pub fn new(config: &str, now: Instant) -> Self {
        ApiProcess {
            config: config.into(),
            cgroup_root: keel_supervisor::cgroup::DEFAULT_ROOT.into(),
            pid: None,
            start_at: Some(now),
            delay: None,
            stopping: false,
        }
    }

    /// When [`tick`](Self::tick) must run next.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.start_at
    }

    /// Start the process when it is due.
    pub fn tick(&mut self, now: Instant) {
        if self.stopping || self.pid.is_some() || self.start_at.is_none_or(|at| at > now) {
            return;
        }
        self.start_at = None;
        let mut command = std::process::Command::new("/proc/self/exe");
        command.arg0("keel").arg("api").arg(&self.config).stdin(std::process::Stdio::null());
        // Its own cgroup (memory and pids caps); without one it still starts.
        let procs = match super::cgroup::prepare(&self.cgroup_root) {
            Ok(procs) => procs,
            Err(e) => {
                warn!("{e}; the API process runs without its own cgroup");
                None
            }
        };
        // SAFETY: runs in the forked child before exec; sigprocmask and write(2) are
        // async-signal-safe and touch only the empty set on the stack and a descriptor
        // opened before the fork. The child joins its cgroup first, so all it allocates
        // is charged there. PID 1's blocked signals (SIGTERM among them) must not stay
        // blocked in the API process, or stop() could not end it.
        unsafe {
            command.pre_exec(move || {
                if let Some(procs) = &procs {
                    nix::unistd::write(procs, b"0").map_err(std::io::Error::from)?;
                }
                nix::sys::signal::sigprocmask(nix::sys::signal::SigmaskHow::SIG_SETMASK, Some(&nix::sys::signal::SigSet::empty()), None)
                    .map_err(std::io::Error::from)
            });
        }
        let spawned = command.spawn();
        match spawned {
            Ok(child) => {
                info!("api: started (pid {})", child.id());
                self.pid = Some((Pid::from_raw(child.id() as i32), now));
            }
            Err(e) => {
                let delay = next_delay(self.delay, Duration::ZERO);
                warn!("api: cannot start: {e}; again in {delay:?}");
                self.delay = Some(delay);
                self.start_at = Some(now + delay);
            }
        }
    }

    /// A child was reaped: whether it was the API process (then its restart is scheduled).
    pub fn on_exit(&mut self, pid: Pid, code: i32, now: Instant) -> bool {
        let Some((ours, started)) = self.pid else { return false };
        if ours != pid {
            return false;
        }
        self.pid = None;
        if !self.stopping {
            let delay = next_delay(self.delay, now.saturating_duration_since(started));
            warn!("api: exited ({code}); restarting in {delay:?}");
            self.delay = Some(delay);
            self.start_at = Some(now + delay);
        }
        true
    }

    /// Shutdown: no more restarts; SIGTERM the process.
    pub fn stop(&mut self) {
        self.stopping = true;
        self.start_at = None;
        if let Some((pid, _)) = self.pid {
            let _ = kill(pid, Signal::SIGTERM);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_doubles_then_resets_after_a_stable_run() {
        assert_eq!(next_delay(None, Duration::ZERO), FIRST_DELAY);
        assert_eq!(next_delay(Some(FIRST_DELAY), Duration::from_secs(1)), FIRST_DELAY * 2);
        assert_eq!(next_delay(Some(Duration::from_secs(40)), Duration::from_secs(1)), MAX_DELAY);
        assert_eq!(next_delay(Some(MAX_DELAY), STABLE_AFTER), FIRST_DELAY);
    }

    #[test]
    fn exit_of_another_pid_is_not_ours_and_stop_prevents_restart() {
        let now = Instant::now();
        let mut api = ApiProcess::new("/nonexistent", now);
        api.pid = Some((Pid::from_raw(4242), now));
        api.start_at = None;
        assert!(!api.on_exit(Pid::from_raw(4243), 0, now));
        assert!(api.on_exit(Pid::from_raw(4242), 1, now + Duration::from_secs(2)));
        assert_eq!(api.next_deadline(), Some(now + Duration::from_secs(2) + FIRST_DELAY));
        api.pid = Some((Pid::from_raw(4244), now));
        api.stop();
        assert!(api.on_exit(Pid::from_raw(4244), 0, now));
        assert_eq!(api.next_deadline(), None, "stopped: no restart");
    }
}
