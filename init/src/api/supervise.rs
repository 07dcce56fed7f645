//! PID 1's side of the remote API: start `keel api` (this binary again, from
//! /proc/self/exe) when api.toml exists, restart it with a growing delay when it dies,
//! and stop it at shutdown. The event loop calls [`ApiProcess::tick`],
//! [`ApiProcess::on_exit`] and [`ApiProcess::next_deadline`]; nothing here blocks.

use crate::respawn::Respawn;
use log::warn;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::os::unix::process::CommandExt;
use std::time::Instant;

/// The supervised API process.
#[derive(Debug)]
pub struct ApiProcess {
    config: String,
    /// The cgroup2 root under which the API process gets [`super::cgroup::API_GROUP`].
    cgroup_root: std::path::PathBuf,
    respawn: Respawn,
}

impl ApiProcess {
    /// An API process to start at once, serving `config` (api.toml's path).
    pub fn new(config: &str, now: Instant) -> Self {
        ApiProcess { config: config.into(), cgroup_root: keel_supervisor::cgroup::DEFAULT_ROOT.into(), respawn: Respawn::new("api", now) }
    }

    /// When [`tick`](Self::tick) must run next.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.respawn.next_start()
    }

    /// Start the process when it is due.
    pub fn tick(&mut self, now: Instant) {
        if !self.respawn.take_due(now) {
            return;
        }
        let mut command = std::process::Command::new("/proc/self/exe");
        command.arg0("keel").arg("api").arg(&self.config).stdin(std::process::Stdio::null());
        // Its own cgroup (memory and pids caps); without one it still starts.
        let procs = match super::cgroup::prepare(&self.cgroup_root) {
            Ok(procs) => procs,
            Err(e) => {
                warn!("{e}; the API process runs without its own cgroup");
                None
            }
        };
        // SAFETY: runs in the forked child before exec; sigprocmask and write(2) are
        // async-signal-safe and touch only the empty set on the stack and a descriptor
        // opened before the fork. The child joins its cgroup first, so all it allocates
        // is charged there. PID 1's blocked signals (SIGTERM among them) must not stay
        // blocked in the API process, or stop() could not end it.
        unsafe {
            command.pre_exec(move || {
                if let Some(procs) = &procs {
                    nix::unistd::write(procs, b"0").map_err(std::io::Error::from)?;
                }
                nix::sys::signal::sigprocmask(nix::sys::signal::SigmaskHow::SIG_SETMASK, Some(&nix::sys::signal::SigSet::empty()), None)
                    .map_err(std::io::Error::from)
            });
        }
        let spawned = command.spawn();
        match spawned {
            Ok(child) => self.respawn.started(Pid::from_raw(child.id() as i32), now),
            Err(e) => self.respawn.failed(&e, now),
        }
    }

    /// A child was reaped: whether it was the API process (then its restart is scheduled).
    pub fn on_exit(&mut self, pid: Pid, code: i32, now: Instant) -> bool {
        self.respawn.exited(pid, code, now)
    }

    /// Shutdown: no more restarts; SIGTERM the process.
    pub fn stop(&mut self) {
        if let Some(pid) = self.respawn.stop() {
            let _ = kill(pid, Signal::SIGTERM);
        }
    }
}
