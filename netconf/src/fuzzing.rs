//! Fuzz targets for the parsers of this crate that read outside input: network.toml,
//! DHCP packets from any server on the link, netlink replies from the kernel, and HTTP
//! responses and URLs from any web server or redirect.
//!
//! Each target is a function of arbitrary bytes that returns normally on every input
//! and panics only when a parser panics or one of the properties checked here fails.
//! The same functions are driven three ways: by libFuzzer (`make fuzz`, the `fuzz/`
//! crate), by proptest in `cargo test`, and by the replay of the committed corpus
//! (`fuzz/corpus/TARGET/`) in `cargo test`. Compiled for tests and with the `fuzzing`
//! feature only.

use crate::config;
use crate::dhcp::{self, packet, Reply};
use crate::http::{self, wire};
use crate::{addr::AddressInfo, link::LinkInfo, route::RouteInfo};
use netlink_packet_route::RouteNetlinkMessage;
use std::io::{BufReader, Cursor};
use std::path::{Path, PathBuf};

/// One fuzz target: its name (also its corpus directory and its libFuzzer binary) and
/// the function that feeds it one input.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// The target's name, e.g. `dhcp_packet`.
    pub name: &'static str,
    /// Parses one input; panics only on a bug.
    pub run: fn(&[u8]),
}

/// The targets of this crate.
pub const TARGETS: &[Target] = &[
    Target { name: "network_toml", run: network_toml },
    Target { name: "dhcp_packet", run: dhcp_packet },
    Target { name: "netlink_reply", run: netlink_reply },
    Target { name: "http_response", run: http_response },
    Target { name: "http_url", run: http_url },
];

/// The committed corpus of `target`: `fuzz/corpus/TARGET/` at the top of the repository.
pub fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus").join(target)
}

/// Run `target` on every file of its committed corpus (the seeds and every input that
/// once crashed it); returns how many inputs ran. A panic is the test failure.
pub fn replay(target: &Target) -> usize {
    let dir = corpus_dir(target.name);
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_file()).collect(),
        Err(e) => panic!("{}: {e}", dir.display()),
    };
    files.sort();
    for file in &files {
        let data = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        eprintln!("{}: {}", target.name, file.display());
        (target.run)(&data);
    }
    files.len()
}

/// network.toml: the whole parse and validation, and the value parsers it uses on
/// each line of the input (ports, CIDRs, MACs).
pub fn network_toml(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(config) = config::parse(&text, "network.toml") {
        check_networks(&config);
    }
    for line in text.lines().take(64) {
        if let Ok(port) = config::parse_port(line) {
            let again = config::parse_port(&port.to_string());
            assert_eq!(again.as_ref(), Ok(&port), "port {line:?} printed as {port} parses back differently");
        }
        if let Ok(net) = config::Ipv4Net::parse(line) {
            assert_eq!(config::Ipv4Net::parse(&net.to_string()), Ok(net), "CIDR {line:?} does not round-trip");
            assert!(net.contains(net.network()), "{net} does not contain its own network address");
        }
        if let Ok(net) = config::Ipv6Net::parse(line) {
            assert_eq!(config::Ipv6Net::parse(&net.to_string()), Ok(net), "CIDR {line:?} does not round-trip");
        }
        let _ = config::parse_mac(line);
    }
}

/// What the validator promises of an accepted network.toml, checked independently:
/// valid names, the gateway a host of its subnet, no two networks on one bridge or on
/// overlapping subnets, MTUs in range.
pub fn check_networks(config: &config::NetworkConfig) {
    assert!(!config.networks.is_empty(), "an accepted config without networks");
    for (i, n) in config.networks.iter().enumerate() {
        assert!(config::check_network_name(&n.name).is_ok() && config::check_ifname(&n.bridge).is_ok(), "bad names accepted: {n:?}");
        assert!(n.subnet.contains(n.gateway) && n.gateway != n.subnet.network() && n.subnet.prefix <= 30, "bad gateway accepted: {n:?}");
        for o in &config.networks[i + 1..] {
            assert!(n.bridge != o.bridge && !n.subnet.overlaps(&o.subnet), "conflicting networks accepted: {n:?} {o:?}");
        }
    }
    for uplink in &config.uplinks {
        assert!(uplink.mtu.is_none_or(|mtu| (68..=65535).contains(&mtu)), "MTU accepted: {uplink:?}");
    }
}

