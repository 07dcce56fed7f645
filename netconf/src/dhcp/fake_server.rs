//! Server replies built for unit tests of `packet.rs` and `machine.rs`.

use super::*;

/// A reply of `message_type` to `(xid, mac)` offering `yiaddr` with `options` (code, value).
pub(crate) fn reply(message_type: u8, xid: u32, mac: &Mac, yiaddr: Ipv4Addr, options: &[(u8, &[u8])]) -> Vec<u8> {
    let mut p = header(mac, xid, 0, false, Ipv4Addr::UNSPECIFIED, message_type);
    p[0] = 2;
    p[16..20].copy_from_slice(&yiaddr.octets());
    for (code, value) in options {
        push_option(&mut p, *code, value);
    }
    finish(p)
}

/// An OFFER (2) or ACK (5) from 192.168.77.1: /24, router, two DNS servers, domain,
/// MTU 1400, lease 120 s, T1 5 s, T2 8 s.
pub(crate) fn lease_reply(message_type: u8, xid: u32, mac: &Mac, yiaddr: Ipv4Addr) -> Vec<u8> {
    reply(
        message_type,
        xid,
        mac,
        yiaddr,
        &[
            (opt::SERVER_ID, &[192, 168, 77, 1]),
            (opt::SUBNET_MASK, &[255, 255, 255, 0]),
            (opt::ROUTER, &[192, 168, 77, 1]),
            (opt::DNS, &[192, 168, 77, 1, 9, 9, 9, 9]),
            (opt::DOMAIN, b"lab.example"),
            (opt::MTU, &1400u16.to_be_bytes()),
            (opt::LEASE_TIME, &120u32.to_be_bytes()),
            (opt::T1, &5u32.to_be_bytes()),
            (opt::T2, &8u32.to_be_bytes()),
        ],
    )
}

/// A NAK (6) from 192.168.77.1.
pub(crate) fn nak(xid: u32, mac: &Mac) -> Vec<u8> {
    reply(kind::NAK, xid, mac, Ipv4Addr::UNSPECIFIED, &[(opt::SERVER_ID, &[192, 168, 77, 1])])
}
