//! The rules of table `inet keel`, chain by chain, as nf_tables expressions (pure): what
//! each rule is for is written in the module docs of `nft`.

use super::ruleset::{
    ifname, ID_ALLOW, ID_BRIDGES, ID_METADATA_BRIDGES, ID_METADATA_HOSTS, ID_METADATA_HOSTS6, ID_PUBLISHED, ID_PUBLISHED_HOST,
};
use super::wire::{self, base, ct, meta, Expr};
use super::{FirewallState, METADATA_V4, METADATA_V6};
use std::net::{Ipv4Addr, Ipv6Addr};

/// One rule: its chain, how `nft list` shows it, and its expressions.
pub struct Rule {
    /// Chain name.
    pub chain: &'static str,
    /// The rule in nft syntax (for error messages and docs).
    pub text: String,
    /// The expressions, in order.
    pub exprs: Vec<Expr>,
}

fn nfproto_ipv4() -> [Expr; 2] {
    [Expr::Meta { key: meta::NFPROTO, dreg: wire::REG_1 }, Expr::Cmp { sreg: wire::REG_1, neq: false, data: vec![wire::NFPROTO_IPV4] }]
}

/// Offsets of the source and destination addresses in the IPv4 and IPv6 headers.
const IP_SADDR: u32 = 12;
const IP_DADDR: u32 = 16;
const IP6_SADDR: u32 = 8;
const IP6_DADDR: u32 = 24;

/// `ip saddr ADDR/PREFIX`, encoded the way nft does: whole bytes are compared directly,
/// other prefixes load 4 bytes and mask them.
fn ip_saddr(addr: Ipv4Addr, prefix: u8) -> Vec<Expr> {
    let mut exprs = nfproto_ipv4().to_vec();
    exprs.extend(prefix_match(IP_SADDR, &addr.octets(), prefix));
    exprs
}

fn nfproto_ipv6() -> [Expr; 2] {
    [Expr::Meta { key: meta::NFPROTO, dreg: wire::REG_1 }, Expr::Cmp { sreg: wire::REG_1, neq: false, data: vec![wire::NFPROTO_IPV6] }]
}

/// `ip6 saddr ADDR/PREFIX`, encoded like [`ip_saddr`] (source address at offset 8 of
/// the IPv6 header; other prefixes load all 16 bytes and mask them).
fn ip6_saddr(addr: Ipv6Addr, prefix: u8) -> Vec<Expr> {
    let mut exprs = nfproto_ipv6().to_vec();
    exprs.extend(prefix_match(IP6_SADDR, &addr.octets(), prefix));
    exprs
}

/// The address field at `offset` of the network header is not in the set `set`
/// (`ip saddr != @set`; the protocol check comes before, from the rule's other match).
fn addr_not_in(offset: u32, len: u32, set: &str, set_id: u32) -> [Expr; 2] {
    [
        Expr::Payload { dreg: wire::REG_1, base: base::NETWORK, offset, len },
        Expr::Lookup { sreg: wire::REG_1, dreg: None, set: set.into(), set_id, inverted: true },
    ]
}

/// `iifname @set` (or `iifname != @set`).
fn ifname_in(key: u32, set: &str, set_id: u32, inverted: bool) -> [Expr; 2] {
    [Expr::Meta { key, dreg: wire::REG_1 }, Expr::Lookup { sreg: wire::REG_1, dreg: None, set: set.into(), set_id, inverted }]
}

/// The network-header field at `offset` (an address of `octets.len()` bytes) matches
/// `octets/prefix`: whole bytes compared directly, other prefixes loaded whole and masked.
fn prefix_match(offset: u32, octets: &[u8], prefix: u8) -> Vec<Expr> {
    let mut exprs = Vec::new();
    if prefix > 0 && prefix.is_multiple_of(8) {
        let len = usize::from(prefix / 8).min(octets.len());
        exprs.push(Expr::Payload { dreg: wire::REG_1, base: base::NETWORK, offset, len: len as u32 });
        exprs.push(Expr::Cmp { sreg: wire::REG_1, neq: false, data: octets[..len].to_vec() });
    } else {
        let mask: Vec<u8> = (0..octets.len())
            .map(|i| {
                let bits = u32::from(prefix).saturating_sub(8 * i as u32).min(8);
                0xffu8.checked_shl(8 - bits).unwrap_or(0)
            })
            .collect();
        let network: Vec<u8> = octets.iter().zip(&mask).map(|(a, m)| a & m).collect();
        exprs.push(Expr::Payload { dreg: wire::REG_1, base: base::NETWORK, offset, len: octets.len() as u32 });
        exprs.push(Expr::Bitwise { reg: wire::REG_1, mask });
        exprs.push(Expr::Cmp { sreg: wire::REG_1, neq: false, data: network });
    }
    exprs
}

