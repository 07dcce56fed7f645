//! Reconcile planning for `keelctl apply | diff | rm | reload`: the declarations the host
//! runs now against the ones it should run, as a list of steps (add, change, restart a
//! dependent, remove, leave alone), the way `docker compose up` touches only what changed.
//!
//! "Changed" compares the validated declarations ([`ContainerSpec`], a normal form:
//! comments, key order and spacing of the file do not count) and the image digest a
//! container runs against the one its reference names in the store now. A changed
//! container's restart takes along the containers that depend on it with `started` or
//! `healthy` (transitively); `completed` dependents ran to their end and stay as they are.
//!
//! Pure: no process, no file. [`crate::manager::Manager::apply_plan`] carries a plan out.

use super::deps;
use crate::spec::{ContainerName, ContainerSpec, DependencyCondition};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// What the host has for one declared container now.
#[derive(Debug, Clone, PartialEq)]
pub struct Current {
    /// Its validated declaration; None when the declaration in force is invalid.
    pub spec: Option<ContainerSpec>,
    /// The image manifest digest its current (or last) run started from, if it has an image.
    pub digest: Option<String>,
}

/// What one container should be after the change.
#[derive(Debug, Clone, PartialEq)]
pub struct Wanted {
    /// The validated declaration.
    pub spec: ContainerSpec,
    /// The manifest digest its image reference names in the store now (None: not in the
    /// store yet, or no image), compared with [`Current::digest`].
    pub digest: Option<String>,
}

/// What happens to one container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Newly declared: it starts once its dependencies are met.
    Add,
    /// Its declaration or image digest changed: restarted with the new declaration.
    Change,
    /// Unchanged, but it depends (`started`/`healthy`) on a container that restarts.
    RestartDependent,
    /// No longer declared: stopped and forgotten.
    Remove,
    /// Not touched.
    Unchanged,
}

impl Action {
    /// The word `keelctl diff` prints.
    pub fn word(self) -> &'static str {
        match self {
            Action::Add => "add",
            Action::Change => "change",
            Action::RestartDependent => "restart-dependent",
            Action::Remove => "remove",
            Action::Unchanged => "unchanged",
        }
    }
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// The container.
    pub name: String,
    /// What happens to it.
    pub action: Action,
    /// For [`Action::Change`]: the declaration keys that differ (`image digest` when only
    /// the image's content moved); for [`Action::RestartDependent`]: the containers whose
    /// restart it follows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<String>,
}

/// Every step, removals first (dependents before what they depend on), then the new set
/// in start order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// The steps.
    pub steps: Vec<Step>,
}

impl Plan {
    /// The names with `action`, in plan order.
    pub fn names(&self, action: Action) -> Vec<&str> {
        self.steps.iter().filter(|s| s.action == action).map(|s| s.name.as_str()).collect()
    }

    /// Whether applying it would touch nothing.
    pub fn is_noop(&self) -> bool {
        self.steps.iter().all(|s| s.action == Action::Unchanged)
    }

    /// One line per step: `change web: command, env`.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for step in &self.steps {
            out.push_str(step.action.word());
            out.push(' ');
            out.push_str(&step.name);
            if !step.keys.is_empty() {
                let label = if step.action == Action::RestartDependent { " (after " } else { ": " };
                out.push_str(label);
                out.push_str(&step.keys.join(", "));
                if step.action == Action::RestartDependent {
                    out.push(')');
                }
            }
            out.push('\n');
        }
        out
    }
}

/// The digest key of a change whose image content moved under the same reference.
pub const DIGEST_KEY: &str = "image digest";

