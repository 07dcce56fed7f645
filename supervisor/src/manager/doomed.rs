//! Cgroups of containers that are gone (a start that failed, a process that ended)
//! whose killed processes have not all left yet. PID 1 never waits for them: each was
//! killed whole (`cgroup.kill`) when it was discarded, and its directory is removed by
//! a later turn of the loop, when `rmdir` no longer answers EBUSY.
//!
//! The schedule is pure (`now` passed in, the removal passed in for tests); the
//! launcher gives the real [`ContainerCgroup::remove`].

use crate::cgroup::{CgroupError, ContainerCgroup};
use crate::spec::ContainerName;
use log::warn;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The first retry of a busy cgroup: killed processes usually leave within a few
/// milliseconds (under TCG, tens).
const FIRST_RETRY: Duration = Duration::from_millis(10);
/// Retries back off (doubling) up to this interval.
const MAX_RETRY: Duration = Duration::from_secs(1);
/// A cgroup still busy this long after its kill is given up with a warning (a process
/// stuck in uninterruptible sleep); the next start of the same container reuses and
/// kills it again.
const GIVE_UP: Duration = Duration::from_secs(60);

/// One cgroup waiting to be removed.
#[derive(Debug)]
struct Doomed {
    cgroup: ContainerCgroup,
    since: Instant,
    next: Instant,
    wait: Duration,
}

/// The cgroups waiting to be removed, one per container name.
#[derive(Debug, Default)]
pub struct DoomedCgroups {
    pending: BTreeMap<ContainerName, Doomed>,
}

impl DoomedCgroups {
    /// Kill everything in `name`'s `cgroup` and remove it now if it is already empty,
    /// else keep it for [`tidy`](Self::tidy). Errors other than "busy" are returned.
    pub fn discard(&mut self, name: &ContainerName, cgroup: ContainerCgroup, now: Instant) -> Result<(), CgroupError> {
        cgroup.kill()?;
        self.discard_killed(name, cgroup, now, ContainerCgroup::remove)
    }

    /// [`discard`](Self::discard) after the kill, with the removal passed in.
    fn discard_killed(
        &mut self,
        name: &ContainerName,
        cgroup: ContainerCgroup,
        now: Instant,
        remove: impl FnOnce(&ContainerCgroup) -> Result<(), CgroupError>,
    ) -> Result<(), CgroupError> {
        match remove(&cgroup) {
            Err(CgroupError::Busy { .. }) => {
                self.pending.insert(name.clone(), Doomed { cgroup, since: now, next: now + FIRST_RETRY, wait: FIRST_RETRY });
                Ok(())
            }
            other => other,
        }
    }

    /// `name` starts again and reuses its cgroup (the start kills what is left in it):
    /// it must not be removed under the new run.
    pub fn forget(&mut self, name: &ContainerName) {
        self.pending.remove(name);
    }

    /// Whether `name`'s cgroup waits to be removed.
    #[cfg(test)]
    fn contains(&self, name: &ContainerName) -> bool {
        self.pending.contains_key(name)
    }

    /// Retry the removals that are due at `now`. Never waits.
    pub fn tidy(&mut self, now: Instant) {
        self.tidy_with(now, ContainerCgroup::remove);
    }

    fn tidy_with(&mut self, now: Instant, mut remove: impl FnMut(&ContainerCgroup) -> Result<(), CgroupError>) {
        self.pending.retain(|name, doomed| {
            if doomed.next > now {
                return true;
            }
            match remove(&doomed.cgroup) {
                Ok(()) => false,
                Err(CgroupError::Busy { .. }) if now.saturating_duration_since(doomed.since) < GIVE_UP => {
                    doomed.wait = (doomed.wait * 2).min(MAX_RETRY);
                    doomed.next = now + doomed.wait;
                    true
                }
                Err(e) => {
                    warn!("container {name}: removing its cgroup: {e}; given up");
                    false
                }
            }
        });
    }

    /// When [`tidy`](Self::tidy) has something to retry.
    pub fn deadline(&self) -> Option<Instant> {
        self.pending.values().map(|d| d.next).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::path::PathBuf;

    fn busy() -> Result<(), CgroupError> {
        Err(CgroupError::Busy { path: PathBuf::from("/sys/fs/cgroup/keel/web") })
    }

    #[test]
    fn an_empty_cgroup_goes_at_once_and_a_busy_one_is_retried_later() {
        let t0 = Instant::now();
        let web = ContainerName::new("web").unwrap();
        let cgroup = || ContainerCgroup::at("/sys/fs/cgroup/keel/web");
        let mut doomed = DoomedCgroups::default();
        doomed.discard_killed(&web, cgroup(), t0, |_| Ok(())).unwrap();
        assert_eq!(doomed.deadline(), None, "removed at once");

        doomed.discard_killed(&web, cgroup(), t0, |_| busy()).unwrap();
        assert!(doomed.contains(&web));
        assert_eq!(doomed.deadline(), Some(t0 + FIRST_RETRY));
        // Not due: nothing is tried.
        let tries = Cell::new(0);
        doomed.tidy_with(t0, |_| {
            tries.set(tries.get() + 1);
            busy()
        });
        assert_eq!(tries.get(), 0);
        // Due and still busy: retried later, backing off.
        doomed.tidy_with(t0 + FIRST_RETRY, |_| busy());
        assert_eq!(doomed.deadline(), Some(t0 + FIRST_RETRY * 3));
        // Empty now: gone.
        doomed.tidy_with(t0 + FIRST_RETRY * 3, |_| Ok(()));
        assert!(!doomed.contains(&web) && doomed.deadline().is_none());
    }

    #[test]
    fn other_errors_are_returned_and_a_stuck_cgroup_is_given_up() {
        let t0 = Instant::now();
        let web = ContainerName::new("web").unwrap();
        let mut doomed = DoomedCgroups::default();
        let io = || Err(CgroupError::Io { op: "rmdir", path: "/x".into(), source: std::io::Error::from_raw_os_error(13) });
        assert!(doomed.discard_killed(&web, ContainerCgroup::at("/x"), t0, |_| io()).is_err());
        assert!(!doomed.contains(&web));
        doomed.discard_killed(&web, ContainerCgroup::at("/x"), t0, |_| busy()).unwrap();
        let mut now = t0;
        while let Some(next) = doomed.deadline() {
            assert!(next <= t0 + GIVE_UP + MAX_RETRY, "retried past the give-up time");
            now = next;
            doomed.tidy_with(now, |_| busy());
        }
        assert!(now >= t0 + GIVE_UP);
        // A new start of the same name takes the cgroup back.
        doomed.discard_killed(&web, ContainerCgroup::at("/x"), t0, |_| busy()).unwrap();
        doomed.forget(&web);
        assert!(doomed.deadline().is_none());
    }
}
