//! The host's networks, as PID 1 runs them: the declaration (/etc/keel/network.toml or
//! the default), the container bridges, the uplink (static or DHCP), IPAM, and keel's
//! nftables table, re-applied as one batch whenever a published port comes or goes.
//!
//! [`HostNetwork`] is shared (single-threaded `Rc<RefCell>`) between the boot step that
//! builds it, the uplink's DHCP driver in the event loop, the container attacher and
//! the control commands.

pub mod attach;
pub mod error;
pub mod inspect;
pub mod live;
pub mod reload;
pub mod uplink;

pub use error::{InspectError, NetworkConfigError, NetworkProblem, UplinkError, UplinkStep};

use keel_netconf::config::{self, InputPolicy, NetworkConfig, UplinkMode, UplinkSelect};
use keel_netconf::dhcp::Lease;
use keel_netconf::ipam::Ipam;
use keel_netconf::nft::{self, BridgeRule, FirewallState, Published};
use log::{info, warn};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::rc::Rc;

/// The host's networks, shared by PID 1's parts.
pub type Shared = Rc<RefCell<HostNetwork>>;

/// What the uplink has now.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UplinkStatus {
    /// Interface name.
    pub interface: String,
    /// `dhcp` or `static`.
    pub mode: String,
    /// Address and prefix, once configured.
    pub address: Option<String>,
    /// Default gateway.
    pub gateway: Option<Ipv4Addr>,
    /// DNS servers.
    pub dns: Vec<String>,
    /// Seconds of the current DHCP lease.
    pub lease_secs: Option<u32>,
    /// The DHCP server.
    pub server: Option<Ipv4Addr>,
}

/// Networks, addresses and published ports of the host.
pub struct HostNetwork {
    /// The declaration in force.
    pub config: NetworkConfig,
    /// Address allocations (None when /var/lib/keel/ipam cannot be used).
    pub ipam: Option<Ipam>,
    /// The uplink, once chosen.
    pub uplink: Option<UplinkStatus>,
    /// Ports published by each running container.
    pub published: BTreeMap<String, Vec<Published>>,
    /// Containers attached to a network: (network, address).
    pub attached: BTreeMap<String, (String, Ipv4Addr)>,
    /// Attached containers declared with `metadata_access = true`: their addresses.
    pub metadata_access: BTreeMap<String, (Ipv4Addr, Option<Ipv6Addr>)>,
    /// The resolv.conf containers get (the host's DNS).
    pub resolv_conf: String,
    /// Each attached container's resolv.conf (bind-mounted into it), rewritten in place
    /// when the host's DNS changes.
    pub resolv_files: BTreeMap<String, std::path::PathBuf>,
    /// The remote API's TCP port, opened on input from the uplink when the API is configured.
    pub api_port: Option<u16>,
    /// The remote API's plain metrics port, opened in the input firewall when api.toml
    /// sets `metrics_listen` on an address other than loopback.
    pub metrics_port: Option<u16>,
    /// While true, [`apply_firewall`](Self::apply_firewall) does nothing: the boot has
    /// not loaded nf_tables yet (it loads after ready); its late step clears this and
    /// applies the table before any container may start (see `late_boot`).
    pub firewall_held: bool,
}

/// Where container networks keep their allocations.
pub const IPAM_DIR: &str = "/var/lib/keel/ipam";

/// Why keel's firewall could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    /// The kernel refused the nftables batch.
    #[error("firewall: {0}")]
    Nft(#[source] nft::NftError),
    /// route_localnet could not be switched on these bridges.
    #[error("firewall: {}", localnet_problems(.0))]
    RouteLocalnet(Vec<(String, std::io::Error)>),
}

/// "route_localnet on BRIDGE: ERROR", joined by "; ".
fn localnet_problems(problems: &[(String, std::io::Error)]) -> String {
    problems.iter().map(|(bridge, e)| format!("route_localnet on {bridge}: {e}")).collect::<Vec<_>>().join("; ")
}

