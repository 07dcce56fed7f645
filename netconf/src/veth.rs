//! Per-container veth pairs: the host side created on a bridge with its peer born inside
//! the container's network namespace (one RTM_NEWLINK), and the container side
//! configured from inside that namespace (lo, link, addresses, default routes).

use crate::addr::{add_address6_nodad_message, add_address_message, ADD_ADDRESS_FLAGS};
use crate::bridge::{kind_nla, CREATE_LINK_FLAGS};
use crate::link::{link_by_name, link_up_message, request_on_link};
use crate::route::{default_route6_message, default_route_message, DEFAULT_ROUTE_FLAGS};
use crate::socket::{NetlinkError, Request, RouteSocket, ENODEV};
use netlink_packet_route::link::{InfoData, InfoVeth, LinkAttribute, LinkFlags, LinkInfo as InfoNla, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, BorrowedFd};

/// The network namespace a veth peer is created in.
#[derive(Debug, Clone, Copy)]
pub enum NetnsRef<'a> {
    /// The namespace of this process (IFLA_NET_NS_PID): e.g. the container's init.
    Pid(i32),
    /// A namespace file (`/proc/PID/ns/net`, `/run/netns/NAME`) open in this process
    /// (IFLA_NET_NS_FD); it must stay open until the call returns.
    Fd(BorrowedFd<'a>),
}

impl fmt::Display for NetnsRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetnsRef::Pid(pid) => write!(f, "the netns of pid {pid}"),
            NetnsRef::Fd(fd) => write!(f, "the netns of fd {}", fd.as_raw_fd()),
        }
    }
}

/// RTM_NEWLINK creating the veth pair `host_name` — `peer_name`: the host side enslaved
/// to `bridge_index` (IFLA_MASTER) and up, the peer (IFLA_LINKINFO → IFLA_INFO_DATA →
/// VETH_INFO_PEER) named `peer_name` and created directly in `peer_netns`. The same
/// bytes as `ip link add HOST master BR up type veth peer name PEER netns NS` (send it
/// with NLM_F_CREATE | NLM_F_EXCL).
pub fn create_veth_message(host_name: &str, bridge_index: u32, peer_name: &str, peer_netns: NetnsRef<'_>) -> RouteNetlinkMessage {
    let mut peer = LinkMessage::default();
    peer.attributes.push(match peer_netns {
        // Pids are positive; the kernel reads the attribute as a u32.
        NetnsRef::Pid(pid) => LinkAttribute::NetNsPid(pid as u32),
        NetnsRef::Fd(fd) => LinkAttribute::NetNsFd(fd.as_raw_fd()),
    });
    peer.attributes.push(LinkAttribute::IfName(peer_name.to_string()));
    let mut message = LinkMessage::default();
    message.header.flags = LinkFlags::Up;
    message.header.change_mask = LinkFlags::Up;
    message.attributes.push(LinkAttribute::Controller(bridge_index));
    message.attributes.push(LinkAttribute::IfName(host_name.to_string()));
    message.attributes.push(LinkAttribute::LinkInfo(vec![kind_nla("veth"), InfoNla::Data(InfoData::Veth(InfoVeth::Peer(peer)))]));
    RouteNetlinkMessage::NewLink(message)
}

/// Create the veth pair `host_name` — `peer_name` in one RTM_NEWLINK: the host side on
/// bridge `bridge_index` and up, the peer born inside `peer_netns` (still down: the
/// container side brings it up with [`configure_container_interface`]). Fails with
/// EEXIST when `host_name` is taken; the error names both links and the bridge.
pub fn create_veth_into_netns(host_name: &str, bridge_index: u32, peer_name: &str, peer_netns: NetnsRef<'_>) -> Result<(), NetlinkError> {
    let mut socket = RouteSocket::open(&format!("create veth {host_name}"))?;
    request_on_link(
        &mut socket,
        create_veth_message(host_name, bridge_index, peer_name, peer_netns),
        CREATE_LINK_FLAGS,
        bridge_index,
        |bridge| format!("create veth {host_name} on {bridge} with peer {peer_name} in {peer_netns}"),
    )
}

/// RTM_NEWLINK for link `index` that sets it up and, when given, its MTU.
pub fn up_with_mtu_message(index: u32, mtu: Option<u32>) -> RouteNetlinkMessage {
    let mut message = LinkMessage::default();
    message.header.index = index;
    message.header.flags = LinkFlags::Up;
    message.header.change_mask = LinkFlags::Up;
    if let Some(mtu) = mtu {
        message.attributes.push(LinkAttribute::Mtu(mtu));
    }
    RouteNetlinkMessage::NewLink(message)
}

/// Configure a container's interface from inside its network namespace (the caller's
/// thread must be in it, before dropping privileges): lo up, `ifname` up (with `mtu`),
/// `address/prefix` on it, and the default route via `gateway` on it (replacing any).
/// One socket, one lookup, then the four requests in one datagram. Idempotent: an
/// address already there is fine. The first error, naming its operation, is returned.
pub fn configure_container_interface(
    ifname: &str,
    address: Ipv4Addr,
    prefix: u8,
    gateway: Ipv4Addr,
    mtu: Option<u32>,
) -> Result<(), NetlinkError> {
    configure_container_interface_dual(ifname, address, prefix, gateway, None, mtu)
}

