//! The early mounts PID 1 makes before anything else can work.

use nix::mount::{mount, MsFlags};
use std::path::Path;

/// One filesystem to mount at boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EarlyMount {
    /// Filesystem type (`proc`, `tmpfs`, …).
    pub fstype: &'static str,
    /// Where it goes.
    pub target: &'static str,
    /// Mount flags.
    pub flags: MsFlags,
    /// Filesystem options.
    pub data: &'static str,
    /// Whether the system cannot work without it (a failure means emergency state).
    pub critical: bool,
}

/// The early mounts, in order (parents before children).
pub fn early_mounts() -> Vec<EarlyMount> {
    let secure = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let m = |fstype, target, flags, data, critical| EarlyMount { fstype, target, flags, data, critical };
    vec![
        m("proc", "/proc", secure, "", true),
        m("sysfs", "/sys", secure, "", true),
        m("devtmpfs", "/dev", MsFlags::MS_NOSUID, "mode=0755", true),
        m("devpts", "/dev/pts", MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC, "gid=5,mode=0620,ptmxmode=0666", false),
        m("tmpfs", "/dev/shm", MsFlags::MS_NOSUID | MsFlags::MS_NODEV, "mode=1777", false),
        m("tmpfs", "/run", MsFlags::MS_NOSUID | MsFlags::MS_NODEV, "mode=0755", true),
        m("cgroup2", "/sys/fs/cgroup", secure, "nsdelegate", false),
    ]
}

/// A mount that failed, with the cause.
#[derive(Debug, thiserror::Error)]
#[error("mount {fstype} on {target}: {source}")]
pub struct MountError {
    /// Filesystem type.
    pub fstype: &'static str,
    /// Mount point.
    pub target: &'static str,
    /// Whether this failure leaves the system unable to work.
    pub critical: bool,
    /// The errno.
    pub source: nix::Error,
}

/// Mount one early filesystem, creating its mount point. A filesystem that is already
/// mounted there (e.g. by the kernel) counts as done.
pub fn apply(entry: &EarlyMount) -> Result<(), MountError> {
    let error = |source| MountError { fstype: entry.fstype, target: entry.target, critical: entry.critical, source };
    let _ = std::fs::create_dir_all(entry.target);
    match mount(Some(entry.fstype), Path::new(entry.target), Some(entry.fstype), entry.flags, Some(entry.data)) {
        Ok(()) => Ok(()),
        Err(nix::Error::EBUSY) => Ok(()),
        Err(source) => Err(error(source)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_come_before_children() {
        let mounts = early_mounts();
        for (i, child) in mounts.iter().enumerate() {
            for parent in &mounts[i + 1..] {
                assert!(
                    !child.target.starts_with(&format!("{}/", parent.target)),
                    "{} is mounted before its parent {}",
                    child.target,
                    parent.target
                );
            }
        }
        let targets: Vec<_> = mounts.iter().map(|m| m.target).collect();
        for needed in ["/proc", "/sys", "/dev", "/dev/pts", "/dev/shm", "/run", "/sys/fs/cgroup"] {
            assert!(targets.contains(&needed), "{needed} missing");
        }
    }
}
