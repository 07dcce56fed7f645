//! Unit tests for `machine.rs`: every transition, with time passed in.

use super::*;
use crate::dhcp::packet::fake_server::{lease_reply, nak};

const MAC: Mac = [0x52, 0x54, 0x00, 0xab, 0xcd, 0xef];
const OFFERED: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 13);
const SERVER: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 1);
const SEC: Duration = Duration::from_secs(1);

fn xid_of(action: &Action) -> u32 {
    let Action::Send { packet, .. } = action else { panic!("not a send: {action:?}") };
    u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]])
}

/// (message type, destination, ciaddr, broadcast flag) of a Send.
fn summary(action: &Action) -> (u8, Destination, Ipv4Addr, bool) {
    let Action::Send { packet, to } = action else { panic!("not a send: {action:?}") };
    let ciaddr = Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]);
    (packet::message_type(packet).unwrap(), *to, ciaddr, packet[10] & 0x80 != 0)
}

fn lease(address: Ipv4Addr) -> Lease {
    Lease {
        address,
        prefix: 24,
        router: Some(SERVER),
        dns: vec![SERVER, Ipv4Addr::new(9, 9, 9, 9)],
        domain: Some("lab.example".into()),
        mtu: Some(1400),
        server: SERVER,
        lease_secs: 120,
        t1_secs: 5,
        t2_secs: 8,
    }
}

/// A client bound at `t0` to OFFERED (lease 120 s, T1 5 s, T2 8 s).
fn bound(t0: Instant) -> Client {
    let mut client = Client::new(MAC, 42);
    let discover = client.on_start(t0);
    let xid = xid_of(&discover[0]);
    let request = client.on_packet(&lease_reply(2, xid, &MAC, OFFERED), t0);
    assert_eq!(xid_of(&request[0]), xid, "REQUEST keeps the DISCOVER's xid");
    assert_eq!(client.on_packet(&lease_reply(5, xid, &MAC, OFFERED), t0), vec![Action::Bind(lease(OFFERED))]);
    client
}

#[test]
fn discover_offer_request_ack_binds() {
    let t0 = Instant::now();
    let mut client = Client::new(MAC, 42);
    let actions = client.on_start(t0);
    assert_eq!(summary(&actions[0]), (1, Destination::Broadcast, Ipv4Addr::UNSPECIFIED, true));
    assert_eq!(client.state(), State::Selecting);
    let xid = xid_of(&actions[0]);
    let actions = client.on_packet(&lease_reply(2, xid, &MAC, OFFERED), t0 + SEC);
    assert_eq!(summary(&actions[0]), (3, Destination::Broadcast, Ipv4Addr::UNSPECIFIED, true));
    assert_eq!(client.state(), State::Requesting);
    let actions = client.on_packet(&lease_reply(5, xid, &MAC, OFFERED), t0 + 2 * SEC);
    assert_eq!(actions, vec![Action::Bind(lease(OFFERED))]);
    assert_eq!(client.state(), State::Bound);
    assert_eq!(client.lease(), Some(&lease(OFFERED)));
    assert_eq!(client.next_deadline(), Some(t0 + 6 * SEC), "T1 counts from the REQUEST sent at t0+1");
}

#[test]
fn foreign_and_unexpected_packets_are_ignored() {
    let t0 = Instant::now();
    let mut client = Client::new(MAC, 42);
    let xid = xid_of(&client.on_start(t0)[0]);
    assert!(client.on_packet(&lease_reply(2, xid ^ 1, &MAC, OFFERED), t0).is_empty(), "wrong xid");
    assert!(client.on_packet(&lease_reply(5, xid, &MAC, OFFERED), t0).is_empty(), "ACK while selecting");
    assert!(client.on_packet(b"garbage", t0).is_empty());
    assert_eq!(client.state(), State::Selecting);
}

#[test]
fn timer_before_deadline_does_nothing() {
    let t0 = Instant::now();
    let mut client = bound(t0);
    assert!(client.on_timer(t0 + 4 * SEC).is_empty());
    assert_eq!(client.state(), State::Bound);
}

#[test]
fn renews_at_t1_by_unicast_and_renewed_same_address() {
    let t0 = Instant::now();
    let mut client = bound(t0);
    let t1 = client.next_deadline().unwrap();
    let actions = client.on_timer(t1);
    assert_eq!(summary(&actions[0]), (3, Destination::Unicast(SERVER), OFFERED, false));
    assert_eq!(client.state(), State::Renewing);
    assert_eq!(client.next_deadline(), Some(t0 + 8 * SEC), "next try clipped to T2");
    let xid = xid_of(&actions[0]);
    let actions = client.on_packet(&lease_reply(5, xid, &MAC, OFFERED), t1 + SEC);
    assert_eq!(actions, vec![Action::Renewed(lease(OFFERED))]);
    assert_eq!(client.next_deadline(), Some(t1 + 5 * SEC), "new T1 from the renewal REQUEST");
}

