//! Routes: the IPv4 and IPv6 default routes (replace semantics), listing the main
//! table, and IPv4/IPv6 forwarding.

use crate::socket::{NetlinkError, RouteSocket};
use netlink_packet_core::{NLM_F_CREATE, NLM_F_DUMP, NLM_F_REPLACE};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

/// One route of the main table, as listed by [`list_routes`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteInfo {
    /// The destination network; `None` with `prefix` 0 for a default route.
    pub destination: Option<IpAddr>,
    /// The destination prefix length (0 for a default route).
    pub prefix: u8,
    /// The next hop, when the route goes through a gateway.
    pub gateway: Option<IpAddr>,
    /// The output link's index.
    pub oif: Option<u32>,
    /// The preferred source address (set on the prefix routes the kernel adds).
    pub source: Option<IpAddr>,
    /// The metric (RTA_PRIORITY), 0 when absent.
    pub metric: u32,
}

impl RouteInfo {
    /// Read a route out of an RTM_NEWROUTE message.
    pub fn from_message(message: &RouteMessage) -> RouteInfo {
        let mut info = RouteInfo {
            destination: None,
            prefix: message.header.destination_prefix_length,
            gateway: None,
            oif: None,
            source: None,
            metric: 0,
        };
        let ip = |address: &RouteAddress| match address {
            RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
            RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
            _ => None,
        };
        for attribute in &message.attributes {
            match attribute {
                RouteAttribute::Destination(address) => info.destination = ip(address),
                RouteAttribute::Gateway(address) => info.gateway = ip(address),
                RouteAttribute::PrefSource(address) => info.source = ip(address),
                RouteAttribute::Oif(index) => info.oif = Some(*index),
                RouteAttribute::Priority(metric) => info.metric = *metric,
                _ => {}
            }
        }
        info
    }

    /// True for a default route (0.0.0.0/0 or ::/0).
    pub fn is_default(&self) -> bool {
        self.prefix == 0
    }
}

/// Header flags for adding the default route: create it, or replace the one there.
pub const DEFAULT_ROUTE_FLAGS: u16 = NLM_F_CREATE | NLM_F_REPLACE;

/// RTM_NEWROUTE for `default via gateway [dev oif]` in the main table, exactly as
/// `ip route replace default via GW [dev X]` sends it (protocol boot, scope universe,
/// unicast; send it with NLM_F_CREATE | NLM_F_REPLACE).
pub fn default_route_message(gateway: Ipv4Addr, oif: Option<u32>) -> RouteNetlinkMessage {
    let mut message = RouteMessage::default();
    message.header.address_family = AddressFamily::Inet;
    message.header.table = RouteHeader::RT_TABLE_MAIN;
    message.header.protocol = RouteProtocol::Boot;
    message.header.scope = RouteScope::Universe;
    message.header.kind = RouteType::Unicast;
    message.attributes.push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
    if let Some(index) = oif {
        message.attributes.push(RouteAttribute::Oif(index));
    }
    RouteNetlinkMessage::NewRoute(message)
}

/// RTM_NEWROUTE for the IPv6 `default via gateway [dev oif]` in the main table, exactly
/// as `ip -6 route replace default via GW [dev X]` sends it: like the IPv4 one, plus the
/// explicit RTA_DST `::` that ip adds for IPv6 (send it with NLM_F_CREATE | NLM_F_REPLACE).
pub fn default_route6_message(gateway: Ipv6Addr, oif: Option<u32>) -> RouteNetlinkMessage {
    let mut message = RouteMessage::default();
    message.header.address_family = AddressFamily::Inet6;
    message.header.table = RouteHeader::RT_TABLE_MAIN;
    message.header.protocol = RouteProtocol::Boot;
    message.header.scope = RouteScope::Universe;
    message.header.kind = RouteType::Unicast;
    message.attributes.push(RouteAttribute::Destination(RouteAddress::Inet6(Ipv6Addr::UNSPECIFIED)));
    message.attributes.push(RouteAttribute::Gateway(RouteAddress::Inet6(gateway)));
    if let Some(index) = oif {
        message.attributes.push(RouteAttribute::Oif(index));
    }
    RouteNetlinkMessage::NewRoute(message)
}

/// RTM_DELROUTE for the IPv4 default route of the main table, as `ip route del default`
/// sends it (scope nowhere and type unspec match any default route).
pub fn del_default_route_message() -> RouteNetlinkMessage {
    let mut message = RouteMessage::default();
    message.header.address_family = AddressFamily::Inet;
    message.header.table = RouteHeader::RT_TABLE_MAIN;
    message.header.scope = RouteScope::NoWhere;
    RouteNetlinkMessage::DelRoute(message)
}

