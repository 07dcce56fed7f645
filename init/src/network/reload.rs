//! Re-reading /etc/keel/network.toml at run time (`keelctl network reload`): the pure
//! half. [`plan`] compares the declaration in force with a new, already validated one
//! and the containers attached to each network now, and says what has to change:
//! networks to add, to remove, to rebuild (bridge, subnet, gateway or IPv6 prefix
//! changed: their bridge is made again and their containers need new addresses), and
//! firewall changes (input policy, `allow`, a network's `isolated` or `metadata`), which
//! only replace the nftables table. Nothing else is touched: containers on networks the
//! plan does not rebuild or remove keep their veth, address, lease and connections.
//!
//! A plan that would pull a network from under running containers is refused, naming
//! them, unless the caller restarts them ([`plan`]'s `restart_attached`). Uplink changes
//! are refused: the uplink's address, DHCP client and default route are set up once, at
//! boot ("uplink changes need a reboot").
//!
//! The executor that applies a plan to the kernel is `super::live`.

use keel_netconf::config::{InputPolicy, Network, NetworkConfig, Proto, Uplink};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Containers attached now, by network name (each list sorted).
pub type AttachedByNetwork = BTreeMap<String, Vec<String>>;

/// A network whose definition changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkChange {
    /// The definition in force.
    pub old: Network,
    /// The new definition.
    pub new: Network,
    /// What changed, one `field: old -> new` each.
    pub fields: Vec<String>,
    /// Whether the bridge has to be made again (its name, subnet, gateway or `subnet6`
    /// changed); false: only the firewall changes (`isolated`, `metadata`).
    pub rebuild: bool,
}

/// What a reload has to do, in the order the executor does it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NetworkPlan {
    /// New networks: their bridges are created.
    pub add: Vec<Network>,
    /// Networks no longer declared: their bridges are deleted, their leases released.
    pub remove: Vec<Network>,
    /// Networks declared differently.
    pub change: Vec<NetworkChange>,
    /// Changes to the firewall, as lines for the operator (`input: drop -> accept`,
    /// `allow: +tcp/22`, `network keel0: isolated false -> true`).
    pub firewall: Vec<String>,
    /// Containers that must be stopped before the change and started after it (those
    /// attached to a network being rebuilt or removed), sorted.
    pub restart: Vec<String>,
    /// Networks left exactly as they are.
    pub unchanged: Vec<String>,
}

impl NetworkPlan {
    /// Whether the plan changes nothing at all.
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty() && self.change.is_empty() && self.firewall.is_empty()
    }

    /// The networks whose bridge goes away or is made again: removed and rebuilt ones.
    pub fn disturbed(&self) -> impl Iterator<Item = &str> {
        self.remove.iter().map(|n| n.name.as_str()).chain(self.change.iter().filter(|c| c.rebuild).map(|c| c.old.name.as_str()))
    }

    /// Whether the firewall table has to be replaced.
    pub fn touches_firewall(&self) -> bool {
        !self.is_empty()
    }
}

/// A network still in use that the new declaration changes or removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InUse {
    /// The network.
    pub network: String,
    /// `removed`, or what changed (`subnet 10.89.0.0/24 -> 10.90.0.0/24`).
    pub what: String,
    /// The containers attached to it.
    pub containers: Vec<String>,
}

/// Why the new declaration cannot be applied live.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The `[[uplink]]` sections differ.
    #[error("uplink changes need a reboot ({0}); nothing was changed")]
    Uplink(String),
    /// Networks in use would be rebuilt or removed.
    #[error(
        "{}; nothing was changed (stop those containers first, or run keelctl network reload --restart-attached)",
        in_use_text(.0)
    )]
    InUse(Vec<InUse>),
}

/// `network net2 (subnet …) is used by web, db; network x (removed) is used by y`.
fn in_use_text(list: &[InUse]) -> String {
    let parts: Vec<String> =
        list.iter().map(|u| format!("network {} ({}) is used by container(s) {}", u.network, u.what, u.containers.join(", "))).collect();
    parts.join("; ")
}

/// Compare `current` (in force, with `attached` containers per network) with `new`.
/// With `restart_attached`, containers on networks being rebuilt or removed are put in
/// [`NetworkPlan::restart`]; without it their presence refuses the whole plan.
pub fn plan(
    current: &NetworkConfig,
    attached: &AttachedByNetwork,
    new: &NetworkConfig,
    restart_attached: bool,
) -> Result<NetworkPlan, PlanError> {
    if current.uplinks != new.uplinks {
        return Err(PlanError::Uplink(uplink_difference(&current.uplinks, &new.uplinks)));
    }
    let mut plan = NetworkPlan::default();
    for old in &current.networks {
        match new.network(&old.name) {
            None => plan.remove.push(old.clone()),
            Some(n) if n == old => plan.unchanged.push(old.name.clone()),
            Some(n) => plan.change.push(network_change(old, n)),
        }
    }
    plan.add = new.networks.iter().filter(|n| current.network(&n.name).is_none()).cloned().collect();
    plan.firewall = firewall_changes(current, new, &plan.change);
    let mut in_use = Vec::new();
    for old in &plan.remove {
        if let Some(containers) = attached.get(&old.name).filter(|c| !c.is_empty()) {
            in_use.push(InUse { network: old.name.clone(), what: "removed".into(), containers: containers.clone() });
        }
    }
    for change in plan.change.iter().filter(|c| c.rebuild) {
        if let Some(containers) = attached.get(&change.old.name).filter(|c| !c.is_empty()) {
            in_use.push(InUse { network: change.old.name.clone(), what: change.fields.join(", "), containers: containers.clone() });
        }
    }
    if in_use.is_empty() {
        return Ok(plan);
    }
    if !restart_attached {
        return Err(PlanError::InUse(in_use));
    }
    let mut restart: Vec<String> = in_use.into_iter().flat_map(|u| u.containers).collect();
    restart.sort();
    restart.dedup();
    plan.restart = restart;
    Ok(plan)
}