#[test]
fn renewal_with_a_new_address_binds_again() {
    let t0 = Instant::now();
    let mut client = bound(t0);
    let actions = client.on_timer(t0 + 5 * SEC);
    let other = Ipv4Addr::new(192, 168, 77, 14);
    let actions = client.on_packet(&lease_reply(5, xid_of(&actions[0]), &MAC, other), t0 + 5 * SEC);
    assert_eq!(actions, vec![Action::Bind(lease(other))]);
}

#[test]
fn unanswered_renewal_rebinds_at_t2_then_loses_lease_at_expiry() {
    let t0 = Instant::now();
    let mut client = bound(t0);
    let renew = client.on_timer(t0 + 5 * SEC);
    let actions = client.on_timer(t0 + 8 * SEC);
    assert_eq!(summary(&actions[0]), (3, Destination::Broadcast, OFFERED, false));
    assert_ne!(xid_of(&actions[0]), xid_of(&renew[0]), "rebinding is a new exchange");
    assert_eq!(client.state(), State::Rebinding);
    // Half of the remaining 112 s is 56 s, below the 60 s minimum.
    assert_eq!(client.next_deadline(), Some(t0 + 68 * SEC));
    let again = client.on_timer(t0 + 68 * SEC);
    assert_eq!(summary(&again[0]).1, Destination::Broadcast);
    assert_eq!(client.next_deadline(), Some(t0 + 120 * SEC), "clipped to expiry");
    let actions = client.on_timer(t0 + 120 * SEC);
    assert_eq!(actions[0], Action::LeaseLost);
    assert_eq!(summary(&actions[1]).0, 1, "back to INIT: DISCOVER");
    assert_eq!((client.state(), client.lease()), (State::Selecting, None));
}

#[test]
fn rebinding_ack_from_any_server_renews() {
    let t0 = Instant::now();
    let mut client = bound(t0);
    client.on_timer(t0 + 5 * SEC);
    let rebind = client.on_timer(t0 + 8 * SEC);
    let actions = client.on_packet(&lease_reply(5, xid_of(&rebind[0]), &MAC, OFFERED), t0 + 9 * SEC);
    assert_eq!(actions, vec![Action::Renewed(lease(OFFERED))]);
    assert_eq!(client.state(), State::Bound);
}

#[test]
fn nak_while_renewing_loses_lease_and_rediscovers() {
    let t0 = Instant::now();
    let mut client = bound(t0);
    let renew = client.on_timer(t0 + 5 * SEC);
    let actions = client.on_packet(&nak(xid_of(&renew[0]), &MAC), t0 + 6 * SEC);
    assert_eq!(actions[0], Action::LeaseLost);
    assert_eq!(summary(&actions[1]).0, 1);
    assert_eq!(client.state(), State::Selecting);
}

#[test]
fn nak_while_requesting_restarts_discovery_without_lease_lost() {
    let t0 = Instant::now();
    let mut client = Client::new(MAC, 1);
    let xid = xid_of(&client.on_start(t0)[0]);
    client.on_packet(&lease_reply(2, xid, &MAC, OFFERED), t0);
    let actions = client.on_packet(&nak(xid, &MAC), t0);
    assert_eq!(actions.len(), 1);
    assert_eq!(summary(&actions[0]).0, 1);
    assert_ne!(xid_of(&actions[0]), xid);
}

#[test]
fn discover_backoff_doubles_with_jitter_caps_and_gives_up_for_now() {
    let t0 = Instant::now();
    let config = ClientConfig { discover_attempts: 7, ..ClientConfig::default() };
    let mut client = Client::with_config(MAC, 7, config);
    let first = client.on_start(t0);
    let mut now = t0;
    let mut delays = Vec::new();
    for _ in 1..7 {
        let deadline = client.next_deadline().unwrap();
        delays.push(deadline - now);
        now = deadline;
        let actions = client.on_timer(now);
        assert_eq!(xid_of(&actions[0]), xid_of(&first[0]), "retransmissions keep the xid");
    }
    for (delay, nominal) in delays.iter().zip([4u64, 8, 16, 32, 64, 64]) {
        let nominal = Duration::from_secs(nominal);
        assert!(*delay >= nominal - SEC && *delay <= nominal + SEC, "{delays:?}");
    }
    assert!(delays.iter().any(|d| d.subsec_nanos() != 0), "jitter moves off whole seconds: {delays:?}");
    let deadline = client.next_deadline().unwrap();
    assert_eq!(client.on_timer(deadline), vec![Action::GaveUpForNow]);
    assert_eq!(client.state(), State::Init);
    assert_eq!(client.next_deadline(), Some(deadline + Duration::from_secs(60)));
    let again = client.on_timer(deadline + Duration::from_secs(60));
    assert_eq!(summary(&again[0]).0, 1);
    assert_ne!(xid_of(&again[0]), xid_of(&first[0]), "a new round is a new exchange");
}

