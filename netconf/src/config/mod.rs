//! The network declaration, `/etc/keel/network.toml`: uplinks, container networks and
//! the host firewall, parsed strictly (unknown keys are errors) and validated whole.
//! Every problem is reported, not just the first, as `file:line: key: message`, so one
//! boot log says everything there is to fix.
//!
//! Defaults, so that a machine without the file (or with a partial one) still works
//! the way a cloud VM is expected to:
//! - no file at all: [`default_config`];
//! - no `[[uplink]]`: one uplink, DHCP on the first ethernet interface;
//! - no `[[network]]`: the network `keel0`, 10.88.0.0/16, gateway 10.88.0.1. Declaring
//!   any `[[network]]` replaces it (containers then have to name one that exists);
//! - no `[firewall]` (or no `input` in it): input dropped, except established traffic,
//!   loopback, DHCP replies, ICMP, published ports and `allow` (on the uplink);
//!   `input = "accept"` opens the host to everything, and has to be written;
//! - containers do not reach the cloud metadata service (169.254.169.254,
//!   fd00:ec2::254) unless their network says `metadata = true` or their declaration
//!   `metadata_access = true`.
//!
//! Published ports (`ports = [...]` in container declarations) are parsed here too
//! ([`parse_port`]) and checked against the declaration ([`check_ports`]).

mod cidr;
mod ports;
mod raw;
mod validate;

#[cfg(test)]
mod tests;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub use cidr::{Ipv4Net, Ipv6Net};
pub use ports::{check_ports, parse_port, PortMapping};
pub use validate::parse;

/// Where the network declaration lives.
pub const CONFIG_PATH: &str = "/etc/keel/network.toml";

/// The network containers join when their declaration names none.
pub const DEFAULT_NETWORK: &str = "keel0";

/// The whole declaration, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkConfig {
    /// Host interfaces facing the outside world.
    pub uplinks: Vec<Uplink>,
    /// Container networks (one bridge each); never empty.
    pub networks: Vec<Network>,
    /// The host's input firewall.
    pub firewall: Firewall,
}

impl NetworkConfig {
    /// The network called `name`, if declared.
    pub fn network(&self, name: &str) -> Option<&Network> {
        self.networks.iter().find(|n| n.name == name)
    }
}

/// One `[[uplink]]`: which interface, and how it gets its address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uplink {
    /// How the interface is found.
    pub select: UplinkSelect,
    /// DHCP or a static address.
    pub mode: UplinkMode,
    /// MTU to set (68..=65535); `None` keeps the kernel's (or the DHCP server's).
    pub mtu: Option<u32>,
}

/// How an uplink's interface is found at boot (names can change between machines,
/// MACs are stable, and a cloud VM usually has exactly one ethernet interface).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UplinkSelect {
    /// `interface = "eth0"`.
    Name(String),
    /// `mac = "52:54:00:12:34:56"`.
    Mac([u8; 6]),
    /// Neither given: the first ethernet interface.
    FirstEthernet,
}

/// How an uplink gets its address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UplinkMode {
    /// `dhcp = true` (the default).
    Dhcp,
    /// A fixed address.
    Static {
        /// Address and prefix length, e.g. 10.0.2.15/24.
        address: Ipv4Net,
        /// Default route via this router, if any.
        gateway: Option<Ipv4Addr>,
        /// Name servers for the host's and containers' resolv.conf.
        dns: Vec<IpAddr>,
    },
}

/// One `[[network]]`: a bridge that containers attach to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    /// `[a-z0-9][a-z0-9_-]*`, at most 15 characters; what containers name.
    pub name: String,
    /// The bridge interface (default: the name).
    pub bridge: String,
    /// IPv4 prefix (host bits clear, at most /30).
    pub subnet: Ipv4Net,
    /// Optional IPv6 prefix.
    pub subnet6: Option<Ipv6Net>,
    /// The bridge's address and containers' default route (default: first host).
    pub gateway: Ipv4Addr,
    /// No route to other container networks.
    pub isolated: bool,
    /// `metadata = true`: every container of this network may reach the cloud metadata
    /// service (169.254.169.254, fd00:ec2::254). Off by default: the metadata service
    /// hands out the machine's credentials, which are the host's, not a container's.
    pub metadata: bool,
}

impl Network {
    /// The built-in `keel0` network: 10.88.0.0/16, gateway 10.88.0.1.
    pub fn default_keel0() -> Network {
        Network {
            name: DEFAULT_NETWORK.into(),
            bridge: DEFAULT_NETWORK.into(),
            subnet: Ipv4Net { addr: Ipv4Addr::new(10, 88, 0, 0), prefix: 16 },
            subnet6: None,
            gateway: Ipv4Addr::new(10, 88, 0, 1),
            isolated: false,
            metadata: false,
        }
    }

