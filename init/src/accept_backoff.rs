//! Out of descriptors on `accept`: the listening socket stays readable (the connection
//! waits in the backlog), so a loop that polls it again at once would spin at full CPU
//! and log a line per turn. [`AcceptBackoff`] takes the listener out of the poll set for
//! [`ACCEPT_PAUSE`] after such an error and lets one warning through per
//! [`LOG_PERIOD`], with the count of the ones held back. Pure: `now` is passed in.

use std::io;
use std::time::{Duration, Instant};

/// How long the listener stays out of the poll set after EMFILE, ENFILE, ENOBUFS or
/// ENOMEM: long enough that a loop with nothing else to do sleeps, short enough that a
/// client is served soon after a descriptor frees up.
pub const ACCEPT_PAUSE: Duration = Duration::from_millis(250);
/// At most one warning about failing accepts per period.
pub const LOG_PERIOD: Duration = Duration::from_secs(10);

/// The listener's pause and the warning's rate limit.
#[derive(Debug, Default)]
pub struct AcceptBackoff {
    paused_until: Option<Instant>,
    last_warning: Option<Instant>,
    held_back: u64,
}

/// Whether an accept error means "no resources now" (retrying at once cannot help).
pub fn is_exhaustion(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc_errno::EMFILE | libc_errno::ENFILE | libc_errno::ENOBUFS | libc_errno::ENOMEM))
}

/// The errnos, from nix (no libc dependency here).
mod libc_errno {
    pub const EMFILE: i32 = nix::errno::Errno::EMFILE as i32;
    pub const ENFILE: i32 = nix::errno::Errno::ENFILE as i32;
    pub const ENOBUFS: i32 = nix::errno::Errno::ENOBUFS as i32;
    pub const ENOMEM: i32 = nix::errno::Errno::ENOMEM as i32;
}

impl AcceptBackoff {
    /// Whether the listener must stay out of the poll set at `now`.
    pub fn is_paused(&self, now: Instant) -> bool {
        self.paused_until.is_some_and(|until| now < until)
    }

    /// When the listener goes back into the poll set, while it is out.
    pub fn deadline(&self, now: Instant) -> Option<Instant> {
        self.paused_until.filter(|until| now < *until)
    }

    /// `accept` failed with `error` at `now`. An exhaustion error pauses the listener.
    /// Returns the warning to log, if one is due: the first error, then at most one per
    /// [`LOG_PERIOD`], saying how many were held back.
    pub fn on_error(&mut self, error: &io::Error, now: Instant) -> Option<String> {
        let exhausted = is_exhaustion(error);
        if exhausted {
            self.paused_until = Some(now + ACCEPT_PAUSE);
        }
        let due = self.last_warning.is_none_or(|at| now.saturating_duration_since(at) >= LOG_PERIOD);
        if !due {
            self.held_back += 1;
            return None;
        }
        self.last_warning = Some(now);
        let held_back = std::mem::take(&mut self.held_back);
        let more = if held_back > 0 { format!(" ({held_back} more since the last warning)") } else { String::new() };
        let pause = if exhausted { format!("; not accepting for {} ms", ACCEPT_PAUSE.as_millis()) } else { String::new() };
        Some(format!("control socket accept: {error}{pause}{more}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emfile() -> io::Error {
        io::Error::from_raw_os_error(nix::errno::Errno::EMFILE as i32)
    }

    #[test]
    fn exhaustion_pauses_the_listener_and_warnings_are_rate_limited() {
        let t0 = Instant::now();
        let mut backoff = AcceptBackoff::default();
        assert!(!backoff.is_paused(t0));
        let first = backoff.on_error(&emfile(), t0).expect("the first error is logged");
        assert!(first.starts_with("control socket accept: Too many open files"), "{first}");
        assert!(first.ends_with("; not accepting for 250 ms"), "{first}");
        assert!(backoff.is_paused(t0 + Duration::from_millis(249)));
        assert_eq!(backoff.deadline(t0), Some(t0 + ACCEPT_PAUSE));
        assert!(!backoff.is_paused(t0 + ACCEPT_PAUSE));
        assert_eq!(backoff.deadline(t0 + ACCEPT_PAUSE), None);
        // 39 more within the period: none logged, all counted.
        for i in 1..40 {
            assert_eq!(backoff.on_error(&emfile(), t0 + ACCEPT_PAUSE * i), None);
        }
        let next = backoff.on_error(&emfile(), t0 + LOG_PERIOD).expect("one per period");
        assert!(next.ends_with("(39 more since the last warning)"), "{next}");
    }

    #[test]
    fn other_errors_do_not_pause() {
        let t0 = Instant::now();
        let mut backoff = AcceptBackoff::default();
        let aborted = io::Error::from_raw_os_error(nix::errno::Errno::ECONNABORTED as i32);
        assert!(backoff.on_error(&aborted, t0).is_some());
        assert!(!backoff.is_paused(t0));
        for errno in [nix::errno::Errno::ENFILE, nix::errno::Errno::ENOBUFS, nix::errno::Errno::ENOMEM] {
            assert!(is_exhaustion(&io::Error::from_raw_os_error(errno as i32)), "{errno}");
        }
    }
}