/// Plan the move from `current` to `wanted`. `forced` names containers to restart even
/// though their declaration did not change, each with the reason shown as its key (the
/// network reload's `--restart-attached` passes the containers of a changed network).
pub fn plan(
    current: &BTreeMap<ContainerName, Current>,
    wanted: &BTreeMap<ContainerName, Wanted>,
    forced: &BTreeMap<ContainerName, String>,
) -> Plan {
    let mut actions: BTreeMap<ContainerName, (Action, Vec<String>)> = BTreeMap::new();
    for (name, want) in wanted {
        let entry = match current.get(name) {
            None => (Action::Add, Vec::new()),
            Some(now) => {
                let mut keys = match &now.spec {
                    Some(spec) => changed_keys(spec, &want.spec),
                    None => vec!["declaration (was invalid)".to_string()],
                };
                if keys.is_empty() && now.digest.is_some() && want.digest.is_some() && now.digest != want.digest {
                    keys.push(DIGEST_KEY.to_string());
                }
                if let Some(reason) = forced.get(name) {
                    if !keys.contains(reason) {
                        keys.push(reason.clone());
                    }
                }
                if keys.is_empty() {
                    (Action::Unchanged, keys)
                } else {
                    (Action::Change, keys)
                }
            }
        };
        actions.insert(name.clone(), entry);
    }
    // Restarts spread to `started`/`healthy` dependents until nothing more moves.
    loop {
        let restarting: BTreeSet<ContainerName> =
            actions.iter().filter(|(_, (a, _))| matches!(a, Action::Change | Action::RestartDependent)).map(|(n, _)| n.clone()).collect();
        let mut moved = false;
        for (name, want) in wanted {
            let Some((action, keys)) = actions.get_mut(name) else { continue };
            if !matches!(action, Action::Unchanged | Action::RestartDependent) {
                continue;
            }
            for dep in &want.spec.depends_on {
                let follows = matches!(dep.condition, DependencyCondition::Started | DependencyCondition::Healthy);
                if follows && restarting.contains(&dep.name) && !keys.contains(&dep.name.to_string()) {
                    *action = Action::RestartDependent;
                    keys.push(dep.name.to_string());
                    moved = true;
                }
            }
        }
        if !moved {
            break;
        }
    }
    let nodes: BTreeMap<ContainerName, deps::Node> = wanted
        .iter()
        .map(|(n, w)| (n.clone(), deps::Node { depends_on: w.spec.depends_on.clone(), has_healthcheck: w.spec.healthcheck.is_some() }))
        .collect();
    let gone: BTreeMap<ContainerName, deps::Node> = current
        .iter()
        .filter(|(n, _)| !wanted.contains_key(*n))
        .map(|(n, c)| {
            let depends_on = c.spec.as_ref().map(|s| s.depends_on.clone()).unwrap_or_default();
            (n.clone(), deps::Node { depends_on, has_healthcheck: false })
        })
        .collect();
    let mut steps: Vec<Step> =
        deps::stop_order(&gone).into_iter().map(|name| Step { name: name.to_string(), action: Action::Remove, keys: Vec::new() }).collect();
    for name in deps::start_order(&nodes) {
        if let Some((action, keys)) = actions.remove(&name) {
            steps.push(Step { name: name.to_string(), action, keys });
        }
    }
    Plan { steps }
}

/// The declaration keys in which `old` and `new` differ, in declaration order.
pub fn changed_keys(old: &ContainerSpec, new: &ContainerSpec) -> Vec<String> {
    let (a, b) = (fields(old), fields(new));
    let mut keys: Vec<String> = Vec::new();
    for ((key, x), (_, y)) in a.iter().zip(&b) {
        if x != y && !keys.iter().any(|k| k == key) {
            keys.push((*key).to_string());
        }
    }
    keys
}

/// Every field of a declaration as (key as the file names it, comparable text). The
/// destructuring is exhaustive: a new field of [`ContainerSpec`] must be listed here.
fn fields(spec: &ContainerSpec) -> Vec<(&'static str, String)> {
    let ContainerSpec {
        name: _,
        image,
        argv,
        declared,
        env,
        workdir,
        user,
        hostname,
        init,
        restart,
        depends_on,
        healthcheck,
        stop_signal,
        stop_timeout,
        read_only,
        mounts,
        resources,
        cap_add,
        cap_drop,
        sysctls,
        user_namespace,
        network,
        ports,
        metadata_access,
        privilege,
        logs,
    } = spec;
    let crate::spec::DeclaredProcess { entrypoint, command, workdir: declared_workdir, user: declared_user } = declared;
    vec![
        ("image", format!("{image:?}")),
        ("entrypoint", format!("{entrypoint:?}")),
        ("command", format!("{command:?} {argv:?}")),
        ("env", format!("{env:?}")),
        ("workdir", format!("{workdir:?} {declared_workdir:?}")),
        ("user", format!("{user:?} {declared_user:?}")),
        ("hostname", format!("{hostname:?}")),
        ("init", format!("{init:?}")),
        ("restart", format!("{restart:?}")),
        ("depends_on", format!("{depends_on:?}")),
        ("healthcheck", format!("{healthcheck:?}")),
        ("stop_signal", format!("{stop_signal:?}")),
        ("stop_timeout", format!("{stop_timeout:?}")),
        ("read_only", format!("{read_only:?}")),
        ("mounts", format!("{mounts:?}")),
        ("resources", format!("{resources:?}")),
        ("capabilities", format!("{cap_add:?} {cap_drop:?}")),
        ("sysctls", format!("{sysctls:?}")),
        ("user_namespace", format!("{user_namespace:?}")),
        ("network", format!("{network:?}")),
        ("ports", format!("{ports:?}")),
        ("metadata_access", format!("{metadata_access:?}")),
        ("privileged", format!("{privilege:?}")),
        ("logs", format!("{logs:?}")),
    ]
}

#[cfg(test)]
mod tests;
