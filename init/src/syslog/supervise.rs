//! PID 1's side of syslog forwarding: the pipe to `keel syslog` (this binary again) and
//! the process itself, started at once, restarted with a growing delay when it dies (the
//! remote API's rule, [`crate::respawn`]) and stopped at shutdown.
//! The event loop calls [`Forwarding::tick`], [`Forwarding::poll_fd`],
//! [`Forwarding::on_writable`], [`Forwarding::on_exit`] and
//! [`Forwarding::next_deadline`]; nothing here blocks.

use super::tap;
use crate::respawn::Respawn;
use log::warn;
use nix::unistd::Pid;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

/// How often a growing count of dropped lines is announced on the console.
pub const ANNOUNCE_EVERY: Duration = Duration::from_secs(10);

/// The forwarder process and the write end of its pipe.
#[derive(Debug)]
pub struct Forwarding {
    config: String,
    pipe: Option<OwnedFd>,
    respawn: Respawn,
    announced: u64,
    next_announce: Instant,
}

/// A pipe whose write end (ours) never blocks and whose read end (the forwarder's stdin) does.
fn forwarder_pipe() -> nix::Result<(OwnedFd, OwnedFd)> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    let flags = OFlag::from_bits_truncate(fcntl(&write, FcntlArg::F_GETFL)?);
    fcntl(&write, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok((read, write))
}

impl Forwarding {
    /// A forwarder to start at once, reading `config` (syslog.toml's path).
    pub fn new(config: &str, now: Instant) -> Self {
        Forwarding {
            config: config.into(),
            pipe: None,
            respawn: Respawn::new("syslog forwarder", now),
            announced: 0,
            next_announce: now + ANNOUNCE_EVERY,
        }
    }

    /// When [`tick`](Self::tick) must run next: a start that is due, or a drop notice.
    pub fn next_deadline(&self) -> Option<Instant> {
        let notice = (tap::counts().0 > self.announced).then_some(self.next_announce);
        [self.respawn.next_start(), notice].into_iter().flatten().min()
    }

    /// The pipe to watch for room, while frames wait for it.
    pub fn poll_fd(&self) -> Option<BorrowedFd<'_>> {
        self.pipe.as_ref().filter(|_| tap::has_pending()).map(|p| p.as_fd())
    }

    /// The pipe has room: write what it takes.
    pub fn on_writable(&mut self) {
        let Some(pipe) = self.pipe.as_ref() else { return };
        if let Err(e) = tap::pump(pipe.as_fd()) {
            // The forwarder is gone; its exit is reaped and it starts again with a new pipe.
            warn!("syslog: the forwarder's pipe: {e}");
            self.pipe = None;
        }
    }

    /// Start the forwarder when due, write what waits, announce drops.
    pub fn tick(&mut self, now: Instant) {
        if self.respawn.take_due(now) {
            self.start(now);
        }
        self.on_writable();
        let dropped = tap::counts().0;
        if dropped > self.announced && now >= self.next_announce {
            crate::logger::marker(&format!(
                "keel: {dropped} log lines not forwarded to syslog so far (the receiver is down or slow; the log files have them)"
            ));
            self.announced = dropped;
            self.next_announce = now + ANNOUNCE_EVERY;
        }
    }

    fn start(&mut self, now: Instant) {
        let spawned = forwarder_pipe().map_err(std::io::Error::from).and_then(|(read, write)| {
            let mut command = std::process::Command::new("/proc/self/exe");
            command.arg0("keel").arg("syslog").arg(&self.config).stdin(std::process::Stdio::from(read));
            // SAFETY: runs in the forked child before exec; sigprocmask is async-signal-safe
            // and touches only the empty set on the stack. PID 1's blocked signals must not
            // stay blocked in the forwarder, or stop() could not end it.
            unsafe {
                command.pre_exec(|| {
                    nix::sys::signal::sigprocmask(nix::sys::signal::SigmaskHow::SIG_SETMASK, Some(&nix::sys::signal::SigSet::empty()), None)
                        .map_err(std::io::Error::from)
                });
            }
            command.spawn().map(|child| (child, write))
        });
        match spawned {
            Ok((child, write)) => {
                self.respawn.started(Pid::from_raw(child.id() as i32), now);
                tap::restart_stream();
                self.pipe = Some(write);
            }
            Err(e) => self.respawn.failed(&e, now),
        }
    }

    /// A child was reaped: whether it was the forwarder (then its restart is scheduled).
    pub fn on_exit(&mut self, pid: Pid, code: i32, now: Instant) -> bool {
        let ours = self.respawn.exited(pid, code, now);
        if ours {
            self.pipe = None;
        }
        ours
    }

    /// Shutdown: hand over what waits (as far as the pipe takes it), then close the pipe:
    /// the forwarder sends what it has and exits at its end (the shutdown's SIGTERM to
    /// every process ends it otherwise).
    pub fn stop(&mut self) {
        self.on_writable();
        // The forwarder ends at the pipe's end (or the shutdown's SIGTERM to every process).
        let _ = self.respawn.stop();
        self.pipe = None;
    }
}
