//! PID 1's registry of jobs: the workers it forked for long or risky work (pulls,
//! loads, imports, inspect, first boot), what each reported, who waits for each one's
//! end or follows its progress, and the recently finished ones for `keelctl image jobs`.
//!
//! The event loop owns one [`Jobs`]: it polls [`Jobs::fds`], calls
//! [`Jobs::on_readable`] for a readable one, offers every reaped pid to
//! [`Jobs::on_exit`] before the container manager, calls [`Jobs::tick`] each turn for
//! deadlines, and [`Jobs::cancel_all`] at shutdown. Nothing here blocks, except
//! `cancel_all`, for at most its grace plus a second.

use keel_supervisor::worker::{
    self, ItemInfo, JobId, JobInfo, JobKind, JobLimits, JobState, Progress, Reporter, Worker, WorkerError, WorkerEvent,
};
use log::{info, warn};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::collections::{HashMap, VecDeque};
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Finished jobs kept for `keelctl image jobs`.
pub const FINISHED_KEPT: usize = 16;

/// Least time between two console lines about one item of a job.
pub const CONSOLE_INTERVAL: Duration = Duration::from_secs(5);

/// A worker may use at most this share of the machine's RAM (1/N), so its page cache
/// and buffers are reclaimed inside its cgroup instead of starving PID 1 and the
/// containers (a 512 MiB cap on a 512 MiB machine let a pull's writeback stall the host).
pub const RAM_SHARE: u64 = 4;

/// The least memory.max a worker gets from [`RAM_SHARE`], whatever the RAM.
pub const MIN_WORKER_MEMORY: u64 = 64 << 20;

/// The memory.max of a worker: its kind's default, at most 1/[`RAM_SHARE`] of `mem_total`
/// (not below [`MIN_WORKER_MEMORY`]); `memory_override` (a test knob) wins over both.
pub fn worker_memory(kind_default: u64, mem_total: Option<u64>, memory_override: Option<u64>) -> u64 {
    if let Some(max) = memory_override {
        return max;
    }
    match mem_total {
        Some(total) => kind_default.min((total / RAM_SHARE).max(MIN_WORKER_MEMORY)),
        None => kind_default,
    }
}

/// How long a cancelled worker has between SIGTERM and SIGKILL while the loop runs.
const CANCEL_GRACE: Duration = Duration::from_secs(2);

/// A control request waiting for a job: its reply is sent when the job ends, and,
/// with `progress`, each progress event before that (lines carrying the request's id).
#[derive(Debug)]
pub struct Waiter {
    /// The request's id, echoed in every line sent for it.
    pub request: u64,
    /// Where to write (a duplicate of the client's channel).
    pub channel: OwnedFd,
    /// Whether it asked for progress events.
    pub progress: bool,
}

/// How a job ended, as [`Jobs::on_exit`] reports it.
#[derive(Debug)]
pub struct JobEnd {
    /// The job.
    pub id: JobId,
    /// What it did.
    pub kind: JobKind,
    /// What it worked on.
    pub target: String,
    /// Its result or why there is none.
    pub result: Result<serde_json::Value, WorkerError>,
    /// The requests that waited for it (taken out of the registry).
    pub waiters: Vec<Waiter>,
}

/// How far one item is, with what its rate and console lines need.
#[derive(Debug, Clone)]
struct Item {
    progress: Progress,
    /// When its current phase began and how far it was then.
    phase_start: (Instant, u64),
    updated: Instant,
    console_at: Option<Instant>,
}

impl Item {
    fn new(progress: Progress, now: Instant) -> Self {
        Item { phase_start: (now, progress.done), progress, updated: now, console_at: None }
    }

    /// Take a new report of the item.
    fn update(&mut self, progress: Progress, now: Instant) {
        if progress.phase != self.progress.phase {
            self.phase_start = (now, progress.done);
            self.console_at = None;
        }
        self.progress = progress;
        self.updated = now;
    }

    /// Bytes a second since the phase began.
    fn rate(&self) -> f64 {
        let (since, from) = self.phase_start;
        let secs = self.updated.duration_since(since).as_secs_f64();
        if secs <= 0.0 {
            return 0.0;
        }
        self.progress.done.saturating_sub(from) as f64 / secs
    }

