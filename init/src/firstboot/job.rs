//! First boot as a supervised job: fetching, validating and applying the config can take
//! as long as its sources make it (an https source that never answers is waited for up
//! to `keel.config.timeout`), so it runs in a worker of kind `firstboot` (see
//! `keel_supervisor::worker`) while PID 1's loop keeps answering, reaping and renewing
//! DHCP. The worker does all of [`super::run::run`], the marker included (written by the
//! applier only after everything else was committed), and reports the
//! [`FirstbootStatus`] as its result; PID 1 logs it, writes the report and goes on with
//! the boot. A worker that cannot start, dies, runs out of memory or past its deadline
//! is a failed first boot whose report names the job and the cause.

use super::run::{self, FirstbootStatus};
use crate::cmdline::{BootOptions, Platform, DEFAULT_CONFIG_TIMEOUT_SECS};
use keel_supervisor::worker::{JobLimits, Reporter, WorkerError};
use std::path::Path;
use std::time::Duration;

/// Time a first-boot worker has besides its config source's timeout: for the resources
/// the config names (each fetch bounded by the same timeout or `ignition.timeouts`) and
/// the apply.
pub const WORK_ALLOWANCE: Duration = Duration::from_secs(600);

/// Why the first-boot step failed; its text is the step's boot error.
#[derive(Debug, thiserror::Error)]
pub enum FirstbootFailure {
    /// The config (or a source or resource it names) failed; the report lists why.
    #[error("the config failed with {problems} problem(s); see keelctl firstboot")]
    Config {
        /// How many problems the report lists.
        problems: usize,
    },
    /// Its worker could not be started (fork, pipe or cgroup).
    #[error("cannot start its worker: {0}")]
    Start(#[source] WorkerError),
    /// Its worker ended without a report: died, out of memory, past its deadline, cancelled.
    #[error(transparent)]
    Worker(WorkerError),
    /// Its worker's result is not a first-boot report.
    #[error("its worker's result is not a first-boot report: {0}")]
    Report(#[source] serde_json::Error),
}

/// What the first-boot worker needs from the boot options, owned: the work runs in a
/// forked copy of PID 1 and must not borrow from the boot.
#[derive(Debug, Clone, PartialEq)]
pub struct FirstbootJob {
    /// `keel.config.url=`.
    pub url: Option<String>,
    /// `keel.platform=`.
    pub platform: Option<Platform>,
    /// `keel.metadata.url=`.
    pub metadata_url: Option<String>,
    /// `keel.firstboot`: run although the marker exists.
    pub forced: bool,
    /// Whether the network step ran (else a config that fetches over http(s) is deferred).
    pub network: bool,
    /// `keel.config.timeout`: how long each http(s) source is retried.
    pub timeout: Duration,
}

impl FirstbootJob {
    /// The job the boot options ask for; `network` says whether the uplink is being brought up.
    pub fn new(options: &BootOptions, network: bool) -> Self {
        FirstbootJob {
            url: options.config_url.clone(),
            platform: options.platform,
            metadata_url: options.metadata_url.clone(),
            forced: options.force_firstboot,
            network,
            timeout: Duration::from_secs(options.config_timeout_secs.unwrap_or(DEFAULT_CONFIG_TIMEOUT_SECS)),
        }
    }

    /// The job's target as `keelctl image jobs` and the log name it.
    pub fn target(&self) -> &'static str {
        if self.network {
            "config (network)"
        } else {
            "config (local)"
        }
    }

    /// The worker's limits: `base` (the kind's memory cap) with a deadline of the source's
    /// timeout plus [`WORK_ALLOWANCE`].
    pub fn limits(&self, base: JobLimits) -> JobLimits {
        JobLimits { deadline: self.timeout.saturating_add(WORK_ALLOWANCE), ..base }
    }

    /// The work, in the worker: first boot under "/" with the real marker.
    pub fn work(&self, reporter: &mut Reporter) -> Result<serde_json::Value, String> {
        self.work_at(Path::new("/"), Path::new(run::MARKER), reporter)
    }

    /// The work under `root` with the marker at `marker`: the status as JSON. Waits
    /// between http attempts by sleeping (the worker has no DHCP client to drive: PID 1's
    /// loop drives it meanwhile); milestones go to PID 1's log through `reporter`.
    pub fn work_at(&self, root: &Path, marker: &Path, reporter: &mut Reporter) -> Result<serde_json::Value, String> {
        let sources = run::Sources {
            url: self.url.as_deref(),
            platform: self.platform,
            metadata_url: self.metadata_url.as_deref(),
            config_drive: true,
            network: self.network,
        };
        let mut fetcher = run::Fetcher::new(self.timeout, std::thread::sleep).with_notes(|line| reporter.log(line));
        let status = run::run(root, marker, self.forced, &sources, &mut fetcher);
        drop(fetcher);
        serde_json::to_value(&status).map_err(|e| format!("cannot encode the first-boot report: {e}"))
    }
}

/// The first-boot report from how its job ended: the worker's report, or a failed report
/// naming the job and why it ended without one.
pub fn outcome(result: Result<serde_json::Value, WorkerError>) -> (FirstbootStatus, Option<FirstbootFailure>) {
    let failure = match result.map(serde_json::from_value::<FirstbootStatus>) {
        Ok(Ok(status)) => return (status, None),
        Ok(Err(e)) => FirstbootFailure::Report(e),
        Err(e) => FirstbootFailure::Worker(e),
    };
    (FirstbootStatus::job_failed(failure.to_string()), Some(failure))
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_supervisor::worker::{self, JobId, JobKind, WorkerEvent};

    const CONFIG: &str =
        r#"{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/etc/motd","contents":{"source":"data:,from%20a%20worker"}}]}}"#;

    fn job(url: &str) -> FirstbootJob {
        FirstbootJob {
            url: Some(url.to_string()),
            platform: None,
            metadata_url: None,
            forced: false,
            network: true,
            timeout: Duration::from_secs(5),
        }
    }

    fn data_url(text: &str) -> String {
        let encoded: String =
            text.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect();
        format!("data:,{encoded}")
    }

    fn root(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("keel-fbjob-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("etc")).unwrap();
        std::fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
        std::fs::write(dir.join("etc/group"), "root:x:0:\n").unwrap();
        dir
    }

    /// The whole path PID 1 takes: a forked worker applies the config, reports the
    /// milestone through its pipe, and its result reads back as an applied report.
    #[test]
    fn a_worker_applies_the_config_and_reports_it() {
        let dir = root("worker");
        let marker = dir.join("firstboot.done");
        let job = job(&data_url(CONFIG));
        let limits = job.limits(JobLimits::for_kind(JobKind::Firstboot));
        let (work_dir, work_marker) = (dir.clone(), marker.clone());
        let worker = worker::spawn(JobId(7), JobKind::Firstboot, job.target(), limits, None, move |reporter| {
            job.work_at(&work_dir, &work_marker, reporter)
        })
        .expect("fork the worker");
        let mut logs = Vec::new();
        let result = worker.wait(
            Duration::from_millis(20),
            &mut |event| {
                if let WorkerEvent::Log(line) = event {
                    logs.push(line.clone())
                }
            },
            &mut || {},
        );
        let (status, failure) = outcome(result);
        assert!(failure.is_none(), "{failure:?}");
        assert_eq!(status.state, crate::firstboot::run::FirstbootState::Applied, "{status:?}");
        assert_eq!(std::fs::read_to_string(dir.join("etc/motd")).unwrap(), "from a worker");
        assert!(marker.exists(), "the worker writes the marker after the apply");
        assert!(logs.iter().any(|l| l.starts_with("firstboot: applying 1 file")), "{logs:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A worker that ends without a report is a failed first boot naming the job and cause.
    #[test]
    fn a_worker_that_dies_is_a_failed_first_boot() {
        let died = WorkerError::Died { job: "firstboot config (local) (job 2)".into(), code: 137, oom: true, memory_max: Some(256 << 20) };
        let (status, failure) = outcome(Err(died));
        assert!(status.failed(), "{status:?}");
        assert!(matches!(failure, Some(FirstbootFailure::Worker(WorkerError::Died { oom: true, .. }))), "{failure:?}");
        assert_eq!(status.problems.len(), 1);
        assert_eq!(
            status.problems[0].message,
            "firstboot config (local) (job 2): worker was killed by the OOM killer (memory.max 256 MiB)"
        );
        let (status, failure) = outcome(Ok(serde_json::json!({"unexpected": true})));
        assert!(status.failed() && matches!(failure, Some(FirstbootFailure::Report(_))), "{status:?}");
    }

    #[test]
    fn the_deadline_is_the_source_timeout_plus_the_allowance() {
        let limits = job("data:,").limits(JobLimits { memory_max: 1 << 20, deadline: Duration::from_secs(1) });
        assert_eq!(limits, JobLimits { memory_max: 1 << 20, deadline: Duration::from_secs(605) });
    }
}
