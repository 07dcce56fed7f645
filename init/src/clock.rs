//! Time since the kernel started, the timebase of every log line and of `keel: ready`.

use std::time::Duration;

/// Time since the kernel started (CLOCK_BOOTTIME), the same clock as the kernel's log.
pub fn since_boot() -> Duration {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME) {
        Ok(ts) => Duration::new(ts.tv_sec().max(0) as u64, ts.tv_nsec().clamp(0, 999_999_999) as u32),
        Err(_) => Duration::ZERO,
    }
}