/// The fields of a network that differ, and whether the bridge must be made again.
fn network_change(old: &Network, new: &Network) -> NetworkChange {
    let mut fields = Vec::new();
    let mut rebuild = false;
    let mut field = |name: &str, a: String, b: String, structural: bool| {
        if a != b {
            fields.push(format!("{name} {a} -> {b}"));
            rebuild |= structural;
        }
    };
    let v6 = |s: Option<keel_netconf::config::Ipv6Net>| s.map_or("none".to_string(), |s| s.to_string());
    field("bridge", old.bridge.clone(), new.bridge.clone(), true);
    field("subnet", old.subnet.to_string(), new.subnet.to_string(), true);
    field("gateway", old.gateway.to_string(), new.gateway.to_string(), true);
    field("subnet6", v6(old.subnet6), v6(new.subnet6), true);
    field("isolated", old.isolated.to_string(), new.isolated.to_string(), false);
    field("metadata", old.metadata.to_string(), new.metadata.to_string(), false);
    NetworkChange { old: old.clone(), new: new.clone(), fields, rebuild }
}

/// The firewall lines of a reload: input policy, `allow` entries added and removed, and
/// the firewall-only switches of changed networks.
fn firewall_changes(current: &NetworkConfig, new: &NetworkConfig, changes: &[NetworkChange]) -> Vec<String> {
    let mut lines = Vec::new();
    let policy = |p: InputPolicy| if p == InputPolicy::Drop { "drop" } else { "accept" };
    if current.firewall.input != new.firewall.input {
        lines.push(format!("input: {} -> {}", policy(current.firewall.input), policy(new.firewall.input)));
    }
    let rule = |(proto, port): &(Proto, u16)| format!("{proto}/{port}");
    for added in new.firewall.allow.iter().filter(|r| !current.firewall.allow.contains(r)) {
        lines.push(format!("allow: +{}", rule(added)));
    }
    for removed in current.firewall.allow.iter().filter(|r| !new.firewall.allow.contains(r)) {
        lines.push(format!("allow: -{}", rule(removed)));
    }
    for change in changes {
        for field in change.fields.iter().filter(|f| f.starts_with("isolated ") || f.starts_with("metadata ")) {
            lines.push(format!("network {}: {field}", change.new.name));
        }
    }
    lines
}

/// How two uplink lists differ, for the refusal.
fn uplink_difference(old: &[Uplink], new: &[Uplink]) -> String {
    if old.len() != new.len() {
        return format!("{} uplink(s) declared, {} in force", new.len(), old.len());
    }
    let index = old.iter().zip(new).position(|(a, b)| a != b).unwrap_or(0);
    format!("uplink[{index}] differs from the one in force")
}

/// What a reload did, as `keelctl network reload` prints it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkReloadReport {
    /// Networks added: `name (bridge B, subnet S)`.
    pub added: Vec<String>,
    /// Networks removed.
    pub removed: Vec<String>,
    /// Networks changed: `name: field old -> new, …`.
    pub changed: Vec<String>,
    /// Firewall changes (see [`NetworkPlan::firewall`]).
    pub firewall: Vec<String>,
    /// Containers stopped before the change and started again after it.
    pub restarted: Vec<String>,
    /// Networks left untouched.
    pub unchanged: Vec<String>,
    /// Containers still being stopped: the change is applied once they have stopped
    /// (empty in a final report).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waiting_for: Vec<String>,
    /// Problems that did not stop the reload (a container that did not start again, a
    /// bridge left behind).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl NetworkReloadReport {
    /// The report of `plan` (before any warnings).
    pub fn of(plan: &NetworkPlan) -> Self {
        let describe = |n: &Network| format!("{} (bridge {}, subnet {})", n.name, n.bridge, n.subnet);
        NetworkReloadReport {
            added: plan.add.iter().map(describe).collect(),
            removed: plan.remove.iter().map(describe).collect(),
            changed: plan.change.iter().map(|c| format!("{}: {}", c.old.name, c.fields.join(", "))).collect(),
            firewall: plan.firewall.clone(),
            restarted: plan.restart.clone(),
            unchanged: plan.unchanged.clone(),
            waiting_for: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// The lines `keelctl network reload` prints.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        let mut push = |label: &str, items: &[String]| lines.extend(items.iter().map(|i| format!("{label} {i}")));
        push("added network", &self.added);
        push("removed network", &self.removed);
        push("changed network", &self.changed);
        push("firewall:", &self.firewall);
        push("restarted container", &self.restarted);
        push("still stopping:", &self.waiting_for);
        push("warning:", &self.warnings);
        if self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty() && self.firewall.is_empty() {
            lines.insert(0, "no network changes".to_string());
        }
        if !self.unchanged.is_empty() {
            lines.push(format!("unchanged: {}", self.unchanged.join(", ")));
        }
        lines
    }
}

#[cfg(test)]
#[path = "reload_tests.rs"]
mod tests;