/// RTM_GETROUTE to send with NLM_F_DUMP: the routes of every table and family.
pub fn dump_routes_message() -> RouteNetlinkMessage {
    RouteNetlinkMessage::GetRoute(RouteMessage::default())
}

/// Set the IPv4 default route to `gateway` (through link `oif` when given), replacing
/// any default route already there.
pub fn add_default_route(gateway: Ipv4Addr, oif: Option<u32>) -> Result<(), NetlinkError> {
    let what = match oif {
        Some(index) => format!("set default route via {gateway} on ifindex {index}"),
        None => format!("set default route via {gateway}"),
    };
    let mut socket = RouteSocket::open(&what)?;
    match oif {
        Some(index) => crate::link::request_on_link(&mut socket, default_route_message(gateway, oif), DEFAULT_ROUTE_FLAGS, index, |link| {
            format!("set default route via {gateway} on {link}")
        }),
        None => socket.request_flags(default_route_message(gateway, None), DEFAULT_ROUTE_FLAGS, &what),
    }
}

/// Set the IPv6 default route to `gateway` (through link `oif` when given), replacing
/// any IPv6 default route already there.
pub fn add_default_route6(gateway: Ipv6Addr, oif: Option<u32>) -> Result<(), NetlinkError> {
    let what = match oif {
        Some(index) => format!("set IPv6 default route via {gateway} on ifindex {index}"),
        None => format!("set IPv6 default route via {gateway}"),
    };
    let mut socket = RouteSocket::open(&what)?;
    match oif {
        Some(index) => {
            crate::link::request_on_link(&mut socket, default_route6_message(gateway, oif), DEFAULT_ROUTE_FLAGS, index, |link| {
                format!("set IPv6 default route via {gateway} on {link}")
            })
        }
        None => socket.request_flags(default_route6_message(gateway, None), DEFAULT_ROUTE_FLAGS, &what),
    }
}

/// Delete the IPv4 default route (ESRCH when there is none).
pub fn del_default_route() -> Result<(), NetlinkError> {
    let what = "delete default route";
    let mut socket = RouteSocket::open(what)?;
    socket.request_ack(del_default_route_message(), what)
}

/// The routes of the main table, IPv4 and IPv6 (one RTM_GETROUTE dump).
pub fn list_routes() -> Result<Vec<RouteInfo>, NetlinkError> {
    let what = "list routes";
    let mut socket = RouteSocket::open(what)?;
    let replies = socket.query(dump_routes_message(), NLM_F_DUMP, what)?;
    Ok(replies
        .iter()
        .filter_map(|reply| match reply {
            RouteNetlinkMessage::NewRoute(message) if in_main_table(message) => Some(RouteInfo::from_message(message)),
            _ => None,
        })
        .collect())
}

fn in_main_table(message: &RouteMessage) -> bool {
    let table = message
        .attributes
        .iter()
        .find_map(|attribute| match attribute {
            RouteAttribute::Table(table) => Some(*table),
            _ => None,
        })
        .unwrap_or(u32::from(message.header.table));
    table == u32::from(RouteHeader::RT_TABLE_MAIN)
}

/// Where the kernel's IPv4 forwarding switch is.
pub const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

/// Turn IPv4 forwarding on or off in the caller's network namespace (a write to
/// /proc/sys/net/ipv4/ip_forward); the error names the file.
pub fn set_ipv4_forwarding(on: bool) -> std::io::Result<()> {
    write_switch(Path::new(IP_FORWARD), on)
}

/// Where the kernel's IPv6 forwarding switch (for every interface) is.
pub const IPV6_FORWARD: &str = "/proc/sys/net/ipv6/conf/all/forwarding";

/// Turn IPv6 forwarding on or off in the caller's network namespace (a write to
/// /proc/sys/net/ipv6/conf/all/forwarding); the error names the file.
pub fn set_ipv6_forwarding(on: bool) -> std::io::Result<()> {
    write_switch(Path::new(IPV6_FORWARD), on)
}

/// The `route_localnet` switch of one interface:
/// /proc/sys/net/ipv4/conf/IFNAME/route_localnet.
pub fn route_localnet_path(ifname: &str) -> std::path::PathBuf {
    Path::new("/proc/sys/net/ipv4/conf").join(ifname).join("route_localnet")
}

