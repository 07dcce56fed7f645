//! Carrying out a reconcile [`Plan`] (`keelctl apply | rm | reload`) with the manager's
//! own state machine: nothing here waits. A restart is a stop (the container's stop
//! signal, SIGKILL after its stop_timeout) that ends in `Waiting` with the new
//! declaration, so the next ticks start it once its dependencies are met again, through
//! the image check (a pull is a job) like any start. Dependents that follow a restart
//! are stopped first; the container they follow is stopped once none of them runs.

use super::plan::{Action, Current, Plan};
use super::{AfterStop, Declaration, Entry, Manager, Phase};
use crate::restart::RestartState;
use crate::spec::{ContainerName, ContainerSpec, DependencyCondition};
use log::info;
use std::collections::BTreeMap;
use std::time::Instant;

/// A container a reconcile removed, once its process has ended (PID 1 purges its state
/// when asked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    /// The container.
    pub name: ContainerName,
    /// `keelctl rm --purge`: delete its logs and state directory too.
    pub purge: bool,
}

impl Manager {
    /// What the host runs now, for [`super::plan::plan`]. A declaration kept from starting
    /// by a dependency problem counts as invalid, so a fix elsewhere makes it a change.
    pub fn current(&self) -> BTreeMap<ContainerName, Current> {
        self.entries
            .iter()
            .map(|(name, entry)| {
                let spec = match (&entry.next_spec, &entry.spec, entry.phase) {
                    (Some(next), _, _) => Some(next.clone()),
                    (None, _, Phase::Invalid) => None,
                    (None, spec, _) => spec.as_ref().ok().cloned(),
                };
                (name.clone(), Current { spec, digest: entry.image_digest.clone() })
            })
            .collect()
    }

    /// The manifest digest `spec`'s image reference names in the store now.
    pub fn image_digest(&self, spec: &ContainerSpec) -> Option<String> {
        self.images.as_ref().and_then(|check| check.digest(spec))
    }

    /// Carry out `plan`. `wanted` holds the new declarations of the containers it adds or
    /// changes; removed containers are stopped and forgotten (with `purge`, reported for
    /// their state to be deleted, see [`take_removed`](Self::take_removed)). Returns at once.
    pub fn apply_plan(&mut self, plan: &Plan, mut wanted: BTreeMap<ContainerName, Declaration>, purge: bool, now: Instant) {
        for step in &plan.steps {
            let Ok(name) = ContainerName::new(&step.name) else { continue };
            match step.action {
                Action::Unchanged => {}
                Action::Add => {
                    if let Some(declaration) = wanted.remove(&name) {
                        info!("container {name}: added");
                        self.entries.insert(name, Entry::new(declaration));
                    }
                }
                Action::Change => {
                    // Without a new declaration (only the image digest moved), it restarts as declared.
                    let declaration = wanted.remove(&name);
                    if let Some(entry) = self.entries.get_mut(&name) {
                        info!("container {name}: changed ({})", step.keys.join(", "));
                        if let Some(declaration) = &declaration {
                            entry.file = declaration.file.clone();
                        }
                    }
                    self.mark_restart(&name, declaration.and_then(|d| d.spec.ok()));
                }
                Action::RestartDependent => self.mark_restart(&name, None),
                Action::Remove => {
                    let running = self.entries.get(&name).is_some_and(|e| e.pid.is_some());
                    info!("container {name}: removed{}", if running { "; stopping it" } else { "" });
                    if running {
                        self.begin_stop(&name, now, AfterStop::Remove { purge });
                        if let Some(entry) = self.entries.get_mut(&name) {
                            entry.stop_pending = false;
                        }
                    } else {
                        self.forget(&name, purge);
                    }
                }
            }
        }
        self.begin_pending_stops(now);
    }

    /// Containers removed since the last call, their processes ended.
    pub fn take_removed(&mut self) -> Vec<Removed> {
        std::mem::take(&mut self.removed)
    }

    /// Restart `name` for a reconcile, with `next` as its declaration when it changed. A
    /// running container is stopped (once its followers are); one that does not run
    /// takes the change at once and waits to start (a follower that does not run stays
    /// as it is: it was stopped, exited or is already waiting).
    fn mark_restart(&mut self, name: &ContainerName, next: Option<ContainerSpec>) {
        let Some(entry) = self.entries.get_mut(name) else { return };
        let changed = next.is_some();
        if entry.pid.is_some() {
            entry.ever_started = false;
            if next.is_some() {
                entry.next_spec = next;
            }
            match entry.phase {
                Phase::Stopping(_) => entry.after_stop = AfterStop::Requeue,
                _ => entry.stop_pending = true,
            }
        } else if changed {
            entry.ever_started = false;
            entry.next_spec = next;
            self.requeue(name);
        }
    }

    /// Stop the containers whose reconcile restart waits, once no running container
    /// follows them (`started`/`healthy`).
    pub(super) fn begin_pending_stops(&mut self, now: Instant) {
        let pending: Vec<ContainerName> = self.entries.iter().filter(|(_, e)| e.stop_pending).map(|(n, _)| n.clone()).collect();
        for name in pending {
            let followed = self.entries.iter().any(|(_, other)| {
                other.pid.is_some()
                    && other.spec.as_ref().is_ok_and(|s| {
                        s.depends_on
                            .iter()
                            .any(|d| d.name == name && matches!(d.condition, DependencyCondition::Started | DependencyCondition::Healthy))
                    })
            });
            if followed {
                continue;
            }
            if let Some(entry) = self.entries.get_mut(&name) {
                entry.stop_pending = false;
            }
            self.begin_stop(&name, now, AfterStop::Requeue);
        }
    }

    /// After a reconcile stop: take the new declaration and wait to start again.
    pub(super) fn requeue(&mut self, name: &ContainerName) {
        let Some(entry) = self.entries.get_mut(name) else { return };
        if let Some(spec) = entry.next_spec.take() {
            entry.spec = Ok(spec);
        }
        entry.phase = if entry.spec.is_ok() { Phase::Waiting } else { Phase::Invalid };
        entry.restart = RestartState::default();
        entry.after_stop = AfterStop::Stay;
        entry.detail = None;
        entry.health = None;
        entry.health_failures = 0;
    }

    /// Drop a removed container whose process has ended.
    pub(super) fn forget(&mut self, name: &ContainerName, purge: bool) {
        if self.entries.remove(name).is_some() {
            self.logs.forget(name);
            self.removed.push(Removed { name: name.clone(), purge });
        }
    }
}
