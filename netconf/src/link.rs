//! Links: finding them (by name, by dump), changing their state and MTU, deleting them.
//!
//! Every message is built by a pure `*_message` function (unit-tested against the
//! bytes `ip` sends) and sent by a thin executor that opens one [`RouteSocket`].

use crate::socket::{NetlinkError, RouteSocket, ENODEV};
use netlink_packet_core::NLM_F_DUMP;
use netlink_packet_route::link::{LinkAttribute, LinkExtentMask, LinkFlags, LinkInfo as InfoNla, LinkLayerType, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage;

/// What keel needs to know about one link of the current network namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    /// The kernel's interface index.
    pub index: u32,
    /// The interface name (IFLA_IFNAME).
    pub name: String,
    /// The link kind from IFLA_LINKINFO (`bridge`, `veth`…); `None` for physical devices and lo.
    pub kind: Option<String>,
    /// The 6-byte hardware address, when the link has one (not lo, not tunnels).
    pub mac: Option<[u8; 6]>,
    /// True when IFF_UP is set (administratively up).
    pub up: bool,
    /// The MTU (IFLA_MTU), 0 when the kernel did not say.
    pub mtu: u32,
    /// The index of the link's master (the bridge a port is enslaved to).
    pub master: Option<u32>,
    /// The link-layer type (ARPHRD_*): 1 for Ethernet, 772 for loopback.
    pub link_type: u16,
}

impl LinkInfo {
    /// Read a link out of an RTM_NEWLINK message (a dump entry or a get reply).
    pub fn from_message(message: &LinkMessage) -> LinkInfo {
        let mut info = LinkInfo {
            index: message.header.index,
            name: String::new(),
            kind: None,
            mac: None,
            up: message.header.flags.contains(LinkFlags::Up),
            mtu: 0,
            master: None,
            link_type: u16::from(message.header.link_layer_type),
        };
        for attribute in &message.attributes {
            match attribute {
                LinkAttribute::IfName(name) => info.name = name.clone(),
                LinkAttribute::Mtu(mtu) => info.mtu = *mtu,
                LinkAttribute::Controller(master) => info.master = Some(*master),
                LinkAttribute::Address(bytes) => info.mac = <[u8; 6]>::try_from(bytes.as_slice()).ok(),
                LinkAttribute::LinkInfo(nlas) => {
                    for nla in nlas {
                        if let InfoNla::Kind(kind) = nla {
                            info.kind = Some(kind.to_string());
                        }
                    }
                }
                _ => {}
            }
        }
        // lo has an all-zero 6-byte address: that is no MAC.
        if info.mac == Some([0; 6]) {
            info.mac = None;
        }
        info
    }

    /// True for what a cloud VM's uplink looks like: an Ethernet device with a MAC
    /// that is not lo and not a bridge, veth or other virtual kind.
    pub fn is_physical_ethernet(&self) -> bool {
        self.link_type == u16::from(LinkLayerType::Ether) && self.kind.is_none() && self.mac.is_some() && self.name != "lo"
    }
}

/// RTM_GETLINK for the link called `name` (ip sends the same, minus IFLA_EXT_MASK
/// RTEXT_FILTER_VF which keel does not need): the reply is one RTM_NEWLINK.
pub fn get_link_message(name: &str) -> RouteNetlinkMessage {
    let mut message = LinkMessage::default();
    message.attributes.push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
    message.attributes.push(LinkAttribute::IfName(name.to_string()));
    RouteNetlinkMessage::GetLink(message)
}

/// RTM_GETLINK for the link with `index`.
pub fn get_link_by_index_message(index: u32) -> RouteNetlinkMessage {
    let mut message = LinkMessage::default();
    message.header.index = index;
    message.attributes.push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
    RouteNetlinkMessage::GetLink(message)
}

/// RTM_GETLINK sent with NLM_F_DUMP: every link of the namespace, statistics skipped.
pub fn dump_links_message() -> RouteNetlinkMessage {
    let mut message = LinkMessage::default();
    message.attributes.push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
    RouteNetlinkMessage::GetLink(message)
}

/// RTM_NEWLINK for link `index` that sets IFF_UP, as `ip link set dev X up` sends it.
pub fn set_up_message(index: u32) -> RouteNetlinkMessage {
    let mut message = LinkMessage::default();
    message.header.index = index;
    message.header.flags = LinkFlags::Up;
    message.header.change_mask = LinkFlags::Up;
    RouteNetlinkMessage::NewLink(message)
}

/// RTM_NEWLINK for link `index` that sets its MTU, as `ip link set dev X mtu N` sends it.
pub fn set_mtu_message(index: u32, mtu: u32) -> RouteNetlinkMessage {
    let mut message = LinkMessage::default();
    message.header.index = index;
    message.attributes.push(LinkAttribute::Mtu(mtu));
    RouteNetlinkMessage::NewLink(message)
}

