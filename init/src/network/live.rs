//! Applying a [`NetworkPlan`] to the kernel and to [`HostNetwork`]: the executor of
//! `keelctl network reload` (the plan itself is `super::reload`).
//!
//! Order: the bridges of removed and rebuilt networks are deleted (no container is
//! attached to them any more: the caller stopped them or the plan was refused), the
//! bridges of added and rebuilt networks are created over netlink, then keel's whole
//! nftables table (input policy, allow rules, published ports of the running
//! containers, isolation and metadata rules) is replaced in one batch, built from the
//! new declaration. A failure before the batch is committed undoes the bridge steps
//! (created ones deleted, deleted ones made again) and leaves the declaration in force
//! as it was; the kernel applies the batch whole or not at all. Containers on other
//! networks are never touched: their veth, address, lease and conntrack entries stay.
//!
//! Limitations: a network switched to `isolated = true` stops new connections to other
//! networks, but connections already established go on until they end (conntrack is not
//! flushed, so the containers left alone are not disturbed).

use super::reload::{AttachedByNetwork, NetworkPlan, PlanError};
use super::{FirewallError, HostNetwork};
use keel_netconf::config::{self, ConfigErrors, Network, NetworkConfig};
use keel_netconf::NetlinkError;
use log::{info, warn};
use std::path::{Path, PathBuf};

/// Why `keelctl network reload` changed nothing (or had to undo what it began).
#[derive(Debug, thiserror::Error)]
pub enum NetworkReloadError {
    /// The declaration could not be read.
    #[error("{path}: {source}; nothing was changed")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The declaration is invalid: every problem as `file:line: key: message`.
    #[error("{0}; nothing was changed")]
    Invalid(ConfigErrors),
    /// The new declaration cannot be applied live.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The boot set up no networks.
    #[error("networking is not set up on this host (see the boot log); nothing was changed")]
    NoNetwork,
    /// The late boot has not brought up the bridges and firewall yet.
    #[error("the boot has not brought up the bridges and firewall yet; try again in a moment")]
    BootNotDone,
    /// Another reload waits for its containers to stop.
    #[error("a network reload is already under way (waiting for {} to stop)", .0.join(", "))]
    Busy(Vec<String>),
    /// A bridge could not be deleted or created; the bridge steps were undone.
    #[error("network {network}: {what} bridge {bridge}: {source}; nothing was changed{}", undo_text(.undo))]
    Bridge {
        /// The network.
        network: String,
        /// `delete` or `create`.
        what: &'static str,
        /// The bridge.
        bridge: String,
        /// The kernel's answer (boxed: the error stays small on the success path).
        source: Box<NetlinkError>,
        /// Problems undoing the bridge steps done before it (empty: all undone).
        undo: Vec<String>,
    },
    /// The kernel refused the firewall batch (nothing of it applied); the bridge steps
    /// were undone.
    #[error("{source}; nothing was changed{}", undo_text(.undo))]
    Firewall {
        /// The refusal (boxed, as above).
        source: Box<FirewallError>,
        /// Problems undoing the bridge steps (empty: all undone).
        undo: Vec<String>,
    },
}

/// `` or ` (undoing: A; B)`.
fn undo_text(undo: &[String]) -> String {
    if undo.is_empty() {
        String::new()
    } else {
        format!(" (but undoing the bridge steps failed: {})", undo.join("; "))
    }
}

/// Read and validate the declaration at `path` (the default declaration when there is no
/// file, as at boot). An invalid file is an error naming file, line and key.
pub fn read_config(path: &Path) -> Result<NetworkConfig, NetworkReloadError> {
    match std::fs::read_to_string(path) {
        Ok(text) => config::parse(&text, &path.display().to_string()).map_err(NetworkReloadError::Invalid),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(config::default_config()),
        Err(source) => Err(NetworkReloadError::Read { path: path.to_path_buf(), source }),
    }
}

/// The running containers attached to each network, from the host's state.
pub fn attached_by_network(host: &HostNetwork) -> AttachedByNetwork {
    let mut by_network = AttachedByNetwork::new();
    for (container, (network, _)) in &host.attached {
        by_network.entry(network.clone()).or_default().push(container.clone());
    }
    by_network
}

