//! Byte-for-byte checks against batches captured from the real `nft` (see testdata/README.md).

use super::ruleset::{build, build_remove};
use super::*;

fn state_a() -> FirewallState {
    FirewallState {
        uplink: None,
        container_subnets: vec![
            (Ipv4Addr::new(10, 88, 0, 0), 16),
            (Ipv4Addr::new(10, 89, 0, 0), 16),
        ],
        container_subnets6: Vec::new(),
        bridges: vec![
            BridgeRule {
                name: "keel0".into(),
                subnet: (Ipv4Addr::new(10, 88, 0, 0), 16),
                isolated: false,
            },
            BridgeRule {
                name: "keel1".into(),
                subnet: (Ipv4Addr::new(10, 89, 0, 0), 16),
                isolated: true,
            },
        ],
        published: vec![
            Published {
                proto: Proto::Tcp,
                host_ip: None,
                host_port: 8080,
                dest: Ipv4Addr::new(10, 88, 0, 2),
                dest_port: 80,
            },
            Published {
                proto: Proto::Udp,
                host_ip: None,
                host_port: 53,
                dest: Ipv4Addr::new(10, 88, 0, 3),
                dest_port: 53,
            },
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
    }
}

fn state_b() -> FirewallState {
    FirewallState {
        uplink: Some("eth0".into()),
        container_subnets: vec![(Ipv4Addr::new(172, 20, 16, 0), 20)],
        container_subnets6: Vec::new(),
        bridges: vec![BridgeRule {
            name: "br-a".into(),
            subnet: (Ipv4Addr::new(172, 20, 16, 0), 20),
            isolated: true,
        }],
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
    assert_same_as_nft(
        &ruleset_batch(&state_a(), 0),
        include_bytes!("testdata/keel_a.bin"),
    );
}

#[test]
fn full_batch_matches_nft_with_uplink_and_unaligned_prefix() {
    assert_same_as_nft(
        &ruleset_batch(&state_b(), 0),
        include_bytes!("testdata/keel_b.bin"),
    );
}

#[test]
fn table_messages_are_the_replace_trick() {
    // BATCH_BEGIN (res_id = NFNL_SUBSYS_NFTABLES, big endian), NEWTABLE, DELTABLE, NEWTABLE.
    let messages = messages_without_ack(&build_remove(7).bytes);
    let expected: Vec<Vec<u8>> = vec![
        [
            &[20, 0, 0, 0, 0x10, 0, 1, 0, 7, 0, 0, 0, 0, 0, 0, 0][..],
            &[0, 0, 0, 10],
        ]
        .concat(),
        [
            &[40, 0, 0, 0, 0, 0x0a, 1, 0, 8, 0, 0, 0, 0, 0, 0, 0][..],
            &[1, 0, 0, 0], // NFPROTO_INET, v0, res_id 0
            &[9, 0, 1, 0],
            b"keel\0",
            &[0, 0, 0],                // NFTA_TABLE_NAME
            &[8, 0, 2, 0, 0, 0, 0, 0], // NFTA_TABLE_FLAGS
        ]
        .concat(),
        [
            &[32, 0, 0, 0, 2, 0x0a, 1, 0, 9, 0, 0, 0, 0, 0, 0, 0][..],
            &[1, 0, 0, 0],
            &[9, 0, 1, 0],
            b"keel\0",
            &[0, 0, 0],
        ]
        .concat(),
        [
            &[20, 0, 0, 0, 0x11, 0, 1, 0, 10, 0, 0, 0, 0, 0, 0, 0][..],
            &[0, 0, 0, 10],
        ]
        .concat(),
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
    assert!(batch
        .messages
        .iter()
        .any(|(_, w)| w == "add rule forward #3 (iifname \"keel1\" oifname \"keel0\" drop)"));
}

#[test]
fn published_map_has_one_element_per_port_and_one_rule() {
    let mut state = state_a();
    state.published = (0..1000)
        .map(|i| Published {
            proto: Proto::Tcp,
            host_ip: None,
            host_port: 10_000 + i,
            dest: Ipv4Addr::new(10, 88, 0, 2),
            dest_port: 80,
        })
        .collect();
    let batch = build(&state, 1);
    let rules_in_prerouting = batch
        .messages
        .iter()
        .filter(|(_, w)| w.starts_with("add rule prerouting"))
        .count();
    assert_eq!(rules_in_prerouting, 2);
    // 1000 elements of 40 bytes do not fit in one 16-bit attribute length: chunks.
    let chunks = batch
        .messages
        .iter()
        .filter(|(_, w)| w == "add elements to published")
        .count();
    assert!(chunks >= 1, "{chunks}");
    let key = [6, 0, 0, 0, 0x27, 0x10, 0, 0]; // tcp . 10000
    assert!(batch.bytes.windows(key.len()).any(|w| w == key));
}

#[test]
fn validation_names_the_field() {
    let mut state = state_a();
    state.bridges[1].name = "a-bridge-name-too-long".into();
    let message = validate(&state).unwrap_err().to_string();
    assert_eq!(
        message,
        "invalid firewall state: bridges[1].name: interface name \"a-bridge-name-too-long\" must be 1 to 15 bytes long"
    );
    state.bridges[1].name = "ok".into();
    state.container_subnets[0].1 = 33;
    assert!(validate(&state)
        .unwrap_err()
        .to_string()
        .contains("container_subnets[0]: prefix length 33"));
    assert!(validate(&state_b()).is_ok());
}

#[test]
fn verdict_reports_the_first_failing_message_by_name() {
    let batch = build(&state_b(), 1);
    let seq_of = |label: &str| {
        batch
            .messages
            .iter()
            .find(|(_, w)| w.starts_with(label))
            .unwrap()
            .0
    };
    let forward = seq_of("add rule forward #1");
    let mut answers: Vec<(u32, i32)> = batch.messages.iter().map(|(s, _)| (*s, 0)).collect();
    answers.iter_mut().find(|(s, _)| *s == forward).unwrap().1 = -22;
    let err = verdict(&batch, &answers).unwrap_err().to_string();
    assert!(
        err.starts_with(
            "add rule forward #1 (ct state established,related accept): Invalid argument"
        ),
        "{err}"
    );
    // An error on BATCH_BEGIN's sequence number is the batch as a whole.
    let err = verdict(&batch, &[(1, -1)]).unwrap_err().to_string();
    assert!(
        err.starts_with("commit batch for table inet keel: "),
        "{err}"
    );
    // Missing ACKs are an error, not a success.
    let err = verdict(
        &batch,
        &answers[..3]
            .iter()
            .map(|(s, _)| (*s, 0))
            .collect::<Vec<_>>(),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("no acknowledgement for: add chain prerouting"),
        "{err}"
    );
    let all_ok: Vec<(u32, i32)> = batch.messages.iter().map(|(s, _)| (*s, 0)).collect();
    assert!(verdict(&batch, &all_ok).is_ok());
}

#[test]
fn ipv6_subnets_get_a_masquerade_rule_each() {
    let mut state = state_b();
    state.container_subnets6 = vec![
        (Ipv6Addr::new(0xfd00, 0x88, 0, 0, 0, 0, 0, 0), 64),
        (Ipv6Addr::new(0xfd00, 0x89, 0, 0, 0, 0, 0, 0), 60),
    ];
    let batch = build(&state, 1);
    let rules: Vec<&str> = batch.messages.iter().map(|(_, w)| w.as_str()).filter(|w| w.contains("ip6 saddr")).collect();
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