/// [`configure_container_interface`], plus IPv6 when `ipv6` is `(address, prefix,
/// gateway)`: the address without duplicate address detection (IFA_F_NODAD, usable at
/// once) and the IPv6 default route via `gateway` on `ifname` (replacing any), in the
/// same datagram after the IPv4 requests.
pub fn configure_container_interface_dual(
    ifname: &str,
    address: Ipv4Addr,
    prefix: u8,
    gateway: Ipv4Addr,
    ipv6: Option<(Ipv6Addr, u8, Ipv6Addr)>,
    mtu: Option<u32>,
) -> Result<(), NetlinkError> {
    let mut socket = RouteSocket::open(&format!("configure {ifname}"))?;
    let link = link_by_name(&mut socket, ifname)?.ok_or_else(|| NetlinkError::Kernel {
        what: format!("configure {ifname}: no link {ifname} in this network namespace"),
        source: std::io::Error::from_raw_os_error(ENODEV),
    })?;
    let up = match mtu {
        Some(mtu) => format!("set link {ifname} up with mtu {mtu}"),
        None => format!("set link {ifname} up"),
    };
    let mut requests = vec![
        Request::new(link_up_message("lo"), 0, "set link lo up"),
        Request::new(up_with_mtu_message(link.index, mtu), 0, up),
        Request::new(
            add_address_message(link.index, address.into(), prefix),
            ADD_ADDRESS_FLAGS,
            format!("add address {address}/{prefix} to {ifname}"),
        ),
        Request::new(
            default_route_message(gateway, Some(link.index)),
            DEFAULT_ROUTE_FLAGS,
            format!("set default route via {gateway} on {ifname}"),
        ),
    ];
    if let Some((address6, prefix6, gateway6)) = ipv6 {
        requests.push(Request::new(
            add_address6_nodad_message(link.index, address6, prefix6),
            ADD_ADDRESS_FLAGS,
            format!("add address {address6}/{prefix6} to {ifname}"),
        ));
        requests.push(Request::new(
            default_route6_message(gateway6, Some(link.index)),
            DEFAULT_ROUTE_FLAGS,
            format!("set IPv6 default route via {gateway6} on {ifname}"),
        ));
    }
    for verdict in socket.batch(requests)? {
        match verdict {
            Err(e) if e.is_exists() => {}
            other => other?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::socket::encode_message;
    use crate::socket::ip_bytes;
    use netlink_packet_core::{NLM_F_ACK, NLM_F_REQUEST};

    #[test]
    fn veth_with_peer_in_netns_fd_bytes_are_ips() {
        // ip link add vh1 master keel0 up type veth peer name eth0 netns capns
        // (keel0 = index 2; ip had the netns file open as fd 4).
        let mut ip = ip_bytes(
            "68 00 00 00 10 00 05 06 c9 bb 0c 6b 00 00 00 00 00 00 00 00 00 00 00 00 01 00 00 00 01 00 00 00
             08 00 0a 00 02 00 00 00 08 00 03 00 76 68 31 00 38 00 12 00 08 00 01 00 76 65 74 68 2c 00 02 00
             28 00 01 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 08 00 1c 00 04 00 00 00 09 00 03 00
             65 74 68 30 00 00 00 00",
        );
        let file = std::fs::File::open("/dev/null").unwrap();
        let fd = file.as_raw_fd();
        ip[0x58..0x5c].copy_from_slice(&fd.to_ne_bytes());
        let message = create_veth_message("vh1", 2, "eth0", NetnsRef::Fd(std::os::fd::AsFd::as_fd(&file)));
        assert_eq!(encode_message(message, NLM_F_REQUEST | NLM_F_ACK | CREATE_LINK_FLAGS, 1), ip);
    }

    #[test]
    fn veth_with_peer_in_netns_pid_matches_ip_plus_master() {
        // ip link add vh2 up type veth peer name eth1 netns 1 — ip sends no IFLA_MASTER
        // without `master`; keel always does, first, as ip does when given one.
        let ip = ip_bytes(
            "60 00 00 00 10 00 05 06 c9 bb 0c 6b 00 00 00 00 00 00 00 00 00 00 00 00 01 00 00 00 01 00 00 00
             08 00 03 00 76 68 32 00 38 00 12 00 08 00 01 00 76 65 74 68 2c 00 02 00 28 00 01 00 00 00 00 00
             00 00 00 00 00 00 00 00 00 00 00 00 08 00 13 00 01 00 00 00 09 00 03 00 65 74 68 31 00 00 00 00",
        );
        let mut expected = ip[..32].to_vec();
        expected[0] = 0x68;
        expected.extend([8, 0, 0x0a, 0, 2, 0, 0, 0]);
        expected.extend(&ip[32..]);
        let message = create_veth_message("vh2", 2, "eth1", NetnsRef::Pid(1));
        assert_eq!(encode_message(message, NLM_F_REQUEST | NLM_F_ACK | CREATE_LINK_FLAGS, 1), expected);
    }

    #[test]
    fn up_with_mtu_is_ips_up_and_mtu_in_one_message() {
        // `ip link set dev X up mtu 1400` sends flags = change = IFF_UP plus IFLA_MTU.
        let bytes = encode_message(up_with_mtu_message(2, Some(1400)), NLM_F_REQUEST | NLM_F_ACK, 1);
        let expected: Vec<u8> = [
            &[40, 0, 0, 0, 16, 0, 5, 0, 1, 0, 0, 0, 0, 0, 0, 0][..],
            &[0, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0],
            &[8, 0, 4, 0, 0x78, 5, 0, 0],
        ]
        .concat();
        assert_eq!(bytes, expected);
    }
}