fn ifname_is(key: u32, name: &str) -> [Expr; 2] {
    [Expr::Meta { key, dreg: wire::REG_1 }, Expr::Cmp { sreg: wire::REG_1, neq: false, data: ifname(name) }]
}

/// `ct KEY & BITS != 0`, as nft encodes `ct state established,related` or `ct status dnat`.
fn ct_any(key: u32, bits: u32) -> [Expr; 3] {
    [
        Expr::Ct { key, dreg: wire::REG_1 },
        Expr::Bitwise { reg: wire::REG_1, mask: bits.to_ne_bytes().to_vec() },
        Expr::Cmp { sreg: wire::REG_1, neq: true, data: vec![0; 4] },
    ]
}

fn fib_daddr_local() -> [Expr; 2] {
    [
        Expr::FibDaddrType { dreg: wire::REG_1 },
        Expr::Cmp { sreg: wire::REG_1, neq: false, data: 2u32.to_ne_bytes().to_vec() }, // RTN_LOCAL
    ]
}

fn l4proto(dreg: u32) -> Expr {
    Expr::Meta { key: meta::L4PROTO, dreg }
}

fn th_dport(dreg: u32) -> Expr {
    Expr::Payload { dreg, base: base::TRANSPORT, offset: 2, len: 2 }
}

/// The two DNAT rules shared by prerouting and output.
fn dnat_rules(chain: &'static str) -> [Rule; 2] {
    let mut host = fib_daddr_local().to_vec();
    host.extend(nfproto_ipv4());
    host.extend([
        Expr::Payload { dreg: wire::REG_1, base: base::NETWORK, offset: 16, len: 4 },
        l4proto(wire::REG32_01),
        th_dport(wire::REG32_02),
        Expr::Lookup {
            sreg: wire::REG_1,
            dreg: Some(wire::REG_1),
            set: "published_host".into(),
            set_id: ID_PUBLISHED_HOST,
            inverted: false,
        },
        Expr::DnatIp { addr_reg: wire::REG_1, proto_reg: wire::REG32_01 },
    ]);
    let mut any = fib_daddr_local().to_vec();
    any.extend([
        l4proto(wire::REG_1),
        th_dport(wire::REG32_01),
        Expr::Lookup { sreg: wire::REG_1, dreg: Some(wire::REG_1), set: "published".into(), set_id: ID_PUBLISHED, inverted: false },
        Expr::DnatIp { addr_reg: wire::REG_1, proto_reg: wire::REG32_01 },
    ]);
    [
        Rule { chain, text: "fib daddr type local dnat ip to ip daddr . meta l4proto . th dport map @published_host".into(), exprs: host },
        Rule { chain, text: "fib daddr type local dnat ip to meta l4proto . th dport map @published".into(), exprs: any },
    ]
}

fn accept(mut exprs: Vec<Expr>) -> Vec<Expr> {
    exprs.push(Expr::Verdict(wire::VERDICT_ACCEPT));
    exprs
}

/// Masquerade what `source` matches (a container subnet, IPv4 or IPv6) when it leaves
/// through `uplink`, or through any interface that is not a bridge when there is none.
fn masquerade(mut exprs: Vec<Expr>, source: &str, uplink: Option<&str>) -> Rule {
    let text = match uplink {
        Some(uplink) => {
            exprs.extend(ifname_is(meta::OIFNAME, uplink));
            format!("{source} oifname \"{uplink}\" masquerade")
        }
        None => {
            exprs.push(Expr::Meta { key: meta::OIFNAME, dreg: wire::REG_1 });
            exprs.push(Expr::Lookup { sreg: wire::REG_1, dreg: None, set: "bridges".into(), set_id: ID_BRIDGES, inverted: true });
            format!("{source} oifname != @bridges masquerade")
        }
    };
    exprs.push(Expr::Masq);
    Rule { chain: "postrouting", text, exprs }
}

