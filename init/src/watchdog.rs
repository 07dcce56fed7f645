//! The hardware watchdog for PID 1 itself (issue 12, point 7), like systemd's
//! `RuntimeWatchdogSec`: once the boot is done PID 1 arms the machine's watchdog
//! (QEMU's i6300esb, a cloud VM's where it has one) and pets it from its event loop.
//! A loop that wedges stops petting and the hardware resets the machine, instead of a
//! host that hangs forever with nothing answering.
//!
//! The kernel interface is `/dev/watchdog0` (Documentation/watchdog/watchdog-api.rst):
//! opening it starts the timer, `WDIOC_SETTIMEOUT` sets its period, `WDIOC_KEEPALIVE`
//! pets it, and writing `V` before closing ("magic close") stops it, which a clean
//! shutdown does so that a long container stop never races it.
//!
//! Limitations: only the first watchdog device is used; the boot steps before ready
//! are not covered (the timer is armed when the loop starts); a kernel built with
//! `nowayout` cannot be disarmed, and then reboots a shutdown that outlasts the timeout.

use keel_supervisor::control::WatchdogStatus;
use log::{info, warn};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The watchdog devices, the numbered one first (`/dev/watchdog` is the legacy alias
/// of the first).
pub const DEVICES: [&str; 2] = ["/dev/watchdog0", "/dev/watchdog"];

/// The timeout PID 1 asks for when keel.toml does not say.
pub const DEFAULT_TIMEOUT_SECS: u32 = 30;

/// `struct watchdog_info` of <linux/watchdog.h>.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct WatchdogInfo {
    options: u32,
    firmware_version: u32,
    identity: [u8; 32],
}

/// `WDIOF_SETTIMEOUT`: the driver accepts `WDIOC_SETTIMEOUT`.
const WDIOF_SETTIMEOUT: u32 = 0x0080;
/// `WDIOF_MAGICCLOSE`: writing `V` before closing stops the timer.
const WDIOF_MAGICCLOSE: u32 = 0x0100;
/// `WDIOS_DISABLECARD` for `WDIOC_SETOPTIONS`.
const WDIOS_DISABLECARD: libc::c_int = 0x0001;

nix::ioctl_read!(wdioc_getsupport, b'W', 0, WatchdogInfo);
// The kernel declares these two with _IOR although they pass a value in.
nix::ioctl_read!(wdioc_setoptions, b'W', 4, libc::c_int);
nix::ioctl_read!(wdioc_keepalive, b'W', 5, libc::c_int);
nix::ioctl_readwrite!(wdioc_settimeout, b'W', 6, libc::c_int);
nix::ioctl_read!(wdioc_gettimeout, b'W', 7, libc::c_int);

/// Why the watchdog could not be armed.
#[derive(Debug, thiserror::Error)]
pub enum WatchdogError {
    /// The device exists but could not be opened (another opener holds it, or EPERM).
    #[error("open {path}: {source}")]
    Open {
        /// The device node.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// An ioctl failed.
    #[error("{path}: {request}: {source}")]
    Ioctl {
        /// The device node.
        path: PathBuf,
        /// Which request (`WDIOC_…`).
        request: &'static str,
        /// The errno.
        source: nix::Error,
    },
}

/// When to pet next: every half timeout (as systemd does), so one late turn of the loop
/// is not yet a reset, and no more often than that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PetSchedule {
    interval: Duration,
    last: Instant,
}

impl PetSchedule {
    /// A schedule for `timeout`, last petted at `now`.
    pub fn new(timeout: Duration, now: Instant) -> Self {
        PetSchedule { interval: (timeout / 2).max(Duration::from_millis(500)), last: now }
    }

    /// When the next pet is due: the poll timeout must wake the loop by then.
    pub fn next(&self) -> Instant {
        self.last + self.interval
    }

    /// Whether a pet is due at `now`.
    pub fn due(&self, now: Instant) -> bool {
        now >= self.next()
    }

    /// Record a pet at `now`.
    pub fn petted(&mut self, now: Instant) {
        self.last = now;
    }
}

/// The armed watchdog.
pub struct Watchdog {
    file: File,
    status: WatchdogStatus,
    magic_close: bool,
    schedule: PetSchedule,
}

