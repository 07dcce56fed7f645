//! PID 1's side of a worker: fork it, read its event lines without ever blocking,
//! enforce its deadline, kill it, and turn how it ended into the job's result.

use super::child::{run_child, Reporter};
use super::lines::{LineBuffer, MAX_EVENT_LINE, MAX_INSPECT_LINE};
use super::{job_label, JobId, JobKind, JobLimits, WorkerCgroup, WorkerError, WorkerEvent};
use crate::forked::run_forked;
use nix::fcntl::OFlag;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::fs::File;
use std::io::{ErrorKind, Read};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::time::{Duration, Instant};

/// Most bytes read from one worker per call, so one chatty worker cannot hold the loop.
const READ_BUDGET: usize = 256 * 1024;

/// How long `finish` waits for the emptied cgroup to be removable.
const REMOVE_WAIT: Duration = Duration::from_millis(200);

/// The last line a worker wrote, if any.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// `Done` with the result.
    Done(serde_json::Value),
    /// `Failed` with the message.
    Failed(String),
}

/// What PID 1 did to the worker, which decides how its end is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Interventions {
    pub timed_out: bool,
    pub cancelled: bool,
}

/// How a worker ended, gathered from its pipe, waitpid and memory.events.
#[derive(Debug, Clone, PartialEq, Default)]
pub(super) struct Ending {
    pub outcome: Option<Outcome>,
    pub protocol: Option<String>,
    pub done: Interventions,
    pub code: i32,
    pub oom: bool,
}

/// The job's result from how the worker ended. Pure.
pub(super) fn decide(job: String, ending: Ending, limits: &JobLimits, memory_max: Option<u64>) -> Result<serde_json::Value, WorkerError> {
    let Ending { outcome, protocol, done, code, oom } = ending;
    if let Some(detail) = protocol {
        return Err(WorkerError::Protocol { job, detail });
    }
    if done.cancelled {
        return Err(WorkerError::Cancelled { job });
    }
    match outcome {
        Some(Outcome::Done(value)) if code == 0 => Ok(value),
        Some(Outcome::Failed(message)) if !oom => Err(WorkerError::Failed { job, message }),
        _ if done.timed_out => Err(WorkerError::TimedOut { job, after: limits.deadline }),
        _ => Err(WorkerError::Died { job, code, oom, memory_max }),
    }
}

/// A running worker, seen from PID 1.
#[derive(Debug)]
pub struct Worker {
    id: JobId,
    kind: JobKind,
    target: String,
    pid: Pid,
    limits: JobLimits,
    started: Instant,
    pipe: Option<File>,
    buffer: LineBuffer,
    cgroup: Option<WorkerCgroup>,
    outcome: Option<Outcome>,
    protocol: Option<String>,
    done: Interventions,
}

/// Fork a worker for job `id` that runs `work` and reports through its [`Reporter`].
///
/// With `cgroup_root` (a cgroup2 root), the worker runs in
/// `<cgroup_root>/workers/<kind>-<id>` with `limits.memory_max`; without, it runs
/// uncapped (hosts without cgroup2, unit tests). `work` runs in the child with every
/// inherited descriptor above stderr closed, so it must open what it needs itself.
/// The caller must be single-threaded (PID 1 is) and reap the worker, then call
/// [`Worker::finish`] with its exit code.
pub fn spawn(
    id: JobId,
    kind: JobKind,
    target: &str,
    limits: JobLimits,
    cgroup_root: Option<&Path>,
    work: impl FnOnce(&mut Reporter) -> Result<serde_json::Value, String>,
) -> Result<Worker, WorkerError> {
    let job = job_label(id, kind, target);
    let cgroup = match cgroup_root {
        Some(root) => Some(WorkerCgroup::create(root, kind, id, &limits).map_err(|(path, source)| WorkerError::Cgroup {
            job: job.clone(),
            path,
            source,
        })?),
        None => None,
    };
    let cleanup = |cgroup: &Option<WorkerCgroup>| {
        if let Some(cgroup) = cgroup {
            let _ = cgroup.remove(Duration::ZERO);
        }
    };
    let (read_end, write_end) = match nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK) {
        Ok(ends) => ends,
        Err(e) => {
            cleanup(&cgroup);
            return Err(WorkerError::Pipe { job, source: e.into() });
        }
    };
    // The write end must block in the child (a full pipe waits for PID 1 to read).
    if let Err(e) = nix::fcntl::fcntl(write_end.as_fd(), nix::fcntl::FcntlArg::F_SETFL(OFlag::empty())) {
        cleanup(&cgroup);
        return Err(WorkerError::Pipe { job, source: e.into() });
    }
    let child_cgroup = cgroup.clone();
    let forked = run_forked(move || run_child(write_end, child_cgroup.as_ref(), work));
    let pid = match forked {
        Ok(pid) => pid,
        Err(source) => {
            cleanup(&cgroup);
            return Err(WorkerError::Fork { job, source });
        }
    };
    Ok(Worker {
        id,
        kind,
        target: target.to_string(),
        pid,
        limits,
        started: Instant::now(),
        pipe: Some(File::from(read_end)),
        // Its result is one line: an inspect's lists every path of the image.
        buffer: LineBuffer::new(if kind == JobKind::Inspect { MAX_INSPECT_LINE } else { MAX_EVENT_LINE }),
        cgroup,
        outcome: None,
        protocol: None,
        done: Interventions::default(),
    })
}

impl Worker {
    /// The job's number.
    pub fn id(&self) -> JobId {
        self.id
    }

    /// What the job does.
    pub fn kind(&self) -> JobKind {
        self.kind
    }

