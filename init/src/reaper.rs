//! Reaping: PID 1 inherits every orphan and must collect each one's exit status,
//! or the process table fills with zombies.

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// How a reaped process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reaped {
    /// The process.
    pub pid: Pid,
    /// Exit code, or 128+signal when it was killed (the shell convention).
    pub code: i32,
}

/// The shell-convention exit code of a wait status, if it is a termination.
pub fn exit_code(status: WaitStatus) -> Option<(Pid, i32)> {
    match status {
        WaitStatus::Exited(pid, code) => Some((pid, code)),
        WaitStatus::Signaled(pid, signal, _) => Some((pid, 128 + signal as i32)),
        _ => None,
    }
}

/// The outcome of one reaping pass.
#[derive(Debug, Default)]
pub struct ReapPass {
    /// The children collected, in order.
    pub reaped: Vec<Reaped>,
    /// True when waitpid said ECHILD: no child is left at all, alive or dead.
    pub none_left: bool,
}

/// Collect every child that has ended: waitpid(-1, WNOHANG) until none is left.
pub fn reap_all() -> ReapPass {
    let mut pass = ReapPass::default();
    loop {
        match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => return pass,
            Err(nix::Error::ECHILD) => {
                pass.none_left = true;
                return pass;
            }
            Ok(status) => {
                if let Some((pid, code)) = exit_code(status) {
                    pass.reaped.push(Reaped { pid, code });
                }
            }
            Err(nix::Error::EINTR) => continue,
            Err(_) => return pass,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::Signal;

    #[test]
    fn killed_means_128_plus_signal() {
        let pid = Pid::from_raw(42);
        assert_eq!(exit_code(WaitStatus::Exited(pid, 3)), Some((pid, 3)));
        assert_eq!(exit_code(WaitStatus::Signaled(pid, Signal::SIGKILL, false)), Some((pid, 137)));
        assert_eq!(exit_code(WaitStatus::StillAlive), None);
    }

    #[test]
    fn reaps_every_ended_child() {
        let children: Vec<_> =
            (0..5).map(|i| std::process::Command::new("sh").arg("-c").arg(format!("exit {i}")).spawn().unwrap()).collect();
        let pids: Vec<i32> = children.iter().map(|c| c.id() as i32).collect();
        std::mem::forget(children);
        let mut codes = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while codes.len() < 5 && std::time::Instant::now() < deadline {
            for r in reap_all().reaped {
                if let Some(i) = pids.iter().position(|p| *p == r.pid.as_raw()) {
                    codes.push((i, r.code));
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        codes.sort();
        assert_eq!(codes, vec![(0, 0), (1, 1), (2, 2), (3, 3), (4, 4)]);
    }
}
