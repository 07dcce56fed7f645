//! The container manager: every declared container, its state, and the rules that move
//! it — start in dependency order, restart with backoff, healthchecks, stop (on request
//! and at shutdown, dependents first), logs.
//!
//! PID 1's event loop owns one [`Manager`] and calls it with what happened (a child was
//! reaped, a log pipe is readable, a request came in, a deadline passed); the manager
//! answers and acts through its [`Launcher`]. Time is passed in, so the lifecycle rules
//! are unit-tested with a fake launcher and a fake clock.

pub mod deps;
pub mod desired;
mod doomed;
mod images;
pub mod info;
pub mod launch_error;
pub mod launcher;
mod load;
mod metrics;
mod output;
pub mod plan;
mod reconcile;

pub use images::{ImageCheck, ImageNeed, StoreCheck};
pub use info::{ContainerDetail, ContainerInfo, ContainerStats};
pub use launch_error::{AttachError, CleanupError, LaunchCause, LaunchError, LaunchStep, ProbeError};
pub use launcher::{LaunchFault, Launched, Launcher, NetworkAttacher, NoNetworks, SystemLauncher};
pub use load::{load_dir, Declaration, CONTAINERS_DIR};
pub use output::{LogSink, OutputPipe};
pub use reconcile::Removed;

use crate::logs::Stream;
use crate::restart::{Decision, RestartState};
use crate::spec::{ContainerName, ContainerSpec, DependencyCondition, RestartMode};
use deps::Node;
use log::{info, warn};
use nix::unistd::Pid;
use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant, SystemTime};

/// Where a container is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Not started yet: its dependencies are not met.
    Waiting,
    /// Its process runs.
    Running,
    /// It ended and will start again at the given time.
    Restarting(Instant),
    /// Its stop signal was sent; SIGKILL follows at the deadline.
    Stopping(Instant),
    /// It ended and its policy does not restart it.
    Exited,
    /// It was stopped on request (or at shutdown).
    Stopped,
    /// It failed `max_retries` times in a row, or cannot be started at all.
    Failed,
    /// Its declaration is wrong.
    Invalid,
}

impl Phase {
    /// The word `keelctl ps` shows.
    pub fn word(self) -> &'static str {
        match self {
            Phase::Waiting => "waiting",
            Phase::Running => "running",
            Phase::Restarting(_) => "restarting",
            Phase::Stopping(_) => "stopping",
            Phase::Exited => "exited",
            Phase::Stopped => "stopped",
            Phase::Failed => "failed",
            Phase::Invalid => "invalid",
        }
    }
}

/// Healthcheck status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// No check has passed yet.
    Starting,
    /// The last check passed.
    Healthy,
    /// `retries` checks in a row failed.
    Unhealthy,
}

/// What to do when a stopping container's process has ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterStop {
    Stay,
    Start,
    /// A reconcile restart: take the next declaration (if any) and wait for the
    /// dependencies again, so dependents start after what they depend on.
    Requeue,
    /// Removed: forget the container (and purge its state when asked).
    Remove {
        purge: bool,
    },
}

/// One declared container.
struct Entry {
    file: String,
    spec: Result<ContainerSpec, String>,
    phase: Phase,
    detail: Option<String>,
    restart: RestartState,
    pid: Option<Pid>,
    started: Option<(Instant, SystemTime)>,
    finished_at: Option<SystemTime>,
    ever_started: bool,
    last_exit: Option<i32>,
    after_stop: AfterStop,
    health: Option<Health>,
    health_failures: u32,
    next_check: Option<Instant>,
    check_pid: Option<Pid>,
    oom_kills: u64,
    pids_limit_hits: u64,
    output: Vec<OutputPipe>,
    /// The image reference it waits for (a pull or import job), if any.
    awaiting_image: Option<String>,
    /// The image manifest digest its last start ran (for a reconcile's "changed").
    image_digest: Option<String>,
    /// A reconcile's new declaration, taken when the running process has stopped.
    next_spec: Option<ContainerSpec>,
    /// A reconcile restart held back until no running container that follows it is
    /// still running (dependents stop first).
    stop_pending: bool,
}

