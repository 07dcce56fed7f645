//! The restart decision: what to do when a container's process ends, with capped
//! exponential backoff that resets after a stable run. Time is an input (`now`), so
//! the whole policy is tested without waiting.

use crate::spec::{RestartMode, RestartPolicy};
use std::time::{Duration, Instant};

/// First restart delay.
pub const BASE_DELAY: Duration = Duration::from_millis(500);
/// Longest restart delay.
pub const MAX_DELAY: Duration = Duration::from_secs(30);
/// A run at least this long counts as stable: the next failure starts the backoff over.
pub const STABLE_RUN: Duration = Duration::from_secs(10);

/// What the supervisor does after an exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Start it again at this time.
    RestartAt(Instant),
    /// Leave it stopped: the policy says so (or it was asked to stop).
    Stay,
    /// It failed `max_retries` times in a row: give up.
    GiveUp,
}

/// Restart bookkeeping for one container.
#[derive(Debug, Clone, Default)]
pub struct RestartState {
    /// Restarts in a row since the last stable run.
    pub consecutive: u32,
    /// Restarts since boot.
    pub total: u32,
}

impl RestartState {
    /// Decide after an exit with `code` of a run that started at `started`.
    pub fn on_exit(&mut self, policy: &RestartPolicy, code: i32, started: Instant, now: Instant) -> Decision {
        let wanted = match policy.mode {
            RestartMode::No => false,
            RestartMode::OnFailure => code != 0,
            RestartMode::Always => true,
        };
        if !wanted {
            return Decision::Stay;
        }
        if now.saturating_duration_since(started) >= STABLE_RUN {
            self.consecutive = 0;
        }
        if policy.max_retries.is_some_and(|max| self.consecutive >= max) {
            return Decision::GiveUp;
        }
        let delay = backoff(self.consecutive);
        self.consecutive += 1;
        self.total += 1;
        Decision::RestartAt(now + delay)
    }
}

/// The delay before restart number `attempt` (0-based): doubling from BASE_DELAY, capped.
pub fn backoff(attempt: u32) -> Duration {
    BASE_DELAY.saturating_mul(1u32 << attempt.min(16)).min(MAX_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(mode: RestartMode, max_retries: Option<u32>) -> RestartPolicy {
        RestartPolicy { mode, max_retries }
    }

    #[test]
    fn delays_double_and_cap() {
        let delays: Vec<u64> = (0..9).map(|a| backoff(a).as_millis() as u64).collect();
        assert_eq!(delays, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
    }

    #[test]
    fn no_never_restarts_and_on_failure_skips_success() {
        let now = Instant::now();
        let mut state = RestartState::default();
        assert_eq!(state.on_exit(&policy(RestartMode::No, None), 1, now, now), Decision::Stay);
        assert_eq!(state.on_exit(&policy(RestartMode::OnFailure, None), 0, now, now), Decision::Stay);
        assert_eq!(state.on_exit(&policy(RestartMode::OnFailure, None), 137, now, now), Decision::RestartAt(now + BASE_DELAY));
    }

    #[test]
    fn max_retries_gives_up_after_that_many_restarts_in_a_row() {
        let p = policy(RestartMode::Always, Some(2));
        let now = Instant::now();
        let mut state = RestartState::default();
        assert!(matches!(state.on_exit(&p, 1, now, now), Decision::RestartAt(_)));
        assert!(matches!(state.on_exit(&p, 1, now, now), Decision::RestartAt(_)));
        assert_eq!(state.on_exit(&p, 1, now, now), Decision::GiveUp);
        assert_eq!(state.total, 2);
    }

    #[test]
    fn a_stable_run_resets_the_backoff() {
        let p = policy(RestartMode::Always, None);
        let start = Instant::now();
        let mut state = RestartState::default();
        for _ in 0..4 {
            state.on_exit(&p, 1, start, start);
        }
        let later = start + STABLE_RUN + Duration::from_secs(1);
        assert_eq!(state.on_exit(&p, 1, start, later), Decision::RestartAt(later + BASE_DELAY));
        assert_eq!(state.total, 5);
    }
}
