//! The fuzz targets under proptest (arbitrary and structured inputs), the round trips
//! they rely on, and the replay of the committed corpus.

use super::*;
use crate::dhcp::packet::fake_server;
use crate::dhcp::Lease;
use proptest::collection::vec;
use proptest::prelude::*;
use std::net::Ipv4Addr;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn no_target_panics_on_arbitrary_bytes(data in vec(any::<u8>(), 0..1024)) {
        for target in TARGETS {
            (target.run)(&data);
        }
    }

    /// Text close to what the parsers expect: TOML-ish, HTTP-ish and URL-ish lines.
    #[test]
    fn no_target_panics_on_text(lines in vec("[a-z0-9_./:=\\[\\]\" -]{0,40}|HTTP/1\\.[01] [0-9]{3} [A-Z]{0,4}|[A-Za-z-]{1,12}: [a-z0-9,; ]{0,12}|[0-9a-f]{1,3}|https?://[a-z0-9.:\\[\\]@]{0,20}(/[a-z?#/]{0,8})?", 0..12)) {
        let text = lines.join("\r\n") + "\r\n\r\n";
        for target in TARGETS {
            (target.run)(text.as_bytes());
        }
    }

    /// A well-formed DHCP header from the client's own xid and MAC, with random options:
    /// the decoder gets past the header checks and into the option parsing.
    #[test]
    fn dhcp_target_survives_random_options(kind in 1u8..8, options in vec((any::<u8>(), vec(any::<u8>(), 0..12)), 0..16), overload in any::<[u8; 192]>()) {
        let options: Vec<(u8, &[u8])> = options.iter().map(|(code, value)| (*code, value.as_slice())).collect();
        let mut bytes = fake_server::reply(kind, 7, &[2, 0, 0, 0, 0, 1], Ipv4Addr::new(10, 0, 0, 5), &options);
        dhcp_packet(&bytes);
        bytes[44..236].copy_from_slice(&overload);
        dhcp_packet(&bytes);
    }

    /// What a server grants is what the client reads (RFC 2132 options encoded, then
    /// decoded).
    #[test]
    fn dhcp_leases_round_trip(
        address in any::<u32>().prop_map(Ipv4Addr::from).prop_filter("a unicast address", |a| !(a.is_unspecified() || a.is_broadcast() || a.is_multicast() || a.is_loopback())),
        prefix in 0u8..=32,
        server in any::<[u8; 4]>(),
        routers in vec(any::<[u8; 4]>(), 1..3),
        dns in vec(any::<[u8; 4]>(), 0..4),
        domain in proptest::option::of("[a-z0-9.-]{1,40}"),
        mtu in proptest::option::of(68u16..),
        lease_secs in any::<u32>(),
        t2_part in 0u64..=1000,
        t1_part in 0u64..=1000,
        ack in any::<bool>(),
    ) {
        let t2 = (u64::from(lease_secs) * t2_part / 1000) as u32;
        let t1 = (u64::from(t2) * t1_part / 1000) as u32;
        let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0).to_be_bytes();
        let routers_bytes: Vec<u8> = routers.concat();
        let dns_bytes: Vec<u8> = dns.concat();
        let mtu_bytes = mtu.map(u16::to_be_bytes);
        let mut options: Vec<(u8, &[u8])> = vec![(54, &server), (1, &mask), (3, &routers_bytes)];
        let lease_bytes = lease_secs.to_be_bytes();
        let (t1_bytes, t2_bytes) = (t1.to_be_bytes(), t2.to_be_bytes());
        options.extend([(51, &lease_bytes[..]), (58, &t1_bytes[..]), (59, &t2_bytes[..])]);
        if !dns.is_empty() {
            options.push((6, &dns_bytes));
        }
        if let Some(domain) = &domain {
            options.push((15, domain.as_bytes()));
        }
        if let Some(mtu) = &mtu_bytes {
            options.push((26, mtu));
        }
        let mac = [2, 0, 0, 0, 0, 9];
        let kind = if ack { 5 } else { 2 };
        let bytes = fake_server::reply(kind, 42, &mac, address, &options);
        let expected = Lease {
            address,
            prefix,
            router: Some(Ipv4Addr::from(routers[0])),
            dns: dns.iter().map(|d| Ipv4Addr::from(*d)).collect(),
            domain,
            mtu,
            server: Ipv4Addr::from(server),
            lease_secs,
            t1_secs: t1,
            t2_secs: t2,
        };
        let decoded = packet::decode(&bytes, 42, &mac).unwrap();
        prop_assert_eq!(decoded, if ack { Reply::Ack(expected) } else { Reply::Offer(expected) });
    }

    /// A body sent chunked (any chunk sizes, chunk extensions and trailers) decodes to
    /// the body.
    #[test]
    fn chunked_bodies_round_trip(chunks in vec(vec(any::<u8>(), 1..64), 0..8), extension in any::<bool>(), trailer in any::<bool>()) {
        let mut wire_bytes = Vec::new();
        for chunk in &chunks {
            wire_bytes.extend(format!("{:x}{}\r\n", chunk.len(), if extension { ";name=value" } else { "" }).bytes());
            wire_bytes.extend(chunk);
            wire_bytes.extend(b"\r\n");
        }
        wire_bytes.extend(b"0\r\n");
        if trailer {
            wire_bytes.extend(b"Expires: never\r\n");
        }
        wire_bytes.extend(b"\r\n");
        let body = wire::decode_chunked(&mut Cursor::new(&wire_bytes), BODY_LIMIT).unwrap();
        prop_assert_eq!(body, chunks.concat());
    }

    /// URLs built from parts parse into those parts, and print back to a URL that
    /// parses the same.
    #[test]
    fn urls_round_trip(https in any::<bool>(), host in prop_oneof!["[a-z0-9-]{1,12}(\\.[a-z]{2,5}){0,2}", any::<[u16; 8]>().prop_map(|a| format!("[{}]", std::net::Ipv6Addr::from(a)))], port in proptest::option::of(1u16..), path in "(/[a-zA-Z0-9._~%-]{0,10}){0,4}(\\?[a-z=&]{0,10})?") {
        let text = format!("{}://{host}{}{path}", if https { "https" } else { "http" }, port.map(|p| format!(":{p}")).unwrap_or_default());
        let url = http::parse_url(&text).unwrap();
        prop_assert_eq!(&url.host, host.trim_start_matches('[').trim_end_matches(']'));
        prop_assert_eq!(url.port, port.unwrap_or(if https { 443 } else { 80 }));
        http_url(text.as_bytes());
    }

    /// Port mappings written in any of their forms print back to the same mapping.
    #[test]
    fn ports_round_trip(ip in proptest::option::of(any::<[u8; 4]>()), host in 1u16.., container in proptest::option::of(1u16..), udp in proptest::option::of(any::<bool>())) {
        let mut text = ip.map(|ip| format!("{}:", Ipv4Addr::from(ip))).unwrap_or_default();
        text += &match container { Some(c) => format!("{host}:{c}"), None => host.to_string() };
        if ip.is_some() && container.is_none() {
            text = format!("{}:{host}:{host}", Ipv4Addr::from(ip.unwrap_or_default()));
        }
        if let Some(udp) = udp {
            text += if udp { "/udp" } else { "/tcp" };
        }
        let port = config::parse_port(&text).unwrap();
        prop_assert_eq!(port.host_port, host);
        prop_assert_eq!(port.container_port, container.unwrap_or(host));
        network_toml(text.as_bytes());
    }
}