impl Entry {
    fn new(declaration: Declaration) -> Self {
        let phase = if declaration.spec.is_ok() { Phase::Waiting } else { Phase::Invalid };
        let detail = declaration.spec.as_ref().err().cloned();
        Entry {
            file: declaration.file,
            spec: declaration.spec,
            phase,
            detail,
            restart: RestartState::default(),
            pid: None,
            started: None,
            finished_at: None,
            ever_started: false,
            last_exit: None,
            after_stop: AfterStop::Stay,
            health: None,
            health_failures: 0,
            next_check: None,
            check_pid: None,
            oom_kills: 0,
            pids_limit_hits: 0,
            output: Vec::new(),
            awaiting_image: None,
            image_digest: None,
            next_spec: None,
            stop_pending: false,
        }
    }
}

/// Every container of the host.
pub struct Manager {
    entries: BTreeMap<ContainerName, Entry>,
    launcher: Box<dyn Launcher>,
    logs: Box<dyn LogSink>,
    log_dir: String,
    images: Option<Box<dyn ImageCheck>>,
    image_needs: Vec<ImageNeed>,
    /// Containers removed by a reconcile, for PID 1 (purge jobs).
    removed: Vec<reconcile::Removed>,
}

impl Manager {
    /// A manager acting through `launcher`, writing container output to `logs`
    /// (whose files live in `log_dir`, shown by `inspect`).
    pub fn new(launcher: Box<dyn Launcher>, logs: Box<dyn LogSink>, log_dir: &str) -> Self {
        Manager {
            entries: BTreeMap::new(),
            launcher,
            logs,
            log_dir: log_dir.to_string(),
            images: None,
            image_needs: Vec::new(),
            removed: Vec::new(),
        }
    }

    /// Take in the declarations (valid or not); each bad one is logged with its errors,
    /// and dependency problems (unknown names, cycles) mark the containers concerned.
    pub fn load(&mut self, declarations: Vec<Declaration>) {
        for declaration in declarations {
            if let Err(problem) = &declaration.spec {
                warn!("container {}: invalid declaration: {problem}", declaration.name);
            }
            self.entries.insert(declaration.name.clone(), Entry::new(declaration));
        }
        let invalid: BTreeSet<ContainerName> = self.entries.iter().filter(|(_, e)| e.spec.is_err()).map(|(n, _)| n.clone()).collect();
        for (name, problem) in deps::problems(&self.nodes(), &invalid) {
            warn!("container {name}: {problem}");
            if let Some(entry) = self.entries.get_mut(&name) {
                entry.phase = Phase::Invalid;
                entry.detail = Some(format!("{}: {problem}", entry.file));
            }
        }
    }

    fn nodes(&self) -> BTreeMap<ContainerName, Node> {
        self.entries
            .iter()
            .filter_map(|(name, entry)| {
                let spec = entry.spec.as_ref().ok()?;
                Some((name.clone(), Node { depends_on: spec.depends_on.clone(), has_healthcheck: spec.healthcheck.is_some() }))
            })
            .collect()
    }

    /// Do what is due at `now`: start containers whose dependencies are met or whose
    /// backoff ended, SIGKILL those past their stop timeout, run due healthchecks.
    pub fn tick(&mut self, now: Instant) {
        self.begin_pending_stops(now);
        self.launcher.tidy(now);
        let names: Vec<ContainerName> = deps::start_order(&self.nodes());
        for name in names {
            let Some(entry) = self.entries.get(&name) else { continue };
            match entry.phase {
                Phase::Waiting if entry.awaiting_image.is_some() => {}
                Phase::Waiting => match self.unmet_dependency(&name) {
                    None => self.launch(&name, now),
                    Some(reason) => self.set_detail(&name, Some(reason)),
                },
                Phase::Restarting(at) if at <= now => self.launch(&name, now),
                Phase::Stopping(deadline) if deadline <= now => self.kill_all(&name),
                Phase::Running => self.maybe_check_health(&name, now),
                _ => {}
            }
        }
    }

