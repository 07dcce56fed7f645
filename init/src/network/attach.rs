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
use keel_supervisor::manager::{AttachError, NetworkAttacher};
use keel_supervisor::runtime::plan::MountOp;
use keel_supervisor::runtime::{HookError, LaunchPlan, NoHooks, StartHooks};
use keel_supervisor::spec::{ContainerName, ContainerSpec, NetworkMode};
use log::warn;
use nix::unistd::Pid;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

/// [`NetworkAttacher`] over the host's networks.
pub struct ContainerNetworks {
    network: Shared,
    /// What the last attach of each container took that a failed start must give back:
    /// the network whose address that attach allocated (None: the container held it
    /// before), and the files it wrote.
    taken: BTreeMap<String, Taken>,
}

/// What one attach took, beyond what [`NetworkAttacher::detach`] drops.
#[derive(Default)]
struct Taken {
    /// The network in which the attach allocated a new address.
    new_address: Option<String>,
    /// The files written for the container (resolv.conf, hosts).
    files: Vec<PathBuf>,
}

impl ContainerNetworks {
    /// Attach containers to the networks of `network`.
    pub fn new(network: Shared) -> Self {
        ContainerNetworks { network, taken: BTreeMap::new() }
    }
}

/// What the start hooks of one attached container need.
struct Veth {
    bridge: String,
    /// The host end, once `after_clone` made it.
    host_side: Option<String>,
    address: Ipv4Addr,
    prefix: u8,
    gateway: Ipv4Addr,
    /// IPv6 address, prefix and gateway, on networks with `subnet6`.
    ipv6: Option<(Ipv6Addr, u8, Ipv6Addr)>,
}

impl StartHooks for Veth {
    fn after_clone(&mut self, pid: Pid) -> Result<(), HookError> {
        let bridge = keel_netconf::link_index(&self.bridge)
            .map_err(|source| HookError::Netlink { what: format!("look up bridge {}", self.bridge), source })?
            .ok_or_else(|| HookError::Missing { what: "bridge", name: self.bridge.clone() })?;
        // Named after the pid: unique among live containers, and a late teardown of a
        // previous run's namespace cannot collide with it.
        let host_side = format!("kv{pid}");
        let created = keel_netconf::create_veth_into_netns(&host_side, bridge, "eth0", NetnsRef::Pid(pid.as_raw()))
            .map_err(|source| HookError::Netlink { what: format!("create veth {host_side}"), source });
        // Even a failed create may have left the host end behind.
        self.host_side = Some(host_side);
        created
    }

    fn in_child(&self) -> Result<(), HookError> {
        keel_netconf::configure_container_interface_dual("eth0", self.address, self.prefix, self.gateway, self.ipv6, None)
            .map_err(|source| HookError::Netlink { what: "configure eth0".into(), source })
    }

    /// The start failed: delete the host end (its peer goes with it) rather than wait
    /// for the kernel to tear the dead namespace down.
    fn undo(&mut self) -> Result<(), HookError> {
        let Some(host_side) = self.host_side.take() else { return Ok(()) };
        match keel_netconf::delete_link(&host_side) {
            Err(e) if e.kernel_errno() != Some(keel_netconf::socket::ENODEV) => {
                Err(HookError::Netlink { what: format!("delete veth {host_side}"), source: e })
            }
            _ => Ok(()),
        }
    }
}

/// `network = "none"`: the namespace's `lo` up, nothing else.
pub struct LoopbackOnly;

impl StartHooks for LoopbackOnly {
    fn after_clone(&mut self, _pid: Pid) -> Result<(), HookError> {
        Ok(())
    }
    fn in_child(&self) -> Result<(), HookError> {
        keel_netconf::set_link_up("lo").map_err(|source| HookError::Netlink { what: "set lo up".into(), source })
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
    fn attach(&mut self, spec: &ContainerSpec, plan: &mut LaunchPlan) -> Result<Box<dyn StartHooks>, AttachError> {
        let container = spec.name.as_str();
        self.taken.remove(container);
        let name = match &spec.network {
            NetworkMode::Host => return Ok(Box::new(NoHooks)),
            NetworkMode::None => return Ok(Box::new(LoopbackOnly)),
            NetworkMode::Named(name) => name,
        };
        let taken = self.taken.entry(container.to_string()).or_default();
        let mut host = self.network.borrow_mut();
        let network: Network = host.config.network(name).cloned().ok_or_else(|| AttachError::Undeclared { network: name.clone() })?;
        let ipam = host.ipam.as_mut().ok_or(AttachError::NoIpam)?;
        let held_before = ipam.lookup(name, container).is_some();
        let address = ipam.allocate(&network, container).map_err(|source| AttachError::Ipam { network: name.clone(), source })?;
        if !held_before {
            taken.new_address = Some(name.clone());
        }
        let ipv6 = match (network.subnet6, network.gateway6()) {
            (Some(subnet6), Some(gateway6)) => {
                let address6 = network.address6_for(address).ok_or_else(|| AttachError::NoIpv6 {
                    network: name.clone(),
                    address,
                    subnet6: subnet6.to_string(),
                })?;
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
                return Err(AttachError::PortTaken { port: port.host_port, proto: port.proto.to_string(), other: other.clone() });
            }
        }
        let state = plan.root.merged.parent().map(|p| p.to_path_buf()).unwrap_or_default();
        let file_error = |op, path: &PathBuf| {
            let path = path.clone();
            move |source| AttachError::File { op, path, source }
        };
        std::fs::create_dir_all(&state).map_err(file_error("create directory", &state))?;
        let resolv = state.join("resolv.conf");
        let hosts = state.join("hosts");
        taken.files.push(resolv.clone());
        write_atomically(&resolv, host.resolv_conf.as_bytes()).map_err(file_error("write", &resolv))?;
        taken.files.push(hosts.clone());
        write_atomically(&hosts, hosts_file(container, &spec.hostname, address, ipv6.map(|(a, _, _)| a)).as_bytes())
            .map_err(file_error("write", &hosts))?;
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
                return Err(AttachError::Firewall(e.into()));
            }
        }
        Ok(Box::new(Veth {
            bridge: network.bridge.clone(),
            host_side: None,
            address,
            prefix: network.subnet.prefix,
            gateway: network.gateway,
            ipv6,
        }))
    }

    fn undo_attach(&mut self, name: &ContainerName) -> Vec<AttachError> {
        let mut errors = Vec::new();
        let taken = self.taken.remove(name.as_str());
        self.detach(name);
        let Some(taken) = taken else { return errors };
        for path in taken.files {
            match std::fs::remove_file(&path) {
                Err(source) if source.kind() != std::io::ErrorKind::NotFound => {
                    errors.push(AttachError::File { op: "remove", path, source })
                }
                _ => {}
            }
        }
        if let Some(network) = taken.new_address {
            let mut host = self.network.borrow_mut();
            match host.ipam.as_mut() {
                Some(ipam) => {
                    if let Err(source) = ipam.release(&network, name.as_str()) {
                        errors.push(AttachError::Ipam { network, source });
                    }
                }
                None => errors.push(AttachError::NoIpam),
            }
        }
        errors
    }

    fn detach(&mut self, name: &ContainerName) {
        // What a start took is its container's now.
        self.taken.remove(name.as_str());
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