/// RTM_DELLINK for the link called `name` (ip resolves the name to an index first;
/// keel lets the kernel do it with IFLA_IFNAME, one round trip instead of two).
pub fn delete_link_message(name: &str) -> RouteNetlinkMessage {
    let mut message = LinkMessage::default();
    message.attributes.push(LinkAttribute::IfName(name.to_string()));
    RouteNetlinkMessage::DelLink(message)
}

/// Look the link called `name` up on an open socket: `None` when there is none.
pub fn link_by_name(socket: &mut RouteSocket, name: &str) -> Result<Option<LinkInfo>, NetlinkError> {
    let what = format!("look up link {name}");
    match socket.query(get_link_message(name), 0, &what) {
        Ok(replies) => Ok(replies.iter().find_map(|reply| match reply {
            RouteNetlinkMessage::NewLink(link) => Some(LinkInfo::from_message(link)),
            _ => None,
        })),
        Err(e) if e.kernel_errno() == Some(ENODEV) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The name of link `index` for error messages: `keel0`, or `ifindex 7` when it cannot be found.
pub(crate) fn link_label(socket: &mut RouteSocket, index: u32) -> String {
    match socket.query(get_link_by_index_message(index), 0, "look up link") {
        Ok(replies) => replies
            .iter()
            .find_map(|reply| match reply {
                RouteNetlinkMessage::NewLink(link) => Some(LinkInfo::from_message(link).name),
                _ => None,
            })
            .unwrap_or_else(|| format!("ifindex {index}")),
        Err(_) => format!("ifindex {index}"),
    }
}

/// Send one request about link `index`; on refusal, name the link in the error
/// (`{verb} {link name}{suffix}`): the name is looked up only when something failed.
pub(crate) fn request_on_link(
    socket: &mut RouteSocket,
    message: RouteNetlinkMessage,
    flags: u16,
    index: u32,
    describe: impl Fn(&str) -> String,
) -> Result<(), NetlinkError> {
    match socket.request_flags(message, flags, &describe(&format!("ifindex {index}"))) {
        Err(NetlinkError::Kernel { source, .. }) => {
            let label = link_label(socket, index);
            Err(NetlinkError::Kernel { what: describe(&label), source })
        }
        other => other,
    }
}

/// The index of the link called `name` in the caller's network namespace, `None` when
/// there is no such link.
pub fn link_index(name: &str) -> Result<Option<u32>, NetlinkError> {
    let mut socket = RouteSocket::open(&format!("look up link {name}"))?;
    Ok(link_by_name(&mut socket, name)?.map(|link| link.index))
}

/// Every link of the caller's network namespace (one RTM_GETLINK dump), in index order.
pub fn list_links() -> Result<Vec<LinkInfo>, NetlinkError> {
    let what = "list links";
    let mut socket = RouteSocket::open(what)?;
    let replies = socket.query(dump_links_message(), NLM_F_DUMP, what)?;
    let mut links: Vec<LinkInfo> = replies
        .iter()
        .filter_map(|reply| match reply {
            RouteNetlinkMessage::NewLink(link) => Some(LinkInfo::from_message(link)),
            _ => None,
        })
        .collect();
    links.sort_by_key(|link| link.index);
    Ok(links)
}

/// The first physical Ethernet link (lowest index): not lo, not a bridge, veth or other
/// virtual kind, with a MAC — what a cloud VM's uplink is. `None` when there is none
/// or the links cannot be listed.
pub fn first_ethernet() -> Option<LinkInfo> {
    list_links().ok()?.into_iter().find(LinkInfo::is_physical_ethernet)
}

/// Bring link `index` up.
pub fn set_up(index: u32) -> Result<(), NetlinkError> {
    let mut socket = RouteSocket::open("set link up")?;
    request_on_link(&mut socket, set_up_message(index), 0, index, |link| format!("set link {link} up"))
}

/// Set the MTU of link `index`.
pub fn set_mtu(index: u32, mtu: u32) -> Result<(), NetlinkError> {
    let mut socket = RouteSocket::open("set mtu")?;
    request_on_link(&mut socket, set_mtu_message(index, mtu), 0, index, |link| format!("set mtu {mtu} on {link}"))
}

/// Delete the link called `name` (for a veth, its peer goes too).
pub fn delete_link(name: &str) -> Result<(), NetlinkError> {
    let what = format!("delete link {name}");
    let mut socket = RouteSocket::open(&what)?;
    socket.request_ack(delete_link_message(name), &what)
}

/// The message that sets the link called `name` up: RTM_NEWLINK without NLM_F_CREATE,
/// addressed by IFLA_IFNAME, changing only IFF_UP.
pub fn link_up_message(name: &str) -> RouteNetlinkMessage {
    let mut message = LinkMessage::default();
    message.header.flags = LinkFlags::Up;
    message.header.change_mask = LinkFlags::Up;
    message.attributes.push(LinkAttribute::IfName(name.to_string()));
    RouteNetlinkMessage::NewLink(message)
}

/// Bring the link called `name` up in the caller's network namespace.
pub fn set_link_up(name: &str) -> Result<(), NetlinkError> {
    let what = format!("set link {name} up");
    let mut socket = RouteSocket::open(&what)?;
    socket.request_ack(link_up_message(name), &what)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::socket::ip_bytes;
    use crate::socket::{encode_message, encode_request};
    use netlink_packet_core::NLM_F_REQUEST;
    use netlink_packet_route::link::InfoKind;

    #[test]
    fn link_up_bytes_match_what_iproute2_sends() {
        // `ip link set lo up` sends the same ifinfomsg with flags = change = IFF_UP;
        // here the link is named rather than indexed. Layout: nlmsghdr (16) +
        // ifinfomsg (16) + IFLA_IFNAME "lo\0" padded (8).
        let bytes = encode_request(link_up_message("lo"), 1);
        let expected: Vec<u8> = [
            &[40, 0, 0, 0][..], // length
            &[16, 0],           // RTM_NEWLINK
            &[5, 0],            // NLM_F_REQUEST | NLM_F_ACK
            &[1, 0, 0, 0],
            &[0, 0, 0, 0], // sequence, port
            &[0, 0],
            &[0, 0],       // family AF_UNSPEC, pad, type
            &[0, 0, 0, 0], // index 0: look up by name
            &[1, 0, 0, 0],
            &[1, 0, 0, 0], // flags, change mask = IFF_UP
            &[7, 0, 3, 0],
            b"lo\0",
            &[0], // IFLA_IFNAME
        ]
        .concat();
        assert_eq!(bytes, expected);
    }

    #[test]
    fn set_up_bytes_are_ips() {
        // ip link set dev keel0 up (keel0 = index 2)
        let ip = ip_bytes("20 00 00 00 10 00 05 00 c9 bb 0c 6b 00 00 00 00 00 00 00 00 02 00 00 00 01 00 00 00 01 00 00 00");
        assert_eq!(encode_request(set_up_message(2), 1), ip);
    }

    #[test]
    fn set_mtu_bytes_are_ips() {
        // ip link set dev keel0 mtu 1400
        let ip = ip_bytes(
            "28 00 00 00 10 00 05 00 c9 bb 0c 6b 00 00 00 00 00 00 00 00 02 00 00 00 00 00 00 00 00 00 00 00
             08 00 04 00 78 05 00 00",
        );
        assert_eq!(encode_request(set_mtu_message(2, 1400), 1), ip);
    }

    #[test]
    fn delete_link_names_the_link_where_ip_uses_its_index() {
        // ip link del vh1 sends ifi_index = 3 and no attribute; keel sends index 0 and
        // IFLA_IFNAME "vh1", which the kernel resolves the same way.
        let ip = ip_bytes("20 00 00 00 11 00 05 00 c9 bb 0c 6b 00 00 00 00 00 00 00 00 03 00 00 00 00 00 00 00 00 00 00 00");
        let keel = encode_request(delete_link_message("vh1"), 1);
        let mut expected = ip.clone();
        expected[0] = 40;
        expected[20..24].copy_from_slice(&[0, 0, 0, 0]);
        expected.extend([8, 0, 3, 0, b'v', b'h', b'1', 0]);
        assert_eq!(keel, expected);
    }

    #[test]
    fn get_link_is_ips_without_the_vf_filter() {
        // ip sends IFLA_EXT_MASK = RTEXT_FILTER_VF | RTEXT_FILTER_SKIP_STATS (9) before
        // IFLA_IFNAME "keel0"; keel asks only to skip the statistics (8).
        let ip = ip_bytes(
            "34 00 00 00 12 00 01 00 c9 bb 0c 6b 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
             08 00 1d 00 09 00 00 00 0a 00 03 00 6b 65 65 6c 30 00 00 00",
        );
        let keel = encode_message(get_link_message("keel0"), NLM_F_REQUEST, 1);
        let mut expected = ip;
        expected[36] = 8;
        assert_eq!(keel, expected);
    }

    #[test]
    fn link_info_reads_a_veth_port() {
        let mut message = LinkMessage::default();
        message.header.index = 5;
        message.header.flags = LinkFlags::Up | LinkFlags::Broadcast;
        message.header.link_layer_type = LinkLayerType::Ether;
        message.attributes.push(LinkAttribute::IfName("vk1".into()));
        message.attributes.push(LinkAttribute::Mtu(1500));
        message.attributes.push(LinkAttribute::Controller(3));
        message.attributes.push(LinkAttribute::Address(vec![2, 0, 0, 0, 0, 1]));
        message.attributes.push(LinkAttribute::LinkInfo(vec![InfoNla::Kind(InfoKind::Veth)]));
        let info = LinkInfo::from_message(&message);
        assert_eq!(
            info,
            LinkInfo {
                index: 5,
                name: "vk1".into(),
                kind: Some("veth".into()),
                mac: Some([2, 0, 0, 0, 0, 1]),
                up: true,
                mtu: 1500,
                master: Some(3),
                link_type: 1,
            }
        );
        assert!(!info.is_physical_ethernet(), "a veth is not an uplink");
        let mut physical = info.clone();
        physical.kind = None;
        assert!(physical.is_physical_ethernet());
        physical.mac = None;
        assert!(!physical.is_physical_ethernet(), "no MAC, no uplink");
    }
}