impl HostNetwork {
    /// The networks of `config`, with allocations kept in `ipam_dir`.
    pub fn new(config: NetworkConfig, ipam_dir: &Path) -> Self {
        let ipam = Ipam::open(ipam_dir).map_err(|e| warn!("ipam: {e}; containers on networks cannot start")).ok();
        HostNetwork {
            config,
            ipam,
            uplink: None,
            published: BTreeMap::new(),
            attached: BTreeMap::new(),
            metadata_access: BTreeMap::new(),
            resolv_conf: "# keel: no DNS server known yet\n".into(),
            resolv_files: BTreeMap::new(),
            api_port: None,
            metrics_port: None,
            firewall_held: false,
        }
    }

    /// What keel's nftables table must hold now.
    pub fn firewall_state(&self) -> FirewallState {
        FirewallState {
            uplink: self.uplink.as_ref().map(|u| u.interface.clone()),
            container_subnets: self.config.networks.iter().map(|n| (n.subnet.addr, n.subnet.prefix)).collect(),
            container_subnets6: self.config.networks.iter().filter_map(|n| n.subnet6).map(|s| (s.network(), s.prefix)).collect(),
            bridges: self
                .config
                .networks
                .iter()
                .map(|n| BridgeRule {
                    name: n.bridge.clone(),
                    subnet: (n.subnet.addr, n.subnet.prefix),
                    isolated: n.isolated,
                    metadata: n.metadata,
                })
                .collect(),
            published: self.published.values().flatten().cloned().collect(),
            input_drop: self.config.firewall.input == InputPolicy::Drop,
            allow: self
                .config
                .firewall
                .allow
                .iter()
                .copied()
                .chain([self.api_port, self.metrics_port].into_iter().flatten().map(|p| (keel_netconf::config::Proto::Tcp, p)))
                .collect(),
            metadata_hosts: self.metadata_access.values().map(|(v4, _)| *v4).collect(),
            metadata_hosts6: self.metadata_access.values().filter_map(|(_, v6)| *v6).collect(),
        }
    }