#[test]
fn same_seed_same_packets_and_timers() {
    let t0 = Instant::now();
    let run = |seed| {
        let mut client = Client::new(MAC, seed);
        let mut out = client.on_start(t0);
        out.extend(client.on_timer(client.next_deadline().unwrap()));
        (out, client.next_deadline())
    };
    assert_eq!(run(9), run(9));
    assert_ne!(run(9).0, run(10).0);
}

#[test]
fn short_base_scales_the_jitter_too() {
    let t0 = Instant::now();
    let base = Duration::from_millis(100);
    let mut client = Client::with_config(MAC, 3, ClientConfig { retransmit_base: base, ..ClientConfig::default() });
    client.on_start(t0);
    let delay = client.next_deadline().unwrap() - t0;
    assert!(delay >= Duration::from_millis(75) && delay <= Duration::from_millis(125), "{delay:?}");
}

#[test]
fn unanswered_request_starts_over_from_discover() {
    let t0 = Instant::now();
    let mut client = Client::new(MAC, 5);
    let xid = xid_of(&client.on_start(t0)[0]);
    client.on_packet(&lease_reply(2, xid, &MAC, OFFERED), t0);
    let mut sends = 1;
    loop {
        let now = client.next_deadline().unwrap();
        let actions = client.on_timer(now);
        if summary(&actions[0]).0 == 1 {
            break;
        }
        sends += 1;
    }
    assert_eq!(sends, 4, "request_attempts REQUESTs, then DISCOVER");
    assert_eq!(client.state(), State::Selecting);
}

#[test]
fn init_reboot_confirms_a_remembered_address() {
    let t0 = Instant::now();
    let mut client = Client::new(MAC, 11).with_previous_lease(lease(OFFERED));
    let actions = client.on_start(t0);
    assert_eq!(client.state(), State::InitReboot);
    assert_eq!(summary(&actions[0]), (3, Destination::Broadcast, Ipv4Addr::UNSPECIFIED, true));
    let Action::Send { packet, .. } = &actions[0] else { unreachable!() };
    assert!(packet.windows(6).any(|w| w == [50, 4, 192, 168, 77, 13]), "requested IP option");
    let actions = client.on_packet(&lease_reply(5, xid_of(&actions[0]), &MAC, OFFERED), t0);
    assert_eq!(actions, vec![Action::Bind(lease(OFFERED))]);
}

#[test]
fn init_reboot_nak_falls_back_to_discover() {
    let t0 = Instant::now();
    let mut client = Client::new(MAC, 11).with_previous_lease(lease(OFFERED));
    let xid = xid_of(&client.on_start(t0)[0]);
    let actions = client.on_packet(&nak(xid, &MAC), t0);
    assert_eq!(summary(&actions[0]).0, 1);
    assert_eq!(client.state(), State::Selecting);
}

#[test]
fn release_unicasts_to_the_server_and_stops() {
    let t0 = Instant::now();
    let mut client = bound(t0);
    let actions = client.release(t0 + SEC);
    assert_eq!(summary(&actions[0]), (7, Destination::Unicast(SERVER), OFFERED, false));
    assert_eq!((client.state(), client.next_deadline(), client.lease()), (State::Init, None, None));
    assert!(client.release(t0 + SEC).is_empty(), "nothing left to release");
}

#[test]
fn infinite_lease_never_renews() {
    let t0 = Instant::now();
    let mut client = Client::new(MAC, 2);
    let xid = xid_of(&client.on_start(t0)[0]);
    client.on_packet(&lease_reply(2, xid, &MAC, OFFERED), t0);
    let forever = Lease { lease_secs: u32::MAX, ..lease(OFFERED) };
    client.bind(forever, Action::Bind);
    assert_eq!(client.next_deadline(), None);
}