    /// Whether a console line is due: the first, the item's end, or CONSOLE_INTERVAL after the last.
    fn console_due(&self, now: Instant) -> bool {
        match self.console_at {
            None => true,
            Some(_) if self.progress.total == Some(self.progress.done) => true,
            Some(at) => now.duration_since(at) >= CONSOLE_INTERVAL,
        }
    }

    fn info(&self) -> ItemInfo {
        ItemInfo { progress: self.progress.clone(), rate: self.rate() }
    }
}

/// "12.3 MiB" for a byte count.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}

/// One console line about an item: "pull r/x:1 (job 3): abc123 download 12.0 MiB/100.0 MiB, 1.2 MiB/s".
fn console_line(label: &str, item: &ItemInfo) -> String {
    let p = &item.progress;
    let total = p.total.map(|t| format!("/{}", mib(t))).unwrap_or_default();
    format!("{label}: {} {} {}{total}, {}/s", p.item, p.phase, mib(p.done), mib(item.rate as u64))
}

struct Running {
    worker: Worker,
    items: Vec<Item>,
    cancel_kill_at: Option<Instant>,
}

impl Running {
    fn info(&self, now: Instant) -> JobInfo {
        let age = now.duration_since(self.worker.started()).as_secs_f64();
        JobInfo {
            id: self.worker.id(),
            kind: self.worker.kind(),
            target: self.worker.target().to_string(),
            state: JobState::Running,
            error: None,
            items: self.items.iter().map(Item::info).collect(),
            age_secs: age,
            run_secs: age,
        }
    }
}

struct Finished {
    info: JobInfo,
    started: Instant,
    ended: Instant,
}

/// The jobs PID 1 runs and recently ran.
pub struct Jobs {
    next: u64,
    cgroup_root: Option<PathBuf>,
    memory_override: Option<u64>,
    running: Vec<Running>,
    finished: VecDeque<Finished>,
    waiters: HashMap<JobId, Vec<Waiter>>,
}

impl Jobs {
    /// A registry whose workers get cgroups under `cgroup_root` when it is a cgroup2
    /// root at the time a job starts (else none, see [`worker::cgroup2_root`]); `memory_override` replaces every kind's memory.max
    /// (the test-only `keel.test.worker_memory`).
    pub fn new(cgroup_root: Option<PathBuf>, memory_override: Option<u64>) -> Self {
        Jobs { next: 1, cgroup_root, memory_override, running: Vec::new(), finished: VecDeque::new(), waiters: HashMap::new() }
    }

    /// Replace every kind's memory.max (from `keel.test.worker_memory`, read after the loop exists).
    pub fn set_memory_override(&mut self, memory_max: Option<u64>) {
        self.memory_override = memory_max;
    }

    /// The limits a job of `kind` gets here.
    pub fn limits(&self, kind: JobKind) -> JobLimits {
        let mut limits = JobLimits::for_kind(kind);
        let mem_total =
            std::fs::read_to_string("/proc/meminfo").ok().and_then(|text| keel_supervisor::cgroup::reserve::parse_mem_total(&text).ok());
        limits.memory_max = worker_memory(limits.memory_max, mem_total, self.memory_override);
        limits
    }

    /// Start a job: fork its worker, which runs `work`. Returns its id at once.
    pub fn start(
        &mut self,
        kind: JobKind,
        target: &str,
        work: impl FnOnce(&mut Reporter) -> Result<serde_json::Value, String>,
    ) -> Result<JobId, WorkerError> {
        let limits = self.limits(kind);
        self.start_with(kind, target, limits, work)
    }