    /// Replace keel's nftables table with [`firewall_state`](Self::firewall_state), atomically,
    /// then turn `route_localnet` on for exactly the bridges that need it (a port published
    /// on 127.0.0.1 by one of their containers) and off for the others.
    pub fn apply_firewall(&self) -> Result<(), FirewallError> {
        if self.firewall_held {
            return Ok(());
        }
        let state = self.firewall_state();
        nft::apply(&state).map_err(FirewallError::Nft)?;
        let needed = state.localnet_bridges();
        let mut problems = Vec::new();
        for bridge in &state.bridges {
            let on = needed.contains(&bridge.name.as_str());
            if let Err(e) = keel_netconf::set_route_localnet(&bridge.name, on) {
                // A missing bridge (its creation failed, reported at boot) has no switch.
                if on || e.kind() != std::io::ErrorKind::NotFound {
                    problems.push((bridge.name.clone(), e));
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(FirewallError::RouteLocalnet(problems))
        }
    }

    /// New DNS settings for containers: running ones see them at once. Their files are
    /// rewritten in place, since a bind mount keeps the inode it was made with.
    pub fn set_resolv_conf(&mut self, text: String) {
        if text == self.resolv_conf {
            return;
        }
        for (container, path) in &self.resolv_files {
            if let Err(e) = std::fs::write(path, &text) {
                warn!("container {container}: {}: {e}", path.display());
            }
        }
        self.resolv_conf = text;
    }

    /// A DHCP lease was bound or renewed on the uplink.
    pub fn set_lease(&mut self, interface: &str, lease: &Lease) {
        self.set_resolv_conf(keel_netconf::dhcp::resolv_conf(lease));
        self.uplink = Some(UplinkStatus {
            interface: interface.to_string(),
            mode: "dhcp".into(),
            address: Some(format!("{}/{}", lease.address, lease.prefix)),
            gateway: lease.router,
            dns: lease.dns.iter().map(ToString::to_string).collect(),
            lease_secs: Some(lease.lease_secs),
            server: Some(lease.server),
        });
    }
}

/// Forget the addresses of containers that are no longer declared (their files were
/// removed): the only way a container goes away on an immutable host.
pub fn release_undeclared(network: &mut HostNetwork, declared: &[String]) {
    let Some(ipam) = network.ipam.as_mut() else { return };
    let names: Vec<String> = network.config.networks.iter().map(|n| n.name.clone()).collect();
    for net in names {
        for (container, address) in ipam.allocations(&net) {
            if !declared.contains(&container) {
                match ipam.release(&net, &container) {
                    Ok(()) => info!("network {net}: released {address} of {container}, no longer declared"),
                    Err(e) => warn!("network {net}: releasing {container}: {e}"),
                }
            }
        }
    }
}

/// Read /etc/keel/network.toml, or the default when there is none. A bad file is
/// reported and the default used, so the host stays reachable.
pub fn load_config(path: &Path) -> (NetworkConfig, Option<NetworkConfigError>) {
    match std::fs::read_to_string(path) {
        Ok(text) => match config::parse(&text, &path.display().to_string()) {
            Ok(config) => (config, None),
            Err(errors) => (config::default_config(), Some(NetworkConfigError::Invalid(errors))),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (config::default_config(), None),
        Err(source) => (config::default_config(), Some(NetworkConfigError::Read { path: path.to_path_buf(), source })),
    }
}

/// Boot: forwarding on (IPv6 too when a network has `subnet6`), every bridge up with its
/// gateway address (and IPv6 gateway: the first host of `subnet6`), then the firewall.
/// Returns the problems (each step that failed), having done every step it could.
pub fn bring_up_bridges(network: &HostNetwork) -> Vec<NetworkProblem> {
    let mut problems = Vec::new();
    if let Err(source) = keel_netconf::set_ipv4_forwarding(true) {
        problems.push(NetworkProblem::Forwarding { family: "IPv4", source });
    }
    // route_localnet (for ports published on 127.0.0.1) is set per bridge, only where
    // needed, by `apply_firewall`; never on `all` (CVE-2020-8558).
    if network.config.networks.iter().any(|n| n.subnet6.is_some()) {
        if let Err(source) = keel_netconf::set_ipv6_forwarding(true) {
            problems.push(NetworkProblem::Forwarding { family: "IPv6", source });
        }
    }
    for net in &network.config.networks {
        let address6 = net.subnet6.and_then(|s| Some((net.gateway6()?, s.prefix)));
        match keel_netconf::ensure_bridge_dual(&net.bridge, net.gateway, net.subnet.prefix, address6) {
            Ok(_) => match address6 {
                Some((gateway6, prefix6)) => {
                    info!("network {}: bridge {} at {}/{} and {gateway6}/{prefix6}", net.name, net.bridge, net.gateway, net.subnet.prefix)
                }
                None => info!("network {}: bridge {} at {}/{}", net.name, net.bridge, net.gateway, net.subnet.prefix),
            },
            Err(source) => problems.push(NetworkProblem::Bridge { network: net.name.clone(), bridge: net.bridge.clone(), source }),
        }
    }
    problems
}

/// Which link the first `[[uplink]]` means, and how to configure it.
pub fn choose_uplink(config: &NetworkConfig) -> Result<Option<(keel_netconf::LinkInfo, UplinkMode, Option<u32>)>, UplinkError> {
    let Some(uplink) = config.uplinks.first() else { return Ok(None) };
    let links = keel_netconf::list_links().map_err(UplinkError::ListLinks)?;
    let link = match &uplink.select {
        UplinkSelect::Name(name) => links.into_iter().find(|l| l.name == *name),
        UplinkSelect::Mac(mac) => links.into_iter().find(|l| l.mac.as_ref() == Some(mac)),
        UplinkSelect::FirstEthernet => keel_netconf::first_ethernet(),
    };
    match link {
        Some(link) => Ok(Some((link, uplink.mode.clone(), uplink.mtu))),
        None if uplink.select == UplinkSelect::FirstEthernet => Ok(None),
        None => Err(UplinkError::NoSuchInterface(uplink.select.clone())),
    }
}

/// Configure a static uplink: up, MTU, address, default route, resolv.conf.
pub fn configure_static(
    network: &mut HostNetwork,
    link: &keel_netconf::LinkInfo,
    mode: &UplinkMode,
    mtu: Option<u32>,
) -> Result<(), UplinkError> {
    let UplinkMode::Static { address, gateway, dns } = mode else { return Ok(()) };
    let step = |step: UplinkStep| move |source| UplinkError::Link { interface: link.name.clone(), step, source };
    if let Some(mtu) = mtu {
        keel_netconf::set_mtu(link.index, mtu).map_err(step(UplinkStep::Mtu(mtu)))?;
    }
    keel_netconf::set_up(link.index).map_err(step(UplinkStep::Up))?;
    keel_netconf::add_address(link.index, address.addr.into(), address.prefix)
        .map_err(step(UplinkStep::Address(address.addr, address.prefix)))?;
    if let Some(gateway) = gateway {
        keel_netconf::add_default_route(*gateway, Some(link.index)).map_err(step(UplinkStep::DefaultRoute(*gateway)))?;
    }
    let resolv: String = dns.iter().map(|d| format!("nameserver {d}\n")).collect();
    network.set_resolv_conf(format!("# written by keel from {}\n{resolv}", config::CONFIG_PATH));
    write_host_resolv_conf(&network.resolv_conf);
    network.uplink = Some(UplinkStatus {
        interface: link.name.clone(),
        mode: "static".into(),
        address: Some(format!("{}/{}", address.addr, address.prefix)),
        gateway: *gateway,
        dns: dns.iter().map(ToString::to_string).collect(),
        lease_secs: None,
        server: None,
    });
    info!("uplink {}: {}/{} (static)", link.name, address.addr, address.prefix);
    Ok(())
}

/// Write the host's /etc/resolv.conf atomically.
pub fn write_host_resolv_conf(text: &str) {
    if let Err(e) = write_atomically(Path::new("/etc/resolv.conf"), text.as_bytes()) {
        warn!("/etc/resolv.conf: {e}");
    }
}

/// Temp file, fsync, rename: a reader never sees half a file.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("keel-tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(toml: &str) -> HostNetwork {
        let config = config::parse(toml, "network.toml").unwrap();
        // No IPAM needed: the firewall state depends only on the declaration and the maps.
        HostNetwork::new(config, Path::new("/nonexistent/keel-test-ipam"))
    }

    #[test]
    fn firewall_state_carries_the_metadata_switches_and_drops_input_by_default() {
        let mut net = host(
            "[[network]]\nname = \"a\"\nsubnet = \"10.1.0.0/24\"\nmetadata = true\n\n[[network]]\nname = \"b\"\nsubnet = \"10.2.0.0/24\"\n",
        );
        let state = net.firewall_state();
        assert!(state.input_drop, "no [firewall]: input dropped");
        assert_eq!(state.bridges.iter().map(|b| (b.name.as_str(), b.metadata)).collect::<Vec<_>>(), [("a", true), ("b", false)]);
        assert!(state.metadata_hosts.is_empty() && state.metadata_hosts6.is_empty());
        net.metadata_access.insert("x".into(), (Ipv4Addr::new(10, 2, 0, 5), Some("fd00::5".parse().unwrap())));
        net.metadata_access.insert("y".into(), (Ipv4Addr::new(10, 2, 0, 6), None));
        let state = net.firewall_state();
        assert_eq!(state.metadata_hosts, [Ipv4Addr::new(10, 2, 0, 5), Ipv4Addr::new(10, 2, 0, 6)]);
        assert_eq!(state.metadata_hosts6, ["fd00::5".parse::<Ipv6Addr>().unwrap()]);
        let open = host("[firewall]\ninput = \"accept\"\n");
        assert!(!open.firewall_state().input_drop, "accept is kept when written");
    }

    #[test]
    fn api_port_is_allowed_only_when_configured() {
        use keel_netconf::config::Proto;
        let mut net = host("[firewall]\nallow = [\"tcp/22\"]\n");
        assert_eq!(net.firewall_state().allow, [(Proto::Tcp, 22)], "no API: its port stays closed");
        net.api_port = Some(50000);
        assert_eq!(net.firewall_state().allow, [(Proto::Tcp, 22), (Proto::Tcp, 50000)]);
        net.metrics_port = Some(9100);
        assert_eq!(net.firewall_state().allow, [(Proto::Tcp, 22), (Proto::Tcp, 50000), (Proto::Tcp, 9100)]);
    }
}
