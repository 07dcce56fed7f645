//! How a boot's time splits between the kernel and keel, read from a guest's console.
//!
//! Every line PID 1 prints carries `[   SECONDS] ` (CLOCK_BOOTTIME, the kernel log's
//! timebase), and the images boot with `quiet`, so the first such `keel:` line is the
//! first thing the exec'ed PID 1 does: its time is the kernel's share (firmware excluded,
//! kernel start → exec of /init, initramfs unpacking included). `keel: ready` ends keel's
//! share. `keel-boot-bench` reports both (issue 12, point 5).

/// One boot's two marks, in seconds since kernel start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BootTiming {
    /// PID 1's first console line: the exec of /init, within microseconds.
    pub pid1_start: f64,
    /// The `keel: ready` marker.
    pub ready: f64,
}

impl BootTiming {
    /// Kernel start → exec of PID 1.
    pub fn kernel_share(&self) -> f64 {
        self.pid1_start
    }

    /// Exec of PID 1 → `keel: ready`: keel's own part of the boot.
    pub fn keel_share(&self) -> f64 {
        self.ready - self.pid1_start
    }
}

/// Why a console gave no [`BootTiming`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TimingError {
    /// No timestamped `keel:` line at all.
    #[error("no timestamped keel line on the console")]
    NoPid1Line,
    /// No timestamped `keel: ready` marker.
    #[error("no timestamped `keel: ready` on the console")]
    NoReady,
    /// `keel: ready` is stamped before PID 1's first line.
    #[error("keel: ready at {ready} s precedes PID 1's first line at {pid1_start} s")]
    OutOfOrder {
        /// PID 1's first line.
        pid1_start: f64,
        /// The ready marker.
        ready: f64,
    },
}

/// The timestamp and text of a `[  1.234567] text` console line.
fn stamped(line: &str) -> Option<(f64, &str)> {
    let rest = line.trim_start().strip_prefix('[')?;
    let (stamp, text) = rest.split_once(']')?;
    let seconds: f64 = stamp.trim().parse().ok()?;
    Some((seconds, text.trim_start()))
}

/// Read a boot's marks from its console text.
pub fn parse(console: &str) -> Result<BootTiming, TimingError> {
    let mut lines = console.lines().filter_map(stamped).filter(|(_, text)| text.starts_with("keel:"));
    let (pid1_start, first) = lines.next().ok_or(TimingError::NoPid1Line)?;
    let ready = if first.starts_with("keel: ready") {
        pid1_start
    } else {
        lines.find(|(_, text)| text.starts_with("keel: ready")).map(|(t, _)| t).ok_or(TimingError::NoReady)?
    };
    if ready < pid1_start {
        return Err(TimingError::OutOfOrder { pid1_start, ready });
    }
    Ok(BootTiming { pid1_start, ready })
}

/// The median of `values` (the mean of the middle two for an even count); `None` if empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONSOLE: &str = "SeaBIOS (version 1.16)\n\
        [    0.412000] Warning: something from the kernel\n\
        [    0.731204] keel: moving the root from the initramfs's kernel mount onto a bind of it\n\
        [    0.760000] keel: mounted proc on /proc\n\
        web | hello\n\
        [    1.204500] keel: ready (1.204 s since kernel start)\n\
        [    1.300000] keel: container web: running\n";

    #[test]
    fn splits_kernel_and_keel_shares() {
        let t = parse(CONSOLE).unwrap();
        assert_eq!(t, BootTiming { pid1_start: 0.731204, ready: 1.2045 });
        assert!((t.kernel_share() - 0.731204).abs() < 1e-9);
        assert!((t.keel_share() - 0.473296).abs() < 1e-9);
    }

    #[test]
    fn kernel_lines_are_not_pid1() {
        // The kernel's own timestamped line is not taken for PID 1's start.
        let t = parse(CONSOLE).unwrap();
        assert_ne!(t.pid1_start, 0.412);
    }

    #[test]
    fn missing_marks_are_errors() {
        assert_eq!(parse("[ 0.1] Linux version\n"), Err(TimingError::NoPid1Line));
        assert_eq!(parse("[ 0.5] keel: mounted proc\n"), Err(TimingError::NoReady));
        // An unstamped ready (e.g. a container echoing it) does not count.
        assert_eq!(parse("[ 0.5] keel: mounted proc\nkeel: ready (9 s)\n"), Err(TimingError::NoReady));
        assert_eq!(
            parse("[ 0.5] keel: x\n[ 0.5] keel: y\n[ 0.4] keel: ready (0.4 s)\n"),
            Err(TimingError::OutOfOrder { pid1_start: 0.5, ready: 0.4 })
        );
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }
}