/// Apply `plan` (made from the declaration in force and `new`) to the kernel and to
/// `host`, whose declaration becomes `new`. Returns the problems that did not stop it (a
/// bridge that could not be deleted after the firewall moved on, a lease not released).
/// No container may be attached to a network the plan rebuilds or removes (a
/// [`PlanError::InUse`] otherwise).
pub fn apply(host: &mut HostNetwork, plan: &NetworkPlan, new: NetworkConfig) -> Result<Vec<String>, NetworkReloadError> {
    if plan.is_empty() {
        host.config = new;
        return Ok(Vec::new());
    }
    let attached = attached_by_network(host);
    let in_use: Vec<super::reload::InUse> = plan
        .disturbed()
        .filter_map(|n| {
            let containers = attached.get(n).filter(|c| !c.is_empty())?;
            Some(super::reload::InUse { network: n.to_string(), what: "still attached".into(), containers: containers.clone() })
        })
        .collect();
    if !in_use.is_empty() {
        return Err(PlanError::InUse(in_use).into());
    }
    let mut warnings = Vec::new();
    if new.networks.iter().any(|n| n.subnet6.is_some()) && !host.config.networks.iter().any(|n| n.subnet6.is_some()) {
        if let Err(e) = keel_netconf::set_ipv6_forwarding(true) {
            warnings.push(format!("enable IPv6 forwarding: {e}"));
        }
    }
    let gone: Vec<&Network> = plan.remove.iter().chain(plan.change.iter().filter(|c| c.rebuild).map(|c| &c.old)).collect();
    let made: Vec<&Network> = plan.add.iter().chain(plan.change.iter().filter(|c| c.rebuild).map(|c| &c.new)).collect();
    let mut bridges = BridgeSteps::default();
    for network in &gone {
        if let Err(source) = delete_bridge(&network.bridge) {
            let undo = bridges.undo();
            return Err(NetworkReloadError::Bridge {
                network: network.name.clone(),
                what: "delete",
                bridge: network.bridge.clone(),
                source: Box::new(source),
                undo,
            });
        }
        bridges.deleted.push((*network).clone());
    }
    for network in &made {
        if let Err(source) = create_bridge(network) {
            let undo = bridges.undo();
            return Err(NetworkReloadError::Bridge {
                network: network.name.clone(),
                what: "create",
                bridge: network.bridge.clone(),
                source: Box::new(source),
                undo,
            });
        }
        bridges.created.push(network.bridge.clone());
    }
    let old = std::mem::replace(&mut host.config, new);
    match host.apply_firewall() {
        Ok(()) => {}
        Err(FirewallError::RouteLocalnet(problems)) => warnings.push(FirewallError::RouteLocalnet(problems).to_string()),
        Err(source) => {
            host.config = old;
            let undo = bridges.undo();
            return Err(NetworkReloadError::Firewall { source: Box::new(source), undo });
        }
    }
    release_leases(host, &plan.remove, &mut warnings);
    info!(
        "network reload: {} added, {} removed, {} changed, {} firewall change(s)",
        plan.add.len(),
        plan.remove.len(),
        plan.change.len(),
        plan.firewall.len()
    );
    Ok(warnings)
}

/// The bridge steps done so far, to undo them if a later step fails.
#[derive(Default)]
struct BridgeSteps {
    /// Networks whose bridge was deleted (made again on undo).
    deleted: Vec<Network>,
    /// Bridges created (deleted on undo).
    created: Vec<String>,
}

impl BridgeSteps {
    /// Delete what was created, make again what was deleted; every step is tried, and
    /// each failure is returned.
    fn undo(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        for bridge in self.created.drain(..).rev() {
            if let Err(e) = delete_bridge(&bridge) {
                problems.push(format!("delete bridge {bridge}: {e}"));
            }
        }
        for network in self.deleted.drain(..) {
            if let Err(e) = create_bridge(&network) {
                problems.push(format!("make bridge {} again: {e}", network.bridge));
            }
        }
        problems
    }
}

/// Delete a bridge; one that is already gone is fine.
fn delete_bridge(bridge: &str) -> Result<(), NetlinkError> {
    match keel_netconf::delete_link(bridge) {
        Err(e) if e.kernel_errno() == Some(keel_netconf::socket::ENODEV) => Ok(()),
        other => other,
    }
}

/// A network's bridge with its gateway address(es), up.
fn create_bridge(network: &Network) -> Result<(), NetlinkError> {
    let address6 = network.subnet6.and_then(|s| Some((network.gateway6()?, s.prefix)));
    keel_netconf::ensure_bridge_dual(&network.bridge, network.gateway, network.subnet.prefix, address6)?;
    info!("network {}: bridge {} at {}/{}", network.name, network.bridge, network.gateway, network.subnet.prefix);
    Ok(())
}

/// Forget the leases of the removed networks (their containers are not attached).
fn release_leases(host: &mut HostNetwork, removed: &[Network], warnings: &mut Vec<String>) {
    let Some(ipam) = host.ipam.as_mut() else { return };
    for network in removed {
        for (container, address) in ipam.allocations(&network.name) {
            match ipam.release(&network.name, &container) {
                Ok(()) => info!("network {}: released {address} of {container} (network removed)", network.name),
                Err(e) => {
                    warn!("network {}: releasing {container}: {e}", network.name);
                    warnings.push(format!("network {}: releasing the lease of {container}: {e}", network.name));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invalid_file_is_refused_naming_file_line_and_key() {
        let dir = std::env::temp_dir().join(format!("keel-live-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("network.toml");
        std::fs::write(
            &path,
            "[[network]]\nname = \"keel0\"\nsubnet = \"10.88.0.0/16\"\n\n[[network]]\nname = \"net2\"\nsubnet = \"10.90.0.7/24\"\n",
        )
        .unwrap();
        let err = read_config(&path).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, NetworkReloadError::Invalid(_)), "{err:?}");
        assert!(text.starts_with(&format!("{}:7: network[1].subnet: 10.90.0.7/24 has host bits set", path.display())), "{text}");
        assert!(text.ends_with("; nothing was changed"), "{text}");
        // Negative control: the same file with the prefix written right is accepted.
        std::fs::write(
            &path,
            "[[network]]\nname = \"keel0\"\nsubnet = \"10.88.0.0/16\"\n\n[[network]]\nname = \"net2\"\nsubnet = \"10.90.0.0/24\"\n",
        )
        .unwrap();
        assert_eq!(read_config(&path).unwrap().networks.len(), 2);
        // No file: the default declaration, as at boot.
        assert_eq!(read_config(&dir.join("missing.toml")).unwrap(), config::default_config());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
