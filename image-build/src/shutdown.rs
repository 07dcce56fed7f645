//! How `keel-build run` stops a guest: politely first, then harder.
//!
//! A pure state machine with the time passed in, so every step is testable:
//!
//! 1. `Running` — the first Ctrl-C (SIGINT, or SIGTERM or SIGHUP) asks the guest to power down via
//!    ACPI (QMP `system_powerdown`) and waits up to the power-down timeout.
//! 2. `PoweringDown` — a second signal, the timeout, or a failed request makes QEMU
//!    quit at once (QMP `quit`), waiting up to the quit timeout.
//! 3. `Quitting` — one more signal, the timeout, or a failure kills QEMU.
//! 4. `Killed` — nothing left to do but reap it.

use std::time::{Duration, Instant};

/// How long the guest gets to power down after the first signal.
pub const POWERDOWN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long QEMU gets to exit after `quit`.
pub const QUIT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the shutdown is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// No shutdown asked for.
    Running,
    /// `system_powerdown` sent; waiting until the deadline.
    PoweringDown {
        /// When to give up waiting.
        deadline: Instant,
    },
    /// `quit` sent; waiting until the deadline.
    Quitting {
        /// When to give up waiting.
        deadline: Instant,
    },
    /// SIGKILL sent.
    Killed,
}

/// What the runner must do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing.
    Wait,
    /// Send QMP `system_powerdown`.
    Powerdown,
    /// Send QMP `quit`.
    Quit,
    /// Kill QEMU.
    Kill,
}

/// The shutdown state machine.
#[derive(Debug, Clone)]
pub struct Shutdown {
    phase: Phase,
    powerdown_timeout: Duration,
    quit_timeout: Duration,
}

impl Shutdown {
    /// A machine in `Running` with the given timeouts.
    pub fn new(powerdown_timeout: Duration, quit_timeout: Duration) -> Shutdown {
        Shutdown { phase: Phase::Running, powerdown_timeout, quit_timeout }
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// When [`Shutdown::tick`] will next escalate, if a step is under way.
    pub fn deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::PoweringDown { deadline } | Phase::Quitting { deadline } => Some(deadline),
            Phase::Running | Phase::Killed => None,
        }
    }

    /// A signal arrived, or the last action failed: go one step harder.
    pub fn escalate(&mut self, now: Instant) -> Action {
        let (phase, action) = match self.phase {
            Phase::Running => (Phase::PoweringDown { deadline: now + self.powerdown_timeout }, Action::Powerdown),
            Phase::PoweringDown { .. } => (Phase::Quitting { deadline: now + self.quit_timeout }, Action::Quit),
            Phase::Quitting { .. } => (Phase::Killed, Action::Kill),
            Phase::Killed => (Phase::Killed, Action::Wait),
        };
        self.phase = phase;
        action
    }

    /// Time passed: escalate when the current step's deadline is reached.
    pub fn tick(&mut self, now: Instant) -> Action {
        match self.deadline() {
            Some(deadline) if now >= deadline => self.escalate(now),
            _ => Action::Wait,
        }
    }
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown::new(POWERDOWN_TIMEOUT, QUIT_TIMEOUT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn signals_escalate_one_step_each() {
        let t0 = Instant::now();
        let mut shutdown = Shutdown::default();
        assert_eq!(shutdown.tick(t0 + 100 * S), Action::Wait, "no deadline while running");
        assert_eq!(shutdown.escalate(t0), Action::Powerdown);
        assert_eq!(shutdown.phase(), Phase::PoweringDown { deadline: t0 + 30 * S });
        assert_eq!(shutdown.escalate(t0 + S), Action::Quit);
        assert_eq!(shutdown.phase(), Phase::Quitting { deadline: t0 + 6 * S });
        assert_eq!(shutdown.escalate(t0 + 2 * S), Action::Kill);
        assert_eq!(shutdown.escalate(t0 + 3 * S), Action::Wait);
        assert_eq!(shutdown.deadline(), None);
    }

    #[test]
    fn deadlines_escalate_only_when_reached() {
        let t0 = Instant::now();
        let mut shutdown = Shutdown::default();
        shutdown.escalate(t0);
        assert_eq!(shutdown.tick(t0 + 29 * S), Action::Wait);
        assert_eq!(shutdown.tick(t0 + 30 * S), Action::Quit);
        assert_eq!(shutdown.tick(t0 + 34 * S), Action::Wait);
        assert_eq!(shutdown.tick(t0 + 35 * S), Action::Kill);
        assert_eq!(shutdown.phase(), Phase::Killed);
    }
}
