//! Why a part of the host's networking could not be set up: one typed problem per step
//! of the network boot step (declaration, forwarding, bridges, uplink, firewall), each
//! naming the interface, network or file it is about and carrying its cause. The boot
//! step gathers every problem (it does each step it can) into
//! [`crate::boot_error::BootError::Network`].

use super::FirewallError;
use keel_netconf::config::{ConfigErrors, UplinkSelect};
use keel_netconf::NetlinkError;
use std::net::Ipv4Addr;
use std::path::PathBuf;

/// Why /etc/keel/network.toml was not used (the default configuration was).
#[derive(Debug, thiserror::Error)]
pub enum NetworkConfigError {
    /// The file is invalid: every problem, with file, line and key.
    #[error("{0}; using the default network configuration")]
    Invalid(#[source] ConfigErrors),
    /// The file exists but cannot be read.
    #[error("{}: {source}; using the default network configuration", path.display())]
    Read {
        /// The declaration's path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// The uplink could not be found or configured.
#[derive(Debug, thiserror::Error)]
pub enum UplinkError {
    /// The kernel's links could not be listed, so no uplink could be chosen.
    #[error("uplink: list links: {0}")]
    ListLinks(#[source] NetlinkError),
    /// `[[uplink]]` names an interface (by name or MAC) the machine does not have.
    #[error("uplink {}: no such interface", select_text(.0))]
    NoSuchInterface(UplinkSelect),
    /// A netlink step of the static configuration (or DHCP's link up) failed.
    #[error("uplink {interface}: {step}: {source}")]
    Link {
        /// The uplink's interface.
        interface: String,
        /// What was being set.
        step: UplinkStep,
        /// The kernel's answer.
        #[source]
        source: NetlinkError,
    },
    /// The DHCP client's socket could not be opened on the interface.
    #[error("uplink {interface}: dhcp socket: {source}")]
    DhcpSocket {
        /// The uplink's interface.
        interface: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// The netlink steps of bringing an uplink up, named in [`UplinkError::Link`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UplinkStep {
    /// `ip link set IF mtu N`.
    Mtu(u32),
    /// `ip link set IF up`.
    Up,
    /// `ip addr add ADDRESS/PREFIX dev IF`.
    Address(Ipv4Addr, u8),
    /// `ip route add default via GATEWAY dev IF`.
    DefaultRoute(Ipv4Addr),
}

impl std::fmt::Display for UplinkStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UplinkStep::Mtu(mtu) => write!(f, "set mtu {mtu}"),
            UplinkStep::Up => f.write_str("set up"),
            UplinkStep::Address(address, prefix) => write!(f, "add address {address}/{prefix}"),
            UplinkStep::DefaultRoute(gateway) => write!(f, "add default route via {gateway}"),
        }
    }
}

/// How an `[[uplink]]` selection reads in a message.
fn select_text(select: &UplinkSelect) -> String {
    match select {
        UplinkSelect::Name(name) => format!("interface {name:?}"),
        UplinkSelect::Mac(mac) => {
            let hex: Vec<String> = mac.iter().map(|b| format!("{b:02x}")).collect();
            format!("mac {}", hex.join(":"))
        }
        UplinkSelect::FirstEthernet => "first ethernet interface".into(),
    }
}

/// One problem of the network boot step (or of the late step that brings the bridges up).
#[derive(Debug, thiserror::Error)]
pub enum NetworkProblem {
    /// network.toml was not used.
    #[error(transparent)]
    Config(#[from] NetworkConfigError),
    /// route_localnet could not be turned off on `all` (CVE-2020-8558).
    #[error("route_localnet off on all: {0}")]
    RouteLocalnetOff(#[source] std::io::Error),
    /// IP forwarding could not be turned on.
    #[error("enable {family} forwarding: {source}")]
    Forwarding {
        /// `IPv4` or `IPv6`.
        family: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A network's bridge could not be created or given its gateway address.
    #[error("network {network}: bridge {bridge}: {source}")]
    Bridge {
        /// The network's name.
        network: String,
        /// Its bridge interface.
        bridge: String,
        /// The kernel's answer.
        #[source]
        source: NetlinkError,
    },
    /// The uplink.
    #[error(transparent)]
    Uplink(#[from] UplinkError),
    /// keel's nftables table.
    #[error(transparent)]
    Firewall(#[from] FirewallError),
}

/// Why `keelctl network inspect NAME` has nothing to show.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// No network of that name is declared.
    #[error("no network {0:?} (see keelctl network ls)")]
    NoSuchNetwork(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_name_their_interface_and_step() {
        let e = UplinkError::NoSuchInterface(UplinkSelect::Name("eth9".into()));
        assert_eq!(e.to_string(), "uplink interface \"eth9\": no such interface");
        let e = UplinkError::NoSuchInterface(UplinkSelect::Mac([0x52, 0x54, 0, 0x12, 0x34, 0x56]));
        assert_eq!(e.to_string(), "uplink mac 52:54:00:12:34:56: no such interface");
        let e = UplinkError::DhcpSocket { interface: "eth0".into(), source: std::io::Error::from_raw_os_error(19) };
        assert!(e.to_string().starts_with("uplink eth0: dhcp socket: No such device"), "{e}");
        assert_eq!(UplinkStep::Address(Ipv4Addr::new(10, 0, 2, 15), 24).to_string(), "add address 10.0.2.15/24");
        assert_eq!(UplinkStep::DefaultRoute(Ipv4Addr::new(10, 0, 2, 2)).to_string(), "add default route via 10.0.2.2");
        assert_eq!(UplinkStep::Mtu(9000).to_string(), "set mtu 9000");
        let p = NetworkProblem::Forwarding { family: "IPv6", source: std::io::Error::from_raw_os_error(30) };
        assert!(p.to_string().starts_with("enable IPv6 forwarding: Read-only file system"), "{p}");
        let p = NetworkProblem::from(NetworkConfigError::Read {
            path: "/etc/keel/network.toml".into(),
            source: std::io::Error::from_raw_os_error(13),
        });
        assert!(p.to_string().starts_with("/etc/keel/network.toml: Permission denied"), "{p}");
        assert!(p.to_string().ends_with("; using the default network configuration"), "{p}");
        assert_eq!(InspectError::NoSuchNetwork("x".into()).to_string(), "no network \"x\" (see keelctl network ls)");
    }
}
