//! Published ports: `ports = ["8080:80/tcp", "127.0.0.1:5353:53/udp"]` in container
//! declarations, and the checks that need every container and the network declaration
//! at once (unknown network, a host port published twice).

use super::{NetworkConfig, Proto};
use std::fmt;
use std::net::Ipv4Addr;

/// One published port: traffic to `host_ip:host_port` (any host address when
/// `host_ip` is `None`) is forwarded to the container's `container_port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortMapping {
    /// The host address it listens on; `None` = every address (`0.0.0.0` is written
    /// as `None` too).
    pub host_ip: Option<Ipv4Addr>,
    /// The port on the host.
    pub host_port: u16,
    /// The port inside the container.
    pub container_port: u16,
    /// TCP or UDP.
    pub proto: Proto,
}

impl PortMapping {
    /// Whether the two mappings claim the same host port: same protocol and port, and
    /// the same address or one of them on every address.
    pub fn conflicts_with(&self, other: &PortMapping) -> bool {
        self.proto == other.proto
            && self.host_port == other.host_port
            && match (self.host_ip, other.host_ip) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

impl fmt::Display for PortMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(ip) = self.host_ip {
            write!(f, "{ip}:")?;
        }
        write!(f, "{}:{}/{}", self.host_port, self.container_port, self.proto)
    }
}

/// Parse one `ports` entry: `"80"` (same port both sides), `"8080:80"` (TCP),
/// `"8080:80/udp"` or `"127.0.0.1:5353:53/udp"`. Ports are 1..=65535.
pub fn parse_port(text: &str) -> Result<PortMapping, String> {
    let (spec, proto) = match text.rsplit_once('/') {
        Some((spec, proto)) => (spec, Proto::parse(proto).map_err(|e| format!("{text:?}: {e}"))?),
        None => (text, Proto::Tcp),
    };
    let parts: Vec<&str> = spec.split(':').collect();
    let (ip, host, container) = match parts.as_slice() {
        [port] => (None, *port, *port),
        [host, container] => (None, *host, *container),
        [ip, host, container] => (Some(*ip), *host, *container),
        _ => return Err(format!("{text:?}: expected [IP:]HOST_PORT:CONTAINER_PORT[/tcp|/udp] or PORT")),
    };
    let host_ip = match ip {
        None => None,
        Some(ip) => {
            let ip: Ipv4Addr = ip.parse().map_err(|_| format!("{text:?}: {ip:?} is not an IPv4 address"))?;
            (!ip.is_unspecified()).then_some(ip)
        }
    };
    let host_port = port_number(host).map_err(|e| format!("{text:?}: {e}"))?;
    let container_port = port_number(container).map_err(|e| format!("{text:?}: {e}"))?;
    Ok(PortMapping { host_ip, host_port, container_port, proto })
}

/// A port number, 1..=65535, digits only.
pub(super) fn port_number(text: &str) -> Result<u16, String> {
    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    match text.parse::<u16>() {
        Ok(port) if digits && port >= 1 => Ok(port),
        _ => Err(format!("port {text:?} must be a number from 1 to 65535")),
    }
}

/// Check the published ports of every container against the declaration: each
/// container's network must be declared, and no host port (address, port, protocol)
/// may be published twice. Entries are (container, network name, its ports). Returns
/// one message per problem, naming the containers involved; empty when all is well.
pub fn check_ports(containers: &[(String, String, Vec<PortMapping>)], config: &NetworkConfig) -> Vec<String> {
    let mut errors = Vec::new();
    for (container, network, _) in containers {
        if config.network(network).is_none() {
            let declared: Vec<&str> = config.networks.iter().map(|n| n.name.as_str()).collect();
            errors.push(format!("container {container}: network {network:?} is not declared (declared: {})", declared.join(", ")));
        }
    }
    let all: Vec<(&str, &PortMapping)> = containers.iter().flat_map(|(c, _, ports)| ports.iter().map(move |p| (c.as_str(), p))).collect();
    for (i, (first, a)) in all.iter().enumerate() {
        for (second, b) in &all[i + 1..] {
            if a.conflicts_with(b) {
                let message = if first == second {
                    format!("container {first}: host port {} is published twice ({a} and {b})", describe(a, b))
                } else {
                    format!("host port {} is published by both container {first} ({a}) and container {second} ({b})", describe(a, b))
                };
                errors.push(message);
            }
        }
    }
    errors
}

/// `8080/tcp on 127.0.0.1` (the more specific address of the two, or every address).
fn describe(a: &PortMapping, b: &PortMapping) -> String {
    let ip = a.host_ip.or(b.host_ip).map_or("every address".to_string(), |ip| ip.to_string());
    format!("{}/{} on {ip}", a.host_port, a.proto)
}
