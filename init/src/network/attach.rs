//! Containers on keel networks: an address from IPAM, /etc/resolv.conf and /etc/hosts,
//! on networks with `subnet6` also an IPv6 address derived from the IPv4 one (the same
//! host number in `subnet6`: 10.88.0.5 → fd00:88::5, see `Network::address6_for`; no
//! second allocation is kept) with an IPv6 default route via the bridge,
//! published ports and `metadata_access` in the firewall, and a veth pair whose peer is born as `eth0` in
//! the container's network namespace, configured from inside before the container's
//! program runs. Teardown is the namespace dying with the container.

use super::{write_atomically, Shared};
use keel_netconf::config::Network;
use keel_netconf::nft::Published;
use keel_netconf::NetnsRef;
use keel_supervisor::manager::NetworkAttacher;
use keel_supervisor::runtime::plan::MountOp;
use keel_supervisor::runtime::{LaunchPlan, NoHooks, StartHooks};
use keel_supervisor::spec::{ContainerName, ContainerSpec, NetworkMode};
use log::warn;
use nix::unistd::Pid;
use std::net::{Ipv4Addr, Ipv6Addr};

/// [`NetworkAttacher`] over the host's networks.
pub struct ContainerNetworks {
    network: Shared,
}

impl ContainerNetworks {
    /// Attach containers to the networks of `network`.
    pub fn new(network: Shared) -> Self {
        ContainerNetworks { network }
    }
}

/// What the start hooks of one attached container need.
struct Veth {
    bridge: String,
    address: Ipv4Addr,
    prefix: u8,
    gateway: Ipv4Addr,
    /// IPv6 address, prefix and gateway, on networks with `subnet6`.
    ipv6: Option<(Ipv6Addr, u8, Ipv6Addr)>,
}

impl StartHooks for Veth {
    fn after_clone(&mut self, pid: Pid) -> Result<(), String> {
        let bridge = keel_netconf::link_index(&self.bridge)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("bridge {} does not exist", self.bridge))?;
        // Named after the pid: unique among live containers, and a late teardown of a
        // previous run's namespace cannot collide with it.
        let host_side = format!("kv{pid}");
        keel_netconf::create_veth_into_netns(&host_side, bridge, "eth0", NetnsRef::Pid(pid.as_raw())).map_err(|e| e.to_string())
    }

    fn in_child(&self) -> Result<(), String> {
        keel_netconf::configure_container_interface_dual("eth0", self.address, self.prefix, self.gateway, self.ipv6, None)
            .map_err(|e| e.to_string())
    }
}

/// `network = "none"`: the namespace's `lo` up, nothing else.
pub struct LoopbackOnly;

impl StartHooks for LoopbackOnly {
    fn after_clone(&mut self, _pid: Pid) -> Result<(), String> {
        Ok(())
    }
    fn in_child(&self) -> Result<(), String> {
        keel_netconf::set_link_up("lo").map_err(|e| format!("set lo up: {e}"))
    }
}

/// The /etc/hosts of a container.
fn hosts_file(name: &str, hostname: &str, address: Ipv4Addr, address6: Option<Ipv6Addr>) -> String {
    let mut text = format!("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{address}\t{hostname} {name}\n");
    if let Some(address6) = address6 {
        text.push_str(&format!("{address6}\t{hostname} {name}\n"));
    }
    text
}

impl NetworkAttacher for ContainerNetworks {
    fn attach(&mut self, spec: &ContainerSpec, plan: &mut LaunchPlan) -> Result<Box<dyn StartHooks>, String> {
        let name = match &spec.network {
            NetworkMode::Host => return Ok(Box::new(NoHooks)),
            NetworkMode::None => return Ok(Box::new(LoopbackOnly)),
            NetworkMode::Named(name) => name,
        };
        let mut host = self.network.borrow_mut();
        let network: Network =
            host.config.network(name).cloned().ok_or_else(|| format!("network: {name:?} is not declared in /etc/keel/network.toml"))?;
        let container = spec.name.as_str();
        let ipam = host.ipam.as_mut().ok_or("network: IPAM is not available (see the boot log)")?;
        let address = ipam.allocate(&network, container).map_err(|e| format!("network {name}: {e}"))?;
        let ipv6 = match (network.subnet6, network.gateway6()) {
            (Some(subnet6), Some(gateway6)) => {
                let address6 = network
                    .address6_for(address)
                    .ok_or_else(|| format!("network {name}: {address} has no IPv6 counterpart in {subnet6}"))?;
                Some((address6, subnet6.prefix, gateway6))
            }
            _ => None,
        };
        let published: Vec<Published> = spec
            .ports
            .iter()
            .map(|p| Published { proto: p.proto, host_ip: p.host_ip, host_port: p.host_port, dest: address, dest_port: p.container_port })
            .collect();
        for port in &published {
            let clash = host.published.iter().find(|(other, list)| {
                other.as_str() != container
                    && list.iter().any(|q| {
                        q.proto == port.proto
                            && q.host_port == port.host_port
                            && (q.host_ip.is_none() || port.host_ip.is_none() || q.host_ip == port.host_ip)
                    })
            });
            if let Some((other, _)) = clash {
                return Err(format!("ports: {}/{} is already published by container {other}", port.host_port, port.proto));
            }
        }
        let state = plan.root.merged.parent().map(|p| p.to_path_buf()).unwrap_or_default();
        std::fs::create_dir_all(&state).map_err(|e| format!("{}: {e}", state.display()))?;
        let resolv = state.join("resolv.conf");
        let hosts = state.join("hosts");
        write_atomically(&resolv, host.resolv_conf.as_bytes()).map_err(|e| format!("{}: {e}", resolv.display()))?;
        write_atomically(&hosts, hosts_file(container, &spec.hostname, address, ipv6.map(|(a, _, _)| a)).as_bytes())
            .map_err(|e| format!("{}: {e}", hosts.display()))?;
        host.resolv_files.insert(container.to_string(), resolv.clone());
        plan.mounts.push(MountOp::Bind { source: resolv, target: "/etc/resolv.conf".into(), read_only: true });
        plan.mounts.push(MountOp::Bind { source: hosts, target: "/etc/hosts".into(), read_only: true });
        host.attached.insert(container.to_string(), (name.clone(), address));
        if spec.metadata_access {
            host.metadata_access.insert(container.to_string(), (address, ipv6.map(|(a, _, _)| a)));
        }
        if !published.is_empty() || spec.metadata_access {
            if !published.is_empty() {
                host.published.insert(container.to_string(), published);
            }
            if let Err(e) = host.apply_firewall() {
                host.published.remove(container);
                host.metadata_access.remove(container);
                return Err(e);
            }
        }
        Ok(Box::new(Veth { bridge: network.bridge.clone(), address, prefix: network.subnet.prefix, gateway: network.gateway, ipv6 }))
    }

    fn detach(&mut self, name: &ContainerName) {
        let mut host = self.network.borrow_mut();
        host.attached.remove(name.as_str());
        host.resolv_files.remove(name.as_str());
        let had_ports = host.published.remove(name.as_str()).is_some();
        let had_metadata = host.metadata_access.remove(name.as_str()).is_some();
        if had_ports || had_metadata {
            if let Err(e) = host.apply_firewall() {
                warn!("container {name}: removing its published ports: {e}");
            }
        }
    }
}
