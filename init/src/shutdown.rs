//! Shutdown: SIGTERM to every process, a grace period, SIGKILL, sync, unmount, reboot(2).
//!
//! Each step is logged and none stops the ones after it: a machine asked to power off
//! powers off even if a filesystem will not unmount.

use crate::reaper::reap_all;
use log::{info, warn};
use nix::mount::{umount2, MntFlags};
use nix::sys::reboot::{reboot, RebootMode};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::time::{Duration, Instant};

/// What to do once everything is stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerAction {
    /// Power the machine off.
    PowerOff,
    /// Restart the machine.
    Reboot,
}

impl PowerAction {
    fn verb(self) -> &'static str {
        match self {
            PowerAction::PowerOff => "powering off",
            PowerAction::Reboot => "rebooting",
        }
    }
}

/// How long to wait for processes to go after SIGKILL before giving up on them.
const KILL_WAIT: Duration = Duration::from_secs(2);

/// Stop everything and power off or reboot. Never returns.
pub fn shutdown(action: PowerAction, reason: &str, grace: Duration) -> ! {
    info!("shutdown ({reason}): {}", action.verb());
    info!("shutdown: sending SIGTERM to all processes (grace {} s)", grace.as_secs());
    let _ = kill(Pid::from_raw(-1), Signal::SIGTERM);
    if wait_for_no_children(grace) {
        info!("shutdown: all processes exited");
    } else {
        info!("shutdown: sending SIGKILL to the remaining processes");
        let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
        if !wait_for_no_children(KILL_WAIT) {
            warn!("shutdown: some processes survived SIGKILL (stuck in the kernel?)");
        }
    }
    info!("shutdown: syncing filesystems");
    nix::unistd::sync();
    unmount_all();
    info!("shutdown: {}", action.verb());
    let mode = match action {
        PowerAction::PowerOff => RebootMode::RB_POWER_OFF,
        PowerAction::Reboot => RebootMode::RB_AUTOBOOT,
    };
    let err = reboot(mode).err();
    log::error!("shutdown: reboot(2) failed: {err:?}; halting here");
    loop {
        reap_all();
        std::thread::sleep(Duration::from_secs(60));
    }
}

/// Reap until no child is left or `limit` passes; true when none is left.
fn wait_for_no_children(limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if reap_all().none_left {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Mount points from /proc/self/mountinfo text, deepest (most recent) first, without `/`.
pub fn unmount_order(mountinfo: &str) -> Vec<String> {
    let mut points: Vec<String> =
        mountinfo.lines().filter_map(|line| line.split_whitespace().nth(4)).map(unescape_octal).filter(|p| p != "/").collect();
    points.reverse();
    points
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_octal(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() && bytes[i + 1..i + 4].iter().all(|b| (b'0'..=b'7').contains(b)) {
            let value = (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(value);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn unmount_all() {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let points = unmount_order(&mountinfo);
    let mut unmounted = 0;
    for point in &points {
        match umount2(point.as_str(), MntFlags::empty()) {
            Ok(()) => unmounted += 1,
            Err(_) => match umount2(point.as_str(), MntFlags::MNT_DETACH) {
                Ok(()) => unmounted += 1,
                Err(e) => warn!("shutdown: unmount {point}: {e}"),
            },
        }
    }
    let _ =
        nix::mount::mount(None::<&str>, "/", None::<&str>, nix::mount::MsFlags::MS_REMOUNT | nix::mount::MsFlags::MS_RDONLY, None::<&str>);
    info!("shutdown: unmounted {unmounted} of {} filesystems", points.len());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unmounts_children_before_parents_and_keeps_root() {
        let info = "22 1 0:20 / / rw - tmpfs tmpfs rw\n\
23 22 0:21 / /proc rw - proc proc rw\n\
24 22 0:5 / /dev rw - devtmpfs devtmpfs rw\n\
25 24 0:22 / /dev/pts rw - devpts devpts rw\n\
26 22 0:23 / /var/my\\040data rw - tmpfs tmpfs rw\n";
        assert_eq!(unmount_order(info), ["/var/my data", "/dev/pts", "/dev", "/proc"]);
    }
}
