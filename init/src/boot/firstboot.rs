//! The first-boot step: in a worker (see [`crate::firstboot::job`]) while the event loop
//! runs, then the rest of the boot from the loop when the job ends. A boot that is not a
//! first boot (the marker exists) needs no worker: it goes on at once.
//!
//! The sequence, as a small state machine over the job's end:
//! local sources → (job) → `deferred`? network, network sources → (job) → rest;
//! otherwise → rest (network included); network sources → (job) → rest.

use super::{after_firstboot, network_steps, Boot};
use crate::boot_error::BootError;
use crate::firstboot::job::{self, FirstbootFailure, FirstbootJob};
use crate::firstboot::run::{self, FirstbootState, FirstbootStatus};
use crate::logger;
use keel_supervisor::worker::{JobKind, WorkerError};
use log::info;
use std::path::Path;

/// Start first boot (`network`: whether the network step ran). Not a first boot: done at
/// once. Else its worker starts and the boot goes on from the loop when it ends; a
/// worker that cannot start is a failed first boot and the boot goes on now.
pub(super) fn start(boot: &mut Boot, network: bool) {
    if !crate::storage::var_is_persistent() {
        info!("/var is not persistent: every boot is a first boot");
    }
    let marker = Path::new(run::MARKER);
    if !run::is_first_boot(marker, boot.options.force_firstboot) {
        // Only a stat and the removal of a stale journal: no worker needed.
        let status = run::run(Path::new("/"), marker, false, &run::Sources::default(), &mut run::Fetcher::default());
        return ended(boot, network, status, None);
    }
    let job = FirstbootJob::new(&boot.options, network);
    let limits = job.limits(boot.event_loop.jobs_mut().limits(JobKind::Firstboot));
    let target = job.target();
    match boot.event_loop.jobs_mut().start_with(JobKind::Firstboot, target, limits, move |reporter| job.work(reporter)) {
        Ok(id) => {
            boot.state().firstboot_job = Some(id);
            let suspended = boot.suspend();
            boot.event_loop.after_job(
                id,
                Box::new(move |event_loop, result| {
                    let mut boot = suspended.resume(event_loop);
                    boot.state().firstboot_job = None;
                    // Cancelled: the host is shutting down; record why, start nothing more.
                    let cancelled = matches!(result, Err(WorkerError::Cancelled { .. }));
                    let (status, failure) = job::outcome(result);
                    if cancelled {
                        boot.step("firstboot", false, |b| record(b, status, failure));
                    } else {
                        ended(&mut boot, network, status, failure);
                    }
                }),
            );
        }
        Err(e) => {
            let failure = FirstbootFailure::Start(e);
            ended(boot, network, FirstbootStatus::job_failed(failure.to_string()), Some(failure));
        }
    }
}

/// What the boot does once a first-boot run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// The config fetches over http(s) and the network is not up: bring it up, run again.
    NetworkThenAgain,
    /// Go on with the rest of the boot (`network_done`: the network step already ran).
    Rest {
        /// Whether the network step ran before first boot.
        network_done: bool,
    },
}

/// The next stage after a run with `network` (whether the network step ran) ended in `status`. Pure.
fn next(network: bool, status: Option<&FirstbootStatus>) -> Next {
    match status {
        Some(s) if s.state == FirstbootState::Deferred && !network => Next::NetworkThenAgain,
        _ => Next::Rest { network_done: network },
    }
}

/// First boot ended with `status` (and `failure` when its job did not report): record
/// it, then run first boot again over the network when it was deferred, else the rest.
fn ended(boot: &mut Boot, network: bool, status: FirstbootStatus, failure: Option<FirstbootFailure>) {
    boot.step("firstboot", false, |b| record(b, status, failure));
    match next(network, boot.state().firstboot.as_ref()) {
        Next::NetworkThenAgain => {
            network_steps(boot);
            start(boot, true);
        }
        Next::Rest { network_done } => after_firstboot(boot, network_done),
    }
}

/// Log the outcome, write the report, keep it for `keelctl firstboot`; a failed first
/// boot is the step's error.
fn record(boot: &mut Boot, status: FirstbootStatus, failure: Option<FirstbootFailure>) -> Result<(), BootError> {
    run::write_report(&status);
    let result = match status.state {
        FirstbootState::Skipped => {
            info!("firstboot: not a first boot ({} exists)", run::MARKER);
            Ok(())
        }
        FirstbootState::Deferred => {
            info!("firstboot: the config fetches over http(s); it is applied once the network is up");
            Ok(())
        }
        FirstbootState::NoConfig => {
            info!("firstboot: no config found (fw_cfg, keel.config.url, config drive, keel.platform): nothing to apply");
            Ok(())
        }
        FirstbootState::Applied => {
            let [files, dirs, links, users] = status.written.unwrap_or_default();
            info!(
                "firstboot: applied the config from {}: {files} file(s), {dirs} director(ies), {links} link(s), {users} user(s)",
                status.source.as_deref().unwrap_or("?")
            );
            for warning in status.problems.iter().filter(|p| p.severity == "warning") {
                log::warn!("firstboot: {} {}", warning.path, warning.message);
            }
            Ok(())
        }
        FirstbootState::Failed => {
            for line in run::failure_box(&status) {
                logger::marker(&line);
            }
            Err(failure.unwrap_or(FirstbootFailure::Config { problems: status.problems.len() }).into())
        }
    };
    boot.state().firstboot = Some(status);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(state: FirstbootState) -> FirstbootStatus {
        let mut status = FirstbootStatus::job_failed("x");
        status.state = state;
        status
    }

    #[test]
    fn a_deferred_local_run_brings_the_network_up_and_runs_again_once() {
        assert_eq!(next(false, Some(&status(FirstbootState::Deferred))), Next::NetworkThenAgain);
        // Over the network a config is never deferred again; if it were, the boot goes on.
        assert_eq!(next(true, Some(&status(FirstbootState::Deferred))), Next::Rest { network_done: true });
        for state in [FirstbootState::Applied, FirstbootState::Skipped, FirstbootState::NoConfig, FirstbootState::Failed] {
            assert_eq!(next(false, Some(&status(state))), Next::Rest { network_done: false }, "{state}");
            assert_eq!(next(true, Some(&status(state))), Next::Rest { network_done: true }, "{state}");
        }
        // A step that panicked recorded no report: the boot goes on.
        assert_eq!(next(false, None), Next::Rest { network_done: false });
    }
}
