//! Container bridges: created once, with the network's gateway address, and up.

use crate::addr::{add_address6_nodad_message, add_address_message, ADD_ADDRESS_FLAGS};
use crate::link::{link_by_name, set_up_message};
use crate::socket::{NetlinkError, Request, RouteSocket, EEXIST};
use netlink_packet_core::{DefaultNla, NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::link::{LinkAttribute, LinkInfo as InfoNla, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Header flags for creating a link: create it, fail with EEXIST when the name is taken.
pub const CREATE_LINK_FLAGS: u16 = NLM_F_CREATE | NLM_F_EXCL;

/// IFLA_INFO_KIND as ip sends it: the kind's bytes without a trailing NUL (the
/// library's `InfoKind` adds one; the kernel accepts both).
pub(crate) fn kind_nla(kind: &str) -> InfoNla {
    const IFLA_INFO_KIND: u16 = 1;
    InfoNla::Other(DefaultNla::new(IFLA_INFO_KIND, kind.as_bytes().to_vec()))
}

/// RTM_NEWLINK creating a bridge called `name`, exactly as `ip link add NAME type bridge`
/// sends it (send it with NLM_F_CREATE | NLM_F_EXCL).
pub fn create_bridge_message(name: &str) -> RouteNetlinkMessage {
    let mut message = LinkMessage::default();
    message.attributes.push(LinkAttribute::IfName(name.to_string()));
    message.attributes.push(LinkAttribute::LinkInfo(vec![kind_nla("bridge")]));
    RouteNetlinkMessage::NewLink(message)
}

/// Make sure the bridge `name` exists, carries `address/prefix` and is up; return its
/// index. Idempotent: an existing bridge and an existing address are reused. A link
/// called `name` that is not a bridge is an error (EEXIST naming its kind).
pub fn ensure_bridge(name: &str, address: Ipv4Addr, prefix: u8) -> Result<u32, NetlinkError> {
    ensure_bridge_dual(name, address, prefix, None)
}

/// [`ensure_bridge`], plus the IPv6 `address6` (address, prefix) when given, added without
/// duplicate address detection (IFA_F_NODAD) so containers can use it as their gateway at
/// once. An existing IPv6 address is reused too.
pub fn ensure_bridge_dual(name: &str, address: Ipv4Addr, prefix: u8, address6: Option<(Ipv6Addr, u8)>) -> Result<u32, NetlinkError> {
    let create = format!("create bridge {name}");
    let mut socket = RouteSocket::open(&create)?;
    match socket.request_flags(create_bridge_message(name), CREATE_LINK_FLAGS, &create) {
        Err(e) if e.is_exists() => {}
        other => other?,
    }
    let link = link_by_name(&mut socket, name)?.ok_or_else(|| NetlinkError::Kernel {
        what: format!("{create}: created, then gone"),
        source: std::io::Error::from_raw_os_error(crate::socket::ENODEV),
    })?;
    if link.kind.as_deref() != Some("bridge") {
        return Err(NetlinkError::Kernel {
            what: format!("{create}: {name} exists and is a {} link", link.kind.as_deref().unwrap_or("physical")),
            source: std::io::Error::from_raw_os_error(EEXIST),
        });
    }
    let mut requests = vec![Request::new(
        add_address_message(link.index, address.into(), prefix),
        ADD_ADDRESS_FLAGS,
        format!("add address {address}/{prefix} to {name}"),
    )];
    if let Some((address6, prefix6)) = address6 {
        requests.push(Request::new(
            add_address6_nodad_message(link.index, address6, prefix6),
            ADD_ADDRESS_FLAGS,
            format!("add address {address6}/{prefix6} to {name}"),
        ));
    }
    requests.push(Request::new(set_up_message(link.index), 0, format!("set link {name} up")));
    for verdict in socket.batch(requests)? {
        match verdict {
            Err(e) if e.is_exists() => {}
            other => other?,
        }
    }
    Ok(link.index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::socket::encode_message;
    use netlink_packet_core::{NLM_F_ACK, NLM_F_REQUEST};

    #[test]
    fn create_bridge_bytes_are_ips() {
        // `ip link add keel0 type bridge`, captured with strace -e write=3 (iproute2 6.1),
        // sequence number replaced by 1.
        let hex = "3c 00 00 00 10 00 05 06 01 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
                   0a 00 03 00 6b 65 65 6c 30 00 00 00 10 00 12 00 0a 00 01 00 62 72 69 64 67 65 00 00";
        let ip: Vec<u8> = hex.split_whitespace().map(|b| u8::from_str_radix(b, 16).unwrap()).collect();
        let keel = encode_message(create_bridge_message("keel0"), NLM_F_REQUEST | NLM_F_ACK | CREATE_LINK_FLAGS, 1);
        assert_eq!(keel, ip);
    }
}
