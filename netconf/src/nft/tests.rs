//! Byte-for-byte checks against batches captured from the real `nft` (see testdata/README.md).

use super::ruleset::{build, build_remove};
use super::*;

fn state_a() -> FirewallState {
    FirewallState {
        uplink: None,
        container_subnets: vec![(Ipv4Addr::new(10, 88, 0, 0), 16), (Ipv4Addr::new(10, 89, 0, 0), 16)],
        container_subnets6: Vec::new(),
        bridges: vec![
            BridgeRule { name: "keel0".into(), subnet: (Ipv4Addr::new(10, 88, 0, 0), 16), isolated: false, metadata: false },
            BridgeRule { name: "keel1".into(), subnet: (Ipv4Addr::new(10, 89, 0, 0), 16), isolated: true, metadata: true },
        ],
        published: vec![
            Published { proto: Proto::Tcp, host_ip: None, host_port: 8080, dest: Ipv4Addr::new(10, 88, 0, 2), dest_port: 80 },
            Published { proto: Proto::Udp, host_ip: None, host_port: 53, dest: Ipv4Addr::new(10, 88, 0, 3), dest_port: 53 },
            Published {
                proto: Proto::Tcp,
                host_ip: Some(Ipv4Addr::LOCALHOST),
                host_port: 9090,
                dest: Ipv4Addr::new(10, 88, 0, 2),
                dest_port: 90,
            },
        ],
        input_drop: true,
        allow: vec![(Proto::Tcp, 22)],
        metadata_hosts: vec![Ipv4Addr::new(10, 88, 0, 5)],
        metadata_hosts6: vec![Ipv6Addr::new(0xfd00, 0x88, 0, 0, 0, 0, 0, 5)],
    }
}

fn state_b() -> FirewallState {
    FirewallState {
        uplink: Some("eth0".into()),
        container_subnets: vec![(Ipv4Addr::new(172, 20, 16, 0), 20)],
        container_subnets6: Vec::new(),
        bridges: vec![BridgeRule { name: "br-a".into(), subnet: (Ipv4Addr::new(172, 20, 16, 0), 20), isolated: true, metadata: false }],
        ..FirewallState::default()
    }
}

/// Split a batch into its messages, with NLM_F_ACK cleared (nft does not ask for ACKs).
fn messages_without_ack(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut offset = 0;
    while offset < bytes.len() {
        let len = u32::from_ne_bytes(bytes[offset..offset + 4].try_into().unwrap()) as usize;
        let mut message = bytes[offset..offset + len].to_vec();
        let flags = u16::from_ne_bytes([message[6], message[7]]) & !wire::F_ACK;
        message[6..8].copy_from_slice(&flags.to_ne_bytes());
        out.push(message);
        offset += len;
    }
    out
}

fn assert_same_as_nft(ours: &[u8], nft: &[u8]) {
    let (ours, nft) = (messages_without_ack(ours), messages_without_ack(nft));
    assert_eq!(ours.len(), nft.len(), "number of messages");
    for (i, (a, b)) in ours.iter().zip(&nft).enumerate() {
        assert_eq!(a, b, "message {i} differs\nkeel: {a:02x?}\nnft:  {b:02x?}");
    }
}

#[test]
fn full_batch_matches_nft_with_maps_isolation_and_input_drop() {
    assert_same_as_nft(&ruleset_batch(&state_a(), 0), include_bytes!("testdata/keel_a.bin"));
}

#[test]
fn full_batch_matches_nft_with_uplink_and_unaligned_prefix() {
    assert_same_as_nft(&ruleset_batch(&state_b(), 0), include_bytes!("testdata/keel_b.bin"));
}