    /// [`start`](Self::start) with explicit limits.
    pub fn start_with(
        &mut self,
        kind: JobKind,
        target: &str,
        limits: JobLimits,
        work: impl FnOnce(&mut Reporter) -> Result<serde_json::Value, String>,
    ) -> Result<JobId, WorkerError> {
        let id = JobId(self.next);
        self.next += 1;
        let root = self.cgroup_root.as_deref().and_then(worker::cgroup2_root);
        let worker = worker::spawn(id, kind, target, limits, root.as_deref(), work)?;
        info!("{}: started (worker pid {}, memory.max {})", worker.label(), worker.pid(), mib(limits.memory_max));
        self.running.push(Running { worker, items: Vec::new(), cancel_kill_at: None });
        Ok(id)
    }

    /// Whether a job is still running.
    pub fn is_running(&self, id: JobId) -> bool {
        self.running.iter().any(|r| r.worker.id() == id)
    }

    /// A running job of `kind` on `target`, to join instead of starting a second one.
    pub fn find_running(&self, kind: JobKind, target: &str) -> Option<JobId> {
        self.running.iter().find(|r| r.worker.kind() == kind && r.worker.target() == target).map(|r| r.worker.id())
    }

    /// The event pipes to poll for POLLIN.
    pub fn fds(&self) -> Vec<(JobId, BorrowedFd<'_>)> {
        self.running.iter().filter_map(|r| r.worker.fd().map(|fd| (r.worker.id(), fd))).collect()
    }

    /// Make `waiter` wait for job `id`'s end; false (waiter dropped) when it is not running.
    pub fn wait_for(&mut self, id: JobId, waiter: Waiter) -> Result<(), Waiter> {
        if !self.is_running(id) {
            return Err(waiter);
        }
        self.waiters.entry(id).or_default().push(waiter);
        Ok(())
    }

    /// The waiters of job `id` that follow its progress.
    pub fn subscribers(&self, id: JobId) -> impl Iterator<Item = &Waiter> {
        self.waiters.get(&id).into_iter().flatten().filter(|w| w.progress)
    }

    /// Drop the waiters of job `id` for which `keep` says false (a client that went away).
    pub fn retain_waiters(&mut self, id: JobId, keep: impl FnMut(&Waiter) -> bool) {
        if let Some(list) = self.waiters.get_mut(&id) {
            list.retain(keep);
        }
    }

    /// Read job `id`'s pipe: log lines go to PID 1's log, progress updates the job and,
    /// at most every [`CONSOLE_INTERVAL`] per item, the console. Returns the items that
    /// moved, for the progress subscribers.
    pub fn on_readable(&mut self, id: JobId, now: Instant) -> Vec<ItemInfo> {
        let Some(running) = self.running.iter_mut().find(|r| r.worker.id() == id) else { return Vec::new() };
        let label = running.worker.label();
        let mut moved: Vec<ItemInfo> = Vec::new();
        for event in running.worker.on_readable() {
            match event {
                WorkerEvent::Progress(progress) => {
                    let index = match running.items.iter().position(|i| i.progress.item == progress.item) {
                        Some(index) => {
                            running.items[index].update(progress, now);
                            index
                        }
                        None => {
                            running.items.push(Item::new(progress, now));
                            running.items.len() - 1
                        }
                    };
                    let item = &mut running.items[index];
                    if item.console_due(now) {
                        item.console_at = Some(now);
                        info!("{}", console_line(&label, &item.info()));
                    }
                    let info = item.info();
                    moved.retain(|m| m.progress.item != info.progress.item);
                    moved.push(info);
                }
                WorkerEvent::Log(message) => info!("{label}: {message}"),
                WorkerEvent::Done(_) | WorkerEvent::Failed(_) => {}
            }
        }
        moved
    }

    /// A reaped child: if it was a worker, its job's end (result, waiters), and the job
    /// moves to the finished list. None for any other pid.
    pub fn on_exit(&mut self, pid: Pid, code: i32, now: Instant) -> Option<JobEnd> {
        let index = self.running.iter().position(|r| r.worker.pid() == pid)?;
        let running = self.running.remove(index);
        Some(self.end(running, code, now))
    }