    /// The earliest time [`tick`](Self::tick) has something to do, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.entries
            .values()
            .filter_map(|e| match e.phase {
                Phase::Restarting(at) | Phase::Stopping(at) => Some(at),
                Phase::Running if e.check_pid.is_none() => e.next_check,
                _ => None,
            })
            .chain(self.launcher.tidy_deadline())
            .min()
    }

    /// Whether some container waits for a dependency (which may be met by the next event).
    pub fn has_waiting(&self) -> bool {
        self.entries.values().any(|e| e.phase == Phase::Waiting)
    }

    fn set_detail(&mut self, name: &ContainerName, detail: Option<String>) {
        if let Some(entry) = self.entries.get_mut(name) {
            entry.detail = detail;
        }
    }

    /// The first dependency of `name` not yet in its required condition, as text.
    fn unmet_dependency(&self, name: &ContainerName) -> Option<String> {
        let spec = self.entries.get(name)?.spec.as_ref().ok()?;
        for dep in &spec.depends_on {
            let met = self.entries.get(&dep.name).is_some_and(|d| match dep.condition {
                DependencyCondition::Started => d.ever_started,
                DependencyCondition::Healthy => d.health == Some(Health::Healthy) && d.phase == Phase::Running,
                DependencyCondition::Completed => d.last_exit == Some(0) && d.pid.is_none(),
            });
            if !met {
                let condition = match dep.condition {
                    DependencyCondition::Started => "started",
                    DependencyCondition::Healthy => "healthy",
                    DependencyCondition::Completed => "completed",
                };
                return Some(format!("waiting for {} to be {condition}", dep.name));
            }
        }
        None
    }

    fn launch(&mut self, name: &ContainerName, now: Instant) {
        let Some(spec) = self.entries.get(name).and_then(|e| e.spec.as_ref().ok()).cloned() else { return };
        if self.image_pending(name, &spec) {
            return;
        }
        let result = self.launcher.launch(&spec);
        if result.is_ok() {
            self.logs.limits(name, spec.logs);
        }
        let Some(entry) = self.entries.get_mut(name) else { return };
        entry.started = Some((now, SystemTime::now()));
        match result {
            Ok(launched) => {
                info!("container {name}: started, pid {}", launched.pid);
                entry.phase = Phase::Running;
                entry.detail = None;
                entry.pid = Some(launched.pid);
                entry.ever_started = true;
                entry.after_stop = AfterStop::Stay;
                entry.image_digest = self.images.as_ref().and_then(|c| c.digest(&spec));
                entry.health = spec.healthcheck.as_ref().map(|_| Health::Starting);
                entry.health_failures = 0;
                entry.next_check = spec.healthcheck.as_ref().map(|h| now + h.interval);
                entry.output = [(Stream::Stdout, launched.stdout), (Stream::Stderr, launched.stderr)]
                    .into_iter()
                    .filter_map(|(stream, fd)| fd.map(|fd| OutputPipe::new(stream, fd)))
                    .collect();
            }
            Err(problem) => {
                warn!("container {name}: cannot start: {problem}");
                entry.detail = Some(problem.to_string());
                // A start that fails counts as a failed run for the restart policy.
                self.after_exit(name, 127, now);
            }
        }
    }

    /// A child of PID 1 was reaped. Returns true when it was a container or one of its
    /// healthchecks (the caller logs the others).
    pub fn on_exit(&mut self, pid: Pid, code: i32, now: Instant) -> bool {
        let found = self.entries.iter().find_map(|(name, e)| {
            if e.pid == Some(pid) {
                Some((name.clone(), false))
            } else if e.check_pid == Some(pid) {
                Some((name.clone(), true))
            } else {
                None
            }
        });
        match found {
            Some((name, true)) => {
                self.on_check_done(&name, code, now);
                true
            }
            Some((name, false)) => {
                self.on_container_exit(&name, code, now);
                true
            }
            None => false,
        }
    }

    fn on_container_exit(&mut self, name: &ContainerName, code: i32, now: Instant) {
        self.drain_output(name);
        let stats = self.launcher.release(name);
        let Some(entry) = self.entries.get_mut(name) else { return };
        info!("container {name}: exited with {code}");
        entry.pid = None;
        entry.last_exit = Some(code);
        entry.finished_at = Some(SystemTime::now());
        entry.check_pid = None;
        entry.next_check = None;
        if let Some(stats) = stats {
            if stats.oom_kill > 0 {
                warn!(
                    "container {name}: {} process(es) killed by the OOM killer (its memory_max or the containers' share of the host)",
                    stats.oom_kill
                );
            }
            if stats.pids_limit_hits > 0 {
                warn!("container {name}: {} fork(s) refused at its pids limit", stats.pids_limit_hits);
            }
            entry.oom_kills += stats.oom_kill;
            entry.pids_limit_hits += stats.pids_limit_hits;
        }
        if let Phase::Stopping(_) = entry.phase {
            entry.phase = Phase::Stopped;
            match entry.after_stop {
                AfterStop::Start => {
                    entry.restart = RestartState::default();
                    self.launch(name, now);
                }
                AfterStop::Requeue => self.requeue(name),
                AfterStop::Remove { purge } => self.forget(name, purge),
                AfterStop::Stay => {}
            }
            return;
        }
        if entry.stop_pending {
            // A reconcile restart was waiting for its dependents to stop: it ended first.
            entry.stop_pending = false;
            self.requeue(name);
            return;
        }
        self.after_exit(name, code, now);
    }

    /// Apply the restart policy after a run (or a failed start) that ended with `code`.
    fn after_exit(&mut self, name: &ContainerName, code: i32, now: Instant) {
        let Some(entry) = self.entries.get_mut(name) else { return };
        let Ok(spec) = &entry.spec else { return };
        let started = entry.started.map_or(now, |(at, _)| at);
        match entry.restart.on_exit(&spec.restart, code, started, now) {
            Decision::RestartAt(at) => {
                info!("container {name}: restarting in {} ms", at.saturating_duration_since(now).as_millis());
                entry.phase = Phase::Restarting(at);
            }
            Decision::Stay => {
                entry.phase = if spec.restart.mode == RestartMode::No || code == 0 { Phase::Exited } else { Phase::Failed };
            }
            Decision::GiveUp => {
                warn!("container {name}: failed {} times in a row; not restarting", entry.restart.consecutive + 1);
                entry.phase = Phase::Failed;
                entry.detail = Some(format!("gave up after {} restarts (max_retries)", entry.restart.consecutive));
            }
        }
    }

    fn maybe_check_health(&mut self, name: &ContainerName, now: Instant) {
        let Some(entry) = self.entries.get(name) else { return };
        let (Some(pid), Some(due), None) = (entry.pid, entry.next_check, entry.check_pid) else { return };
        let Some(check) = entry.spec.as_ref().ok().and_then(|s| s.healthcheck.clone()) else { return };
        if due > now {
            return;
        }
        let started = self.launcher.healthcheck(name, pid, &check.argv, check.timeout);
        let Some(entry) = self.entries.get_mut(name) else { return };
        match started {
            Ok(check_pid) => entry.check_pid = Some(check_pid),
            Err(problem) => {
                warn!("container {name}: healthcheck: {problem}");
                entry.next_check = Some(now + check.interval);
            }
        }
    }

    fn on_check_done(&mut self, name: &ContainerName, code: i32, now: Instant) {
        let Some(entry) = self.entries.get_mut(name) else { return };
        entry.check_pid = None;
        let Some(check) = entry.spec.as_ref().ok().and_then(|s| s.healthcheck.clone()) else { return };
        entry.next_check = Some(now + check.interval);
        let in_start_period = entry.started.is_some_and(|(at, _)| now.saturating_duration_since(at) < check.start_period);
        if code == 0 {
            if entry.health != Some(Health::Healthy) {
                info!("container {name}: healthy");
            }
            entry.health = Some(Health::Healthy);
            entry.health_failures = 0;
        } else if !in_start_period {
            entry.health_failures += 1;
            if entry.health_failures >= check.retries && entry.health != Some(Health::Unhealthy) {
                warn!("container {name}: unhealthy ({} failed checks, last exit {code})", entry.health_failures);
                entry.health = Some(Health::Unhealthy);
            }
        }
    }

    fn kill_all(&mut self, name: &ContainerName) {
        let Some(pid) = self.entries.get(name).and_then(|e| e.pid) else { return };
        warn!("container {name}: stop timeout passed; killing it");
        self.launcher.kill_all(name, pid);
        if let Some(entry) = self.entries.get_mut(name) {
            // Nothing more to escalate to: wait for the reaper without a deadline.
            entry.phase = Phase::Stopping(Instant::now() + Duration::from_secs(3600));
        }
    }

    /// `keelctl start NAME`: start a container that is not running.
    pub fn start(&mut self, name: &str, now: Instant) -> Result<String, String> {
        let name = self.known(name)?;
        let entry = &self.entries[&name];
        match entry.phase {
            Phase::Invalid => return Err(format!("{name}: {}", entry.detail.clone().unwrap_or_default())),
            Phase::Running | Phase::Stopping(_) => return Err(format!("{name} is already {}", entry.phase.word())),
            _ => {}
        }
        if let Some(reason) = self.unmet_dependency(&name) {
            return Err(format!("{name}: {reason}"));
        }
        if let Some(entry) = self.entries.get_mut(&name) {
            entry.restart = RestartState::default();
        }
        self.launch(&name, now);
        match &self.entries[&name].phase {
            Phase::Running => Ok(format!("{name} started")),
            _ => Err(format!("{name}: {}", self.entries[&name].detail.clone().unwrap_or_default())),
        }
    }

    /// `keelctl stop NAME`: send its stop signal; SIGKILL after its stop_timeout.
    pub fn stop(&mut self, name: &str, now: Instant) -> Result<String, String> {
        let name = self.known(name)?;
        self.begin_stop(&name, now, AfterStop::Stay);
        Ok(format!("{name} stopping"))
    }

    /// `keelctl restart NAME`: stop it (if running), then start it again.
    pub fn restart(&mut self, name: &str, now: Instant) -> Result<String, String> {
        let name = self.known(name)?;
        if self.entries[&name].pid.is_some() {
            self.begin_stop(&name, now, AfterStop::Start);
            Ok(format!("{name} restarting"))
        } else {
            self.start(name.as_str(), now)
        }
    }

    fn begin_stop(&mut self, name: &ContainerName, now: Instant, after: AfterStop) {
        let Some(entry) = self.entries.get_mut(name) else { return };
        let Ok(spec) = &entry.spec else { return };
        match entry.pid {
            Some(pid) => {
                if !matches!(entry.phase, Phase::Stopping(_)) {
                    entry.phase = Phase::Stopping(now + spec.stop_timeout);
                    let signal = spec.stop_signal;
                    info!("container {name}: stopping (signal {signal}, timeout {} s)", spec.stop_timeout.as_secs_f64());
                    self.launcher.signal(pid, signal);
                }
                if let Some(entry) = self.entries.get_mut(name) {
                    entry.after_stop = after;
                }
            }
            None if entry.phase != Phase::Invalid => entry.phase = Phase::Stopped,
            None => {}
        }
    }

    fn known(&self, name: &str) -> Result<ContainerName, String> {
        ContainerName::new(name)
            .ok()
            .filter(|n| self.entries.contains_key(n))
            .ok_or_else(|| format!("no container {name:?} (see keelctl ps)"))
    }

    /// The order to stop containers in at shutdown: dependents first.
    pub fn stop_order(&self) -> Vec<ContainerName> {
        deps::stop_order(&self.nodes())
    }

    /// Shutdown: stop every container, each within its stop_timeout (then its cgroup
    /// is killed). Containers are stopped in waves: a container gets its stop signal
    /// once no running container depends on it, so dependents stop first and
    /// independent containers stop together. Blocks; `reap` collects exited children
    /// (pid, code) meanwhile.
    pub fn stop_all(&mut self, reap: &mut dyn FnMut() -> Vec<(Pid, i32)>) {
        let mut signalled: BTreeMap<ContainerName, Instant> = BTreeMap::new();
        let mut killed: BTreeSet<ContainerName> = BTreeSet::new();
        let mut abandoned: BTreeSet<ContainerName> = BTreeSet::new();
        loop {
            let running: Vec<ContainerName> = self
                .entries
                .iter()
                .filter(|(name, e)| e.pid.is_some() && !abandoned.contains(*name))
                .map(|(name, _)| name.clone())
                .collect();
            if running.is_empty() {
                return;
            }
            let now = Instant::now();
            for name in &running {
                if !signalled.contains_key(name) && !running.iter().any(|other| self.depends_on(other, name)) {
                    self.begin_stop(name, now, AfterStop::Stay);
                    signalled.insert(name.clone(), now);
                }
            }
            for (pid, code) in reap() {
                let name = self.entries.iter().find(|(_, e)| e.pid == Some(pid)).map(|(n, _)| n.clone());
                self.on_exit(pid, code, Instant::now());
                if let Some(since) = name.and_then(|n| signalled.get(&n).map(|at| (n, *at))) {
                    info!("container {}: stopped in {} ms", since.0, since.1.elapsed().as_millis());
                }
            }
            for name in &running {
                self.pump_output(name);
                let Some(since) = signalled.get(name) else { continue };
                let Some(entry) = self.entries.get(name) else { continue };
                let Phase::Stopping(deadline) = entry.phase else { continue };
                if !killed.contains(name) && Instant::now() >= deadline {
                    self.kill_all(name);
                    killed.insert(name.clone());
                } else if killed.contains(name) && since.elapsed() > self.stop_timeout(name) + Duration::from_secs(5) {
                    warn!("container {name}: still not gone 5 s after SIGKILL; going on");
                    abandoned.insert(name.clone());
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Whether `dependent` declares a dependency on `dependency`.
    fn depends_on(&self, dependent: &ContainerName, dependency: &ContainerName) -> bool {
        self.entries.get(dependent).and_then(|e| e.spec.as_ref().ok()).is_some_and(|s| s.depends_on.iter().any(|d| d.name == *dependency))
    }

    fn stop_timeout(&self, name: &ContainerName) -> Duration {
        self.entries.get(name).and_then(|e| e.spec.as_ref().ok()).map_or(Duration::ZERO, |s| s.stop_timeout)
    }

    /// The image references the declared containers use (kept by `keelctl image prune`,
    /// refused by `keelctl image rm`).
    pub fn image_references(&self) -> Vec<String> {
        let specs = self.entries.values().filter_map(|e| e.spec.as_ref().ok());
        specs.filter(|s| matches!(s.image, crate::spec::ImageRef::Image(_))).map(|s| s.image.to_string()).collect()
    }

    /// `keelctl ps`.
    pub fn ps(&self, now: Instant) -> Vec<ContainerInfo> {
        self.entries.iter().map(|(name, entry)| self.info(name, entry, now)).collect()
    }

    fn info(&self, name: &ContainerName, entry: &Entry, now: Instant) -> ContainerInfo {
        // The current run's figures, read from its cgroup while it runs.
        let current = entry.pid.and_then(|_| self.launcher.stats(name).ok()).unwrap_or_default();
        ContainerInfo {
            name: name.to_string(),
            state: entry.phase.word().to_string(),
            pid: entry.pid.map(Pid::as_raw),
            restarts: entry.restart.total,
            uptime_secs: entry.pid.and(entry.started).map(|(at, _)| now.saturating_duration_since(at).as_secs_f64()),
            last_exit: entry.last_exit,
            health: entry.health.map(|h| metrics::health_word(h).to_string()),
            detail: entry.detail.clone(),
            pids_limit_hits: entry.pids_limit_hits + current.pids_limit_hits,
            oom_killed: entry.oom_kills + current.oom_kill,
            privileged: entry.spec.as_ref().ok().and_then(info::privilege_words),
        }
    }

    /// `keelctl inspect NAME`.
    pub fn inspect(&self, name: &str, now: Instant) -> Result<ContainerDetail, String> {
        let name = self.known(name)?;
        let entry = &self.entries[&name];
        let spec = entry.spec.as_ref().ok();
        let unix = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs_f64()).ok();
        Ok(ContainerDetail {
            info: self.info(&name, entry, now),
            file: entry.file.clone(),
            image: spec.map(|s| s.image.to_string()),
            command: spec.map(|s| s.argv.clone()).unwrap_or_default(),
            restart: spec.map(|s| {
                let mode = match s.restart.mode {
                    RestartMode::No => "no",
                    RestartMode::OnFailure => "on-failure",
                    RestartMode::Always => "always",
                };
                match s.restart.max_retries {
                    Some(max) => format!("{mode} (max_retries {max})"),
                    None => mode.to_string(),
                }
            }),
            depends_on: spec
                .map(|s| s.depends_on.iter().map(|d| format!("{} ({:?})", d.name, d.condition).to_lowercase()).collect())
                .unwrap_or_default(),
            network: spec.map(|s| format!("{:?}", s.network).to_lowercase()),
            cgroup: self.launcher.cgroup_dir(&name).map(|p| p.display().to_string()),
            started_at: entry.started.and_then(|(_, wall)| unix(wall)),
            finished_at: entry.finished_at.and_then(unix),
            oom_kills: entry.oom_kills,
            health_failures: entry.health_failures,
            log_file: format!("{}/{name}.log", self.log_dir),
        })
    }

    /// `keelctl stats NAME`.
    pub fn stats(&self, name: &str) -> Result<ContainerStats, String> {
        let name = self.known(name)?;
        let entry = &self.entries[&name];
        let cgroup = self.launcher.stats(&name).map_err(|e| e.to_string())?;
        Ok(ContainerStats { name: name.to_string(), oom_kills: entry.oom_kills + cgroup.oom_kill, cgroup })
    }

    /// What `keelctl exec NAME` needs: the running container's pid, plan and cgroup.
    pub fn exec_target(&self, name: &str) -> Result<(Pid, crate::runtime::LaunchPlan, Option<std::path::PathBuf>), String> {
        let name = self.known(name)?;
        let pid = self.entries[&name].pid.ok_or_else(|| format!("{name} is not running"))?;
        let plan = self.launcher.plan(&name).ok_or_else(|| format!("{name} is not running"))?.clone();
        Ok((pid, plan, self.launcher.cgroup_dir(&name)))
    }

    /// Output pipes to watch: (container, stream index, fd).
    pub fn output_fds(&self) -> Vec<(ContainerName, usize, BorrowedFd<'_>)> {
        self.entries.iter().flat_map(|(name, e)| e.output.iter().enumerate().map(move |(i, pipe)| (name.clone(), i, pipe.fd()))).collect()
    }

    /// An output pipe is readable (or closed): copy what it holds to the log.
    pub fn on_output(&mut self, name: &ContainerName, index: usize) {
        let Some(entry) = self.entries.get_mut(name) else { return };
        let Some(pipe) = entry.output.get_mut(index) else { return };
        let closed = pipe.pump(name, self.logs.as_mut());
        if closed {
            entry.output.remove(index);
        }
    }

    /// Copy what `name`'s pipes hold now to its log, keeping them open.
    fn pump_output(&mut self, name: &ContainerName) {
        let Some(entry) = self.entries.get_mut(name) else { return };
        let logs = self.logs.as_mut();
        entry.output.retain_mut(|pipe| !pipe.pump(name, logs));
    }

    /// Read everything left in `name`'s pipes (its process ended), then finish its log.
    fn drain_output(&mut self, name: &ContainerName) {
        let Some(entry) = self.entries.get_mut(name) else { return };
        for mut pipe in std::mem::take(&mut entry.output) {
            pipe.drain(name, self.logs.as_mut());
        }
        self.logs.finish(name);
    }
}

#[cfg(test)]
mod tests;
