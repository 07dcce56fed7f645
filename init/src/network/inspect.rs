//! What `keelctl network ls` and `keelctl network inspect NAME` show, read from the
//! host's network state and, for links and addresses, from the kernel.

use super::{HostNetwork, InspectError, UplinkStatus};
use serde::{Deserialize, Serialize};

/// One line of `keelctl network ls`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NetworkSummary {
    /// Network name.
    pub name: String,
    /// Its bridge.
    pub bridge: String,
    /// IPv4 subnet.
    pub subnet: String,
    /// The bridge's address, the containers' gateway.
    pub gateway: String,
    /// IPv6 subnet, when the network has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet6: Option<String>,
    /// The bridge's IPv6 address (the first host of `subnet6`), the containers' IPv6 gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway6: Option<String>,
    /// No route to other networks.
    pub isolated: bool,
    /// `metadata = true`: its containers reach the cloud metadata service.
    #[serde(default)]
    pub metadata: bool,
    /// Containers attached now.
    pub containers: usize,
}

/// A container on a network.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Attachment {
    /// Container name.
    pub container: String,
    /// Its address.
    pub address: String,
    /// Its IPv6 address (derived from `address`), on networks with `subnet6`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address6: Option<String>,
    /// Ports it publishes, `[HOST_IP:]HOST_PORT -> ADDRESS:PORT/PROTO`.
    pub published: Vec<String>,
}

/// `keelctl network inspect NAME`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NetworkDetail {
    /// The ls line.
    #[serde(flatten)]
    pub summary: NetworkSummary,
    /// The bridge link: up, MTU, addresses as the kernel has them.
    pub bridge_state: Option<String>,
    /// Addresses on the bridge.
    pub bridge_addresses: Vec<String>,
    /// Containers and their published ports.
    pub attached: Vec<Attachment>,
    /// Address allocations kept by IPAM (running or not).
    pub leases: Vec<String>,
    /// The host's uplink (interface, address, DHCP lease).
    pub uplink: Option<UplinkStatus>,
}

/// `network ls`.
pub fn list(host: &HostNetwork) -> Vec<NetworkSummary> {
    host.config
        .networks
        .iter()
        .map(|n| NetworkSummary {
            name: n.name.clone(),
            bridge: n.bridge.clone(),
            subnet: n.subnet.to_string(),
            gateway: n.gateway.to_string(),
            subnet6: n.subnet6.map(|s| s.to_string()),
            gateway6: n.gateway6().map(|g| g.to_string()),
            isolated: n.isolated,
            metadata: n.metadata,
            containers: host.attached.values().filter(|(net, _)| *net == n.name).count(),
        })
        .collect()
}

/// `network inspect NAME`.
pub fn inspect(host: &HostNetwork, name: &str) -> Result<NetworkDetail, InspectError> {
    let summary = list(host).into_iter().find(|n| n.name == name).ok_or_else(|| InspectError::NoSuchNetwork(name.into()))?;
    let link = keel_netconf::list_links().ok().and_then(|links| links.into_iter().find(|l| l.name == summary.bridge));
    let bridge_addresses = link
        .as_ref()
        .and_then(|l| keel_netconf::list_addresses(Some(l.index)).ok())
        .map(|list| list.iter().map(|a| format!("{}/{}", a.address, a.prefix)).collect())
        .unwrap_or_default();
    let network = host.config.network(name);
    let attached = host
        .attached
        .iter()
        .filter(|(_, (net, _))| net == name)
        .map(|(container, (_, address))| Attachment {
            container: container.clone(),
            address: address.to_string(),
            address6: network.and_then(|n| n.address6_for(*address)).map(|a| a.to_string()),
            published: host
                .published
                .get(container)
                .map(|ports| {
                    ports
                        .iter()
                        .map(|p| {
                            let proto = p.proto;
                            let host_ip = p.host_ip.map(|ip| format!("{ip}:")).unwrap_or_default();
                            format!("{host_ip}{} -> {}:{}/{proto}", p.host_port, p.dest, p.dest_port)
                        })
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect();
    let leases =
        host.ipam.as_ref().map(|ipam| ipam.allocations(name).into_iter().map(|(c, a)| format!("{c} {a}")).collect()).unwrap_or_default();
    Ok(NetworkDetail {
        summary,
        bridge_state: link.map(|l| format!("{} mtu {}", if l.up { "up" } else { "down" }, l.mtu)),
        bridge_addresses,
        attached,
        leases,
        uplink: host.uplink.clone(),
    })
}