/// Negative control: the independent check refuses two networks on overlapping subnets.
#[test]
#[should_panic(expected = "conflicting networks accepted")]
fn network_check_sees_overlapping_subnets() {
    let mut config = config::default_config();
    let mut second = config.networks[0].clone();
    second.name = "other".into();
    second.bridge = "other0".into();
    config.networks.push(second);
    check_networks(&config);
}

#[test]
fn every_target_replays_its_committed_corpus() {
    for target in TARGETS {
        assert!(replay(target) > 0, "{}: no committed corpus in {}", target.name, corpus_dir(target.name).display());
    }
}

/// Negative control: the DHCP target's resolv.conf check fires on a lease whose domain
/// would inject a line (the decoder drops such domains, so the target never sees one).
#[test]
#[should_panic(expected = "resolv.conf injected")]
fn dhcp_injection_check_can_fail() {
    let lease = Lease {
        address: Ipv4Addr::new(10, 0, 0, 2),
        prefix: 24,
        router: None,
        dns: vec![],
        domain: Some("x\nnameserver 6.6.6.6".into()),
        mtu: None,
        server: Ipv4Addr::new(10, 0, 0, 1),
        lease_secs: 60,
        t1_secs: 30,
        t2_secs: 52,
    };
    check_lease(&lease);
}
