//! Addresses: adding, deleting and listing IPv4/IPv6 addresses on links (RTM_*ADDR).

use crate::link::request_on_link;
use crate::socket::{NetlinkError, RouteSocket};
use netlink_packet_core::{NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL};
use netlink_packet_route::address::{AddressAttribute, AddressHeaderFlags, AddressMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use std::net::{IpAddr, Ipv6Addr};

/// One address of a link, as listed by [`list_addresses`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressInfo {
    /// The index of the link carrying the address.
    pub index: u32,
    /// The address itself (IFA_LOCAL for IPv4, IFA_ADDRESS for IPv6).
    pub address: IpAddr,
    /// The prefix length.
    pub prefix: u8,
}

impl AddressInfo {
    /// Read an address out of an RTM_NEWADDR message; `None` when it carries no address.
    pub fn from_message(message: &AddressMessage) -> Option<AddressInfo> {
        let mut local = None;
        let mut address = None;
        for attribute in &message.attributes {
            match attribute {
                AddressAttribute::Local(ip) => local = Some(*ip),
                AddressAttribute::Address(ip) => address = Some(*ip),
                _ => {}
            }
        }
        Some(AddressInfo { index: message.header.index, address: local.or(address)?, prefix: message.header.prefix_len })
    }
}

fn address_message(index: u32, address: IpAddr, prefix: u8) -> AddressMessage {
    let mut message = AddressMessage::default();
    message.header.family = match address {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    message.header.prefix_len = prefix;
    message.header.index = index;
    message.attributes.push(AddressAttribute::Local(address));
    message.attributes.push(AddressAttribute::Address(address));
    message
}

/// RTM_NEWADDR putting `address/prefix` on link `index`, exactly as `ip addr add`
/// sends it (IFA_LOCAL and IFA_ADDRESS both set; send it with NLM_F_CREATE | NLM_F_EXCL).
pub fn add_address_message(index: u32, address: IpAddr, prefix: u8) -> RouteNetlinkMessage {
    RouteNetlinkMessage::NewAddress(address_message(index, address, prefix))
}

/// RTM_NEWADDR putting the IPv6 `address/prefix` on link `index` without duplicate
/// address detection (IFA_F_NODAD in the header), so it is usable at once: exactly as
/// `ip addr add ADDR/PREFIX dev X nodad` sends it (send it with NLM_F_CREATE | NLM_F_EXCL).
pub fn add_address6_nodad_message(index: u32, address: Ipv6Addr, prefix: u8) -> RouteNetlinkMessage {
    let mut message = address_message(index, address.into(), prefix);
    message.header.flags = AddressHeaderFlags::Nodad;
    RouteNetlinkMessage::NewAddress(message)
}

/// RTM_DELADDR removing `address/prefix` from link `index`, as `ip addr del` sends it.
pub fn del_address_message(index: u32, address: IpAddr, prefix: u8) -> RouteNetlinkMessage {
    RouteNetlinkMessage::DelAddress(address_message(index, address, prefix))
}

/// RTM_GETADDR to send with NLM_F_DUMP: every address of every family.
pub fn dump_addresses_message() -> RouteNetlinkMessage {
    RouteNetlinkMessage::GetAddress(AddressMessage::default())
}

/// Header flags for adding an address: create it, fail with EEXIST when it is there.
pub const ADD_ADDRESS_FLAGS: u16 = NLM_F_CREATE | NLM_F_EXCL;

/// Add `address/prefix` to link `index`. Fails with EEXIST when the link already has it
/// (see [`NetlinkError::is_exists`]); the error names the link:
/// `add address 10.88.0.1/16 to keel0: kernel said: File exists (os error 17)`.
pub fn add_address(index: u32, address: IpAddr, prefix: u8) -> Result<(), NetlinkError> {
    let mut socket = RouteSocket::open("add address")?;
    request_on_link(&mut socket, add_address_message(index, address, prefix), ADD_ADDRESS_FLAGS, index, |link| {
        format!("add address {address}/{prefix} to {link}")
    })
}

/// Remove `address/prefix` from link `index` (EADDRNOTAVAIL when it is not there).
pub fn del_address(index: u32, address: IpAddr, prefix: u8) -> Result<(), NetlinkError> {
    let mut socket = RouteSocket::open("delete address")?;
    request_on_link(&mut socket, del_address_message(index, address, prefix), 0, index, |link| {
        format!("delete address {address}/{prefix} from {link}")
    })
}

/// The addresses of link `index`, or of every link when `index` is `None`.
pub fn list_addresses(index: Option<u32>) -> Result<Vec<AddressInfo>, NetlinkError> {
    let what = "list addresses";
    let mut socket = RouteSocket::open(what)?;
    let replies = socket.query(dump_addresses_message(), NLM_F_DUMP, what)?;
    Ok(replies
        .iter()
        .filter_map(|reply| match reply {
            RouteNetlinkMessage::NewAddress(message) => AddressInfo::from_message(message),
            _ => None,
        })
        .filter(|address| index.is_none_or(|wanted| address.index == wanted))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::socket::encode_message;
    use crate::socket::ip_bytes;
    use netlink_packet_core::{NLM_F_ACK, NLM_F_REQUEST};
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn add_v4_bytes_are_ips() {
        // ip addr add 10.88.0.1/16 dev keel0
        let ip = ip_bytes(
            "28 00 00 00 14 00 05 06 c9 bb 0c 6b 00 00 00 00 02 10 00 00 02 00 00 00 08 00 02 00 0a 58 00 01
             08 00 01 00 0a 58 00 01",
        );
        let message = add_address_message(2, Ipv4Addr::new(10, 88, 0, 1).into(), 16);
        assert_eq!(encode_message(message, NLM_F_REQUEST | NLM_F_ACK | ADD_ADDRESS_FLAGS, 1), ip);
    }

    #[test]
    fn add_v6_bytes_are_ips() {
        // ip addr add fd00::1/64 dev keel0
        let ip = ip_bytes(
            "40 00 00 00 14 00 05 06 c9 bb 0c 6b 00 00 00 00 0a 40 00 00 02 00 00 00 14 00 02 00 fd 00 00 00
             00 00 00 00 00 00 00 00 00 00 00 01 14 00 01 00 fd 00 00 00 00 00 00 00 00 00 00 00 00 00 00 01",
        );
        let message = add_address_message(2, Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1).into(), 64);
        assert_eq!(encode_message(message, NLM_F_REQUEST | NLM_F_ACK | ADD_ADDRESS_FLAGS, 1), ip);
    }

    #[test]
    fn add_v6_nodad_bytes_are_ips() {
        // ip addr add fd00:88::1/64 dev v0 nodad (v0 = index 3), iproute2 6.1
        let ip = ip_bytes(
            "40 00 00 00 14 00 05 06 c9 bb 0c 6b 00 00 00 00 0a 40 02 00 03 00 00 00 14 00 02 00 fd 00 00 88
             00 00 00 00 00 00 00 00 00 00 00 01 14 00 01 00 fd 00 00 88 00 00 00 00 00 00 00 00 00 00 00 01",
        );
        let message = add_address6_nodad_message(3, Ipv6Addr::new(0xfd00, 0x88, 0, 0, 0, 0, 0, 1), 64);
        assert_eq!(encode_message(message, NLM_F_REQUEST | NLM_F_ACK | ADD_ADDRESS_FLAGS, 1), ip);
    }

    #[test]
    fn del_v4_bytes_are_ips() {
        // ip addr del 10.88.0.1/16 dev keel0
        let ip = ip_bytes(
            "28 00 00 00 15 00 05 00 c9 bb 0c 6b 00 00 00 00 02 10 00 00 02 00 00 00 08 00 02 00 0a 58 00 01
             08 00 01 00 0a 58 00 01",
        );
        let message = del_address_message(2, Ipv4Addr::new(10, 88, 0, 1).into(), 16);
        assert_eq!(encode_message(message, NLM_F_REQUEST | NLM_F_ACK, 1), ip);
    }

    #[test]
    fn address_info_prefers_the_local_address() {
        let mut message = AddressMessage::default();
        message.header.index = 4;
        message.header.prefix_len = 24;
        message.attributes.push(AddressAttribute::Address(Ipv4Addr::new(10, 0, 0, 9).into()));
        message.attributes.push(AddressAttribute::Local(Ipv4Addr::new(10, 0, 0, 2).into()));
        let info = AddressInfo::from_message(&message).expect("an address");
        assert_eq!(info, AddressInfo { index: 4, address: Ipv4Addr::new(10, 0, 0, 2).into(), prefix: 24 });
        assert_eq!(AddressInfo::from_message(&AddressMessage::default()), None);
    }
}
