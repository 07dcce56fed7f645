//! The parent side of a start: prepare directories, clone into namespaces, write the
//! id maps, let the child go, and learn whether it reached execve.

use super::child::{self, Stdio};
use super::clone::{clone3, Cloned};
use super::plan::LaunchPlan;
use nix::unistd::Pid;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

/// Why a container could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// Preparing the host side failed.
    #[error("container {name}: {what}: {source}")]
    Prepare {
        /// Container.
        name: String,
        /// What was being done.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// clone3 failed.
    #[error("container {name}: clone3: {source}")]
    Clone {
        /// Container.
        name: String,
        /// The errno.
        source: nix::Error,
    },
    /// The child neither reached execve nor reported a failure in time; it was killed.
    #[error("container {name}: its setup did not finish within {after:?} (killed); is something in its root filesystem blocking it, e.g. a FIFO?")]
    TimedOut {
        /// Container.
        name: String,
        /// The deadline.
        after: Duration,
    },
    /// A start hook (the network's) failed in the parent; the child was killed.
    #[error("container {name}: {source}")]
    Hook {
        /// Container.
        name: String,
        /// The hook's error.
        source: HookError,
    },
    /// The child reported a failed step before exec.
    #[error("container {name}: {message}")]
    Child {
        /// Container.
        name: String,
        /// The child's own account of the failure.
        message: String,
    },
}

/// How long a container child may take from clone to execve before it is killed. Its
/// setup reads files of the container's tree, which may be hostile: nothing it does may
/// hold its caller (PID 1) for longer.
pub const START_DEADLINE: Duration = Duration::from_secs(10);

/// Most bytes of a child's failure report kept.
const REPORT_LIMIT: usize = 64 * 1024;

/// What the child's error pipe said.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Report {
    /// Closed without a word: the child reached execve (the pipe is CLOEXEC).
    Execed,
    /// The child's account of the step that failed.
    Failed(String),
    /// Still open at the deadline.
    TimedOut,
}

/// Read the child's report until the pipe closes or `deadline` passes, never blocking
/// past it (a child stuck on something its container controls must not stall PID 1).
pub(super) fn read_report(pipe: OwnedFd, deadline: Duration) -> Report {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let _ = fcntl(&pipe, FcntlArg::F_SETFL(OFlag::O_NONBLOCK));
    let end = Instant::now() + deadline;
    let mut message = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match nix::unistd::read(&pipe, &mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let room = REPORT_LIMIT.saturating_sub(message.len());
                message.extend_from_slice(&buf[..n.min(room)]);
                continue;
            }
            Err(nix::Error::EINTR) => continue,
            Err(nix::Error::EAGAIN) => {}
            Err(_) => break,
        }
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Report::TimedOut;
        }
        let timeout = PollTimeout::try_from(left + Duration::from_micros(999)).unwrap_or(PollTimeout::MAX);
        let _ = poll(&mut [PollFd::new(pipe.as_fd(), PollFlags::POLLIN)], timeout);
    }
    if message.is_empty() {
        Report::Execed
    } else {
        Report::Failed(String::from_utf8_lossy(&message).into_owned())
    }
}

/// Why a start hook failed. The launcher turns it into a failed start (the child is
/// killed and everything the start took is given back); in the child it becomes the
/// report read by the parent.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// Something the hook needs is not there (e.g. the network's bridge).
    #[error("{what} {name} does not exist")]
    Missing {
        /// What kind of thing ("bridge").
        what: &'static str,
        /// Its name.
        name: String,
    },
    /// A netlink request failed.
    #[error("{what}: {source}")]
    Netlink {
        /// What was being done, e.g. "create veth kv42".
        what: String,
        /// The kernel's or the socket's error.
        source: keel_netconf::NetlinkError,
    },
    /// A file (in /proc or elsewhere) could not be written.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, e.g. "oom_score_adj".
        what: String,
        /// The system's error.
        source: std::io::Error,
    },
    /// A test-only failure (`keel.test.fail_launch`), to prove a failed start gives
    /// back everything it took.
    #[error("injected failure after the start hooks (test option)")]
    Injected,
}

/// Work done around a start by something outside the runtime — the container network:
/// a veth whose peer is born in the new network namespace, then the address inside it.
pub trait StartHooks {
    /// In the parent, after clone and the id maps, before the child goes on.
    fn after_clone(&mut self, pid: Pid) -> Result<(), HookError>;
    /// In the child, inside its new namespaces, before its root is built (still
    /// privileged, still seeing the host's files).
    fn in_child(&self) -> Result<(), HookError>;
    /// The start failed after `after_clone`: remove what it made on the host side
    /// (e.g. the host end of a veth), so a failed start leaves nothing behind. Safe to
    /// call when `after_clone` never ran or already failed.
    fn undo(&mut self) -> Result<(), HookError> {
        Ok(())
    }
}

/// No work around the start.
pub struct NoHooks;

impl StartHooks for NoHooks {
    fn after_clone(&mut self, _pid: Pid) -> Result<(), HookError> {
        Ok(())
    }
    fn in_child(&self) -> Result<(), HookError> {
        Ok(())
    }
}