#[test]
fn table_messages_are_the_replace_trick() {
    // BATCH_BEGIN (res_id = NFNL_SUBSYS_NFTABLES, big endian), NEWTABLE, DELTABLE, NEWTABLE.
    let messages = messages_without_ack(&build_remove(7).bytes);
    let expected: Vec<Vec<u8>> = vec![
        [&[20, 0, 0, 0, 0x10, 0, 1, 0, 7, 0, 0, 0, 0, 0, 0, 0][..], &[0, 0, 0, 10]].concat(),
        [
            &[40, 0, 0, 0, 0, 0x0a, 1, 0, 8, 0, 0, 0, 0, 0, 0, 0][..],
            &[1, 0, 0, 0], // NFPROTO_INET, v0, res_id 0
            &[9, 0, 1, 0],
            b"keel\0",
            &[0, 0, 0],                // NFTA_TABLE_NAME
            &[8, 0, 2, 0, 0, 0, 0, 0], // NFTA_TABLE_FLAGS
        ]
        .concat(),
        [&[32, 0, 0, 0, 2, 0x0a, 1, 0, 9, 0, 0, 0, 0, 0, 0, 0][..], &[1, 0, 0, 0], &[9, 0, 1, 0], b"keel\0", &[0, 0, 0]].concat(),
        [&[20, 0, 0, 0, 0x11, 0, 1, 0, 10, 0, 0, 0, 0, 0, 0, 0][..], &[0, 0, 0, 10]].concat(),
    ];
    assert_eq!(messages, expected);
    // The same first three messages open every ruleset batch (nft sends the same bytes).
    let nft = messages_without_ack(include_bytes!("testdata/keel_a.bin"));
    assert_eq!(&messages[1][12..], &nft[1][12..]); // all but length, type, flags, seq
    assert_eq!(&messages[2][12..], &nft[2][12..]);
}

#[test]
fn every_message_asks_for_an_ack_and_is_labelled() {
    let batch = build(&state_a(), 100);
    assert_eq!(batch.begin_seq, 100);
    let mut offset = 0;
    let mut seqs = Vec::new();
    while offset < batch.bytes.len() {
        let b = &batch.bytes[offset..];
        let len = u32::from_ne_bytes(b[..4].try_into().unwrap()) as usize;
        let flags = u16::from_ne_bytes([b[6], b[7]]);
        let seq = u32::from_ne_bytes(b[8..12].try_into().unwrap());
        let kind = u16::from_ne_bytes([b[4], b[5]]);
        if kind >> 8 == wire::SUBSYS_NFTABLES {
            assert_ne!(flags & wire::F_ACK, 0, "message {seq} must ask for an ACK");
            seqs.push(seq);
        }
        offset += len;
    }
    let labelled: Vec<u32> = batch.messages.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, labelled);
    assert_eq!(batch.messages[0].1, "add table inet keel");
    assert!(batch.messages.iter().any(|(_, w)| w == "add rule forward #3 (iifname \"keel1\" oifname \"keel0\" drop)"));
}

#[test]
fn published_map_has_one_element_per_port_and_one_rule() {
    let mut state = state_a();
    state.published = (0..1000)
        .map(|i| Published { proto: Proto::Tcp, host_ip: None, host_port: 10_000 + i, dest: Ipv4Addr::new(10, 88, 0, 2), dest_port: 80 })
        .collect();
    let batch = build(&state, 1);
    let rules_in_prerouting = batch.messages.iter().filter(|(_, w)| w.starts_with("add rule prerouting")).count();
    assert_eq!(rules_in_prerouting, 2);
    // 1000 elements of 40 bytes do not fit in one 16-bit attribute length: chunks.
    let chunks = batch.messages.iter().filter(|(_, w)| w == "add elements to published").count();
    assert!(chunks >= 1, "{chunks}");
    let key = [6, 0, 0, 0, 0x27, 0x10, 0, 0]; // tcp . 10000
    assert!(batch.bytes.windows(key.len()).any(|w| w == key));
}

#[test]
fn validation_names_the_field() {
    let mut state = state_a();
    state.bridges[1].name = "a-bridge-name-too-long".into();
    let message = validate(&state).unwrap_err().to_string();
    assert_eq!(message, "invalid firewall state: bridges[1].name: interface name \"a-bridge-name-too-long\" must be 1 to 15 bytes long");
    state.bridges[1].name = "ok".into();
    state.container_subnets[0].1 = 33;
    assert!(validate(&state).unwrap_err().to_string().contains("container_subnets[0]: prefix length 33"));
    assert!(validate(&state_b()).is_ok());
}

#[test]
fn verdict_reports_the_first_failing_message_by_name() {
    let batch = build(&state_b(), 1);
    let seq_of = |label: &str| batch.messages.iter().find(|(_, w)| w.starts_with(label)).unwrap().0;
    let forward = seq_of("add rule forward #1");
    let mut answers: Vec<(u32, i32)> = batch.messages.iter().map(|(s, _)| (*s, 0)).collect();
    answers.iter_mut().find(|(s, _)| *s == forward).unwrap().1 = -22;
    let err = verdict(&batch, &answers).unwrap_err().to_string();
    assert!(err.starts_with("add rule forward #1 (ct state established,related accept): Invalid argument"), "{err}");
    // An error on BATCH_BEGIN's sequence number is the batch as a whole.
    let err = verdict(&batch, &[(1, -1)]).unwrap_err().to_string();
    assert!(err.starts_with("commit batch for table inet keel: "), "{err}");
    // Missing ACKs are an error, not a success.
    let err = verdict(&batch, &answers[..3].iter().map(|(s, _)| (*s, 0)).collect::<Vec<_>>()).unwrap_err();
    assert!(err.to_string().contains("no acknowledgement for: add chain guard; add chain prerouting"), "{err}");
    let all_ok: Vec<(u32, i32)> = batch.messages.iter().map(|(s, _)| (*s, 0)).collect();
    assert!(verdict(&batch, &all_ok).is_ok());
}