    fn end(&mut self, running: Running, code: i32, now: Instant) -> JobEnd {
        let mut info = running.info(now);
        let started = running.worker.started();
        let (id, kind, target) = (running.worker.id(), running.worker.kind(), running.worker.target().to_string());
        let result = running.worker.finish(code);
        match &result {
            Ok(_) => {
                info.state = JobState::Done;
                info!("{}: done in {:.1}s", worker::job_label(id, kind, &target), info.run_secs);
            }
            Err(e) => {
                info.state = JobState::Failed;
                info.error = Some(e.to_string());
                warn!("{e}");
            }
        }
        self.finished.push_back(Finished { info, started, ended: now });
        while self.finished.len() > FINISHED_KEPT {
            self.finished.pop_front();
        }
        let waiters = self.waiters.remove(&id).unwrap_or_default();
        JobEnd { id, kind, target, result, waiters }
    }

    /// Enforce deadlines: a worker past its deadline is killed (its job ends as timed
    /// out when it is reaped), a cancelled one past its grace too. Also collects a
    /// worker whose pipe closed but whose exit nobody offered (reaped elsewhere).
    pub fn tick(&mut self, now: Instant) -> Vec<JobEnd> {
        for running in &mut self.running {
            if now >= running.worker.deadline() && !running.worker.stopping() {
                warn!(
                    "{}: past its deadline of {}s; killing the worker",
                    running.worker.label(),
                    running.worker.limits().deadline.as_secs()
                );
                running.worker.time_out();
            }
            if running.cancel_kill_at.is_some_and(|at| now >= at) {
                running.cancel_kill_at = None;
                running.worker.kill();
            }
        }
        let mut ends = Vec::new();
        let mut index = 0;
        while index < self.running.len() {
            let running = &self.running[index];
            let code = if running.worker.fd().is_none() { exit_code_if_gone(running.worker.pid()) } else { None };
            match code {
                Some(code) => {
                    let running = self.running.remove(index);
                    ends.push(self.end(running, code, now));
                }
                None => index += 1,
            }
        }
        ends
    }