/// Every rule of the ruleset, in chain order and then in the order they are matched.
pub fn rules(state: &FirewallState) -> Vec<Rule> {
    let mut rules = guard_rules();
    rules.extend(dnat_rules("prerouting"));
    rules.extend(dnat_rules("output"));

    for (addr, prefix) in &state.container_subnets {
        rules.push(masquerade(ip_saddr(*addr, *prefix), &format!("ip saddr {addr}/{prefix}"), state.uplink.as_deref()));
    }
    for (addr, prefix) in &state.container_subnets6 {
        rules.push(masquerade(ip6_saddr(*addr, *prefix), &format!("ip6 saddr {addr}/{prefix}"), state.uplink.as_deref()));
    }
    for bridge in &state.bridges {
        // Hairpin: a container reaching a port published by a container on its own bridge.
        let (addr, prefix) = bridge.subnet;
        let mut exprs = ifname_is(meta::OIFNAME, &bridge.name).to_vec();
        exprs.extend(ip_saddr(addr, prefix));
        exprs.extend(ct_any(ct::STATUS, ct::STATUS_DNAT));
        exprs.push(Expr::Masq);
        let text = format!("oifname \"{}\" ip saddr {addr}/{prefix} ct status dnat masquerade", bridge.name);
        rules.push(Rule { chain: "postrouting", text, exprs });
    }
    // The host reaching a published port on 127.0.0.1 (needs route_localnet).
    let mut exprs = ip_saddr(Ipv4Addr::new(127, 0, 0, 0), 8);
    exprs.extend(ct_any(ct::STATUS, ct::STATUS_DNAT));
    exprs.push(Expr::Masq);
    rules.push(Rule { chain: "postrouting", text: "ip saddr 127.0.0.0/8 ct status dnat masquerade".into(), exprs });

    rules.extend(forward_rules(state));
    rules.extend(input_rules(state));
    rules
}

/// The `guard` chain: loopback addresses from outside lo, and the metadata service from
/// containers that may not reach it (see the module docs of `nft`).
pub fn guard_rules() -> Vec<Rule> {
    let mut localnet = vec![
        Expr::Meta { key: meta::IIF, dreg: wire::REG_1 },
        Expr::Cmp { sreg: wire::REG_1, neq: true, data: 1u32.to_ne_bytes().to_vec() }, // LOOPBACK_IFINDEX
    ];
    localnet.extend(nfproto_ipv4());
    localnet.extend(prefix_match(IP_DADDR, &[127, 0, 0, 0], 8));
    localnet.push(Expr::Verdict(wire::VERDICT_DROP));
    let metadata = |family: [Expr; 2], daddr: (u32, &[u8]), saddr: (u32, &str, u32)| {
        let mut exprs = ifname_in(meta::IIFNAME, "bridges", ID_BRIDGES, false).to_vec();
        exprs.extend(ifname_in(meta::IIFNAME, "metadata_bridges", ID_METADATA_BRIDGES, true));
        exprs.extend(family);
        exprs.extend(prefix_match(daddr.0, daddr.1, 8 * daddr.1.len() as u8));
        exprs.extend(addr_not_in(saddr.0, daddr.1.len() as u32, saddr.1, saddr.2));
        exprs.push(Expr::Verdict(wire::VERDICT_DROP));
        exprs
    };
    let (v4, v6) = (METADATA_V4.octets(), METADATA_V6.octets());
    vec![
        Rule { chain: "guard", text: "iif != \"lo\" ip daddr 127.0.0.0/8 drop".into(), exprs: localnet },
        Rule {
            chain: "guard",
            text: format!("iifname @bridges iifname != @metadata_bridges ip daddr {METADATA_V4} ip saddr != @metadata_hosts drop"),
            exprs: metadata(nfproto_ipv4(), (IP_DADDR, &v4), (IP_SADDR, "metadata_hosts", ID_METADATA_HOSTS)),
        },
        Rule {
            chain: "guard",
            text: format!("iifname @bridges iifname != @metadata_bridges ip6 daddr {METADATA_V6} ip6 saddr != @metadata_hosts6 drop"),
            exprs: metadata(nfproto_ipv6(), (IP6_DADDR, &v6), (IP6_SADDR, "metadata_hosts6", ID_METADATA_HOSTS6)),
        },
    ]
}

