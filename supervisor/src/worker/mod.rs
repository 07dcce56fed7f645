//! Worker processes: long or risky jobs (registry pulls, archive loads, imports,
//! `image inspect`, first-boot fetches) run in a forked copy of PID 1 that PID 1
//! supervises like a container: its own cgroup with a memory limit, a deadline,
//! cancellation, and progress reported as JSON lines over a pipe. PID 1's loop only
//! reads those lines; a worker that dies or is OOM-killed is an error naming its job.
//!
//! The child side is [`Reporter`] (what `work` reports through) and [`spawn`]; the
//! parent side is [`Worker`]. PID 1's registry of running jobs lives in init
//! (`init/src/jobs.rs`).

mod cgroup;
mod child;
mod lines;
mod parent;
#[cfg(test)]
mod tests;

pub use cgroup::{WorkerCgroup, WORKERS_GROUP};
pub use child::Reporter;
pub use lines::{LineBuffer, LineError, MAX_EVENT_LINE, MAX_INSPECT_LINE};
pub use parent::{spawn, Outcome, Worker};

use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// A job's number, unique for the life of PID 1, so users and logs can name one job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub u64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0.to_string())
    }
}

/// What a job does; it picks the job's default limits and names its cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    /// `keelctl image pull` or a boot pull: a registry image into the store.
    Pull,
    /// `keelctl image load`: an archive or layout on the host into the store.
    Load,
    /// A container's first start that needs its image imported.
    Import,
    /// `keelctl image inspect`, which decompresses every layer.
    Inspect,
    /// The first-boot config: fetch and apply.
    Firstboot,
    /// `keelctl rm --purge`: delete a removed container's state directory and logs
    /// (a large writable layer can take long to delete).
    Purge,
}

impl JobKind {
    /// The lower-case word used in messages, cgroup names and JSON.
    pub fn word(self) -> &'static str {
        match self {
            JobKind::Pull => "pull",
            JobKind::Load => "load",
            JobKind::Import => "import",
            JobKind::Inspect => "inspect",
            JobKind::Firstboot => "firstboot",
            JobKind::Purge => "purge",
        }
    }
}

impl fmt::Display for JobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.word())
    }
}

/// Default memory cap of image workers: enough to stream and hash, far from the host's RAM.
pub const IMAGE_MEMORY_MAX: u64 = 512 << 20;
/// Default memory cap of `inspect` and first-boot workers.
pub const SMALL_MEMORY_MAX: u64 = 256 << 20;
/// Most processes a worker may hold (it forks nothing today; this bounds a bug).
pub const WORKER_PIDS_MAX: u64 = 64;

/// What a worker may use: memory (its cgroup's memory.max) and time (it is killed past
/// the deadline), so a hostile or huge job cannot hurt PID 1 or hang forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobLimits {
    /// memory.max of the worker's cgroup, in bytes.
    pub memory_max: u64,
    /// How long the job may run before it is killed.
    pub deadline: Duration,
}

impl JobLimits {
    /// The defaults of a job kind: pulls, loads and imports 512 MiB and one hour;
    /// inspect 256 MiB and ten minutes; first boot 256 MiB and ten minutes (its caller
    /// sets the deadline from the config timeout).
    pub fn for_kind(kind: JobKind) -> Self {
        match kind {
            JobKind::Pull | JobKind::Load | JobKind::Import => {
                JobLimits { memory_max: IMAGE_MEMORY_MAX, deadline: Duration::from_secs(3600) }
            }
            JobKind::Inspect => JobLimits { memory_max: SMALL_MEMORY_MAX, deadline: Duration::from_secs(600) },
            JobKind::Firstboot | JobKind::Purge => JobLimits { memory_max: SMALL_MEMORY_MAX, deadline: Duration::from_secs(600) },
        }
    }
}

/// How far one item of a job is (a layer being downloaded or unpacked, a file fetched).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// The item: a short layer digest, a file name.
    pub item: String,
    /// What is being done to it: "download", "unpack", "fetch", "apply", …
    pub phase: String,
    /// Bytes (or units) done.
    pub done: u64,
    /// Bytes (or units) in all, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
}