/// A DHCP answer as a server on the link may send it. The xid and MAC the client would
/// expect are taken from the packet itself, so the fuzzer gets past the header checks.
/// Properties of an accepted lease: prefix at most 32, `T1 ≤ T2 ≤ lease`, MTU at least
/// 68, and a resolv.conf with exactly one line per item (nothing injected).
pub fn dhcp_packet(data: &[u8]) {
    let _ = packet::message_type(data);
    let xid = data.get(4..8).map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    let mac: dhcp::Mac = data.get(28..34).map_or([0; 6], |b| [b[0], b[1], b[2], b[3], b[4], b[5]]);
    let lease = match packet::decode(data, xid, &mac) {
        Ok(Reply::Offer(lease) | Reply::Ack(lease)) => lease,
        Ok(Reply::Nak { .. }) | Err(_) => return,
    };
    check_lease(&lease);
}

/// The properties every lease the decoder accepts has (panics otherwise).
pub fn check_lease(lease: &dhcp::Lease) {
    assert!(lease.prefix <= 32, "prefix {}", lease.prefix);
    assert!(lease.t1_secs <= lease.t2_secs && lease.t2_secs <= lease.lease_secs, "renewal times out of order: {lease:?}");
    assert!(lease.mtu.is_none_or(|mtu| mtu >= 68), "MTU {:?}", lease.mtu);
    let resolv = dhcp::resolv_conf(lease);
    assert_eq!(resolv.lines().count(), 1 + usize::from(lease.domain.is_some()) + lease.dns.len(), "resolv.conf injected: {resolv:?}");
}

/// Netlink replies as the kernel sends them: keel's own header walk (ACKs of a batch,
/// nf_tables answers), the netlink-packet-route decode of a query's replies, and the
/// link, address and route records keel reads out of the decoded messages.
pub fn netlink_reply(data: &[u8]) {
    let _ = crate::socket::acks(data, "fuzz");
    let _ = crate::nft::parse_answers(data);
    let sequence = data.get(8..12).map_or(0, |b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
    for dump in [false, true] {
        let mut replies = Vec::new();
        let _ = crate::socket::read_replies(data, sequence, dump, "fuzz", &mut replies);
        assert!(dump || replies.len() <= 1, "a plain query took {} replies", replies.len());
        for reply in &replies {
            match reply {
                RouteNetlinkMessage::NewLink(m) => drop(LinkInfo::from_message(m)),
                RouteNetlinkMessage::NewAddress(m) => drop(AddressInfo::from_message(m)),
                RouteNetlinkMessage::NewRoute(m) => drop(RouteInfo::from_message(m)),
                _ => {}
            }
        }
    }
}

/// The largest body the fuzz targets accept (small, so a length field cannot make the
/// fuzzer allocate much).
const BODY_LIMIT: usize = 64 << 10;

/// An HTTP/1.x response as a server sends it, read as the client reads it: whole in
/// memory for GET and HEAD, and head then streamed body. The body never exceeds the
/// limit, and both ways of reading give the same response.
pub fn http_response(data: &[u8]) {
    let whole = wire::read_response(&mut Cursor::new(data), "GET", BODY_LIMIT);
    if let Ok(response) = &whole {
        assert!(response.body.len() <= BODY_LIMIT);
        assert!((100..600).contains(&response.status));
    }
    let _ = wire::read_response(&mut BufReader::with_capacity(7, data), "HEAD", BODY_LIMIT);
    let mut reader = Cursor::new(data);
    let streamed = wire::read_head(&mut reader).and_then(|mut head| {
        let mut body = Vec::new();
        wire::read_body_into(&mut reader, "GET", &head, &mut body, BODY_LIMIT as u64)?;
        head.body = body;
        Ok(head)
    });
    assert_eq!(whole.ok(), streamed.ok(), "reading in memory and streaming disagree");
    let _ = wire::decode_chunked(&mut Cursor::new(data), BODY_LIMIT).map(|body| assert!(body.len() <= BODY_LIMIT));
}

/// A URL from a config or a redirect's `Location`: parse, print and parse again gives
/// the same URL; a redirect (the second line) resolved against it too.
pub fn http_url(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.splitn(2, '\n');
    let Ok(url) = http::parse_url(lines.next().unwrap_or("")) else { return };
    assert_eq!(http::parse_url(&url.to_string()).ok().as_ref(), Some(&url), "{url} does not round-trip");
    if let Some(Ok(next)) = lines.next().map(|location| url.join(location)) {
        assert_eq!(http::parse_url(&next.to_string()).ok().as_ref(), Some(&next), "redirect target {next} does not round-trip");
    }
}

#[cfg(test)]
#[path = "fuzzing_tests.rs"]
mod tests;