#[test]
fn ipv6_subnets_get_a_masquerade_rule_each() {
    let mut state = state_b();
    state.container_subnets6 =
        vec![(Ipv6Addr::new(0xfd00, 0x88, 0, 0, 0, 0, 0, 0), 64), (Ipv6Addr::new(0xfd00, 0x89, 0, 0, 0, 0, 0, 0), 60)];
    let batch = build(&state, 1);
    let rules: Vec<&str> =
        batch.messages.iter().map(|(_, w)| w.as_str()).filter(|w| w.contains("ip6 saddr") && w.contains("masquerade")).collect();
    assert_eq!(rules.len(), 2, "{:?}", batch.messages);
    assert!(rules[0].ends_with("(ip6 saddr fd00:88::/64 oifname \"eth0\" masquerade)"), "{rules:?}");
    assert!(rules[1].ends_with("(ip6 saddr fd00:89::/60 oifname \"eth0\" masquerade)"), "{rules:?}");
    // The /64 compares the first 8 bytes of the source address directly.
    assert!(batch.bytes.windows(8).any(|w| w == [0xfd, 0, 0, 0x88, 0, 0, 0, 0]));
    // Without IPv6 subnets nothing changes (the captured batches stay byte-exact).
    state.container_subnets6.clear();
    assert_eq!(build(&state, 1).bytes, build(&state_b(), 1).bytes);
    state.container_subnets6 = vec![(Ipv6Addr::UNSPECIFIED, 129)];
    let message = validate(&state).unwrap_err().to_string();
    assert!(message.contains("container_subnets6[0]: prefix length 129 is more than 128"), "{message}");
}

fn texts(state: &FirewallState, chain: &str) -> Vec<String> {
    super::rules::rules(state).into_iter().filter(|r| r.chain == chain).map(|r| r.text).collect()
}

#[test]
fn guard_drops_loopback_destinations_from_other_interfaces_before_nat() {
    let rules = super::rules::rules(&state_b());
    let guard: Vec<_> = rules.iter().filter(|r| r.chain == "guard").collect();
    assert_eq!(guard[0].text, "iif != \"lo\" ip daddr 127.0.0.0/8 drop");
    // iif compared *not equal* to ifindex 1, the first byte of the destination to 127, drop.
    assert_eq!(guard[0].exprs[1], wire::Expr::Cmp { sreg: wire::REG_1, neq: true, data: 1u32.to_ne_bytes().to_vec() });
    assert!(guard[0].exprs.contains(&wire::Expr::Payload { dreg: wire::REG_1, base: 1, offset: 16, len: 1 }));
    assert!(guard[0].exprs.contains(&wire::Expr::Cmp { sreg: wire::REG_1, neq: false, data: vec![127] }));
    assert_eq!(guard[0].exprs.last(), Some(&wire::Expr::Verdict(wire::VERDICT_DROP)));
    // The chain runs at priority raw, before conntrack (-200) and DNAT (-100).
    let batch = build(&state_b(), 1);
    assert_eq!(batch.messages[3].1, "add chain guard");
    let needle = [&[8u8, 0, 2, 0][..], &(-300i32).to_be_bytes()].concat(); // NFTA_HOOK_PRIORITY
    assert!(batch.bytes.windows(needle.len()).any(|w| w == needle.as_slice()));
}

