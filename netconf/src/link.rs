//! Link state: building RTM_NEWLINK messages that change an existing link.

use crate::socket::{NetlinkError, RouteSocket};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage;

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
    use crate::socket::encode_request;

    #[test]
    fn link_up_bytes_match_what_iproute2_sends() {
        // `ip link set lo up` sends the same ifinfomsg with flags = change = IFF_UP;
        // here the link is named rather than indexed. Layout: nlmsghdr (16) +
        // ifinfomsg (16) + IFLA_IFNAME "lo\0" padded (8).
        let bytes = encode_request(link_up_message("lo"), 1);
        let expected: Vec<u8> = [
            &[40, 0, 0, 0][..],           // length
            &[16, 0],                     // RTM_NEWLINK
            &[5, 0],                      // NLM_F_REQUEST | NLM_F_ACK
            &[1, 0, 0, 0], &[0, 0, 0, 0], // sequence, port
            &[0, 0], &[0, 0],             // family AF_UNSPEC, pad, type
            &[0, 0, 0, 0],                // index 0: look up by name
            &[1, 0, 0, 0], &[1, 0, 0, 0], // flags, change mask = IFF_UP
            &[7, 0, 3, 0], b"lo\0", &[0], // IFLA_IFNAME
        ]
        .concat();
        assert_eq!(bytes, expected);
    }
}
