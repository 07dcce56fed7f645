//! When to start, and restart, a helper process PID 1 keeps running (`keel api`,
//! `keel syslog`): at once, then after each exit with a delay that doubles up to a cap
//! and starts small again after a stable run; never again once shutdown began. Pure
//! bookkeeping: the caller spawns the process and reports what happened.

use log::{info, warn};
use nix::unistd::Pid;
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

/// The start/restart state of one supervised helper process.
#[derive(Debug)]
pub struct Respawn {
    /// How log lines name it, e.g. `api`.
    what: &'static str,
    pid: Option<(Pid, Instant)>,
    start_at: Option<Instant>,
    delay: Option<Duration>,
    stopping: bool,
}

impl Respawn {
    /// A process to start at once.
    pub fn new(what: &'static str, now: Instant) -> Self {
        Respawn { what, pid: None, start_at: Some(now), delay: None, stopping: false }
    }

    /// When the next start is due (None: running, stopping, or nothing scheduled).
    pub fn next_start(&self) -> Option<Instant> {
        self.start_at
    }

    /// Whether a start is due now; it is then the caller's to do (and report).
    pub fn take_due(&mut self, now: Instant) -> bool {
        if self.stopping || self.pid.is_some() || self.start_at.is_none_or(|at| at > now) {
            return false;
        }
        self.start_at = None;
        true
    }

    /// The process was started.
    pub fn started(&mut self, pid: Pid, now: Instant) {
        info!("{}: started (pid {pid})", self.what);
        self.pid = Some((pid, now));
    }

    /// The process could not be started: try again after the next delay.
    pub fn failed(&mut self, error: &dyn std::fmt::Display, now: Instant) {
        let delay = next_delay(self.delay, Duration::ZERO);
        warn!("{}: cannot start: {error}; again in {delay:?}", self.what);
        self.schedule(delay, now);
    }

    /// A child was reaped: whether it was this process (its restart is then scheduled,
    /// unless shutdown began).
    pub fn exited(&mut self, pid: Pid, code: i32, now: Instant) -> bool {
        let Some((ours, started)) = self.pid else { return false };
        if ours != pid {
            return false;
        }
        self.pid = None;
        if !self.stopping {
            let delay = next_delay(self.delay, now.saturating_duration_since(started));
            warn!("{}: exited ({code}); restarting in {delay:?}", self.what);
            self.schedule(delay, now);
        }
        true
    }

    /// Shutdown: no more starts. Returns the running process, if any, for the caller to end.
    pub fn stop(&mut self) -> Option<Pid> {
        self.stopping = true;
        self.start_at = None;
        self.pid.map(|(pid, _)| pid)
    }

    fn schedule(&mut self, delay: Duration, now: Instant) {
        self.delay = Some(delay);
        self.start_at = Some(now + delay);
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
    fn starts_once_restarts_after_exit_and_never_after_stop() {
        let t0 = Instant::now();
        let mut r = Respawn::new("test", t0);
        assert!(r.take_due(t0) && !r.take_due(t0), "due once");
        r.started(Pid::from_raw(42), t0);
        assert!(!r.exited(Pid::from_raw(7), 0, t0), "another child is not ours");
        assert!(r.exited(Pid::from_raw(42), 1, t0 + Duration::from_secs(1)));
        assert_eq!(r.next_start(), Some(t0 + Duration::from_secs(1) + FIRST_DELAY));
        assert!(!r.take_due(t0 + Duration::from_secs(1)), "not before its delay");
        assert!(r.take_due(t0 + Duration::from_secs(3)));
        r.started(Pid::from_raw(43), t0);
        assert_eq!(r.stop(), Some(Pid::from_raw(43)));
        assert!(r.exited(Pid::from_raw(43), 0, t0) && r.next_start().is_none(), "no restart after stop");
    }
}