    /// The earliest deadline or cancel grace of a running job, for the poll timeout.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.running.iter().flat_map(|r| [Some(r.worker.deadline()), r.cancel_kill_at]).flatten().min()
    }

    /// Cancel one job: SIGTERM now, SIGKILL after a short grace (see [`tick`](Self::tick)).
    pub fn cancel(&mut self, id: JobId, now: Instant) -> bool {
        let Some(running) = self.running.iter_mut().find(|r| r.worker.id() == id) else { return false };
        running.worker.cancel();
        running.cancel_kill_at = Some(now + CANCEL_GRACE);
        true
    }

    /// At shutdown: SIGTERM every worker, SIGKILL (cgroup.kill) those still there after
    /// `grace`, and reap them (at most a second more). Returns their ends (cancelled).
    pub fn cancel_all(&mut self, grace: Duration) -> Vec<JobEnd> {
        if self.running.is_empty() {
            return Vec::new();
        }
        let start = Instant::now();
        for running in &mut self.running {
            info!("{}: cancelled (shutdown)", running.worker.label());
            running.worker.cancel();
        }
        let mut ends = Vec::new();
        let mut killed = false;
        while !self.running.is_empty() {
            let now = Instant::now();
            let mut index = 0;
            while index < self.running.len() {
                match exit_code_if_gone(self.running[index].worker.pid()) {
                    Some(code) => {
                        let running = self.running.remove(index);
                        ends.push(self.end(running, code, now));
                    }
                    None => index += 1,
                }
            }
            if !killed && now.duration_since(start) >= grace {
                killed = true;
                self.running.iter().for_each(|r| r.worker.kill());
            }
            if now.duration_since(start) >= grace + Duration::from_secs(1) {
                for running in &self.running {
                    warn!("{}: worker pid {} did not exit after SIGKILL", running.worker.label(), running.worker.pid());
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        ends
    }

    /// Running jobs, then recently finished ones (newest first), for `keelctl image jobs`.
    pub fn list(&self, now: Instant) -> Vec<JobInfo> {
        let running = self.running.iter().map(|r| r.info(now));
        let finished = self.finished.iter().rev().map(|f| {
            let mut info = f.info.clone();
            info.age_secs = now.duration_since(f.started).as_secs_f64();
            info.run_secs = f.ended.duration_since(f.started).as_secs_f64();
            info
        });
        running.chain(finished).collect()
    }

    /// The items of a running job now (a progress subscriber's first lines).
    pub fn items(&self, id: JobId) -> Vec<ItemInfo> {
        self.running.iter().find(|r| r.worker.id() == id).map(|r| r.items.iter().map(Item::info).collect()).unwrap_or_default()
    }
}

/// The exit code of `pid` if it has ended (reaping it), 255 when it was already reaped elsewhere.
fn exit_code_if_gone(pid: Pid) -> Option<i32> {
    match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::Exited(_, code)) => Some(code),
        Ok(WaitStatus::Signaled(_, signal, _)) => Some(128 + signal as i32),
        Err(nix::Error::ECHILD) => Some(255),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Drive `jobs` like the event loop does until `id` ends (reaping its pid only).
    fn run_until_end(jobs: &mut Jobs, id: JobId, moved: &mut Vec<ItemInfo>) -> JobEnd {
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            assert!(Instant::now() < end, "job {id} did not end");
            moved.extend(jobs.on_readable(id, Instant::now()));
            let pid = jobs.running.iter().find(|r| r.worker.id() == id).map(|r| r.worker.pid());
            if let Some(pid) = pid {
                if let Some(code) = match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::Exited(_, code)) => Some(code),
                    Ok(WaitStatus::Signaled(_, s, _)) => Some(128 + s as i32),
                    _ => None,
                } {
                    return jobs.on_exit(pid, code, Instant::now()).expect("a worker pid");
                }
            }
            if let Some(end) = jobs.tick(Instant::now()).into_iter().find(|e| e.id == id) {
                return end;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn pipe_waiter(request: u64) -> (Waiter, std::fs::File) {
        let (read, write) = nix::unistd::pipe().unwrap();
        (Waiter { request, channel: write, progress: true }, std::fs::File::from(read))
    }

    #[test]
    fn a_job_reports_progress_then_its_result_to_its_waiters() {
        let mut jobs = Jobs::new(None, None);
        let id = jobs
            .start(JobKind::Pull, "registry.test/app:1", |r| {
                r.progress(Progress { item: "aaa".into(), phase: "download".into(), done: 50, total: Some(100) });
                std::thread::sleep(Duration::from_millis(50));
                r.progress(Progress { item: "aaa".into(), phase: "download".into(), done: 100, total: Some(100) });
                Ok(json!("pulled"))
            })
            .unwrap();
        assert_eq!(id, JobId(1));
        assert_eq!(jobs.find_running(JobKind::Pull, "registry.test/app:1"), Some(id));
        let (waiter, _read) = pipe_waiter(7);
        jobs.wait_for(id, waiter).unwrap();
        assert_eq!(jobs.subscribers(id).count(), 1);
        let mut moved = Vec::new();
        let end = run_until_end(&mut jobs, id, &mut moved);
        assert_eq!(end.result.unwrap(), json!("pulled"));
        assert_eq!(end.waiters.len(), 1);
        assert_eq!(end.waiters[0].request, 7);
        assert_eq!(moved.last().unwrap().progress.done, 100);
        let list = jobs.list(Instant::now());
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].state, JobState::Done);
        assert_eq!(list[0].items[0].progress.total, Some(100));
        assert!(!jobs.is_running(id));
    }

    #[test]
    fn a_failed_job_is_listed_with_its_error() {
        let mut jobs = Jobs::new(None, None);
        let id = jobs.start(JobKind::Load, "/tmp/x.tar", |_| Err("no space left on /var".into())).unwrap();
        let end = run_until_end(&mut jobs, id, &mut Vec::new());
        assert_eq!(end.result.unwrap_err().to_string(), "load /tmp/x.tar (job 1): no space left on /var");
        let list = jobs.list(Instant::now());
        assert_eq!(list[0].state, JobState::Failed);
        assert_eq!(list[0].error.as_deref(), Some("load /tmp/x.tar (job 1): no space left on /var"));
    }

    #[test]
    fn a_deadline_kills_the_worker() {
        let mut jobs = Jobs::new(None, None);
        let limits = JobLimits { memory_max: 1 << 30, deadline: Duration::from_millis(100) };
        let id = jobs
            .start_with(JobKind::Inspect, "img", limits, |_| {
                std::thread::sleep(Duration::from_secs(30));
                Ok(json!(null))
            })
            .unwrap();
        assert!(jobs.next_deadline().is_some());
        let end = run_until_end(&mut jobs, id, &mut Vec::new());
        assert!(matches!(end.result, Err(WorkerError::TimedOut { .. })), "{:?}", end.result);
    }

    #[test]
    fn cancel_all_stops_every_worker_within_the_grace() {
        let mut jobs = Jobs::new(None, None);
        for target in ["a", "b"] {
            jobs.start(JobKind::Pull, target, |_| {
                std::thread::sleep(Duration::from_secs(30));
                Ok(json!(null))
            })
            .unwrap();
        }
        let started = Instant::now();
        let ends = jobs.cancel_all(Duration::from_secs(2));
        assert!(started.elapsed() < Duration::from_secs(2), "SIGTERM alone ends them: {:?}", started.elapsed());
        assert_eq!(ends.len(), 2);
        assert!(ends.iter().all(|e| matches!(e.result, Err(WorkerError::Cancelled { .. }))));
        assert!(jobs.fds().is_empty());
    }

    #[test]
    fn a_worker_ignoring_sigterm_is_killed_after_the_grace() {
        let mut jobs = Jobs::new(None, None);
        jobs.start(JobKind::Pull, "stubborn", |_| {
            // SAFETY: test-only; ignoring SIGTERM in this child is the point.
            #[allow(unsafe_code)]
            unsafe {
                libc::signal(libc::SIGTERM, libc::SIG_IGN)
            };
            std::thread::sleep(Duration::from_secs(30));
            Ok(json!(null))
        })
        .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let started = Instant::now();
        let ends = jobs.cancel_all(Duration::from_millis(300));
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(300) && took < Duration::from_secs(2), "{took:?}");
        assert!(matches!(ends[0].result, Err(WorkerError::Cancelled { .. })));
    }

    #[test]
    fn memory_override_replaces_every_kinds_cap() {
        let jobs = Jobs::new(None, Some(16 << 20));
        assert_eq!(jobs.limits(JobKind::Import).memory_max, 16 << 20);
        assert!(Jobs::new(None, None).limits(JobKind::Import).memory_max <= worker::IMAGE_MEMORY_MAX);
    }

    #[test]
    fn a_worker_gets_at_most_a_share_of_the_ram() {
        let default = worker::IMAGE_MEMORY_MAX;
        assert_eq!(worker_memory(default, Some(512 << 20), None), 128 << 20);
        assert_eq!(worker_memory(default, Some(16 << 30), None), default);
        assert_eq!(worker_memory(default, Some(128 << 20), None), MIN_WORKER_MEMORY);
        assert_eq!(worker_memory(default, None, None), default);
        assert_eq!(worker_memory(default, Some(512 << 20), Some(16 << 20)), 16 << 20);
    }

    #[test]
    fn items_rate_and_console_lines() {
        let now = Instant::now();
        let p = |done| Progress { item: "abc".into(), phase: "download".into(), done, total: Some(10 << 20) };
        let mut item = Item::new(p(0), now);
        assert!(item.console_due(now));
        item.console_at = Some(now);
        item.update(p(2 << 20), now + Duration::from_secs(2));
        assert_eq!(item.rate(), (1 << 20) as f64);
        assert_eq!(item.info().eta_secs(), Some(8.0));
        assert!(!item.console_due(now + Duration::from_secs(2)));
        assert!(item.console_due(now + CONSOLE_INTERVAL));
        item.update(p(10 << 20), now + Duration::from_secs(3));
        assert!(item.console_due(now + Duration::from_secs(3)), "the end is always shown");
        let line = console_line("pull r/x:1 (job 3)", &item.info());
        assert_eq!(line, "pull r/x:1 (job 3): abc download 10.0 MiB/10.0 MiB, 3.3 MiB/s");
    }
}