impl Watchdog {
    /// Arm the first watchdog device found with `timeout_secs`; `Ok(None)` when the
    /// machine has none.
    pub fn arm(timeout_secs: u32) -> Result<Option<Watchdog>, WatchdogError> {
        let Some(path) = DEVICES.iter().map(Path::new).find(|p| p.exists()) else { return Ok(None) };
        let path = path.to_path_buf();
        let file = OpenOptions::new().write(true).open(&path).map_err(|source| WatchdogError::Open { path: path.clone(), source })?;
        let ioctl = |request: &'static str| {
            let path = path.clone();
            move |source| WatchdogError::Ioctl { path, request, source }
        };
        let fd = file.as_raw_fd();
        let mut info = WatchdogInfo::default();
        // SAFETY: `fd` is open for the call and `info` is a live, writable watchdog_info.
        unsafe { wdioc_getsupport(fd, &mut info) }.map_err(ioctl("WDIOC_GETSUPPORT"))?;
        let mut timeout = libc::c_int::try_from(timeout_secs).unwrap_or(libc::c_int::MAX);
        if info.options & WDIOF_SETTIMEOUT != 0 {
            // SAFETY: as above; the kernel writes back the timeout it set.
            if let Err(e) = unsafe { wdioc_settimeout(fd, &mut timeout) } {
                warn!("watchdog {}: cannot set a {timeout_secs} s timeout ({e}); keeping its own", path.display());
            }
        }
        // SAFETY: as above; `timeout` is a live c_int.
        unsafe { wdioc_gettimeout(fd, &mut timeout) }.map_err(ioctl("WDIOC_GETTIMEOUT"))?;
        let mut watchdog = Watchdog {
            file,
            status: WatchdogStatus {
                device: path.display().to_string(),
                identity: identity(&info.identity),
                timeout_secs: u32::try_from(timeout).unwrap_or(0),
            },
            magic_close: info.options & WDIOF_MAGICCLOSE != 0,
            schedule: PetSchedule::new(Duration::from_secs(u64::try_from(timeout).unwrap_or(1)), Instant::now()),
        };
        watchdog.pet(Instant::now());
        Ok(Some(watchdog))
    }

    /// What `keelctl status` shows.
    pub fn status(&self) -> &WatchdogStatus {
        &self.status
    }

    /// When the loop must next wake to pet.
    pub fn next_pet(&self) -> Instant {
        self.schedule.next()
    }

    /// Pet if due at `now`.
    pub fn pet_if_due(&mut self, now: Instant) {
        if self.schedule.due(now) {
            self.pet(now);
        }
    }

    fn pet(&mut self, now: Instant) {
        let mut unused: libc::c_int = 0;
        // SAFETY: the fd is open while `self` lives; `unused` is a live c_int.
        if let Err(e) = unsafe { wdioc_keepalive(self.file.as_raw_fd(), &mut unused) } {
            warn!("watchdog {}: WDIOC_KEEPALIVE: {e}", self.status.device);
        }
        self.schedule.petted(now);
    }

    /// Stop the timer (clean shutdown): disable the card, then magic close.
    pub fn disarm(mut self) {
        let mut option = WDIOS_DISABLECARD;
        // SAFETY: the fd is open; `option` is a live c_int.
        let disabled = unsafe { wdioc_setoptions(self.file.as_raw_fd(), &mut option) }.is_ok();
        let closed = self.magic_close && self.file.write_all(b"V").is_ok();
        if disabled || closed {
            info!("watchdog {}: disarmed for shutdown", self.status.device);
        } else {
            warn!(
                "watchdog {}: cannot disarm (nowayout?); the shutdown must end within {} s",
                self.status.device, self.status.timeout_secs
            );
        }
    }
}

/// Arm the watchdog (when there is one) and say so on the console.
pub fn arm_logged(secs: u32) -> Result<Option<Watchdog>, WatchdogError> {
    let armed = Watchdog::arm(secs)?;
    match &armed {
        Some(watchdog) => {
            let s = watchdog.status();
            info!("watchdog: {} ({}) armed, timeout {} s", s.device, s.identity, s.timeout_secs);
        }
        None => info!("watchdog: no hardware watchdog on this machine"),
    }
    Ok(armed)
}

/// The driver's identity string (NUL-padded).
fn identity(raw: &[u8; 32]) -> String {
    let end = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
    String::from_utf8_lossy(&raw[..end]).trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pets_every_half_timeout_not_more() {
        let start = Instant::now();
        let mut schedule = PetSchedule::new(Duration::from_secs(30), start);
        assert_eq!(schedule.next(), start + Duration::from_secs(15));
        assert!(!schedule.due(start + Duration::from_secs(14)));
        assert!(schedule.due(start + Duration::from_secs(15)));
        schedule.petted(start + Duration::from_secs(16));
        assert_eq!(schedule.next(), start + Duration::from_secs(31));
    }

    #[test]
    fn short_timeouts_still_leave_the_loop_time() {
        let start = Instant::now();
        assert_eq!(PetSchedule::new(Duration::from_secs(1), start).next(), start + Duration::from_millis(500));
        assert_eq!(PetSchedule::new(Duration::ZERO, start).next(), start + Duration::from_millis(500));
    }

    #[test]
    fn identity_stops_at_nul() {
        let mut raw = [0u8; 32];
        raw[..14].copy_from_slice(b"i6300ESB timer");
        assert_eq!(identity(&raw), "i6300ESB timer");
        assert_eq!(identity(&[b'x'; 32]), "x".repeat(32));
    }
}