/// Turn `route_localnet` on or off for one interface only, in the caller's network
/// namespace. keel needs it on the bridges whose containers publish ports on 127.0.0.1
/// (see `nft::FirewallState::localnet_bridges`) and never sets it on `all`: on any
/// interface it lets packets for 127.0.0.0/8 in, which keel's `guard` chain drops.
pub fn set_route_localnet(ifname: &str, on: bool) -> std::io::Result<()> {
    if ifname.is_empty() || ifname.contains('/') || ifname == "." || ifname == ".." {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{ifname:?} is not an interface name")));
    }
    write_switch(&route_localnet_path(ifname), on)
}

fn write_switch(path: &Path, on: bool) -> std::io::Result<()> {
    std::fs::write(path, if on { "1\n" } else { "0\n" })
        .map_err(|e| std::io::Error::new(e.kind(), format!("write {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::socket::encode_message;
    use crate::socket::ip_bytes;
    use netlink_packet_core::{NLM_F_ACK, NLM_F_REQUEST};

    #[test]
    fn replace_default_route_with_dev_bytes_are_ips() {
        // ip route replace default via 10.88.0.1 dev keel0
        let ip = ip_bytes(
            "2c 00 00 00 18 00 05 05 c9 bb 0c 6b 00 00 00 00 02 00 00 00 fe 03 00 01 00 00 00 00 08 00 05 00
             0a 58 00 01 08 00 04 00 02 00 00 00",
        );
        let message = default_route_message(Ipv4Addr::new(10, 88, 0, 1), Some(2));
        assert_eq!(encode_message(message, NLM_F_REQUEST | NLM_F_ACK | DEFAULT_ROUTE_FLAGS, 1), ip);
    }

    #[test]
    fn replace_default_route_bytes_are_ips() {
        // ip route replace default via 10.88.0.1
        let ip = ip_bytes(
            "24 00 00 00 18 00 05 05 c9 bb 0c 6b 00 00 00 00 02 00 00 00 fe 03 00 01 00 00 00 00 08 00 05 00
             0a 58 00 01",
        );
        let message = default_route_message(Ipv4Addr::new(10, 88, 0, 1), None);
        assert_eq!(encode_message(message, NLM_F_REQUEST | NLM_F_ACK | DEFAULT_ROUTE_FLAGS, 1), ip);
    }

    #[test]
    fn replace_default_route6_with_dev_bytes_are_ips() {
        // ip -6 route replace default via fd00:88::2 dev v0 (v0 = index 3), iproute2 6.1
        let ip = ip_bytes(
            "4c 00 00 00 18 00 05 05 c9 bb 0c 6b 00 00 00 00 0a 00 00 00 fe 03 00 01 00 00 00 00 14 00 01 00
             00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 14 00 05 00 fd 00 00 88 00 00 00 00 00 00 00 00
             00 00 00 02 08 00 04 00 03 00 00 00",
        );
        let gateway = Ipv6Addr::new(0xfd00, 0x88, 0, 0, 0, 0, 0, 2);
        let message = default_route6_message(gateway, Some(3));
        assert_eq!(encode_message(message, NLM_F_REQUEST | NLM_F_ACK | DEFAULT_ROUTE_FLAGS, 1), ip);
        let RouteNetlinkMessage::NewRoute(message) = default_route6_message(gateway, Some(3)) else { unreachable!() };
        let info = RouteInfo::from_message(&message);
        assert!(info.is_default());
        assert_eq!(info.gateway, Some(IpAddr::V6(gateway)));
    }

    #[test]
    fn del_default_route_bytes_are_ips() {
        // ip route del default
        let ip = ip_bytes("1c 00 00 00 19 00 05 00 c9 bb 0c 6b 00 00 00 00 02 00 00 00 fe 00 ff 00 00 00 00 00");
        assert_eq!(encode_message(del_default_route_message(), NLM_F_REQUEST | NLM_F_ACK, 1), ip);
    }

    #[test]
    fn route_info_reads_a_default_route() {
        let RouteNetlinkMessage::NewRoute(message) = default_route_message(Ipv4Addr::new(10, 88, 0, 1), Some(7)) else { unreachable!() };
        let info = RouteInfo::from_message(&message);
        assert!(info.is_default());
        assert_eq!(info.gateway, Some(IpAddr::V4(Ipv4Addr::new(10, 88, 0, 1))));
        assert_eq!(info.oif, Some(7));
        assert!(in_main_table(&message));
    }

    #[test]
    fn forwarding_switch_writes_one_or_zero_and_names_the_file() {
        let dir = std::env::temp_dir().join(format!("keel-fwd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ip_forward");
        write_switch(&path, true).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "1\n");
        write_switch(&path, false).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "0\n");
        let error = write_switch(&dir.join("missing/ip_forward"), true).unwrap_err();
        assert!(error.to_string().contains("missing/ip_forward"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