/// The `forward` chain: replies, isolation, containers out, published ports in, and
/// nothing else into a container network (IPv4 and IPv6 alike).
fn forward_rules(state: &FirewallState) -> Vec<Rule> {
    let mut rules = vec![Rule {
        chain: "forward",
        text: "ct state established,related accept".into(),
        exprs: accept(ct_any(ct::STATE, ct::STATE_ESTABLISHED_RELATED).to_vec()),
    }];
    for from in &state.bridges {
        for to in &state.bridges {
            if from.name != to.name && (from.isolated || to.isolated) {
                let mut exprs = ifname_is(meta::IIFNAME, &from.name).to_vec();
                exprs.extend(ifname_is(meta::OIFNAME, &to.name));
                exprs.push(Expr::Verdict(wire::VERDICT_DROP));
                let text = format!("iifname \"{}\" oifname \"{}\" drop", from.name, to.name);
                rules.push(Rule { chain: "forward", text, exprs });
            }
        }
    }

    rules.push(Rule {
        chain: "forward",
        text: "iifname @bridges accept".into(),
        exprs: accept(ifname_in(meta::IIFNAME, "bridges", ID_BRIDGES, false).to_vec()),
    });
    rules.push(Rule {
        chain: "forward",
        text: "ct status dnat accept".into(),
        exprs: accept(ct_any(ct::STATUS, ct::STATUS_DNAT).to_vec()),
    });
    let mut inbound = ifname_in(meta::OIFNAME, "bridges", ID_BRIDGES, false).to_vec();
    inbound.push(Expr::Verdict(wire::VERDICT_DROP));
    rules.push(Rule { chain: "forward", text: "oifname @bridges drop".into(), exprs: inbound });
    rules
}

/// `iifname UPLINK`, or `iifname != @bridges` while no uplink is known: what comes from
/// outside the host, never from a container.
fn from_outside(uplink: Option<&str>) -> (Vec<Expr>, String) {
    match uplink {
        Some(uplink) => (ifname_is(meta::IIFNAME, uplink).to_vec(), format!("iifname \"{uplink}\"")),
        None => (ifname_in(meta::IIFNAME, "bridges", ID_BRIDGES, true).to_vec(), "iifname != @bridges".into()),
    }
}

/// The `input` chain (its policy is `input`'s).
fn input_rules(state: &FirewallState) -> Vec<Rule> {
    let mut rules = Vec::new();
    let input = |text: &str, exprs: Vec<Expr>| Rule { chain: "input", text: text.into(), exprs: accept(exprs) };
    let (outside, outside_text) = from_outside(state.uplink.as_deref());
    rules.push(input("ct state established,related accept", ct_any(ct::STATE, ct::STATE_ESTABLISHED_RELATED).to_vec()));
    rules.push(input(
        "iif \"lo\" accept",
        vec![
            Expr::Meta { key: meta::IIF, dreg: wire::REG_1 },
            Expr::Cmp { sreg: wire::REG_1, neq: false, data: 1u32.to_ne_bytes().to_vec() }, // LOOPBACK_IFINDEX
        ],
    ));
    rules.push(input("ct status dnat accept", ct_any(ct::STATUS, ct::STATUS_DNAT).to_vec()));
    let mut allow = outside.clone();
    allow.extend([
        l4proto(wire::REG_1),
        th_dport(wire::REG32_01),
        Expr::Lookup { sreg: wire::REG_1, dreg: None, set: "allow".into(), set_id: ID_ALLOW, inverted: false },
    ]);
    rules.push(input(&format!("{outside_text} meta l4proto . th dport @allow accept"), allow));
    for (text, number) in [("meta l4proto icmp accept", 1u8), ("meta l4proto ipv6-icmp accept", 58)] {
        rules.push(input(text, vec![l4proto(wire::REG_1), Expr::Cmp { sreg: wire::REG_1, neq: false, data: vec![number] }]));
    }
    let mut dhcp = outside;
    dhcp.extend([
        l4proto(wire::REG_1),
        Expr::Cmp { sreg: wire::REG_1, neq: false, data: vec![17] },
        Expr::Payload { dreg: wire::REG_1, base: base::TRANSPORT, offset: 0, len: 4 },
        Expr::Cmp { sreg: wire::REG_1, neq: false, data: vec![0, 67, 0, 68] },
    ]);
    rules.push(input(&format!("{outside_text} udp sport 67 udp dport 68 accept"), dhcp));
    rules
}