#[test]
fn metadata_is_dropped_for_containers_unless_their_network_or_address_is_listed() {
    let guard = texts(&state_a(), "guard");
    assert_eq!(
        guard[1..],
        [
            "iifname @bridges iifname != @metadata_bridges ip daddr 169.254.169.254 ip saddr != @metadata_hosts drop",
            "iifname @bridges iifname != @metadata_bridges ip6 daddr fd00:ec2::254 ip6 saddr != @metadata_hosts6 drop",
        ]
    );
    // The sets hold exactly the switches: keel1's network, and the one container (once).
    let mut state = state_a();
    state.metadata_hosts.push(Ipv4Addr::new(10, 88, 0, 5));
    let batch = build(&state, 1);
    let elements = |set: &str| batch.messages.iter().filter(|(_, w)| w == &format!("add elements to {set}")).count();
    assert_eq!((elements("metadata_bridges"), elements("metadata_hosts"), elements("metadata_hosts6")), (1, 1, 1));
    assert_eq!(batch.bytes.windows(4).filter(|w| *w == [10, 88, 0, 5]).count(), 1, "a duplicate address is sent once");
    // Nothing switched on: the sets are declared but empty, so every container is dropped.
    let batch = build(&state_b(), 1);
    assert!(!batch.messages.iter().any(|(_, w)| w.starts_with("add elements to metadata")), "{:?}", batch.messages);
    // The host itself is never filtered: only packets arriving on a bridge match.
    let rules = super::rules::rules(&state_b());
    let v4 = rules.iter().find(|r| r.text.contains("169.254.169.254")).unwrap();
    assert_eq!(
        v4.exprs[..2],
        [
            wire::Expr::Meta { key: wire::meta::IIFNAME, dreg: wire::REG_1 },
            wire::Expr::Lookup { sreg: wire::REG_1, dreg: None, set: "bridges".into(), set_id: 4, inverted: false }
        ]
    );
}

#[test]
fn allow_and_dhcp_are_bound_to_the_uplink() {
    let with_uplink = texts(&state_b(), "input");
    assert!(with_uplink.contains(&"iifname \"eth0\" meta l4proto . th dport @allow accept".to_string()), "{with_uplink:?}");
    assert!(with_uplink.contains(&"iifname \"eth0\" udp sport 67 udp dport 68 accept".to_string()), "{with_uplink:?}");
    // No uplink known yet (DHCP not bound): anything but a container bridge.
    let without = texts(&state_a(), "input");
    assert!(without.contains(&"iifname != @bridges meta l4proto . th dport @allow accept".to_string()), "{without:?}");
    // The first expressions of the allow rule are the interface match.
    let rules = super::rules::rules(&state_b());
    let allow = rules.iter().find(|r| r.text.contains("@allow")).unwrap();
    assert_eq!(allow.exprs[0], wire::Expr::Meta { key: wire::meta::IIFNAME, dreg: wire::REG_1 });
    assert_eq!(allow.exprs[1], wire::Expr::Cmp { sreg: wire::REG_1, neq: false, data: b"eth0\0\0\0\0\0\0\0\0\0\0\0\0".to_vec() });
    // Policy drop or accept follows the state; ICMP and loopback stay open.
    assert!(with_uplink.contains(&"iif \"lo\" accept".to_string()));
    assert!(with_uplink.contains(&"meta l4proto ipv6-icmp accept".to_string()));
}

#[test]
fn forward_drops_new_inbound_to_container_networks_unless_dnated() {
    assert_eq!(
        texts(&state_a(), "forward"),
        [
            "ct state established,related accept",
            "iifname \"keel0\" oifname \"keel1\" drop",
            "iifname \"keel1\" oifname \"keel0\" drop",
            "iifname @bridges accept",
            "ct status dnat accept",
            "oifname @bridges drop",
        ]
    );
    // No family match anywhere in forward: IPv4 and IPv6 container subnets alike.
    let rules = super::rules::rules(&state_a());
    for rule in rules.iter().filter(|r| r.chain == "forward") {
        assert!(!rule.exprs.iter().any(|e| matches!(e, wire::Expr::Meta { key: wire::meta::NFPROTO, .. })), "{}", rule.text);
    }
}

#[test]
fn route_localnet_only_on_bridges_with_a_loopback_published_port() {
    let mut state = state_a();
    assert_eq!(state.localnet_bridges(), ["keel0"], "9090 on 127.0.0.1 goes to 10.88.0.2 on keel0");
    state.published.retain(|p| p.host_ip.is_none());
    assert!(state.localnet_bridges().is_empty(), "no loopback port: no route_localnet anywhere");
    state.published.push(Published {
        proto: Proto::Tcp,
        host_ip: Some(Ipv4Addr::new(127, 0, 0, 2)),
        host_port: 1,
        dest: Ipv4Addr::new(10, 89, 3, 4),
        dest_port: 1,
    });
    state.published.push(Published {
        proto: Proto::Tcp,
        host_ip: Some(Ipv4Addr::new(192, 168, 1, 1)),
        host_port: 2,
        dest: Ipv4Addr::new(10, 88, 3, 4),
        dest_port: 1,
    });
    assert_eq!(state.localnet_bridges(), ["keel1"]);
}