/// One line a worker writes on its pipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerEvent {
    /// An item advanced.
    Progress(Progress),
    /// A message for PID 1's log.
    Log(String),
    /// The job succeeded with this result (the last line).
    Done(serde_json::Value),
    /// The job failed with this message (the last line).
    Failed(String),
}

/// A job as messages name it: "pull docker.io/library/busybox:1.36 (job 3)".
pub fn job_label(id: JobId, kind: JobKind, target: &str) -> String {
    format!("{kind} {target} (job {id})")
}

fn mib(bytes: &u64) -> String {
    format!("{} MiB", bytes >> 20)
}

fn died_text(code: &i32, oom: &bool, memory_max: &Option<u64>) -> String {
    match (*oom, memory_max) {
        (true, Some(max)) => format!("worker was killed by the OOM killer (memory.max {})", mib(max)),
        (true, None) => "worker was killed by the OOM killer".to_string(),
        (false, _) if *code > 128 => format!("worker was killed by signal {}", code - 128),
        (false, _) => format!("worker exited with code {code} without a result"),
    }
}

/// Why a job did not produce its result; every message names the job.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The worker process could not be forked.
    #[error("{job}: cannot fork a worker: {source}")]
    Fork {
        /// The job.
        job: String,
        /// The OS error.
        source: nix::Error,
    },
    /// The worker's cgroup could not be set up.
    #[error("{job}: worker cgroup {}: {source}", path.display())]
    Cgroup {
        /// The job.
        job: String,
        /// The cgroup file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The event pipe could not be created or read.
    #[error("{job}: worker pipe: {source}")]
    Pipe {
        /// The job.
        job: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The work itself failed and said why.
    #[error("{job}: {message}")]
    Failed {
        /// The job.
        job: String,
        /// The work's message.
        message: String,
    },
    /// The worker ended without a result: killed (by the OOM killer or a signal) or exited.
    #[error("{job}: {}", died_text(code, oom, memory_max))]
    Died {
        /// The job.
        job: String,
        /// Exit code, or 128+signal.
        code: i32,
        /// Whether its cgroup counted an OOM kill.
        oom: bool,
        /// Its memory.max, when it had a cgroup.
        memory_max: Option<u64>,
    },
    /// The worker ran past its deadline and was killed.
    #[error("{job}: did not finish within {}s; the worker was killed", after.as_secs())]
    TimedOut {
        /// The job.
        job: String,
        /// The deadline it had.
        after: Duration,
    },
    /// The job was cancelled (shutdown) and its worker stopped.
    #[error("{job}: cancelled")]
    Cancelled {
        /// The job.
        job: String,
    },
    /// The worker wrote something that is not an event line; it was killed.
    #[error("{job}: worker protocol error: {detail}; the worker was killed")]
    Protocol {
        /// The job.
        job: String,
        /// What was wrong.
        detail: String,
    },
}

/// `root` when it is a cgroup2 hierarchy (it has `cgroup.controllers`), else None:
/// workers then run without a cgroup (a host or test without cgroup2).
pub fn cgroup2_root(root: &std::path::Path) -> Option<PathBuf> {
    root.join("cgroup.controllers").is_file().then(|| root.to_path_buf())
}

/// Where a job is, as `keelctl image jobs` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Its worker runs.
    Running,
    /// It ended with a result.
    Done,
    /// It ended with an error.
    Failed,
}

/// One item of a job with its rate, as `keelctl image jobs` and progress streams show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemInfo {
    /// The item, its phase and how far it is.
    #[serde(flatten)]
    pub progress: Progress,
    /// Bytes a second since the item's phase began (0 when unknown).
    pub rate: f64,
}

impl ItemInfo {
    /// Seconds left at the current rate, when the total is known and it moves.
    pub fn eta_secs(&self) -> Option<f64> {
        let total = self.progress.total?;
        (self.rate > 0.0).then(|| total.saturating_sub(self.progress.done) as f64 / self.rate)
    }
}

/// A running or recently finished job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobInfo {
    /// Its number.
    pub id: JobId,
    /// What it does.
    pub kind: JobKind,
    /// What it works on.
    pub target: String,
    /// Running, done or failed.
    pub state: JobState,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Its items, in the order they first reported.
    pub items: Vec<ItemInfo>,
    /// Seconds since it started.
    pub age_secs: f64,
    /// Seconds it ran (so far, when running).
    pub run_secs: f64,
}
