//! Unit tests for `packet.rs`: exact bytes of what keel sends, and every rejection.

use super::fake_server::{lease_reply, nak, reply};
use super::*;

const MAC: Mac = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
const XID: u32 = 0xdead_beef;
const OFFERED: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 13);
const SERVER: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 1);

/// The options area of an encoded message, up to and including END.
fn options_of(p: &[u8]) -> &[u8] {
    let area = &p[OPTIONS_AT..];
    let mut at = 0;
    while area[at] != opt::END {
        at += if area[at] == opt::PAD { 1 } else { 2 + usize::from(area[at + 1]) };
    }
    &area[..=at]
}

const CLIENT_OPTIONS: [u8; 19] = [61, 7, 1, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 55, 8, 1, 3, 6, 15, 26, 51, 58, 59];

#[test]
fn discover_bytes() {
    let p = discover(&MAC, XID, 3);
    assert_eq!(p.len(), 300, "padded to the BOOTP minimum");
    assert_eq!(&p[..4], &[1, 1, 6, 0], "op, htype, hlen, hops");
    assert_eq!(&p[4..8], &[0xde, 0xad, 0xbe, 0xef], "xid");
    assert_eq!(&p[8..10], &[0, 3], "secs");
    assert_eq!(&p[10..12], &[0x80, 0], "broadcast flag");
    assert!(p[12..28].iter().all(|&b| b == 0), "ciaddr, yiaddr, siaddr, giaddr are zero");
    assert_eq!(&p[28..44], &[0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(&p[236..240], &[99, 130, 83, 99]);
    let mut expected = vec![53, 1, 1];
    expected.extend(CLIENT_OPTIONS);
    expected.push(255);
    assert_eq!(options_of(&p), expected.as_slice());
}

#[test]
fn selecting_request_names_server_and_address_and_broadcasts() {
    let p = request(&MAC, XID, 0, RequestKind::Selecting { server: SERVER, requested: OFFERED });
    assert_eq!(&p[10..12], &[0x80, 0]);
    assert_eq!(&p[12..16], &[0, 0, 0, 0], "ciaddr zero while selecting");
    let mut expected = vec![53, 1, 3, 50, 4, 192, 168, 77, 13, 54, 4, 192, 168, 77, 1];
    expected.extend(CLIENT_OPTIONS);
    expected.push(255);
    assert_eq!(options_of(&p), expected.as_slice());
}

#[test]
fn init_reboot_request_has_requested_ip_but_no_server() {
    let p = request(&MAC, XID, 0, RequestKind::InitReboot { requested: OFFERED });
    assert_eq!(&p[10..12], &[0x80, 0]);
    let mut expected = vec![53, 1, 3, 50, 4, 192, 168, 77, 13];
    expected.extend(CLIENT_OPTIONS);
    expected.push(255);
    assert_eq!(options_of(&p), expected.as_slice());
}

#[test]
fn renewing_and_rebinding_requests_set_ciaddr_without_broadcast_flag() {
    for flavour in [RequestKind::Renewing { ciaddr: OFFERED }, RequestKind::Rebinding { ciaddr: OFFERED }] {
        let p = request(&MAC, XID, 0, flavour);
        assert_eq!(&p[10..12], &[0, 0], "{flavour:?}");
        assert_eq!(&p[12..16], &[192, 168, 77, 13], "{flavour:?}");
        let mut expected = vec![53, 1, 3];
        expected.extend(CLIENT_OPTIONS);
        expected.push(255);
        assert_eq!(options_of(&p), expected.as_slice(), "{flavour:?}: no option 50 or 54");
    }
}

#[test]
fn release_bytes() {
    let p = release(&MAC, XID, OFFERED, SERVER);
    assert_eq!(&p[10..12], &[0, 0]);
    assert_eq!(&p[12..16], &[192, 168, 77, 13]);
    assert_eq!(options_of(&p), &[53, 1, 7, 54, 4, 192, 168, 77, 1, 61, 7, 1, 0x52, 0x54, 0, 0x12, 0x34, 0x56, 255]);
    assert_eq!(message_type(&p), Some(7));
}

#[test]
fn decodes_offer_ack_and_nak() {
    let expected = Lease {
        address: OFFERED,
        prefix: 24,
        router: Some(SERVER),
        dns: vec![SERVER, Ipv4Addr::new(9, 9, 9, 9)],
        domain: Some("lab.example".into()),
        mtu: Some(1400),
        server: SERVER,
        lease_secs: 120,
        t1_secs: 5,
        t2_secs: 8,
    };
    assert_eq!(decode(&lease_reply(2, XID, &MAC, OFFERED), XID, &MAC), Ok(Reply::Offer(expected.clone())));
    assert_eq!(decode(&lease_reply(5, XID, &MAC, OFFERED), XID, &MAC), Ok(Reply::Ack(expected)));
    assert_eq!(decode(&nak(XID, &MAC), XID, &MAC), Ok(Reply::Nak { server: Some(SERVER) }));
}

fn minimal_ack(extra: &[(u8, &[u8])]) -> Vec<u8> {
    let mut options: Vec<(u8, &[u8])> = vec![(54, &[10, 0, 0, 1]), (1, &[255, 255, 0, 0]), (51, &[0, 0, 0x0e, 0x10])];
    options.extend_from_slice(extra);
    reply(5, XID, &MAC, Ipv4Addr::new(10, 0, 3, 4), &options)
}

#[test]
fn missing_t1_t2_default_to_half_and_seven_eighths() {
    let Ok(Reply::Ack(lease)) = decode(&minimal_ack(&[]), XID, &MAC) else { panic!() };
    assert_eq!((lease.prefix, lease.lease_secs, lease.t1_secs, lease.t2_secs), (16, 3600, 1800, 3150));
    assert_eq!((lease.router, lease.dns.len(), lease.domain, lease.mtu), (None, 0, None, None));
}

#[test]
fn misordered_t1_t2_fall_back_to_defaults() {
    let t2_past_lease = 4000u32.to_be_bytes();
    let Ok(Reply::Ack(lease)) = decode(&minimal_ack(&[(59, &t2_past_lease)]), XID, &MAC) else { panic!() };
    assert_eq!((lease.t1_secs, lease.t2_secs), (1800, 3150));
    let t1_past_t2 = 3200u32.to_be_bytes();
    let Ok(Reply::Ack(lease)) = decode(&minimal_ack(&[(58, &t1_past_t2)]), XID, &MAC) else { panic!() };
    assert_eq!((lease.t1_secs, lease.t2_secs), (1800, 3150));
}

#[test]
fn infinite_lease_keeps_timers_in_range() {
    let p = reply(5, XID, &MAC, OFFERED, &[(54, &[10, 0, 0, 1]), (1, &[255, 255, 255, 0]), (51, &[0xff; 4])]);
    let Ok(Reply::Ack(lease)) = decode(&p, XID, &MAC) else { panic!() };
    assert_eq!((lease.lease_secs, lease.t1_secs, lease.t2_secs), (u32::MAX, u32::MAX / 2, 3_758_096_383));
}

#[test]
fn unsafe_domain_is_dropped_and_trailing_nul_trimmed() {
    let Ok(Reply::Ack(lease)) = decode(&minimal_ack(&[(15, b"evil\nnameserver 6.6.6.6")]), XID, &MAC) else { panic!() };
    assert_eq!(lease.domain, None);
    let Ok(Reply::Ack(lease)) = decode(&minimal_ack(&[(15, b"corp.example\0")]), XID, &MAC) else { panic!() };
    assert_eq!(lease.domain.as_deref(), Some("corp.example"));
}

#[test]
fn split_options_are_concatenated() {
    let Ok(Reply::Ack(lease)) = decode(&minimal_ack(&[(6, &[1, 1, 1, 1]), (6, &[8, 8, 8, 8])]), XID, &MAC) else { panic!() };
    assert_eq!(lease.dns, vec![Ipv4Addr::new(1, 1, 1, 1), Ipv4Addr::new(8, 8, 8, 8)]);
}

#[test]
fn overloaded_file_and_sname_fields_carry_options() {
    let mut p = minimal_ack(&[(52, &[3])]);
    p[FILE.start..FILE.start + 7].copy_from_slice(&[3, 4, 10, 0, 0, 1, 255]);
    p[SNAME.start..SNAME.start + 5].copy_from_slice(&[26, 2, 0x05, 0xdc, 255]);
    let Ok(Reply::Ack(lease)) = decode(&p, XID, &MAC) else { panic!() };
    assert_eq!((lease.router, lease.mtu), (Some(Ipv4Addr::new(10, 0, 0, 1)), Some(1500)));
}

#[test]
fn rejects_header_problems() {
    let good = lease_reply(5, XID, &MAC, OFFERED);
    let mut p = good.clone();
    p[0] = 1;
    assert_eq!(decode(&p, XID, &MAC), Err(PacketError::NotAReply { op: 1 }));
    let mut p = good.clone();
    p[2] = 16;
    assert_eq!(decode(&p, XID, &MAC), Err(PacketError::NotEthernet { htype: 1, hlen: 16 }));
    assert_eq!(decode(&good, 7, &MAC), Err(PacketError::WrongXid { expected: 7, got: XID }));
    let other = [2, 0, 0, 0, 0, 1];
    assert_eq!(decode(&good, XID, &other), Err(PacketError::WrongChaddr { expected: other, got: MAC }));
    let mut p = good.clone();
    p[239] = 0;
    assert_eq!(decode(&p, XID, &MAC), Err(PacketError::BadCookie { got: [99, 130, 83, 0] }));
    assert_eq!(decode(&good[..239], XID, &MAC), Err(PacketError::TooShort { len: 239 }));
}

#[test]
fn rejects_option_problems() {
    // Cut inside the router option's value: 240 + 3 (type) + 6 (server) + 6 (mask) + 2 (router header) + 1.
    let good = lease_reply(5, XID, &MAC, OFFERED);
    assert_eq!(decode(&good[..258], XID, &MAC), Err(PacketError::Truncated { code: 3, offset: 15, field: "options" }));
    assert_eq!(decode(&good[..257], XID, &MAC), Err(PacketError::Truncated { code: 3, offset: 15, field: "options" }));
    let end = OPTIONS_AT + options_of(&good).len() - 1;
    assert_eq!(decode(&good[..end], XID, &MAC), Err(PacketError::NoEnd { field: "options" }));
    let p = minimal_ack(&[(52, &[4])]);
    assert_eq!(decode(&p, XID, &MAC), Err(PacketError::BadOverload { value: vec![4] }));
    let p = minimal_ack(&[(52, &[1])]); // file field all PAD: no END
    assert_eq!(decode(&p, XID, &MAC), Err(PacketError::NoEnd { field: "file" }));
    let p = minimal_ack(&[(3, &[1, 2, 3])]);
    assert_eq!(decode(&p, XID, &MAC), Err(PacketError::BadOptionLength { code: 3, len: 3, expected: "a non-zero multiple of 4" }));
    assert_eq!(decode(&minimal_ack(&[(26, &[0, 20])]), XID, &MAC), Err(PacketError::BadMtu(20)));
    assert_eq!(
        decode(&minimal_ack(&[(1, &[0])]), XID, &MAC),
        Err(PacketError::BadOptionLength { code: 1, len: 5, expected: "exactly 4" }),
        "a repeated mask is concatenated to 5 bytes"
    );
    let holes = reply(5, XID, &MAC, OFFERED, &[(54, &[10, 0, 0, 1]), (1, &[255, 0, 255, 0]), (51, &[0, 0, 1, 0])]);
    assert_eq!(decode(&holes, XID, &MAC), Err(PacketError::BadMask(Ipv4Addr::new(255, 0, 255, 0))));
}

#[test]
fn rejects_missing_or_unexpected_content() {
    let no_lease = reply(5, XID, &MAC, OFFERED, &[(54, &[10, 0, 0, 1]), (1, &[255, 255, 255, 0])]);
    assert_eq!(decode(&no_lease, XID, &MAC), Err(PacketError::MissingOption { code: 51, name: "lease time", message: "ACK" }));
    let no_mask = reply(2, XID, &MAC, OFFERED, &[(54, &[10, 0, 0, 1]), (51, &[0, 0, 1, 0])]);
    assert_eq!(decode(&no_mask, XID, &MAC), Err(PacketError::MissingOption { code: 1, name: "subnet mask", message: "OFFER" }));
    let mut no_type = lease_reply(5, XID, &MAC, OFFERED);
    // Turn `53 1 5` into three PADs.
    no_type[OPTIONS_AT] = 0;
    no_type[OPTIONS_AT + 1] = 0;
    no_type[OPTIONS_AT + 2] = 0;
    assert_eq!(decode(&no_type, XID, &MAC), Err(PacketError::MissingOption { code: 53, name: "message type", message: "reply" }));
    assert_eq!(decode(&discover_as_reply(), XID, &MAC), Err(PacketError::UnexpectedType(1)));
    assert_eq!(decode(&lease_reply(5, XID, &MAC, Ipv4Addr::BROADCAST), XID, &MAC), Err(PacketError::BadAddress(Ipv4Addr::BROADCAST)));
}

fn discover_as_reply() -> Vec<u8> {
    let mut p = discover(&MAC, XID, 0);
    p[0] = 2;
    p
}

/// xorshift64*: deterministic pseudo-random bytes for the fuzz-like test.
fn next(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

#[test]
fn random_truncated_and_mutated_input_never_panics() {
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let good = lease_reply(5, XID, &MAC, OFFERED);
    for len in 0..=good.len() {
        let _ = decode(&good[..len], XID, &MAC);
    }
    for _ in 0..20_000 {
        let mut p = good.clone();
        // Flip a few bytes, mostly in the options area, and sometimes cut the packet.
        for _ in 0..(next(&mut rng) % 6 + 1) {
            let at = if next(&mut rng).is_multiple_of(4) { next(&mut rng) as usize % p.len() } else { 240 + next(&mut rng) as usize % 60 };
            p[at] = next(&mut rng) as u8;
        }
        if next(&mut rng).is_multiple_of(3) {
            p.truncate(next(&mut rng) as usize % (p.len() + 1));
        }
        let _ = decode(&p, XID, &MAC);
        let _ = message_type(&p);
    }
    for _ in 0..5_000 {
        let len = next(&mut rng) as usize % 600;
        let mut p: Vec<u8> = (0..len).map(|_| next(&mut rng) as u8).collect();
        if p.len() >= 240 {
            // Make the header pass so the option parser gets random input.
            p[..240].copy_from_slice(&good[..240]);
        }
        let _ = decode(&p, XID, &MAC);
    }
}