/// Start the container described by `plan`. Returns its pid (PID 1 of its namespace,
/// as the host sees it) once it has called execve. The caller reaps it.
pub fn spawn(plan: &LaunchPlan, stdio: Stdio, cgroup: Option<BorrowedFd<'_>>) -> Result<Pid, SpawnError> {
    spawn_with_hooks(plan, stdio, cgroup, &mut NoHooks)
}

/// [`spawn`], with `hooks` run around the start.
pub fn spawn_with_hooks(
    plan: &LaunchPlan,
    stdio: Stdio,
    cgroup: Option<BorrowedFd<'_>>,
    hooks: &mut dyn StartHooks,
) -> Result<Pid, SpawnError> {
    prepare_dirs(plan)?;
    let prepare = |what: &str| {
        let name = plan.name.clone();
        let what = what.to_string();
        move |source| SpawnError::Prepare { name, what, source }
    };
    let (go_read, go_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| prepare("pipe")(e.into()))?;
    let (err_read, err_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| prepare("pipe")(e.into()))?;
    match clone3(plan.clone_flags, cgroup).map_err(|source| SpawnError::Clone { name: plan.name.clone(), source })? {
        Cloned::Child => {
            drop(go_write);
            drop(err_read);
            child::run(plan, go_read, err_write, stdio, &*hooks)
        }
        Cloned::Parent(pid) => {
            drop(go_read);
            drop(err_write);
            if let Err(e) = write_id_maps(plan, pid) {
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                return Err(prepare("write uid/gid maps")(e));
            }
            if let Err(source) = hooks.after_clone(pid) {
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                return Err(SpawnError::Hook { name: plan.name.clone(), source });
            }
            let _ = std::fs::File::from(go_write).write_all(&[1]);
            match read_report(err_read, START_DEADLINE) {
                Report::Execed => Ok(pid),
                Report::Failed(message) => Err(SpawnError::Child { name: plan.name.clone(), message }),
                Report::TimedOut => {
                    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                    Err(SpawnError::TimedOut { name: plan.name.clone(), after: START_DEADLINE })
                }
            }
        }
    }
}

fn prepare_dirs(plan: &LaunchPlan) -> Result<(), SpawnError> {
    let mut dirs = vec![plan.root.merged.clone()];
    if let Some((upper, work)) = &plan.root.overlay {
        dirs.push(upper.clone());
        dirs.push(work.clone());
    }
    let failed = |what: String| {
        let name = plan.name.clone();
        move |source| SpawnError::Prepare { name, what, source }
    };
    // The state directory (the parent of rootfs) and the containers' root: 0700.
    let mapped_root = plan.user_namespace.filter(|m| m.uid.container == 0 && m.gid.container == 0).map(|m| (m.uid.host, m.gid.host));
    if let Some(state) = plan.root.merged.parent() {
        crate::privdir::container_dir(state, mapped_root).map_err(failed(format!("make {} private", state.display())))?;
    }
    for dir in &dirs {
        std::fs::create_dir_all(dir).map_err(failed(format!("create {}", dir.display())))?;
    }
    // In a user namespace the overlay is mounted by the container's root, which is the
    // mapped host uid: it must own the upper, work and mount point directories.
    if let Some(maps) = plan.user_namespace.filter(|m| m.uid.container == 0 && m.gid.container == 0) {
        for dir in &dirs {
            std::os::unix::fs::chown(dir, Some(maps.uid.host), Some(maps.gid.host))
                .map_err(failed(format!("chown {} to the mapped root", dir.display())))?;
        }
    }
    let missing = plan.root.lowers.iter().find(|dir| !dir.is_dir());
    if let Some(dir) = missing.or(plan.root.lowers.is_empty().then_some(&plan.root.merged)) {
        return Err(SpawnError::Prepare {
            name: plan.name.clone(),
            what: format!("image {}", dir.display()),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such root filesystem directory"),
        });
    }
    Ok(())
}

/// Write /proc/PID/{setgroups,uid_map,gid_map} for a user namespace.
fn write_id_maps(plan: &LaunchPlan, pid: Pid) -> std::io::Result<()> {
    let Some(maps) = plan.user_namespace else { return Ok(()) };
    let proc = format!("/proc/{pid}");
    std::fs::write(format!("{proc}/setgroups"), "deny")?;
    std::fs::write(format!("{proc}/uid_map"), format!("{} {} {}\n", maps.uid.container, maps.uid.host, maps.uid.size))?;
    std::fs::write(format!("{proc}/gid_map"), format!("{} {} {}\n", maps.gid.container, maps.gid.host, maps.gid.size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_is_read_to_the_end_and_a_silent_open_pipe_times_out() {
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        std::fs::File::from(write).write_all(b"mount overlay: EINVAL").unwrap();
        assert_eq!(read_report(read, Duration::from_secs(5)), Report::Failed("mount overlay: EINVAL".into()));
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        drop(write);
        assert_eq!(read_report(read, Duration::from_secs(5)), Report::Execed);
        // A child that hangs holds its end open and says nothing.
        let (read, _write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let started = Instant::now();
        assert_eq!(read_report(read, Duration::from_millis(200)), Report::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