    /// What it works on (a reference, a path, a container name).
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The job as messages name it.
    pub fn label(&self) -> String {
        job_label(self.id, self.kind, &self.target)
    }

    /// The worker process.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// When it was forked.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Its limits.
    pub fn limits(&self) -> JobLimits {
        self.limits
    }

    /// When it is killed if still running.
    pub fn deadline(&self) -> Instant {
        self.started + self.limits.deadline
    }

    /// The event pipe's read end (non-blocking) to poll for POLLIN; None once the
    /// worker closed it (it is ending).
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.pipe.as_ref().map(|p| p.as_fd())
    }

    /// Read what the worker wrote (up to a budget) and return its events. A line that
    /// is too long or not an event is a protocol error: the worker is killed and the
    /// job ends with [`WorkerError::Protocol`].
    pub fn on_readable(&mut self) -> Vec<WorkerEvent> {
        let mut events = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        let mut budget = READ_BUDGET;
        while budget > 0 && self.protocol.is_none() {
            let Some(pipe) = self.pipe.as_mut() else { break };
            match pipe.read(&mut chunk) {
                Ok(0) => {
                    self.pipe = None;
                    break;
                }
                Ok(n) => {
                    budget = budget.saturating_sub(n);
                    match self.buffer.push(&chunk[..n]) {
                        Ok(lines) => {
                            for line in lines {
                                self.parse(&line, &mut events);
                            }
                        }
                        Err(e) => self.protocol_error(e.to_string()),
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.protocol_error(format!("reading its pipe: {e}"));
                    break;
                }
            }
        }
        events
    }

    fn parse(&mut self, line: &str, events: &mut Vec<WorkerEvent>) {
        if self.protocol.is_some() {
            return;
        }
        match serde_json::from_str::<WorkerEvent>(line) {
            Ok(event) => {
                match &event {
                    WorkerEvent::Done(value) => self.outcome = Some(Outcome::Done(value.clone())),
                    WorkerEvent::Failed(message) => self.outcome = Some(Outcome::Failed(message.clone())),
                    _ => {}
                }
                events.push(event);
            }
            Err(e) => {
                let shown: String = line.chars().take(80).collect();
                self.protocol_error(format!("not an event line ({e}): {shown:?}"));
            }
        }
    }

    fn protocol_error(&mut self, detail: String) {
        self.protocol = Some(detail);
        self.pipe = None;
        self.kill();
    }

    /// SIGKILL the worker (and anything it forked): `cgroup.kill`, else its pid.
    pub fn kill(&self) {
        if !self.cgroup.as_ref().is_some_and(WorkerCgroup::kill) {
            let _ = kill(self.pid, Signal::SIGKILL);
        }
    }

    /// Past its deadline: kill it; its end is reported as [`WorkerError::TimedOut`].
    pub fn time_out(&mut self) {
        self.done.timed_out = true;
        self.kill();
    }

    /// Cancel the job: SIGTERM now (the caller kills after a grace); its end is
    /// reported as [`WorkerError::Cancelled`].
    pub fn cancel(&mut self) {
        self.done.cancelled = true;
        let _ = kill(self.pid, Signal::SIGTERM);
    }

    /// Whether it was timed out or cancelled already.
    pub fn stopping(&self) -> bool {
        self.done.timed_out || self.done.cancelled
    }

    /// The job's result once the worker was reaped with `code` (exit code or
    /// 128+signal): reads what is left on the pipe, checks memory.events for an OOM
    /// kill and removes the cgroup.
    pub fn finish(mut self, code: i32) -> Result<serde_json::Value, WorkerError> {
        while self.pipe.is_some() && self.protocol.is_none() {
            let before = self.buffer.pending();
            let events = self.on_readable();
            if events.is_empty() && self.buffer.pending() == before && self.pipe.is_some() {
                // Nothing more now: a process the worker left behind holds the write end.
                break;
            }
        }
        let oom = self.cgroup.as_ref().is_some_and(WorkerCgroup::oom_killed);
        if let Some(cgroup) = &self.cgroup {
            cgroup.kill();
            let _ = cgroup.remove(REMOVE_WAIT);
        }
        let memory_max = self.cgroup.as_ref().map(WorkerCgroup::memory_max);
        let ending = Ending { outcome: self.outcome.take(), protocol: self.protocol.take(), done: self.done, code, oom };
        decide(self.label(), ending, &self.limits, memory_max)
    }

    /// Run the worker to its end on this thread (during boot, before the event loop,
    /// and in tests): `on_event` sees each event, `between` runs at least every
    /// `step` (e.g. to drive DHCP). Enforces the deadline and reaps the worker itself.
    pub fn wait(
        mut self,
        step: Duration,
        on_event: &mut dyn FnMut(&WorkerEvent),
        between: &mut dyn FnMut(),
    ) -> Result<serde_json::Value, WorkerError> {
        loop {
            if let Some(fd) = self.fd() {
                let mut fds = [nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLIN)];
                let timeout = nix::poll::PollTimeout::try_from(step).unwrap_or(nix::poll::PollTimeout::MAX);
                let _ = nix::poll::poll(&mut fds, timeout);
            } else {
                std::thread::sleep(step.min(Duration::from_millis(20)));
            }
            for event in self.on_readable() {
                on_event(&event);
            }
            match waitpid(self.pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(_, code)) => return self.finish(code),
                Ok(WaitStatus::Signaled(_, signal, _)) => return self.finish(128 + signal as i32),
                Err(nix::Error::ECHILD) => return self.finish(255),
                _ => {}
            }
            if Instant::now() >= self.deadline() && !self.done.timed_out {
                self.time_out();
            }
            between();
        }
    }
}