    /// The bridge's IPv6 address and the containers' IPv6 default route: the first host of
    /// `subnet6` (`None` without `subnet6`).
    pub fn gateway6(&self) -> Option<Ipv6Addr> {
        self.subnet6?.nth_host(1)
    }

    /// A container's IPv6 address, derived from its IPv4 one so no second allocation is
    /// kept: the host number of `v4` in `subnet` (10.88.0.5 in 10.88.0.0/16 is 5, 10.88.1.5
    /// is 261) added to `subnet6` (fd00:88::/64 gives fd00:88::5 and fd00:88::105). `None`
    /// without `subnet6`, or when `v4` is outside `subnet` or the number does not fit.
    pub fn address6_for(&self, v4: Ipv4Addr) -> Option<Ipv6Addr> {
        if !self.subnet.contains(v4) {
            return None;
        }
        let host = u32::from(v4) - u32::from(self.subnet.network());
        self.subnet6?.nth_host(u128::from(host))
    }
}

/// `[firewall]`: what the host accepts on input. Established traffic, loopback, DHCP
/// replies, ICMP and published ports always pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Firewall {
    /// Policy for everything else (default: drop).
    pub input: InputPolicy,
    /// Ports open on the uplink even with `input = "drop"` (never from containers).
    pub allow: Vec<(Proto, u16)>,
}

impl Default for Firewall {
    /// Safe by default: input dropped, nothing allowed beyond what always passes.
    fn default() -> Self {
        Firewall { input: InputPolicy::Drop, allow: Vec::new() }
    }
}

/// The host's input policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InputPolicy {
    /// Accept everything: an explicit `input = "accept"`.
    Accept,
    /// Drop what is not allowed (the default).
    #[default]
    Drop,
}

/// A transport protocol of a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Proto {
    /// Parse `tcp` or `udp`.
    pub fn parse(text: &str) -> Result<Proto, String> {
        match text {
            "tcp" => Ok(Proto::Tcp),
            "udp" => Ok(Proto::Udp),
            other => Err(format!("protocol {other:?} must be \"tcp\" or \"udp\"")),
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })
    }
}

/// The uplink used when none is declared: DHCP on the first ethernet interface.
pub fn default_uplink() -> Uplink {
    Uplink { select: UplinkSelect::FirstEthernet, mode: UplinkMode::Dhcp, mtu: None }
}

/// The configuration used when `/etc/keel/network.toml` does not exist: DHCP on the
/// first ethernet interface, network `keel0` (10.88.0.0/16, gateway 10.88.0.1), input
/// dropped (see [`Firewall`]).
pub fn default_config() -> NetworkConfig {
    NetworkConfig { uplinks: vec![default_uplink()], networks: vec![Network::default_keel0()], firewall: Firewall::default() }
}

/// One problem in the declaration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file.
    pub file: String,
    /// The key, dotted with indexes (`network[1].subnet`), or empty for the whole file.
    pub key: String,
    /// The 1-based line, when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&lines.join("; "))
    }
}

impl std::error::Error for ConfigErrors {}

/// Whether `name` is a valid network name: `[a-z0-9][a-z0-9_-]*`, at most 15
/// characters (so that it can also be the bridge's interface name), and not one of
/// the words container declarations reserve (`none`, `host`).
pub fn check_network_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if !(first_ok && rest_ok && name.len() <= 15) {
        return Err(format!("{name:?} must match [a-z0-9][a-z0-9_-]* (at most 15 characters)"));
    }
    if name == "none" || name == "host" {
        return Err(format!("{name:?} is reserved (containers use network = \"{name}\" for something else)"));
    }
    Ok(())
}

/// Whether `name` is a valid Linux interface name (the kernel's `dev_valid_name`:
/// 1 to 15 bytes, not `.` or `..`, no `/`, `:` or whitespace).
pub fn check_ifname(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name.chars().any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(format!("{name:?} is not a valid interface name (1 to 15 bytes, no '/', ':' or whitespace)"))
    }
}

/// Parse a MAC address written `52:54:00:12:34:56` (case-insensitive).
pub fn parse_mac(text: &str) -> Result<[u8; 6], String> {
    let parts: Vec<&str> = text.split(':').collect();
    let mut mac = [0u8; 6];
    let valid = parts.len() == 6
        && parts.iter().zip(mac.iter_mut()).all(|(part, byte)| {
            part.len() == 2 && u8::from_str_radix(part, 16).map(|b| *byte = b).is_ok() && part.bytes().all(|b| b.is_ascii_hexdigit())
        });
    if valid {
        Ok(mac)
    } else {
        Err(format!("{text:?} is not a MAC address (expected six hex pairs separated by ':')"))
    }
}
